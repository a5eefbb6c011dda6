"""``repro train``: launch upstream's ``tools/train.py`` exactly as the reference does, and keep the run trustworthy.

``cli`` is the command line only; ``start`` starts a new run and ``resume`` continues one (both can
``dry_run``). The config side: ``upstream_config`` (upstream's YAML as upstream parses it),
``overrides`` (checking ``-o``), ``smoke_variant`` (the recipe's smoke edits), ``config`` (the
resolved config and its record), ``scaling`` and ``preflight``. The launcher side: command,
environment, run directory, manifest (and ``manifest_fields``), process control, lock, checkpoints,
retention, true best.
"""
