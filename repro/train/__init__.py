"""``repro train``: launch upstream's ``tools/train.py`` exactly as the reference does, and keep the run trustworthy.

How a launch flows, one module a step (``cli`` parses options; ``start`` and ``resume`` drive):

1. config: ``upstream_config`` (upstream's YAML as upstream parses it, ``-o`` checked against it),
   ``config`` (the resolved config, the smoke variant, GPU count and learning rate);
2. checks: ``preflight`` (upstream, dataset, devices, disk), then ``record`` (what the manifest says);
3. command: ``command`` (reference argv with marked additions, environment, ``--dry-run``);
4. run: ``runner`` (one segment: lock, launch, housekeeping, stop, record) with ``lock`` and
   ``process``; the run directory and manifest are :mod:`repro.rundir`'s;
5. checkpoints: ``checkpoints`` (completeness, resume point, retention) and ``truebest``;
6. several nodes: ``nodes`` (node 0's pre-flight, the others' wait for the master, the heartbeat and
   stall watch that stops a node whose peer is lost, and where a node's resume finds node 0's checkpoints).
"""
