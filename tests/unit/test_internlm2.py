"""InternLM2 -> Llama conversion: same logits (1e-4, fp32) and same greedy tokens as the InternLM2 reference."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from core.errors import StudioError
from core.internlm2 import (
    build_tiny_internlm2,
    convert_internlm2_to_llama,
    convert_llama_to_internlm2,
    ensure_native,
    is_internlm2,
    reference_forward,
    reference_greedy,
    split_wqkv,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A random GQA InternLM2 checkpoint (4 heads, 2 kv heads) and its Llama conversion."""
    d = tmp_path_factory.mktemp("internlm2")
    src = build_tiny_internlm2(d / "internlm2", seed=3)
    return src, convert_internlm2_to_llama(src, d / "llama")


def _llama(folder):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def test_converted_logits_match_reference(pair) -> None:
    src, dst = pair
    ids = torch.randint(3, 320, (2, 23), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = _llama(dst)(ids).logits
    ref = reference_forward(src, ids)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-4


def test_converted_greedy_generation_matches_reference(pair) -> None:
    src, dst = pair
    prompt = [5, 17, 42, 9, 100]
    with torch.no_grad():
        out = _llama(dst).generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                                   eos_token_id=None, pad_token_id=0)
    assert out[0, len(prompt):].tolist() == reference_greedy(src, prompt, 10)


def test_a_naive_qkv_split_would_be_caught(pair, tmp_path) -> None:
    """Splitting wqkv as [all q, all k, all v] (the wrong layout) must change the logits."""
    src, dst = pair
    sd = load_file(str(dst / "model.safetensors"))
    raw = load_file(str(src / "model.safetensors"))
    w = raw["model.layers.0.attention.wqkv.weight"]
    q, k, v = torch.split(w, [64, 32, 32])
    sd["model.layers.0.self_attn.q_proj.weight"] = q.contiguous()
    sd["model.layers.0.self_attn.k_proj.weight"] = k.contiguous()
    sd["model.layers.0.self_attn.v_proj.weight"] = v.contiguous()
    from safetensors.torch import save_file

    bad = tmp_path / "bad"
    bad.mkdir()
    for f in dst.iterdir():
        if f.name != "model.safetensors":
            (bad / f.name).write_bytes(f.read_bytes())
    save_file(sd, str(bad / "model.safetensors"))
    ids = torch.arange(3, 20)[None]
    with torch.no_grad():
        wrong = _llama(bad)(ids).logits
    assert (wrong - reference_forward(src, ids)).abs().max().item() > 1e-3


def test_bias_and_mha_variant(tmp_path) -> None:
    src = build_tiny_internlm2(tmp_path / "i", seed=1, heads=4, kv_heads=4, bias=True)
    dst = convert_internlm2_to_llama(src, tmp_path / "l")
    ids = torch.randint(3, 320, (1, 15), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = _llama(dst)(ids).logits
    assert (ours - reference_forward(src, ids)).abs().max().item() < 1e-4


def test_split_wqkv_layout() -> None:
    # 2 kv groups of (2 q heads, k, v), head_dim 1: rows are q0 q1 k0 v0 q2 q3 k1 v1
    w = torch.arange(8.0)[:, None]
    q, k, v = split_wqkv(w, num_heads=4, num_kv_heads=2, head_dim=1)
    assert q.flatten().tolist() == [0, 1, 4, 5]
    assert k.flatten().tolist() == [2, 6]
    assert v.flatten().tolist() == [3, 7]


def test_round_trip_is_exact_and_keeps_the_internlm2_config(pair, tmp_path) -> None:
    src, dst = pair
    back = convert_llama_to_internlm2(dst, tmp_path / "back")
    a, b = load_file(str(src / "model.safetensors")), load_file(str(back / "model.safetensors"))
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg = json.loads((back / "config.json").read_text())
    assert cfg["model_type"] == "internlm2" and "auto_map" in cfg
    assert is_internlm2(back) and not is_internlm2(dst)


def test_config_mapping(pair) -> None:
    _, dst = pair
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["num_key_value_heads"] == 2 and "auto_map" not in cfg
    assert cfg["rope_parameters"]["rope_theta"] == 1000000.0


def test_dynamic_rope_scaling_is_carried(tmp_path) -> None:
    src = build_tiny_internlm2(tmp_path / "i", rope_scaling={"type": "dynamic", "factor": 2.0})
    dst = convert_internlm2_to_llama(src, tmp_path / "l")
    rope = json.loads((dst / "config.json").read_text())["rope_parameters"]
    assert rope["rope_type"] == "dynamic" and rope["factor"] == 2.0
    ids = torch.arange(3, 30)[None]  # shorter than max_position_embeddings: dynamic NTK is inactive
    with torch.no_grad():
        assert (_llama(dst)(ids).logits - reference_forward(src, ids)).abs().max().item() < 1e-4


def test_tokenizer_config_loses_remote_code_and_keeps_template(tmp_path) -> None:
    src = build_tiny_internlm2(tmp_path / "i")
    template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    (src / "tokenizer_config.json").write_text(json.dumps({
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "tokenizer_class": "InternLM2Tokenizer", "chat_template": template}), encoding="utf-8")
    (src / "tokenizer.model").write_bytes(b"sentencepiece bytes")
    dst = convert_internlm2_to_llama(src, tmp_path / "l")
    tc = json.loads((dst / "tokenizer_config.json").read_text())
    assert "auto_map" not in tc and tc["tokenizer_class"] == "LlamaTokenizer"
    assert tc["chat_template"] == template
    assert (dst / "tokenizer.model").read_bytes() == b"sentencepiece bytes"
    back = convert_llama_to_internlm2(dst, tmp_path / "b", original=src)
    assert json.loads((back / "tokenizer_config.json").read_text())["tokenizer_class"] == "InternLM2Tokenizer"


def test_ensure_native_converts_once(tmp_path) -> None:
    src = build_tiny_internlm2(tmp_path / "internlm2-chat-tiny")
    first = ensure_native(src, cache_dir=tmp_path / "cache")
    assert first.name == "internlm2-chat-tiny-llama" and not is_internlm2(first)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert ensure_native(src, cache_dir=tmp_path / "cache") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert ensure_native(first) == first  # a Llama folder is returned as is


def test_refuses_non_internlm2_and_leaves_no_output(tmp_path, pair) -> None:
    _, dst = pair
    with pytest.raises(StudioError, match="not an InternLM2"):
        convert_internlm2_to_llama(dst, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(StudioError, match="must differ"):
        convert_llama_to_internlm2(dst, dst)
