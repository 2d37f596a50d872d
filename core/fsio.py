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


def load_json(path: str | os.PathLike, hint: str | None = None) -> Any:
    """A JSON file that must be whole (a model's config.json, an adapter's adapter_config.json): every way
    it can be broken is a one-line StudioError naming the file (and the line, when JSON says)."""
    from core.errors import StudioError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise StudioError(f"{path}:{e.lineno}: not valid JSON ({e.msg})", hint=hint) from None
    except UnicodeDecodeError as e:
        raise StudioError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})", hint=hint) from None
    except RecursionError:
        raise StudioError(f"{path}: nested too deeply to be a config", hint=hint) from None
    except ValueError as e:  # an integer of more digits than Python converts
        raise StudioError(f"{path}: not a config ({str(e).split(';')[0]})", hint=hint) from None
    except OSError as e:
        raise StudioError(f"{path}: cannot be read ({e.strerror or e})", hint=hint) from None


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


# ---------------------------------------------------------------------------- output folders
# One rule for every command that writes a folder (merge, tiny, publish --dry-run, copy-cfg, download):
# it deletes only what it created. An existing non-empty target is replaced only when it carries
# OUTPUT_MARKER naming the same kind of output (an earlier run of the same command), or with
# overwrite=True; never when it is a source of the command, a parent of one, the workspace, the
# current folder or one of its parents, a run folder, or another command's output. The new folder is
# built in a temp sibling; the old one is renamed aside only once the new one is complete.

OUTPUT_MARKER = ".studio-output.json"


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The studio's record of what made `folder` ({"kind": ...}), or None when there is none."""
    try:  # a damaged or planted marker counts as none: the folder is then treated as the user's
        with open(Path(folder) / OUTPUT_MARKER, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def _is_run_folder(p: Path) -> bool:
    # status.json alone marks a run; a config.yaml only beside a run's other files (a folder of configs is not one)
    if (p / "status.json").is_file():
        return True
    return (p / "config.yaml").is_file() and any((p / f).exists() for f in ("checkpoints", "adapter", "train.log",
                                                                            "metrics.jsonl", "command.txt"))


def check_output_dir(target: str | os.PathLike, *, kind: str, overwrite: bool = False,
                     sources: Iterable[str | os.PathLike] = (), flag: str = "--overwrite") -> Path:
    """The resolved `target` when the rule above lets `kind` write it; a StudioError saying why not.

    `sources` are the folders the command reads (base model, adapter, model to publish); `flag` is
    how the caller spells overwrite in the message ("--overwrite", or a checkbox on a page).
    """
    from core.errors import StudioError

    raw = Path(target).expanduser()
    out = raw.resolve()
    shown = str(target)
    if raw.is_symlink():
        raise StudioError(f"{shown} is a symbolic link; a command writes a new folder, not through a link",
                          hint="choose a new folder")
    if out.exists() and not out.is_dir():
        raise StudioError(f"{shown} is a file, not a folder", hint="choose a new folder")
    protected: list[tuple[Path, str]] = [(Path(out.anchor), "the filesystem root"),
                                         (Path.home().resolve(), "your home folder")]
    with contextlib.suppress(OSError):
        cwd = Path.cwd().resolve()
        protected += [(cwd, "the current folder")] + [(p, "a parent of the current folder") for p in cwd.parents]
    from core.workspace import workspace_path

    ws = workspace_path()  # not workspace_root(): checking a target must not create the workspace
    protected += [(ws, "the workspace root")] + [(p, "a parent of the workspace") for p in ws.parents]
    protected += [(ws / d, f"the workspace's {d}/ folder") for d in ("runs", "models", "merged", "data",
                                                                      "configs", "publish")]
    for src in sources:
        s = Path(src).expanduser().resolve()
        protected.append((s, f"the source folder {src}"))
        protected += [(p, f"a parent of the source folder {src}") for p in s.parents]
        if s in out.parents:
            raise StudioError(f"{shown} is inside the source folder {src}; writing there would change the source",
                              hint="choose a folder outside it")
    for p, what in protected:
        if out == p:
            raise StudioError(f"{shown} is {what}; a command never replaces it", hint="choose a new folder")
    if not out.exists() or not any(out.iterdir()):
        return out
    if _is_run_folder(out) or any(_is_run_folder(c) for c in out.iterdir() if c.is_dir()):
        raise StudioError(f"{shown} holds a training run (status.json / config.yaml); it is never replaced",
                          hint="choose a new folder")
    marker = read_marker(out)
    if marker is not None and marker["kind"] != kind:
        raise StudioError(f"{shown} holds the output of `{marker['kind']}`, not of `{kind}`; it is never replaced",
                          hint="choose a new folder")
    if marker is None and not overwrite:
        raise StudioError(f"{shown} is not empty; choose a new folder or pass {flag}",
                          hint=f"{flag} replaces its content once the new output is complete")
    return out


@contextlib.contextmanager
def output_dir(target: str | os.PathLike, *, kind: str, overwrite: bool = False,
               sources: Iterable[str | os.PathLike] = (), record: dict | None = None,
               flag: str = "--overwrite") -> Iterator[Path]:
    """Yield a fresh temp folder beside `target`; on a clean exit it becomes `target`.

    The rule is checked before and again just before the swap (someone may have written there in
    between). The old content, when allowed to go, is renamed aside first and deleted only after the
    new folder is in place; on any error the temp folder goes and `target` is untouched.
    """
    sources = list(sources)
    out = check_output_dir(target, kind=kind, overwrite=overwrite, sources=sources, flag=flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        import time

        atomic_write_json(tmp / OUTPUT_MARKER, {"kind": kind, "created": time.time(), **(record or {})})
        check_output_dir(target, kind=kind, overwrite=overwrite, sources=sources, flag=flag)
        _swap_into_place(tmp, out)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: Path, out: Path) -> None:
    import shutil

    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old / "x")  # aside, inside a folder of our own: nothing is deleted yet
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old / "x", out)  # put the old folder back
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)
