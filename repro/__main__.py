"""Allows ``python -m repro``, which the Makefile uses so the venv's interpreter is explicit."""

from repro.cli import main

main()
