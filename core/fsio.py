"""Small file helpers every module shares: atomic writes and JSON lines.

Every file the studio writes goes through a temp file in the same folder and `os.replace`, so a
crash, a full disk or a SIGKILL leaves either the old file or the new one, never half of one.
Run the unit tests with `python -m pytest tests/unit/test_fsio.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temp file beside `path`; on a clean exit it is fsynced and renamed over `path`.

    On any error (or SIGKILL) the temp file goes and `path` keeps its old content, if any.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file + fsync + rename)."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def atomic_write_rows(path: str | os.PathLike, rows: Iterable[Any], as_array: bool = False) -> int:
    """Stream `rows` as JSON lines (or one JSON array) atomically; returns how many were written.

    Constant memory; if the iterator raises, no output file appears and the error propagates.
    """
    n = 0
    with atomic_open(path) as f:
        if as_array:
            f.write("[")
        for row in rows:
            text = json.dumps(row, ensure_ascii=False)
            if as_array:
                f.write((",\n" if n else "\n") + text)
            else:
                f.write(text + "\n")
            n += 1
        if as_array:
            f.write("\n]\n")
    return n


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> tuple[Path, int]:
    """Stream `rows` to a JSON-lines file atomically; returns (path, rows written)."""
    return Path(path), atomic_write_rows(path, rows)


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one JSON line; a line is written in a single call so readers never see half a row."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield parsed rows of a JSON-lines file a writer may still be appending to.

    A last line without its newline is a row still being written: it is skipped, not an error.
    """
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return
    with f:
        for line in f:
            if not line.endswith("\n"):
                break
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue
