"""Resolve a base model to a local folder: 'tiny', a local path, a Hugging Face id or a ModelScope id.

Downloads go into workspace/models/<name> with resume (both hubs' snapshot_download resume
partial files); HF_ENDPOINT mirrors are honoured by huggingface_hub itself. InternLM2 folders,
whose remote code targets transformers 4.x, are converted once to the native Llama layout.

No Python file shipped in a model folder runs unless the user turns trust_remote_code on
(`--trust-remote-code`): check_remote_code refuses, in one line, a folder that cannot load without
its own code. A download goes into a temp sibling (resumable) and is renamed into place when
complete, with a record of what was fetched (core.fsio.OUTPUT_MARKER: the Hub id publish uses).

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
        cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(cfg.get("model_type", "")) if isinstance(cfg, dict) else ""


def read_model_config(folder: str | os.PathLike) -> dict:
    """config.json of a model folder as a dict; a StudioError naming the file when it is not one."""
    from core.fsio import load_json

    path = Path(folder) / "config.json"
    cfg = load_json(path, hint="the file is damaged or half-written: copy config.json again from the model's "
                               "source (or download the model again)")
    if not isinstance(cfg, dict):
        raise StudioError(f"{path}: a model config is a JSON object, this is a {type(cfg).__name__}",
                          hint="copy config.json again from the model's source")
    return cfg


def _known_model_type(model_type: str) -> bool:
    from transformers import CONFIG_MAPPING

    return model_type in CONFIG_MAPPING


def check_remote_code(folder: str | os.PathLike, trust_remote_code: bool = False) -> list[str]:
    """The Python modules `folder` asks to run (config.json's auto_map); refuses when it cannot load without them.

    With a model type transformers knows, the folder loads with transformers' own code and its .py files
    are ignored (returns them, so a caller can say so). With an unknown type it cannot load without its
    own code: refused unless `trust_remote_code`.
    """
    cfg = read_model_config(folder)
    auto_map = cfg.get("auto_map")
    if not auto_map:
        return []
    values = auto_map.values() if isinstance(auto_map, dict) else [auto_map]
    flat = [v for val in values for v in (val if isinstance(val, list) else [val]) if isinstance(v, str)]
    modules = sorted({v.split("--")[-1].rsplit(".", 1)[0] + ".py" for v in flat})
    if not trust_remote_code and not _known_model_type(str(cfg.get("model_type", ""))):
        raise StudioError(
            f"{Path(folder) / 'config.json'}: the model ships its own Python code ({', '.join(modules)}) "
            f"and model_type {cfg.get('model_type')!r} is not one transformers knows, so it cannot load without "
            "running that code",
            hint="read those files first; if you trust them, pass --trust-remote-code (Chat/Merge pages: the "
                 "'trust remote code' box)")
    return modules


def _check_folder(path: Path) -> Path:
    if not (path / "config.json").is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) if path.is_dir() else "nothing"
        raise StudioError(
            f"model folder {path} has no config.json (found: {found})",
            hint="give a Hugging Face model folder (config.json, weights, tokenizer files), a hub id, or 'tiny'",
        )
    read_model_config(path)  # a damaged config.json is named here, not deep inside transformers
    return path


def _local_target(model_id: str, to: str | None) -> Path:
    return Path(to) if to else sub("models") / model_id.replace("/", "__")


def is_online(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def partial_dir(target: Path) -> Path:
    """Where a download into `target` is fetched before it is renamed into place."""
    # a fixed name, so an interrupted download resumes where it stopped
    return target.with_name(f".{target.name}.download")


def download(model_id: str, hub: str = "modelscope", to: str | None = None, *, overwrite: bool = False,
             trust_remote_code: bool = False) -> Path:
    """Download (or resume) a model snapshot into the workspace; returns the folder.

    The snapshot goes into a hidden sibling (.<name>.download, resumed by a later call) and is renamed
    into place once complete, through core.fsio: a non-empty target that is not this model's earlier
    download is refused unless `overwrite`. Nothing downloaded runs here; `trust_remote_code` is only
    recorded (and a model that ships code is pointed out when it is off).
    """
    from core.fsio import check_output_dir, output_dir, read_marker

    if hub not in ("hf", "modelscope"):
        raise StudioError(f"unknown hub {hub!r}", hint="use hf or modelscope")
    target = _local_target(model_id, to)
    marker = read_marker(target) or {}
    done = (target / "config.json").is_file() and not any(target.glob("**/*.incomplete"))
    if done and (marker.get("model_id") in (None, model_id)):
        return target  # this model, already here (an older download without a record counts too)
    if marker.get("kind") == "download" and marker.get("model_id") != model_id:
        raise StudioError(f"{target} holds the download of {marker.get('model_id')}, not {model_id}",
                          hint="choose another --to folder")
    check_output_dir(target, kind="download", overwrite=overwrite)  # refused before anything is fetched
    partial = partial_dir(target.resolve())
    partial.mkdir(parents=True, exist_ok=True)
    try:
        if hub == "hf":
            from huggingface_hub import snapshot_download

            snapshot_download(repo_id=model_id, local_dir=str(partial))
        else:
            from modelscope import snapshot_download as ms_snapshot_download

            ms_snapshot_download(model_id, local_dir=str(partial))
    except StudioError:
        raise
    except Exception as e:  # network and hub errors come in many types; the advice is the same
        offline = not is_online("huggingface.co" if hub == "hf" else "modelscope.cn")
        hint = ("this machine looks offline: copy the model folder here and give its path, or set HF_ENDPOINT "
                "to a mirror you can reach" if offline else "check the model id and your token (HF_TOKEN)")
        raise StudioError(f"could not download {model_id} from {hub}: {type(e).__name__}: {e}", hint=hint) from None
    _check_folder(partial)
    import shutil

    with output_dir(target, kind="download", overwrite=overwrite,
                    record={"model_id": model_id, "hub": hub, "trust_remote_code": trust_remote_code}) as tmp:
        for p in partial.iterdir():
            shutil.move(str(p), str(tmp / p.name))
    partial.rmdir()
    if not trust_remote_code:
        code = check_remote_code(target, True)  # only lists the files: nothing is loaded here
        if code:
            import sys

            print(f"note: {model_id} ships Python code ({', '.join(code)}); it is not run unless you pass "
                  "--trust-remote-code to chat, merge or train (trust_remote_code: true in a config)",
                  file=sys.stderr)
    return target


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
            folder = _check_folder(local)
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
            from core.fsio import check_output_dir

            # a folder of that name holding anything else is the user's, not an earlier conversion: refused
            check_output_dir(converted, kind="internlm2-llama-layout", sources=[folder])
            convert_internlm2_to_llama(folder, converted)
        return converted
    return folder
