"""``repro train``: launch upstream's ``tools/train.py`` exactly as the reference does, and keep the run trustworthy.

The launcher side lives here in small modules (command, environment, run directory, manifest,
process control, lock, checkpoints, retention, true best, resume); the config side (overrides,
scaling, pre-flight) lives beside it in ``config``, ``scaling`` and ``preflight``.
"""
