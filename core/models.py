"""Resolve a base model to a local folder: 'tiny', a local path, a Hugging Face id or a ModelScope id.

Downloads go into workspace/models/<name> with resume (both hubs' snapshot_download resume
partial files); HF_ENDPOINT mirrors are honoured by huggingface_hub itself. InternLM2 folders,
whose remote code targets transformers 4.x, are converted once to the native Llama layout.

    python -m studio download internlm/internlm2-chat-1_8b --hub hf
    python -c "from core.models import resolve_model; print(resolve_model('tiny'))"
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

from core.errors import StudioError
from core.workspace import sub

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def looks_like_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and not os.path.exists(name)


def model_type_of(folder: str | os.PathLike) -> str:
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("model_type", "")
    except (OSError, ValueError):
        return ""


def _check_folder(path: Path) -> Path:
    if not (path / "config.json").is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) if path.is_dir() else "nothing"
        raise StudioError(
            f"model folder {path} has no config.json (found: {found})",
            hint="give a Hugging Face model folder (config.json, weights, tokenizer files), a hub id, or 'tiny'",
        )
    return path


def _local_target(model_id: str, to: str | None) -> Path:
    return Path(to) if to else sub("models") / model_id.replace("/", "__")


def is_online(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def download(model_id: str, hub: str = "modelscope", to: str | None = None) -> Path:
    """Download (or resume) a model snapshot into the workspace; returns the folder."""
    target = _local_target(model_id, to)
    if (target / "config.json").is_file() and not any(target.glob("**/*.incomplete")):
        return target
    target.mkdir(parents=True, exist_ok=True)
    try:
        if hub == "hf":
            from huggingface_hub import snapshot_download

            snapshot_download(repo_id=model_id, local_dir=str(target))
        elif hub == "modelscope":
            from modelscope import snapshot_download as ms_snapshot_download

            ms_snapshot_download(model_id, local_dir=str(target))
        else:
            raise StudioError(f"unknown hub {hub!r}", hint="use hf or modelscope")
    except StudioError:
        raise
    except Exception as e:  # network and hub errors come in many types; the advice is the same
        offline = not is_online("huggingface.co" if hub == "hf" else "modelscope.cn")
        hint = ("this machine looks offline: copy the model folder here and give its path, or set HF_ENDPOINT "
                "to a mirror you can reach" if offline else "check the model id and your token (HF_TOKEN)")
        raise StudioError(f"could not download {model_id} from {hub}: {type(e).__name__}: {e}", hint=hint) from None
    return _check_folder(target)


def resolve_model(name: str, hub: str = "auto", *, allow_download: bool = True) -> Path:
    """A local folder for `name`; InternLM2 folders come back converted to the Llama layout."""
    if not name:
        raise StudioError("no model given", hint="set pretrained_model_name_or_path (a folder, a hub id, or 'tiny')")
    if name == "tiny":
        from core.tiny import ensure_tiny

        return ensure_tiny()
    if name == "tiny-llava":
        from core.tiny import ensure_tiny_llava

        return ensure_tiny_llava()
    path = Path(name).expanduser()
    if path.exists():
        folder = _check_folder(path.resolve())
    elif looks_like_hub_id(name):
        local = _local_target(name, None)
        if (local / "config.json").is_file():
            folder = local
        elif not allow_download:
            raise StudioError(f"model {name} is not downloaded yet", hint=f"python -m studio download {name}")
        else:
            folder = download(name, hub="hf" if hub == "hf" else "modelscope" if hub == "modelscope" else
                              os.environ.get("STUDIO_HUB", "modelscope"))
    else:
        raise StudioError(
            f"model path {name} does not exist",
            hint="expected a folder with config.json and weights, a hub id like internlm/internlm2-chat-1_8b, or 'tiny'",
        )
    if model_type_of(folder) == "internlm2":
        from core.internlm2 import convert_internlm2_to_llama

        converted = folder.parent / f"{folder.name}-llama-layout"
        if not (converted / "config.json").is_file():
            convert_internlm2_to_llama(folder, converted)
        return converted
    return folder
