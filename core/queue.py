"""One training run per device at a time: a second run waits in a queue and starts when the first ends.

The lock is an `fcntl.flock` on workspace/locks/device-<key>.lock, where key is CUDA_VISIBLE_DEVICES
(or "all" when it is unset, which includes CPU runs). The kernel drops a flock when the last process
holding the open file dies, however it dies; a child the trainer forked (a data-loader worker) shares
it, so the holder also writes its pid and start time into the file, and a waiter that finds that
process gone breaks the lock (unlinks the file, under a short guard lock) instead of waiting for the
child. A SIGKILLed or crashed run never blocks the queue. While a run waits, its status.json says
state "queued" and `waiting_for` names the run that holds the device.

    from core import queue
    held = queue.acquire(run_dir, should_stop=lambda: stop_flag.get("stop"))   # blocks while busy
    ...train...
    queue.release(held)                                                         # or just exit

STUDIO_QUEUE=0 turns the queue off (every run starts at once). The key is the CUDA_VISIBLE_DEVICES
string as given, so runs on "0" and on "0,1" do not wait for each other; give every run of a box
the same form (one GPU each, or all of them).

Under torchrun only rank 0 takes the lock; the other ranks wait (`wait_for_rank0`) until the lock
names their own launcher, so no rank starts training while its run is still queued.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from core.workspace import sub

POLL_S = 0.5


def enabled() -> bool:
    return os.environ.get("STUDIO_QUEUE", "1").strip().lower() not in ("0", "false", "no", "off")


def device_key() -> str:
    """The device set a run trains on: CUDA_VISIBLE_DEVICES, or 'all' (also CPU runs)."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return re.sub(r"[^A-Za-z0-9,_-]+", "_", raw) or "all"


def lock_path(key: str | None = None) -> Path:
    return sub("locks") / f"device-{key or device_key()}.lock"


def ticket(run_dir: str | os.PathLike) -> str:
    """What identifies one launch of a run: the run dir plus the process that launched its ranks.

    Under torchrun every rank shares the launcher (the parent) and TORCHELASTIC_RUN_ID; a plain run
    is its own launcher. A later resume of the same run dir gets a new ticket.
    """
    if os.environ.get("LOCAL_RANK") is not None:
        launcher = f"{os.getppid()}:{os.environ.get('TORCHELASTIC_RUN_ID', '')}"
    else:
        launcher = str(os.getpid())
    return f"{Path(run_dir).resolve()}|{launcher}"


def holder(path: Path | None = None) -> dict:
    """Who holds the device lock now, as the holder wrote it ({} if free or not yet written)."""
    path = path or lock_path()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return {}
    try:
        info = json.loads(text) if text else {}
    except json.JSONDecodeError:  # the holder is writing it right now
        return {}
    return info if isinstance(info, dict) else {}


def is_held(path: Path | None = None) -> bool:
    """Is some live process holding the lock? (tested with a shared lock taken and dropped at once)"""
    path = path or lock_path()
    if not path.exists():
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _same_file(f: IO, path: Path) -> bool:
    """Is the open lock file still the one at `path`? (a breaker may have replaced it)"""
    try:
        a, b = os.fstat(f.fileno()), os.stat(path)
    except OSError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


@contextlib.contextmanager
def _guard(path: Path):
    """One process at a time may break the lock or finish taking it (a short flock on a sibling file)."""
    with open(path.with_name(path.name + ".guard"), "a+") as g:
        fcntl.flock(g, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(g, fcntl.LOCK_UN)


def holder_gone(info: dict) -> bool:
    """Has the process named in the lock file ended, although the lock is still held?

    A flock lives as long as any process holds the open file: a data-loader worker or other child
    forked by the trainer keeps it after the trainer died. The holder wrote its pid and start time, so
    a dead (or reused) pid is told apart from a live holder; no pid written means: cannot tell, wait.
    """
    from core import rundir

    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    now = rundir.process_identity(pid)
    if not now:
        return Path("/proc").is_dir()  # no such process, or ended (without /proc we cannot tell: wait)
    started = info.get("proc_start")
    return bool(started) and now["proc_start"] != started


def _break_if_gone(path: Path, f: IO) -> bool:
    """Unlink a lock file whose holder ended while something it forked still holds the flock; True if broken.

    Waiters then lock a fresh file at the same path; the leftover process keeps the old, nameless one.
    """
    with _guard(path):
        if not _same_file(f, path) or not holder_gone(holder(path)):
            return False
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True


def acquire(run_dir: str | os.PathLike, on_wait: Callable[[dict], None] | None = None,
            should_stop: Callable[[], bool] | None = None, poll_s: float = POLL_S) -> IO | None:
    """Block until this process holds the device lock; returns the open lock file (keep it open).

    `on_wait(holder_info)` is called at every poll while waiting (it decides whether to write
    anything). Returns None when the queue is off, or when `should_stop()` turned true while waiting.
    A lock whose holder has ended (`holder_gone`) is broken, so a leftover child never blocks the queue.
    """
    if not enabled():
        return None
    from core import rundir

    path = lock_path()
    run_dir = Path(run_dir).resolve()
    while True:
        f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - the caller keeps it open: the lock lives with it
        try:
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    got = True
                except BlockingIOError:
                    got = False
                if got:
                    with _guard(path):  # no breaker may judge this file by the previous holder's words now
                        if _same_file(f, path):
                            # written in place (not atomically replaced): the lock belongs to this inode
                            f.seek(0)
                            f.truncate()
                            f.write(json.dumps({"run_id": run_dir.name, "run_dir": str(run_dir), "pid": os.getpid(),
                                                "ticket": ticket(run_dir), "since": time.time(),
                                                "device": device_key(),
                                                **rundir.process_identity(os.getpid())}))
                            f.flush()
                            return f
                    break  # we locked a file that was broken away meanwhile: take the new one
                if should_stop and should_stop():
                    f.close()
                    return None
                if on_wait:
                    on_wait(holder(path))
                if _break_if_gone(path, f) or not _same_file(f, path):
                    break
                time.sleep(poll_s)
        except BaseException:
            f.close()
            raise
        f.close()


def release(f: IO | None) -> None:
    """Give the device to the next queued run (process exit does the same)."""
    if f is None:
        return
    with contextlib.suppress(OSError, ValueError):
        f.seek(0)
        f.truncate()
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        f.close()


def wait_for_rank0(run_dir: str | os.PathLike, should_stop: Callable[[], bool] | None = None,
                   poll_s: float = POLL_S) -> bool:
    """For torchrun ranks > 0: wait until rank 0 of this launch holds the lock. False if told to stop."""
    if not enabled():
        return True
    want = ticket(run_dir)
    path = lock_path()
    while True:
        if holder(path).get("ticket") == want and is_held(path):
            return True
        if should_stop and should_stop():
            return False
        time.sleep(poll_s)
