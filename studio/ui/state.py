"""The studio's small memory on disk: workspace/studio.json (current model, data file, config, run, language).

Pages keep nothing that matters in st.session_state: a refresh, a new tab or a restarted server reads
this file again. Writes are atomic (core.fsio), so two tabs never leave a half-written file.

    from studio.ui import state
    state.update(data="/abs/path/identity.jsonl"); state.load()["data"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.fsio import atomic_write_json, read_json
from core.workspace import workspace_root

FILE = "studio.json"


def path() -> Path:
    return workspace_root() / FILE


def load() -> dict[str, Any]:
    data = read_json(path(), default={})
    return data if isinstance(data, dict) else {}


def update(**fields: Any) -> dict[str, Any]:
    data = load()
    data.update(fields)
    atomic_write_json(path(), data)
    return data


def current_model() -> str:
    """The chosen base model folder, or the built-in tiny model (built on first use)."""
    chosen = load().get("model")
    if chosen and (Path(chosen) / "config.json").is_file():
        return chosen
    from core.tiny import ensure_tiny

    return str(ensure_tiny())
