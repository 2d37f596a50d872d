"""Where the studio keeps everything: STUDIO_WORKSPACE, default ./workspace.

Layout: models/ (base models, tiny), data/ (data sets), configs/, runs/<run_id>/ (see DESIGN.md),
merged/, publish/. `safe_join` keeps user-given names (uploads) inside the workspace; `output_name`
is the stricter check for a page field that names a new output folder (merge, publish).
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def workspace_path() -> Path:
    """Where the workspace is (STUDIO_WORKSPACE, default ./workspace), without creating it."""
    return Path(os.environ.get("STUDIO_WORKSPACE", "workspace")).expanduser().resolve()


def workspace_root() -> Path:
    root = workspace_path()
    root.mkdir(parents=True, exist_ok=True)
    return root


def sub(name: str) -> Path:
    p = workspace_root() / name
    p.mkdir(parents=True, exist_ok=True)
    return p


def runs_dir() -> Path:
    return sub("runs")


def safe_join(base: str | os.PathLike, name: str) -> Path:
    """Join a user-given file name under `base`, refusing anything that would land outside it.

    Absolute paths, `..` parts and symlinks that point out of `base` are all refused.
    """
    base_p = Path(base).resolve()
    if not name or os.path.isabs(name) or "\x00" in name:
        raise ValueError(f"refused file name {name!r}: give a plain name inside {base_p}")
    candidate = (base_p / name).resolve()
    if candidate != base_p and base_p not in candidate.parents:
        raise ValueError(f"refused file name {name!r}: it would leave {base_p}")
    return candidate


_OUTPUT_NAME = re.compile(r"^[A-Za-z0-9\u4e00-\u9fff][\w.\-\u4e00-\u9fff]*$")


def output_name(base: str | os.PathLike, name: str) -> Path:
    """`base`/`name` for a page field naming an output folder; ValueError unless `name` is a plain folder name.

    Refused: empty, ".", "..", absolute paths, path separators, a leading dot or "~": each would make
    the output `base` itself or a folder outside it, which the output replaces.
    """
    name = (name or "").strip()
    if not _OUTPUT_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"refused folder name {name!r}: use letters, digits, - _ . (no / or \\, not . or ..)")
    return safe_join(base, name)
