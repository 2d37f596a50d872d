"""The Space bundle: app.py, requirements.txt and README.md for a chat app that serves a model repo.

    from core.publish import space_bundle
    space_bundle("workspace/publish/space", model_repo_id="alice/assistant", hub="hf", sdk="gradio")

app.py comes from assets/space/app_{gradio,streamlit}.py with four constants filled in (model id,
hub, title, system prompt); the same file runs on a Hugging Face Space, a ModelScope studio or
locally with MODEL_PATH=folder. requirements.txt pins the versions this studio is tested with, read
from our own requirements.txt. README.md carries the front matter each hub reads to start the app.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from core.errors import StudioError
from core.fsio import atomic_write_text

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "space"
REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"
HUBS = ("hf", "modelscope")
SDKS = ("gradio", "streamlit")
PYTHON_VERSION = "3.11"
# Only models that ship their own code (InternLM2) need these; versions as tested with this studio.
REMOTE_CODE_EXTRAS = ("sentencepiece==0.2.3", "einops==0.8.2")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def pinned_versions() -> dict[str, str]:
    """{package: version} from our requirements.txt (the one verified set of versions)."""
    pins: dict[str, str] = {}
    if REQUIREMENTS.is_file():
        for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#;]+)", line)
            if m:
                pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def _pin(name: str, pins: dict[str, str]) -> str:
    key = name.lower().replace("_", "-")
    if key in pins:
        return f"{name}=={pins[key]}"
    from importlib import metadata

    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        raise StudioError(f"cannot pin {name}: it is neither in {REQUIREMENTS} nor installed",
                          hint=f"add a '{name}==VERSION' line to requirements.txt") from None


def requirements(hub: str, sdk: str, *, remote_code: bool = False) -> list[str]:
    pins = pinned_versions()
    names = ["torch", "transformers", "tokenizers", "accelerate", "safetensors", "peft", sdk]
    names.append("modelscope" if hub == "modelscope" else "huggingface_hub")
    lines = [_pin(n, pins) for n in names]
    if remote_code:
        lines += list(REMOTE_CODE_EXTRAS)
    return lines


def _readme(hub: str, sdk: str, *, model_repo_id: str, title: str, sdk_version: str, license: str) -> str:
    import yaml

    if hub == "hf":
        meta = {"title": title, "emoji": "💬", "colorFrom": "blue", "colorTo": "indigo", "sdk": sdk,
                "sdk_version": sdk_version, "python_version": PYTHON_VERSION, "app_file": "app.py",
                "pinned": False, "license": license, "models": [model_repo_id],
                "short_description": f"Chat with {model_repo_id}"[:60]}
    else:
        # ModelScope studios read `deployspec.entry_file`; the sdk and its version are chosen when the
        # studio is created (core/publish/hub.py passes them), and repeated here for readers.
        meta = {"title": title, "sdk": sdk, "sdk_version": sdk_version, "app_file": "app.py",
                "deployspec": {"entry_file": "app.py"}, "license": license, "models": [model_repo_id],
                "tags": ["chat", "fine-tune-studio"]}
    front = "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip() + "\n---\n"
    run_cmd = "python app.py" if sdk == "gradio" else "streamlit run app.py"
    body = f"""
# {title}

与 [{model_repo_id}]({'https://huggingface.co/' if hub == 'hf' else 'https://modelscope.cn/models/'}{model_repo_id})
对话的个人助手应用，由 Fine-Tune Studio 生成。启动时下载模型，有 GPU 用 GPU，否则用 CPU。

A personal-assistant chat app for `{model_repo_id}`, made by Fine-Tune Studio. It downloads the model
at start, uses the tokenizer's chat template and stop tokens, streams answers, and falls back to the
CPU when no GPU is present.

Run locally: `pip install -r requirements.txt && MODEL_PATH=/path/to/model {run_cmd}`
"""
    return front + body


def space_bundle(out_dir: str | os.PathLike, *, model_repo_id: str, hub: str = "hf", sdk: str = "gradio",
                 title: str | None = None, system_prompt: str = "", license: str = "apache-2.0",
                 remote_code: bool = False) -> list[Path]:
    """Write app.py, requirements.txt and README.md into `out_dir`; returns the written paths.

    `remote_code=True` adds the packages a model with its own modelling code needs (InternLM2).
    """
    if hub not in HUBS:
        raise StudioError(f"hub: {hub!r} is not one of {', '.join(HUBS)}")
    if sdk not in SDKS:
        raise StudioError(f"sdk: {sdk!r} is not one of {', '.join(SDKS)}")
    if not _REPO_ID.match(model_repo_id or ""):
        raise StudioError(f"model_repo_id: {model_repo_id!r} is not a repo id",
                          hint="write it as owner/name, e.g. alice/my-assistant")
    title = title or f"{model_repo_id.split('/')[-1]} assistant"
    template = (ASSETS / f"app_{sdk}.py").read_text(encoding="utf-8")
    values = {"__MODEL_ID__": model_repo_id, "__HUB__": hub, "__TITLE__": title, "__SYSTEM_PROMPT__": system_prompt}
    app = template
    for marker, value in values.items():
        quoted = f'"{marker}"'
        if quoted not in app:
            raise StudioError(f"{ASSETS / f'app_{sdk}.py'}: the template lost its {marker} constant")
        # json.dumps gives a valid Python string literal, whatever quotes or newlines the value holds.
        app = app.replace(quoted, json.dumps(value, ensure_ascii=False), 1)

    reqs = requirements(hub, sdk, remote_code=remote_code)
    sdk_version = next(r.split("==")[1] for r in reqs if r.startswith(f"{sdk}=="))
    out = Path(out_dir)
    written = [
        atomic_write_text(out / "app.py", app),
        atomic_write_text(out / "requirements.txt", "\n".join(reqs) + "\n"),
        atomic_write_text(out / "README.md", _readme(hub, sdk, model_repo_id=model_repo_id, title=title,
                                                     sdk_version=sdk_version, license=license)),
    ]
    return written
