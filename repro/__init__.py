"""repro: a thin, exact harness that reproduces PaddleClas's ResNeSt50 ImageNet recipe and proves the result."""

__version__ = "0.1.0"
