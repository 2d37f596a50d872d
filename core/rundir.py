"""The run-dir protocol (DESIGN.md): file names and the status.json read/write both sides use.

The trainer writes; jobs, the CLI and every page only read. status.json is replaced atomically,
metrics.jsonl and samples.jsonl are appended a whole line at a time.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from core.fsio import atomic_write_json, iter_jsonl, read_json

CONFIG = "config.yaml"
COMMAND = "command.txt"
STATUS = "status.json"
LOG = "train.log"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
FULL_MODEL = "model"
STOP_REQUEST = "stop.request"
COMPLETE_MARK = "COMPLETE"  # written last into a checkpoint folder; no mark = incomplete

STATES = ("queued", "running", "stopping", "stopped", "finished", "failed")
_STEP = re.compile(r"^step-(\d+)$")


def read_status(run_dir: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(run_dir) / STATUS, default={}) or {}


def write_status(run_dir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into status.json (atomic replace); returns the new status."""
    status = read_status(run_dir)
    status.update(fields)
    status.setdefault("host", socket.gethostname())
    status["updated_at"] = time.time()
    atomic_write_json(Path(run_dir) / STATUS, status)
    return status


def checkpoints(run_dir: str | os.PathLike, complete_only: bool = True) -> list[Path]:
    """Checkpoint folders (checkpoints/step-N) sorted by step; incomplete ones left out."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP.match(p.name)
        if m and p.is_dir() and (not complete_only or (p / COMPLETE_MARK).is_file()):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def metrics(run_dir: str | os.PathLike) -> list[dict]:
    return list(iter_jsonl(Path(run_dir) / METRICS))


def samples(run_dir: str | os.PathLike) -> list[dict]:
    return list(iter_jsonl(Path(run_dir) / SAMPLES))


def log_tail(run_dir: str | os.PathLike, lines: int = 60) -> str:
    path = Path(run_dir) / LOG
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    # progress bars redraw with \r; keep the last state of each line
    out = [ln.rsplit("\r", 1)[-1] for ln in data.splitlines()]
    return "\n".join(out[-lines:])
