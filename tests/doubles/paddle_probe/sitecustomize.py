"""Test double of the harness's Paddle probe, for the `repro` children of the double-run tests.

The probe imports Paddle in a child (about 2 CPU-s); the double-run tests start ~45 `repro train`s
that each probed it to learn the same answer. With ``REPRO_TEST_PADDLE_PROBE_ANSWER`` set (by
``tests.doubles.probe_double_env``), a process that imports ``repro.platform.devices`` gets a
``probe_paddle`` that returns that file's answer: the real probe's, taken once per test worker.
The launcher and the ranks still import the real Paddle; this module only adds an import hook."""

import importlib.abc
import importlib.util
import json
import os
import sys

ANSWER = os.environ.get("REPRO_TEST_PADDLE_PROBE_ANSWER")


class _PatchProbe(importlib.abc.MetaPathFinder):
    """Loads ``repro.platform.devices`` as usual, then replaces its ``probe_paddle`` (before any
    ``from repro.platform.devices import probe_paddle`` can copy the real one)."""

    def find_spec(self, name, path=None, target=None):
        if name != "repro.platform.devices":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)

            def probe_paddle(python=None, with_sklearn=True, timeout=120.0, env=None):
                with open(ANSWER, encoding="utf-8") as handle:
                    answer = json.load(handle)
                if not with_sklearn:
                    answer.update(sklearn_version=None, sklearn_crash=None)
                return module.PaddleInfo(**answer)

            module.probe_paddle = probe_paddle

        spec.loader.exec_module = exec_module
        return spec


if ANSWER:
    sys.meta_path.insert(0, _PatchProbe())
