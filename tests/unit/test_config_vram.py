"""The VRAM estimate: parameter counts equal real transformers models; each term moves the right way."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.config import config_from_dict
from core.config.vram import KNOWN_SHAPES, count_params, estimate, format_estimate, lora_params, model_shape
from core.errors import StudioError


def _cfg(**kw):
    base = dict(pretrained_model_name_or_path="internlm/internlm2-chat-1_8b", method="qlora", max_length=1024,
                batch_size=1, gradient_checkpointing="true")
    base.update(kw)
    return config_from_dict(base)


@pytest.mark.parametrize("key,arch", [("qwen2.5-0.5b-instruct", "qwen2"), ("internlm2-chat-1_8b", "llama"),
                                      ("meta-llama-3-8b-instruct", "llama"), ("qwen2.5-7b-instruct", "qwen2")])
def test_param_count_equals_transformers(key, arch) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    s = KNOWN_SHAPES[key]
    hf = AutoConfig.for_model(arch, hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                              num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                              intermediate_size=s["intermediate"], vocab_size=s["vocab"],
                              tie_word_embeddings=s.get("tied", False))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf)
    real = sum(p.numel() for p in model.parameters())
    assert count_params({"tied": False, "qkv_bias": False, **s})["total"] == real


def test_lora_params_equal_peft() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    s = dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=96, vocab=100)
    with torch.device("meta"):
        m = LlamaForCausalLM(LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=96, vocab_size=100))
    for targets in (["all-linear"], ["q_proj", "v_proj"], ["wqkv", "w2"]):
        peft_targets = {"all-linear": "all-linear"}.get(targets[0]) or \
            [t for t in targets if "proj" in t] or ["q_proj", "k_proj", "v_proj", "down_proj"]
        pm = get_peft_model(m, LoraConfig(r=8, target_modules=peft_targets))
        real = sum(p.numel() for p in pm.parameters() if p.requires_grad)
        assert lora_params(s, 8, targets) == real, targets
        pm.unload()


def test_quantization_and_method_order() -> None:
    q, lora, full = (estimate(_cfg(method=m))["total_gib"] for m in ("qlora", "lora", "full"))
    assert q < lora < full
    e = estimate(_cfg(method="qlora"))
    assert e["breakdown_gib"]["weights"] < estimate(_cfg(method="lora"))["breakdown_gib"]["weights"] / 2


def test_checkpointing_and_length_scale_activations() -> None:
    on = estimate(_cfg(gradient_checkpointing="true"))
    off = estimate(_cfg(gradient_checkpointing="false"))
    assert on["breakdown_gib"]["activations"] < off["breakdown_gib"]["activations"] / 5
    long = estimate(_cfg(max_length=2048, batch_size=2))
    assert long["breakdown_gib"]["activations"] == pytest.approx(4 * on["breakdown_gib"]["activations"], rel=0.01)
    assert long["breakdown_gib"]["logits"] == pytest.approx(4 * on["breakdown_gib"]["logits"], rel=0.01)


def test_deepspeed_stages_divide_over_gpus() -> None:
    full = dict(method="full", pretrained_model_name_or_path="internlm/internlm2_5-7b-chat")
    one = estimate(_cfg(**full, deepspeed="zero3"), n_gpus=1)["breakdown_gib"]
    eight = estimate(_cfg(**full, deepspeed="zero3"), n_gpus=8)["breakdown_gib"]
    for k in ("weights", "gradients", "optimizer"):
        assert eight[k] == pytest.approx(one[k] / 8, rel=0.01)
    z1 = estimate(_cfg(**full, deepspeed="zero1"), n_gpus=8)["breakdown_gib"]
    assert z1["gradients"] == pytest.approx(one["gradients"], rel=0.01)  # ZeRO-1 splits optimizer state only
    assert estimate(_cfg(**full, deepspeed="zero2_offload"), n_gpus=2)["breakdown_gib"]["optimizer"] == 0


def test_llava_adds_the_vision_tower() -> None:
    base = estimate(_cfg())
    llava = estimate(_cfg(model_type="llava", visual_encoder_name_or_path="openai/clip-vit-large-patch14-336"))
    assert 0.5 < llava["breakdown_gib"]["weights"] - base["breakdown_gib"]["weights"] < 0.7  # ~304M in 16-bit
    assert count_params({**KNOWN_SHAPES["clip-vit-large-patch14-336"]})["total"] == pytest.approx(303.5e6, rel=0.01)


def test_shape_from_local_config_json(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 256, "vocab_size": 1000}), encoding="utf-8")
    s = model_shape(str(tmp_path))
    assert s["hidden"] == 128 and s["source"].endswith("config.json")
    e = estimate(_cfg(pretrained_model_name_or_path=str(tmp_path), method="lora"))
    assert e["params"] == 1000 * 128 * 2 + 2 * (128 * 128 * 2 + 2 * 128 * 64 + 3 * 128 * 256 + 2 * 128) + 128


def test_unknown_model_says_what_to_do() -> None:
    with pytest.raises(StudioError, match="unknown model shape"):
        estimate(_cfg(pretrained_model_name_or_path="someone/unknown-model"))


def test_output_has_formula_and_breakdown() -> None:
    e = estimate(_cfg())
    assert set(e["breakdown_gib"]) == {"weights", "lora_params", "gradients", "optimizer", "activations", "logits"}
    assert e["total_gib"] == pytest.approx(sum(e["breakdown_gib"].values()), abs=0.02)
    assert "activations" in e["formula"] and "ZeRO" in e["formula"]
    text = format_estimate(e)
    assert "total" in text and "formula:" in text


def test_estimate_does_not_mutate_config() -> None:
    c = _cfg()
    before = dataclasses.asdict(c)
    estimate(c, n_gpus=4)
    assert dataclasses.asdict(c) == before


def test_cli_estimate(capsys) -> None:
    from studio.cli import main

    assert main(["estimate", "qwen2_5_7b_instruct_qlora_identity_e3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "qlora" and out["total_gib"] > 5


@pytest.mark.parametrize("body, words", [
    (b'{"hidden_size": 12', ":1: not valid JSON"),
    (b"\xff\xfe{\x00", "not UTF-8"),
    (b"[1, 2]", "holds an array, not an object"),
    (b"5", "holds a number, not an object"),
    (b'{"vision_config": 3}', "lacks a shape field"),
    (b'{"hidden_size": 1e400, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 8}',
     "lacks a shape field"),
    (b'{"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 0, "intermediate_size": 8}',
     "heads = 0 is not a model shape"),
    (b'{"hidden_size": ' + b"9" * 5000 + b"}", "4300 digits"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_corrupt_config_json_names_the_file(tmp_path, capsys, body, words) -> None:
    (tmp_path / "config.json").write_bytes(body)
    with pytest.raises(StudioError) as e:
        estimate(_cfg(pretrained_model_name_or_path=str(tmp_path), method="lora"))
    first = str(e.value).split("\n")[0]
    assert first.startswith(str(tmp_path / "config.json")) and words in first, first
    from studio.cli import main

    y = tmp_path / "run.yaml"
    y.write_text(f"pretrained_model_name_or_path: {tmp_path}\nmethod: lora\n", encoding="utf-8")
    assert main(["estimate", str(y)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(tmp_path / "config.json") in err
