"""Reading upstream PaddleClas logs and judging them: the verdict is the product.

``parse`` turns one run's logs into pandas tables, ``verdict`` judges them against the recipe's
target with a printed margin, ``report`` draws them, ``watch`` follows a live run, and ``cli`` holds
the ``check-accuracy``/``report``/``watch`` commands.
"""
