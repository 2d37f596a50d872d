"""core.fastgen on CPU: the static-cache decoder (graphs off here) gives generate()'s greedy answer, and
pick() follows generate's sampling settings. The captured-graph path itself is checked in tests/gpu."""

from __future__ import annotations

import torch

from core import fastgen


def _model(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, tok


def test_static_decoder_matches_generate_greedy(tiny_model):
    model, tok = _model(tiny_model)
    torch.manual_seed(0)
    with torch.no_grad():  # random adapter-free weights: make the logits less flat than the tiny model's
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ids = tok("你好, who are you?", return_tensors="pt")["input_ids"]
    want = model.generate(ids, max_new_tokens=24, min_new_tokens=24, do_sample=False, pad_token_id=0)[0, ids.shape[1]:]
    dec = fastgen.Decoder(model, 64, graphs=False)
    got = list(dec.generate(ids, max_new_tokens=24))
    assert got == want.tolist()
    # the same decoder answers a second, shorter prompt from a clean cache
    ids2 = ids[:, :5]
    want2 = model.generate(ids2, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)[0, 5:]
    assert list(dec.generate(ids2, max_new_tokens=8)) == want2.tolist()


def test_decoder_stops_at_a_stop_id_and_refuses_overflow(tiny_model):
    model, _ = _model(tiny_model)
    ids = torch.tensor([[1, 2, 3, 4]])
    dec = fastgen.Decoder(model, 16, graphs=False)
    first = next(iter(dec.generate(ids, max_new_tokens=4)))
    assert list(dec.generate(ids, max_new_tokens=10, stop_ids=[first])) == [first]
    try:
        list(dec.generate(ids, max_new_tokens=13))
    except ValueError as e:
        assert "do not fit" in str(e)
    else:
        raise AssertionError("a cache overflow must be refused")


def test_pick_sampling_settings():
    logits = torch.tensor([[0.0, 5.0, 4.0, -3.0]])
    assert int(pick_greedy := fastgen.pick(logits)) == 1, pick_greedy
    # top_k=1 and a tiny top_p leave only the best token, whatever the temperature
    for kw in ({"top_k": 1}, {"top_p": 0.01}):
        torch.manual_seed(0)
        assert {int(fastgen.pick(logits, temperature=5.0, **kw)) for _ in range(20)} == {1}
    # top_k=2: only tokens 1 and 2 ever come out
    torch.manual_seed(0)
    assert {int(fastgen.pick(logits, temperature=3.0, top_k=2)) for _ in range(200)} == {1, 2}
    # repetition penalty pushes a seen positive logit below the next one (5 / 2 < 4)
    assert int(fastgen.pick(logits, repetition_penalty=2.0, seen=torch.tensor([1]))) == 2


def test_enabled_only_on_cuda_plain_models(tiny_model, monkeypatch):
    model, _ = _model(tiny_model)
    assert not fastgen.enabled(model)  # CPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(type(model), "device", property(lambda self: torch.device("cuda")))
    assert fastgen.enabled(model)  # what a GPU box would see
    model.hf_device_map = {"model.layers.0": 0, "model.layers.1": 1}
    assert not fastgen.enabled(model)  # split over two GPUs
    del model.hf_device_map
    assert not fastgen.enabled(model, image="a.png")  # LLaVA answers with an image go through generate
    monkeypatch.setenv("STUDIO_CUDA_GRAPHS", "0")
    assert not fastgen.enabled(model)
