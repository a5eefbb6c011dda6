"""Each recipe against the pinned upstream: its config exists, upstream's own parser loads it with the
README's overrides, the reference run falls into none of the recipe's traps, and the smoke edits apply.

Uses the real checkout ``tests/conftest.py`` picks (``REPRO_TEST_UPSTREAM``, else the one ``make smoke``
fetched), else the pinned archive in
``../shared/upstream/PaddleClas-<commit>.tar.gz`` (or ``REPRO_TEST_UPSTREAM_ARCHIVE``), extracted once
per session with ``repro upstream fetch --archive``. Without either, the tests report themselves
skipped with that reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro.recipes.catalog import available_recipes, load_recipe, marked_overrides, recipe_problems
from repro.launch.config import resolve_config
from repro.launch.config import apply_smoke_edits
from repro.launch.upstream_config import as_upstream_parses, load_upstream_yaml
from tests.conftest import REAL_UPSTREAM_ENV, real_upstream_choice

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE_ENV = "REPRO_TEST_UPSTREAM_ARCHIVE"
# A -o the README passes for a key the config lacks: upstream creates it ("A new field ... detected!")
# and hands it to the model constructor, whose default it equals.
NEW_FIELD_OK = {"Arch.pretrained"}


def find_archive() -> Path | None:
    if os.environ.get(ARCHIVE_ENV):
        return Path(os.environ[ARCHIVE_ENV])
    found = sorted((ROOT.parent / "shared" / "upstream").glob("PaddleClas-*.tar.gz"))
    return found[-1] if found else None


# Set up once: its shared fixture is not function-scoped, so one xdist worker runs the whole module.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="session")
def pinned_upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout of the pinned upstream: the user's (tests/conftest.py), or the archive extracted once."""
    given, _ = real_upstream_choice()
    if given is not None:
        return given
    archive = find_archive()
    if archive is None or not archive.is_file():
        pytest.skip(f"no pinned upstream: set {REAL_UPSTREAM_ENV}=/path/to/PaddleClas, or {ARCHIVE_ENV}=FILE, "
                    "or put PaddleClas-<commit>.tar.gz in ../shared/upstream/")
    dest = tmp_path_factory.mktemp("pinned") / "PaddleClas"
    done = subprocess.run([sys.executable, "-m", "repro", "upstream", "fetch", "--archive", str(archive),
                           "--dest", str(dest)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return dest


# Runs in a child: upstream's parser imports paddle, which this test process should not carry.
PARSE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from ppcls.utils.config import get_config
out = {}
for job in json.loads(sys.argv[2]):
    config = get_config(job["path"], overrides=job["overrides"], show=False)
    out[job["key"]] = {"arch": config["Arch"]["name"], "class_num": config["Arch"]["class_num"],
                       "amp": (config.get("AMP") or {}).get("use_amp"), "fp16_test": (config.get("AMP") or {}).get("use_fp16_test"),
                       "pretrained": config["Arch"].get("pretrained"), "epochs": config["Global"]["epochs"],
                       "image_shape": config["Global"].get("image_shape")}
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def parsed_by_upstream(pinned_upstream: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every recipe's config (as the README launches it) and its smoke config, read by upstream's parser."""
    smoke_dir = tmp_path_factory.mktemp("smoke-configs")
    jobs = []
    for name in available_recipes():
        recipe = load_recipe(name)
        overrides = [*recipe.reference_overrides, "Global.device=gpu", *marked_overrides(recipe, [])]
        jobs.append({"key": name, "path": str(pinned_upstream / recipe.config), "overrides": overrides})
        raw = load_upstream_yaml(pinned_upstream / recipe.config)
        derived = apply_smoke_edits(raw, recipe.data["smoke"].get("config") or {})
        path = smoke_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(derived, sort_keys=False))
        jobs.append({"key": f"{name}:smoke", "path": str(path), "overrides": [*marked_overrides(recipe, [])]})
    done = subprocess.run([sys.executable, "-c", PARSE, str(pinned_upstream), json.dumps(jobs)],
                          capture_output=True, text=True, timeout=300, cwd=pinned_upstream)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", available_recipes())
def test_config_exists_at_the_pin_and_upstream_parses_it(name: str, parsed_by_upstream: dict) -> None:
    recipe = load_recipe(name)
    parsed = parsed_by_upstream[name]
    assert parsed["arch"] == recipe.arch and parsed["class_num"] == recipe.class_num
    assert parsed["amp"] is False and parsed["pretrained"] in (False, None)
    smoke = parsed_by_upstream[f"{name}:smoke"]
    assert smoke["arch"] == recipe.arch and smoke["class_num"] == 4 and smoke["amp"] is False
    assert smoke["epochs"] == recipe.data["smoke"]["config"]["set"]["Global.epochs"]


@pytest.mark.parametrize("name", available_recipes())
def test_overrides_validate_against_the_pinned_config(name: str, pinned_upstream: Path) -> None:
    recipe = load_recipe(name)
    config = as_upstream_parses(load_upstream_yaml(pinned_upstream / recipe.config))
    for option in recipe.reference_overrides:
        key = option.split("=", 1)[0]
        section, leaf = key.rsplit(".", 1)
        assert leaf in config[section] or key in NEW_FIELD_OK, f"{name}: -o {option} names no key of the config"
    for item in recipe.harness_overrides:
        section, leaf = item.key.rsplit(".", 1)
        assert leaf in config[section], f"{name}: marked override {item.option} names no key of the config"
    for key in (recipe.batch_size_key, recipe.lr_key):
        node = config
        for part in key.split("."):
            node = node[part]
        assert node is not None
    assert config["DataLoader"]["Train"]["sampler"]["batch_size"] == recipe.batch_size_per_gpu
    assert float(config["Optimizer"]["lr"]["learning_rate"]) == recipe.base_lr


@pytest.mark.parametrize("name", available_recipes())
def test_the_reference_run_falls_into_no_trap(name: str, pinned_upstream: Path, tmp_path: Path) -> None:
    recipe = load_recipe(name)
    resolved = resolve_config(pinned_upstream, recipe, [], device="gpu", run_dir=tmp_path,
                              extra_overrides=marked_overrides(recipe, []), write=False)
    assert recipe_problems(recipe, resolved.config) == []


def test_swin_without_its_marked_override_trips_the_fp32_trap(pinned_upstream: Path, tmp_path: Path) -> None:
    recipe = load_recipe("swin_transformer")
    resolved = resolve_config(pinned_upstream, recipe, [], device="gpu", run_dir=tmp_path, write=False)
    problems = recipe_problems(recipe, resolved.config)
    assert len(problems) == 2 and "AMP.use_amp is True" in problems[0]


def test_resnet50_without_the_readme_override_would_load_pretrained_weights(pinned_upstream: Path) -> None:
    recipe = load_recipe("resnet50")
    config = as_upstream_parses(load_upstream_yaml(pinned_upstream / recipe.config))
    problems = recipe_problems(recipe, config)
    assert problems and "Arch.pretrained is True" in problems[0]
