"""Base-model downloads started from the Home page, run as detached `python -m studio download` processes.

Like training runs, a download outlives the browser tab and the Streamlit server; the page only reads
workspace/models/.downloads/<slug>/ (job.json, stdout.txt with the folder when done, log.txt with the
hub's progress bars) and the size of the download so far (core.models puts it in a hidden
.<name>.download sibling and renames it into place when complete). Both hubs resume partial files,
so starting the same download again continues it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from core.fsio import atomic_write_json, read_json
from core.jobs import pid_alive
from core.workspace import sub

ROOT = Path(__file__).resolve().parents[2]


def hub_host(hub: str) -> str:
    """The host a download from `hub` talks to (HF_ENDPOINT mirrors honoured)."""
    if hub == "hf":
        return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    return "www.modelscope.cn"


def _slug(model_id: str, hub: str) -> str:
    return f"{hub}-" + re.sub(r"[^A-Za-z0-9_.-]+", "__", model_id)


def job_dir(model_id: str, hub: str) -> Path:
    return sub("models") / ".downloads" / _slug(model_id, hub)


def target_dir(model_id: str) -> Path:
    return sub("models") / model_id.replace("/", "__")


def start_download(model_id: str, hub: str) -> Path:
    d = job_dir(model_id, hub)
    d.mkdir(parents=True, exist_ok=True)
    status = read_json(d / "job.json", default={}) or {}
    if pid_alive(status.get("pid")):
        return d  # already going
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(d / "stdout.txt", "wb") as out, open(d / "log.txt", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "studio", "download", model_id, "--hub", hub], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=log, start_new_session=True)
    atomic_write_json(d / "job.json", {"model_id": model_id, "hub": hub, "pid": proc.pid, "started_at": time.time(),
                                       "target": str(target_dir(model_id))})
    return d


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def _last_line(path: Path) -> str:
    try:
        data = path.read_bytes()[-4096:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln.rsplit("\r", 1)[-1].strip() for ln in data.splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1] if lines else ""


def download_status(d: Path) -> dict:
    """state (running, done, failed), bytes so far, the last progress line, the folder when done."""
    job = read_json(d / "job.json", default={}) or {}
    target = Path(job.get("target", ""))
    from core.models import partial_dir

    partial = partial_dir(target) if job.get("target") else None
    size = sum(_folder_bytes(p) for p in (target, partial) if p is not None and p.is_dir())
    info = {**job, "bytes": size, "last": _last_line(d / "log.txt")}
    if pid_alive(job.get("pid")):
        info["state"] = "running"
        return info
    out = (d / "stdout.txt").read_text(encoding="utf-8", errors="replace").strip() if (d / "stdout.txt").is_file() else ""
    if out and (Path(out.splitlines()[-1]) / "config.json").is_file():
        info.update(state="done", folder=out.splitlines()[-1])
    else:
        err = [ln for ln in (d / "log.txt").read_text(encoding="utf-8", errors="replace").splitlines()
               if ln.startswith("error:")] if (d / "log.txt").is_file() else []
        info.update(state="failed", error=err[-1] if err else info["last"])
    return info


def downloads() -> list[dict]:
    root = sub("models") / ".downloads"
    return [download_status(p) for p in sorted(root.iterdir()) if (p / "job.json").is_file()] if root.is_dir() else []


def local_models() -> list[Path]:
    """Model folders in workspace/models (tiny, downloads), newest first."""
    root = sub("models")
    found = [p for p in root.iterdir()
             if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file()]  # not partial downloads
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
