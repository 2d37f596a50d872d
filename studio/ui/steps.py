"""What is done of the pipeline, read from the workspace (the Home page's step list)."""

from __future__ import annotations

from pathlib import Path

from core.workspace import sub
from studio.ui import state

STEPS = ("model", "data", "config", "train", "chat", "merge", "publish")


def data_files() -> list[Path]:
    root = sub("data")
    files = [p for p in root.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file()
             and p.name != "dataset_info.json"]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def config_files() -> list[Path]:
    return sorted(sub("configs").glob("*.yaml"), key=lambda p: p.stat().st_mtime, reverse=True)


def merged_models() -> list[Path]:
    root = sub("merged")
    # a dot folder is a merge still being written (core.fsio.output_dir), not a merged model yet
    return sorted((p for p in root.iterdir() if not p.name.startswith(".") and (p / "config.json").is_file()),
                  key=lambda p: p.stat().st_mtime, reverse=True)


def pipeline() -> dict[str, tuple[bool, str]]:
    """step -> (done, a short detail)."""
    from core.jobs import list_runs

    st = state.load()
    model = st.get("model") or ""
    runs = list_runs()
    finished = [r for r in runs if r.get("state") == "finished"]
    data, configs, merged = data_files(), config_files(), merged_models()
    published = [p for p in sub("publish").iterdir() if p.is_dir()]
    return {
        "model": (True, Path(model).name if model else "tiny"),
        "data": (bool(data), data[0].name if data else ""),
        "config": (bool(configs), configs[0].name if configs else ""),
        "train": (bool(finished), f"{len(finished)}/{len(runs)}" if runs else ""),
        "chat": (bool(st.get("chatted")), ""),
        "merge": (bool(merged), merged[0].name if merged else ""),
        "publish": (bool(published), published[0].name if published else ""),
    }
