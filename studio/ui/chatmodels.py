"""What the Chat A/B page can compare, and the loaded models behind it.

One base model is loaded per base path (st.cache_resource, at most two: a base and a merged model);
final adapters and checkpoints are attached to that one base with core.chat.attach_adapter and switched
per answer, so comparing two checkpoints never loads the base twice.

A model folder's own Python code runs only when a run trained on that base says trust_remote_code: true
in its config (the Chat page follows the run's config); the page then shows a warning.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import streamlit as st

from core import rundir
from core.config import load_config
from core.jobs import list_runs
from studio.ui.steps import merged_models


def resolve_base(name: str) -> str:
    if name == "tiny":
        from core.tiny import ensure_tiny

        name = str(ensure_tiny())
    # resolved, so one model reached through a symlink or a relative path is one entry, not two
    return str(Path(name).expanduser().resolve()) if Path(name).expanduser().exists() else name


@functools.lru_cache(maxsize=512)
def _run_config(cfg_file: str, mtime_ns: int) -> tuple[str, bool] | None:
    # a run's config.yaml is frozen when the run starts; reading and validating it costs ~30 ms, and the
    # Chat page asked for every run's on every render
    try:
        cfg = load_config(cfg_file)
        return cfg.pretrained_model_name_or_path, bool(cfg.trust_remote_code)
    except Exception:  # a broken run config only hides that run here
        return None


def _run_model(cfg_file: str, mtime_ns: int) -> str | None:
    got = _run_config(cfg_file, mtime_ns)
    return got[0] if got else None


def trusts_remote_code(base: str) -> bool:
    """Whether a run trained on `base` allowed the model folder's own code (its config's trust_remote_code)."""
    for r in run_bases().get(base, []):
        cfg_file = Path(r["run_dir"]) / rundir.CONFIG
        try:
            got = _run_config(str(cfg_file), cfg_file.stat().st_mtime_ns)
        except OSError:
            continue
        if got and got[1]:
            return True
    return False


def run_bases() -> dict[str, list[dict]]:
    """base model -> runs trained on it (newest first), each with its run dir."""
    out: dict[str, list[dict]] = {}
    for r in list_runs():
        cfg_file = Path(r["run_dir"]) / rundir.CONFIG
        try:
            model = _run_model(str(cfg_file), cfg_file.stat().st_mtime_ns)
            base = resolve_base(model) if model is not None else None
        except Exception:  # as above: a run whose config is gone or whose model cannot be resolved
            continue
        if base is not None:
            out.setdefault(base, []).append(r)
    return out


def adapter_name(folder: Path) -> str:
    # PEFT adapter names become module keys: no dots or slashes
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{folder.parent.parent.name if folder.parent.name == 'checkpoints' else folder.parent.name}_{folder.name}")


def choices(base: str) -> list[dict]:
    """[{label, kind: base|adapter|merged, path}] for a base model."""
    items = [{"label": f"base · {Path(base).name}", "kind": "base", "path": base}]
    for r in run_bases().get(base, []):
        run = Path(r["run_dir"])
        if (run / rundir.ADAPTER / "adapter_config.json").is_file():
            items.append({"label": f"{run.name} · adapter", "kind": "adapter", "path": str(run / rundir.ADAPTER)})
        for ck in reversed(rundir.checkpoints(run)):
            if (ck / "adapter_config.json").is_file():
                items.append({"label": f"{run.name} · {ck.name}", "kind": "adapter", "path": str(ck)})
        if (run / rundir.FULL_MODEL / "config.json").is_file():
            items.append({"label": f"{run.name} · full model", "kind": "merged", "path": str(run / rundir.FULL_MODEL)})
    for m in merged_models():
        items.append({"label": f"merged · {m.name}", "kind": "merged", "path": str(m)})
    return items


@st.cache_resource(max_entries=2, show_spinner=False)
def loaded(model_path: str, trust_remote_code: bool = False):
    from core.chat import load_chat_model

    return load_chat_model(model_path, trust_remote_code=trust_remote_code)


def prepare(choice: dict, base: str):
    """(ChatModel, which) ready to answer as `choice`; a warning is shown when the model's own code may run."""
    from core.chat import attach_adapter
    from studio.ui.i18n import t

    trust = trusts_remote_code(base)
    if trust:
        st.warning(t("common.trust_remote_code_warn", path=base))
    if choice["kind"] == "merged":
        return loaded(choice["path"], trust), None
    chat = loaded(base, trust)
    if choice["kind"] == "base":
        return chat, "base"
    name = adapter_name(Path(choice["path"]))
    attach_adapter(chat, name, choice["path"])
    return chat, name
