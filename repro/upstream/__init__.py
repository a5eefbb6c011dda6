"""The upstream PaddleClas checkout: its pin, fetching it, our patches on it, and its state.

Everything the harness proves depends on knowing exactly which upstream code ran, so this package
owns the pin (``patches/UPSTREAM.yaml``), the patch series, and the record other modules put in
the run manifest (``repro.upstream.state.inspect_checkout``).
"""

from __future__ import annotations
