"""Warm-up of what the pages import, once per server process, during the app's first load.

A page's first visit otherwise pays for its imports (transformers for the token statistics, pandas
and the chart code for the Train board, the VRAM estimator for Config): several tenths of a second
each on a 2-core box. app.py calls ensure() before every run; only the first call imports. It runs
in the script thread, under a lock, and not in a background thread: transformers' lazy module is not
safe to import from two threads at once ("cannot import name 'GenerationConfig'").

    STUDIO_TIMING=1 python -m studio ui     # also logs each page run's seconds to stderr
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import threading
import time

_lock = threading.Lock()
_done = False
MODULES = ("pandas", "altair", "transformers", "core.data", "core.config.vram", "core.config.command",
           "core.chat", "core.merge", "studio.ui.board", "studio.ui.configform", "studio.ui.files")


def ensure() -> None:
    """Import what the pages need, once per process; concurrent first sessions wait for the first."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        for name in MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # a module that cannot import here fails on its page with a real message
                continue
        try:  # the symbol the Data page's token statistics reach for (transformers imports it lazily)
            from transformers import AutoTokenizer  # noqa: F401
        except Exception:
            pass
        # Streamlit runs a full gc.collect() after every script run, fragment runs included (each Train board
        # every 3 s). With torch and transformers loaded that walks ~0.5 M objects: ~0.37 s holding the GIL,
        # while the server can neither send deltas nor serve the browser its JS chunks. What is loaded by
        # now lives as long as the process: move it out of the collector's sight (a collection then
        # takes milliseconds; objects made later are still collected).
        gc.collect()
        gc.freeze()
        _done = True


@contextlib.contextmanager
def timed(label: str):
    """Print how long the block took to stderr when STUDIO_TIMING is set (app.py wraps each page run)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if os.environ.get("STUDIO_TIMING"):
            print(f"[studio timing] {label}: {time.perf_counter() - t0:.3f}s", file=sys.stderr, flush=True)
