"""Where CLI results go: the real stdout; library noise written to fd 1 is moved to stderr.

`python -m studio` calls split_stdout() once; every verb prints its result with emit(), so `--json`
output stays parseable whatever banners torch, deepspeed or bitsandbytes print on import.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

# Results go to the real stdout; everything else that writes to fd 1 (library banners, logging
# handlers bound to sys.stdout at import) is sent to stderr, so `--json` output stays parseable.
OUT: TextIO | None = None  # set by split_stdout(); until then (in-process calls, tests) the current sys.stdout


def split_stdout() -> None:
    global OUT
    try:
        sys.stdout.flush()
        real = os.dup(1)
        os.dup2(2, 1)
        OUT = os.fdopen(real, "w", buffering=1, encoding="utf-8")
    except (OSError, ValueError, AttributeError):  # no real fds (e.g. under a test runner's capture)
        OUT = None  # set by split_stdout(); until then (in-process calls, tests) the current sys.stdout


def emit(text: object) -> None:
    print(text, file=OUT or sys.stdout, flush=True)
