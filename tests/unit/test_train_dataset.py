"""Loss masking, packing and the collator: what the trainer feeds the model."""

from __future__ import annotations

import torch

from core.train.dataset import IGNORE, Collator, encode_sample, pack


def _conv(*turns):
    roles = ["user", "assistant"] * len(turns)
    return {"messages": [{"role": r, "content": t} for r, t in zip(roles, turns, strict=False)]}


def test_loss_only_on_assistant_turns(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = encode_sample(tok, _conv("你是谁？", "我是小天。"), max_length=256)
    learned = tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE])
    assert learned == "我是小天。<|im_end|>\n"
    prompt = tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab == IGNORE])
    assert "你是谁" in prompt and "<|im_start|>assistant" in prompt
    # the pieces concatenate to exactly what the chat template renders
    full = tok.apply_chat_template(_conv("你是谁？", "我是小天。")["messages"], tokenize=False)
    assert tok.decode(enc["input_ids"]) == full


def test_multi_turn_and_loss_false(tiny_tokenizer):
    sample = _conv("hi", "hello", "who are you", "I am Tian")
    sample["messages"][1]["loss"] = False
    enc = encode_sample(tiny_tokenizer, sample, max_length=256)
    learned = tiny_tokenizer.decode([t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE])
    assert learned == "I am Tian<|im_end|>\n"


def test_system_prompt_added_and_truncation(tiny_tokenizer):
    enc = encode_sample(tiny_tokenizer, _conv("q", "a " * 200), max_length=32, system="SYS")
    assert len(enc["input_ids"]) == 32 == len(enc["labels"])
    assert tiny_tokenizer.decode(enc["input_ids"]).startswith("<|im_start|>system\nSYS")


def test_no_answer_is_dropped(tiny_tokenizer):
    assert encode_sample(tiny_tokenizer, {"messages": [{"role": "user", "content": "q"}]}, 64) is None


def test_pretrain_text_learns_every_token(tiny_tokenizer):
    enc = encode_sample(tiny_tokenizer, {"messages": [{"role": "pretrain", "content": "Hello world"}]}, 64)
    assert enc["labels"] == enc["input_ids"] and "<|im_start|>" not in tiny_tokenizer.decode(enc["input_ids"])


def test_pack_fits_rows_and_keeps_every_sample():
    enc = [{"input_ids": [1] * n, "labels": [1] * n} for n in (10, 20, 30, 40, 50, 60, 5)]
    rows = pack(enc, max_length=64)
    assert sorted(len(s["input_ids"]) for r in rows for s in r) == sorted(len(e["input_ids"]) for e in enc)
    assert all(sum(len(s["input_ids"]) for s in r) <= 64 for r in rows)
    assert len(rows) < len(enc)


def test_packed_samples_do_not_attend_to_each_other(tiny_model, tiny_tokenizer):
    """Logits of a packed row equal the logits of each sample run alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    a = encode_sample(tiny_tokenizer, _conv("你是谁？", "我是小天。"), 128)
    b = encode_sample(tiny_tokenizer, _conv("What is 2 plus 3?", "2 plus 3 is 5."), 128)
    batch = Collator(pad_token_id=tiny_tokenizer.pad_token_id, packed=True)([[a, b]])
    assert "attention_mask" not in batch
    assert batch["labels"][0, len(a["input_ids"])] == IGNORE  # b's first token is not predicted from a
    with torch.no_grad():
        # use_cache=False as in training: with a cache, transformers does not look for packed rows
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        alone_a = model(input_ids=torch.tensor([a["input_ids"]])).logits[0]
        alone_b = model(input_ids=torch.tensor([b["input_ids"]])).logits[0]
    n = len(a["input_ids"])
    assert torch.allclose(packed[:n], alone_a, atol=1e-4)
    assert torch.allclose(packed[n:], alone_b, atol=1e-4)


def test_unpacked_collator_pads_and_masks():
    c = Collator(pad_token_id=0, packed=False)
    batch = c([[{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}], [{"input_ids": [8], "labels": [8]}]])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]


def test_varlen_collator_hands_sample_boundaries_to_the_attention(tiny_model):
    """cu_seq_lens / max_length are computed on the CPU and reach the attention function through transformers."""
    from transformers import AttentionInterface, AutoModelForCausalLM
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from core.train import varlen

    rows = [[{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}],
            [{"input_ids": [4, 4, 4, 4], "labels": [4, 4, 4, 4]}]]
    batch = Collator(pad_token_id=0, packed=True, varlen=True)(rows)
    # one flat sequence of 9 tokens, padded to 16 by a segment of its own
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 4, 4, 4, 4] + [0] * 7]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5, 9, 16] == varlen.segments(batch["position_ids"])[0].tolist()
    assert batch["cu_seq_lens_q"].dtype == torch.int32 and batch["max_length_q"] == 7 == batch["max_length_k"]
    assert "cu_seq_lens_q" not in Collator(pad_token_id=0, packed=True)(rows)

    seen = []

    def recording(module, q, k, v, mask, **kw):
        seen.append((kw.get("cu_seq_lens_q"), kw.get("max_length_q")))
        return sdpa_attention_forward(module, q, k, v, mask, **kw)

    AttentionInterface.register("test_recording", recording)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="test_recording")
    with torch.no_grad():
        model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False)
    assert len(seen) == model.config.num_hidden_layers
    assert all(cu is batch["cu_seq_lens_q"] and m == 7 for cu, m in seen)


def test_flat_varlen_batch_gives_the_same_loss_as_rows(tiny_model, tiny_tokenizer):
    """One flat sequence (varlen) and padded rows: the same tokens learned, the same loss, any width."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    qa = [("你是谁？", "我是小天。"), ("What is 2 plus 3?", "2 plus 3 is 5."), ("Hi", "Hello there, friend."),
          ("Name a colour.", "Blue.")]
    enc = [encode_sample(tiny_tokenizer, _conv(q, a), 128) for q, a in qa]
    rows = [[enc[0], enc[1]], [enc[2]], [enc[3]]]
    by_rows = Collator(pad_token_id=tiny_tokenizer.pad_token_id, packed=True)(rows)
    flat = Collator(pad_token_id=tiny_tokenizer.pad_token_id, packed=True, varlen=True)(rows)
    n = sum(len(e["input_ids"]) for e in enc)
    assert flat["input_ids"].shape == (1, -(-n // 16) * 16) and by_rows["input_ids"].shape[0] == 3
    learned = (flat["labels"] != IGNORE).sum()
    assert learned == (by_rows["labels"] != IGNORE).sum() > 0
    with torch.no_grad():
        # sdpa keeps the flat sequence's samples apart through the position ids, as for a packed row
        a = model(input_ids=by_rows["input_ids"], position_ids=by_rows["position_ids"], labels=by_rows["labels"],
                  use_cache=False).loss
        b = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], labels=flat["labels"],
                  use_cache=False).loss
    assert torch.allclose(a, b, atol=1e-5), (a, b)
