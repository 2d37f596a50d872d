"""Model card: metadata, both languages, run details, >= 200 characters. `pytest tests/unit/test_publish_card.py`"""

import json

import pytest
import yaml

from core.errors import StudioError
from core.publish import MIN_CARD_CHARS, check_card, last_answers, model_card
from tests.fakehub import fake_model_dir


def _meta(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card[4:card.index("\n---", 4)])


def test_card_for_a_bare_merged_model_is_long_enough_and_bilingual(tmp_path):
    src = fake_model_dir(tmp_path / "merged", weights_bytes=10)
    card = model_card(src, repo_id="alice/assistant")
    assert len(card) >= MIN_CARD_CHARS
    meta = _meta(card)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "apache-2.0"
    assert meta["language"] == ["zh", "en"]
    assert "base_model" not in meta  # nothing known: no made-up metadata
    assert "## 中文说明" in card and "## English" in card
    assert 'AutoModelForCausalLM.from_pretrained("alice/assistant")' in card
    check_card(card, "ModelScope")


def test_card_uses_the_run_config_and_the_last_complete_answers(tmp_path):
    src = fake_model_dir(tmp_path / "merged", weights_bytes=10)
    run = tmp_path / "run"
    run.mkdir()
    data = tmp_path / "identity.jsonl"
    data.write_text("\n".join(json.dumps({"messages": []}) for _ in range(7)) + "\n")
    (run / "config.yaml").write_text(yaml.safe_dump({
        "pretrained_model_name_or_path": "internlm/internlm2-chat-1_8b", "data_path": str(data),
        "method": "qlora", "lora_r": 64, "lr": 0.0002, "max_epochs": 3}))
    rows = [{"step": 0, "answers": [{"prompt": "请介绍一下你自己", "answer": "我是一个助手"}]},
            {"step": 30, "answers": [{"prompt": "请介绍一下你自己", "answer": "我是小天，由 Alice 训练"}]}]
    (run / "samples.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
                                       + '\n{"step": 40, "answ')  # a line still being written
    card = model_card(src, repo_id="alice/xiaotian", run_dir=run, license="mit")
    meta = _meta(card)
    assert meta["base_model"] == "internlm/internlm2-chat-1_8b"
    assert meta["license"] == "mit"
    assert "qlora" in meta["tags"]
    assert "`identity.jsonl`，共 7 条样本" in card and "7 samples" in card
    assert "| lora_r | 64 |" in card
    assert "### Answers at step 30" in card and "我是小天，由 Alice 训练" in card
    assert "我是一个助手" not in card
    assert last_answers(run)[0] == 30


def test_adapter_card_says_peft_and_takes_the_base_from_the_adapter(tmp_path):
    src = fake_model_dir(tmp_path / "adapter", weights_bytes=10, adapter_base="Qwen/Qwen2.5-0.5B-Instruct")
    card = model_card(src, repo_id="alice/lora")
    meta = _meta(card)
    assert meta["library_name"] == "peft"
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert "AutoPeftModelForCausalLM" in card


def test_a_local_base_path_is_never_written_into_the_card(tmp_path):
    src = fake_model_dir(tmp_path / "adapter", weights_bytes=10, adapter_base=str(tmp_path))
    with pytest.raises(StudioError, match="--base-model"):  # issue 19 item 9: asked for, never the path
        model_card(src, repo_id="alice/lora")
    card = model_card(src, repo_id="alice/lora", base_model="Qwen/Qwen2.5-0.5B-Instruct")
    assert _meta(card)["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert str(tmp_path) not in card


def test_check_card_refuses_what_modelscope_would_not_publish():
    with pytest.raises(StudioError, match="at least 200"):
        check_card("# my model\nshort", "ModelScope")
    with pytest.raises(StudioError, match="never closed"):
        check_card("---\nlicense: mit\n" + "x" * 300, "ModelScope")
    with pytest.raises(StudioError, match="does not parse"):
        check_card("---\nlicense: [mit\n---\n" + "x" * 300, "ModelScope")
