"""AppTest for the Chat A/B, Merge and Publish pages over a run folder holding a real (untrained) PEFT
adapter of the tiny model: both chat sides answer, the merge check passes, a publish dry run stages files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parents[2] / "pages"


def page(name: str) -> AppTest:
    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=180)


@pytest.fixture
def ws_with_run(tmp_path, monkeypatch, tiny_model):
    """A finished run: config.yaml, status.json and adapter/ (LoRA with random B so it changes answers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core import rundir
    from core.config import RunConfig, save_config

    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_model)
    run = tmp_path / "runs" / "20260101-000000-demo"
    run.mkdir(parents=True)
    data = tmp_path / "data" / "d.jsonl"
    data.parent.mkdir()
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    save_config(RunConfig(pretrained_model_name_or_path="tiny", data_path=str(data)), run / rundir.CONFIG)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    model.save_pretrained(run / rundir.ADAPTER)
    rundir.write_status(run, state="finished", run_id=run.name, step=10, max_steps=10, ended_at=time.time())
    return tmp_path, run


def test_chat_ab_answers_on_both_sides(ws_with_run):
    ws, run = ws_with_run
    at = page("chat").run()
    assert not at.exception
    right = next(s for s in at.selectbox if s.key and s.key.startswith("right:"))
    assert any(o.endswith("· adapter") for o in right.options)
    right.set_value(next(o for o in right.options if o.endswith("· adapter")))
    at.run()
    at.sidebar.number_input[1].set_value(8)  # max new tokens
    at.chat_input[0].set_value("你是谁").run()
    assert not at.exception
    answers = [m.markdown[0].value for m in at.chat_message if m.name == "assistant"]
    assert len(answers) == 2 and all(a.strip() for a in answers)
    assert answers[0] != answers[1], "a random LoRA answers differently from the base"
    assert json.loads((ws / "studio.json").read_text())["chatted"] > 0


def test_chat_probe_scores_both_sides(ws_with_run):
    ws, _ = ws_with_run
    at = page("chat").run()
    at.sidebar.number_input[1].set_value(4)
    next(a for a in at.text_area if a.label.startswith("Identity questions")).set_value("你是谁")
    next(a for a in at.text_area if a.label.startswith("Unrelated")).set_value("1+1")
    at.button(key="probe_run").click().run()
    assert not at.exception
    assert len([m for m in at.metric if "identity answers" in m.label]) == 2
    saved = list((ws / "chat").glob("probe-*.json"))
    assert saved and len(json.loads(saved[0].read_text())["left"]["answers"]) == 2


def test_merge_then_publish_dry_run(ws_with_run):
    ws, run = ws_with_run
    at = page("merge").run()
    assert not at.exception
    assert at.button(key="merge_go")
    at.button(key="merge_go").click().run()
    assert not at.exception
    assert any("Check passed" in s.value for s in at.success), [e.value for e in at.error]
    merged = ws / "merged" / run.name
    assert (merged / "config.json").is_file()

    at = page("publish").run()
    assert not at.exception
    at.text_input(key="repo").set_value("alice/tiny-assistant").run()
    assert "alice/tiny-assistant" in at.text_area[0].value  # the model card is filled in
    from streamlit.proto.TextInput_pb2 import TextInput as TextInputProto

    assert at.text_input(key="token").proto.type == TextInputProto.PASSWORD  # the token is never shown
    at.button(key="publish_go").click().run()
    assert not at.exception
    assert any("Dry run" in s.value for s in at.success), [e.value for e in at.error]
    staged = list((ws / "publish").glob("dry-run-hf-alice__tiny-assistant/model/*.safetensors"))
    assert staged
    at.text_input(key="token").set_value("hf_secret_never_stored").run()
    assert not any("hf_secret_never_stored" in p.read_text(errors="ignore") for p in ws.rglob("*")
                   if p.is_file() and p.stat().st_size < 2_000_000), "a token never lands on disk"
