"""Issue 19 end to end on real (tiny) merges: a merge replaces only its own earlier output, and InternLM2
keeps working without --trust-remote-code (the studio's own conversion, not the folder's code).

    .venv/bin/python -m pytest -q -m e2e tests/e2e/test_safety_merge.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.fsio import OUTPUT_MARKER, read_marker
from studio import cli

pytestmark = pytest.mark.e2e


def _adapter(base_folder: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_folder),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(out)
    return out


def test_merge_replaces_its_own_output_only(tiny_model, tmp_path, capsys):
    adapter = _adapter(tiny_model, tmp_path / "adapter")
    out = tmp_path / "merged"
    assert cli.main(["merge", str(tiny_model), str(adapter), str(out), "--device", "cpu"]) == 0
    assert read_marker(out)["kind"] == "merge" and (out / "model.safetensors").is_file()
    assert cli.main(["merge", str(tiny_model), str(adapter), str(out), "--device", "cpu", "--no-check"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "merged"]  # no temp or old folder left
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    assert cli.main(["merge", str(tiny_model), str(adapter), str(user), "--device", "cpu"]) == 1
    assert "is not empty; choose a new folder or pass --overwrite" in capsys.readouterr().err
    assert (user / "notes.txt").read_text() == "keep"


def test_internlm2_chats_and_merges_without_trusting_its_code(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from core.chat import answer, load_chat_model
    from core.internlm2 import build_tiny_internlm2
    from core.merge import merge_adapter
    from core.models import resolve_model

    vocab = len(AutoTokenizer.from_pretrained(tiny_model))
    base = build_tiny_internlm2(tmp_path / "internlm2-chat", vocab=vocab, seed=1)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (tiny_model / name).is_file():
            shutil.copy2(tiny_model / name, base / name)
    cfg = json.loads((base / "config.json").read_text())
    cfg.update(eos_token_id=json.loads((tiny_model / "config.json").read_text())["eos_token_id"])
    (base / "config.json").write_text(json.dumps(cfg))
    assert "auto_map" in cfg  # it asks for its own code, which is not even there: nothing can run

    chat = load_chat_model(str(base))
    assert isinstance(answer(chat, [{"role": "user", "content": "hi"}], max_new_tokens=3), str)
    adapter = _adapter(resolve_model(str(base)), tmp_path / "adapter")
    report = merge_adapter(str(base), str(adapter), str(tmp_path / "merged"), device="cpu", layout="internlm2",
                           max_new_tokens=4)
    assert report["check"]["identical"], report["check"]
    merged = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert merged["model_type"] == "internlm2"
    assert (tmp_path / "merged" / OUTPUT_MARKER).is_file() and not (tmp_path / "merged" / ".internlm2").exists()
