"""Reading upstream PaddleClas logs and judging them: the verdict is the product.

``parse`` turns one run's logs into pandas tables, ``verdict`` judges them against the recipe's
target with a printed margin, ``report`` draws them, ``watch`` follows a live run, ``health``
raises alarms from the lines (``monitor`` for a run directory and ``repro train``'s housekeeper,
``alarmlog`` for ``alarms.jsonl`` and ``--on-alarm``), ``band`` holds convergence bands, and ``cli``
and ``healthcli`` hold the ``check-accuracy``/``report``/``watch`` and ``band`` commands.
"""
