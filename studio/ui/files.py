"""Uploads saved into the workspace: names checked with core.workspace.safe_join, bytes written atomically."""

from __future__ import annotations

import os
from pathlib import Path

from core.fsio import atomic_write_bytes
from core.workspace import safe_join


def save_bytes(folder: str | os.PathLike, name: str, data: bytes) -> Path:
    """Write `data` as folder/name; a name that would leave `folder` raises ValueError."""
    target = safe_join(folder, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(target, data)


def out_name(name: str, suffix: str = ".jsonl") -> str:
    """A user-typed output name with a data suffix."""
    name = name.strip()
    return name if name.endswith((".json", ".jsonl")) else name + suffix
