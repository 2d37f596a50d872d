"""The run-dir protocol (DESIGN.md): file names and the status.json read/write both sides use.

The trainer writes; jobs, the CLI and every page only read. status.json is replaced atomically,
metrics.jsonl and samples.jsonl are appended a whole line at a time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import stat
import time
from pathlib import Path
from typing import Any

from core.fsio import atomic_write_json, iter_jsonl

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


MAX_STATUS_BYTES = 1 << 20
UNREADABLE = "unreadable"  # what a reader shows for a status.json it cannot trust; never written
# the fields a reader acts on, and the types they must have (a number for a pid, a text for a state...)
_NUMBER = (int, float)
_TYPES: dict[str, tuple[type, ...]] = {
    "state": (str,), "run_id": (str,), "error": (str,), "hint": (str,), "host": (str,), "waiting_for": (str,),
    "pid": (int,), "pgid": (int,), "step": (int,), "max_steps": (int,), "exit_code": (int,),
    "loss": _NUMBER, "eta_s": _NUMBER, "created_at": _NUMBER, "updated_at": _NUMBER, "started_at": _NUMBER,
    "ended_at": _NUMBER, "launched_at": _NUMBER, "proc_start": (str,), "proc_cmd": (str,),
}


def _load_status(path: Path) -> dict[str, Any]:
    """status.json as written, or a ValueError saying why it cannot be used (FileNotFoundError if absent)."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader forever, a device never end
        raise ValueError(f"{path}: not a regular file")
    if st.st_size > MAX_STATUS_BYTES:
        raise ValueError(f"{path}: {st.st_size:,} bytes, more than a status ever holds ({MAX_STATUS_BYTES:,})")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a JSON {type(data).__name__}, expected an object")
    for key, types in _TYPES.items():
        v = data.get(key)
        if v is not None and (not isinstance(v, types) or isinstance(v, bool)):
            want = {str: "text", int: "a whole number"}.get(types[0], "a number") if len(types) == 1 else "a number"
            raise ValueError(f"{path}: field {key!r} is a {type(v).__name__}, expected {want}")
    if data.get("state") is not None and data["state"] not in STATES:
        raise ValueError(f"{path}: state {str(data['state'])[:40]!r} is not one of {', '.join(STATES)}")
    return data


def unreadable(run_dir: str | os.PathLike, reason: str) -> dict[str, Any]:
    """The status every reader shows for a run it cannot read: the rest of the list still shows."""
    return {"run_id": Path(run_dir).name, "state": UNREADABLE, "error": reason,
            "hint": f"look at {Path(run_dir) / STATUS}; fix or remove it (the run's other files are untouched)"}


def read_status(run_dir: str | os.PathLike) -> dict[str, Any]:
    """status.json: {} when there is none yet, `unreadable(...)` (state "unreadable", the reason) when it is broken.

    Never raises for what a file can hold (bytes, wrong types, a folder vanishing while it is read).
    """
    try:
        return _load_status(Path(run_dir) / STATUS)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (ValueError, OSError) as e:
        return unreadable(run_dir, str(e) if isinstance(e, ValueError) else f"{Path(run_dir) / STATUS}: {e.strerror}")


def write_status(run_dir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into status.json (atomic replace); returns the new status.

    A broken status.json is replaced by `fields` (the writer owns the file; readers showed it unreadable).
    """
    try:
        status = _load_status(Path(run_dir) / STATUS)
    except (ValueError, OSError):
        status = {}
    status.update(fields)
    status.setdefault("host", socket.gethostname())
    status["updated_at"] = time.time()
    atomic_write_json(Path(run_dir) / STATUS, status)
    return status


# ---------------------------------------------------------------------------- who the trainer is
# A pid in status.json may be a different process by the time someone reads it (the run ended, the box
# restarted, the pid was reused) or may name a process on another machine sharing the workspace. What was
# recorded at start (host, the process's start time since boot, its command line) tells them apart.

def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_identity(pid: int) -> dict[str, str]:
    """{"proc_start": boot id + start time, "proc_cmd": command line} of a live process; {} when unknown
    or ended (a zombie, not yet reaped)."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        cmd = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return {}
    fields = stat.rsplit(")", 1)[1].split()  # from field 3 (state) on: the name before may hold spaces
    if fields[0] == "Z":
        return {}
    start = fields[19]  # field 22, starttime
    return {"proc_start": f"{_boot_id()}:{start}",
            "proc_cmd": shlex.join(a.decode("utf-8", "replace") for a in cmd.split(b"\0") if a)}


def is_trainer(pid: int, status: dict[str, Any]) -> bool:
    """Is `pid` (alive, on this machine) still the trainer `status` describes?

    With the identity recorded at start, start time and command line must both match; a status
    written before identities were recorded needs a live process running core.train.entry.
    """
    now = process_identity(pid)
    if not now:
        return False
    if status.get("proc_start"):
        return now["proc_start"] == status["proc_start"] and now["proc_cmd"] == status.get("proc_cmd")
    return "core.train.entry" in now["proc_cmd"]


def checkpoints(run_dir: str | os.PathLike, complete_only: bool = True) -> list[Path]:
    """Checkpoint folders (checkpoints/step-N) sorted by step; incomplete ones left out."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    try:
        entries = list(root.iterdir())
    except OSError:  # the run is being deleted while we look
        return []
    for p in entries:
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
    except OSError:  # none yet, or the run is being deleted
        return ""
    # progress bars redraw with \r; keep the last state of each line
    out = [ln.rsplit("\r", 1)[-1] for ln in data.splitlines()]
    return "\n".join(out[-lines:])
