"""Issue 19, item 9: published artefacts carry no local paths. The card's base_model and the published
adapter_config.json's base_model_name_or_path are the Hub id (traced from the download's record, or
asked for with --base-model), never a path; the user's adapter folder is never rewritten.

    .venv/bin/python -m pytest -q tests/unit/test_safety_publish.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.errors import StudioError
from core.fsio import output_dir
from core.publish import push
from studio import cli
from tests.fakehub import fake_model_dir


def _downloaded(folder: Path, model_id: str) -> Path:
    """A base model folder as `studio download` leaves it (with its record of what it fetched)."""
    with output_dir(folder, kind="download", record={"model_id": model_id, "hub": "hf"}) as tmp:
        (tmp / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def _staged_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(root.rglob("*")) if p.is_file()
                     and p.name != "plan.json" and not p.name.startswith("."))  # plan.json stays local


def _card_meta(stage: Path) -> dict:
    card = (stage / "model" / "README.md").read_text()
    return yaml.safe_load(card[4:card.index("\n---", 4)])


def test_an_adapter_on_a_downloaded_base_is_published_with_the_hub_id(tmp_path):
    base = _downloaded(tmp_path / "models" / "internlm__internlm2-chat-1_8b-copy", "internlm/internlm2-chat-1_8b")
    adapter = fake_model_dir(tmp_path / "run" / "adapter", weights_bytes=10, adapter_base=str(base))
    before = (adapter / "adapter_config.json").read_bytes()
    dry = tmp_path / "dry"
    push("hf", adapter, "alice/lora", token=None, space=True, dry_run_dir=dry)
    staged = json.loads((dry / "model" / "adapter_config.json").read_text())
    assert staged["base_model_name_or_path"] == "internlm/internlm2-chat-1_8b"
    assert _card_meta(dry)["base_model"] == "internlm/internlm2-chat-1_8b"
    assert (adapter / "adapter_config.json").read_bytes() == before  # the user's adapter is left alone
    assert str(tmp_path) not in _staged_text(dry)


def test_a_converted_internlm2_base_is_traced_to_its_download(tmp_path):
    _downloaded(tmp_path / "models" / "m", "internlm/internlm2-chat-1_8b")
    converted = tmp_path / "models" / "m-llama-layout"
    converted.mkdir()
    adapter = fake_model_dir(tmp_path / "adapter", weights_bytes=10, adapter_base=str(converted))
    push("hf", adapter, "alice/lora", token=None, dry_run_dir=tmp_path / "dry")
    assert _card_meta(tmp_path / "dry")["base_model"] == "internlm/internlm2-chat-1_8b"


def test_a_local_base_without_a_hub_id_is_refused_and_asks_for_base_model(tmp_path, capsys):
    base = tmp_path / "root" / "ft" / "model"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": "llama", "_name_or_path": str(base)}))
    adapter = fake_model_dir(tmp_path / "adapter", weights_bytes=10, adapter_base=str(base))
    dry = tmp_path / "dry"
    assert cli.main(["publish", "hf", str(adapter), "--repo", "alice/lora", "--dry-run", str(dry)]) == 1
    err = capsys.readouterr().err
    assert "--base-model" in err and "never by a local path" in err
    assert not dry.exists()
    assert cli.main(["publish", "hf", str(adapter), "--repo", "alice/lora", "--dry-run", str(dry),
                     "--base-model", "internlm/internlm2-chat-1_8b"]) == 0
    assert str(base) not in _staged_text(dry)
    with pytest.raises(StudioError, match="not a Hub id"):
        push("hf", adapter, "alice/lora", token=None, dry_run_dir=tmp_path / "dry2", base_model=str(base))


def test_a_merged_model_publishes_neither_its_merge_record_nor_the_local_base(tmp_path):
    base = tmp_path / "mybase"
    base.mkdir()
    merged = fake_model_dir(tmp_path / "merged", weights_bytes=10)
    (merged / "studio_merge.json").write_text(json.dumps({"base": str(base), "adapter": str(tmp_path / "a")}))
    with pytest.raises(StudioError, match="--base-model"):
        push("hf", merged, "alice/m", token=None, dry_run_dir=tmp_path / "dry")
    result = push("hf", merged, "alice/m", token=None, dry_run_dir=tmp_path / "dry", base_model="Qwen/Qwen2.5-0.5B")
    assert "studio_merge.json" not in [f["path"] for f in result["model_files"]]
    assert str(tmp_path) not in _staged_text(tmp_path / "dry")


def test_a_base_named_by_its_hub_id_in_config_json_is_used(tmp_path):
    base = tmp_path / "copied-by-hand"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "qwen2", "_name_or_path": "Qwen/Qwen2.5-0.5B"}))
    adapter = fake_model_dir(tmp_path / "adapter", weights_bytes=10, adapter_base=str(base))
    push("hf", adapter, "alice/lora", token=None, dry_run_dir=tmp_path / "dry")
    assert _card_meta(tmp_path / "dry")["base_model"] == "Qwen/Qwen2.5-0.5B"
