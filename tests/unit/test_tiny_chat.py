"""The built-in tiny model chats before any fine-tuning (issue 20): its instruction set, tokenizer, shipped
weights, readable answers, and a decode that never shows U+FFFD."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.tiny import ASSET_DIR, BASE_DIR, instruction_pairs

ZH = re.compile(r"[\u4e00-\u9fff]")


def test_instruction_set_is_broad_and_nameless():
    zh, en, self_ = instruction_pairs("zh"), instruction_pairs("en"), instruction_pairs("self")
    assert len(zh) >= 250 and len(en) >= 250 and len(self_) >= 6
    assert all(ZH.search(q) for q, _ in zh) and not any(ZH.search(q) for q, _ in en)
    questions = [q for q, _ in zh + en + self_]
    assert len(set(questions)) == len(questions), "a question appears twice"
    # many sentence shapes, not a handful of templates: the first two characters/words vary widely
    assert len({q[:2] for q, _ in zh}) >= 100 and len({q.split()[0] for q, _ in en}) >= 25
    for q, a in zh + en + self_:
        assert a.strip() and "\ufffd" not in a
        assert not re.search(r"打造的智能助手|an AI assistant built by", a), (q, a)  # no identity's core phrase
    # the generic self-descriptions mostly say "AI assistant" (never a name, checked above)
    assert sum("AI" in a for _, a in self_) >= len(self_) // 2


def test_tokenizer_makes_every_corpus_chinese_character_one_token():
    from core.tiny import _tokenizer_corpus, build_tokenizer

    tok = build_tokenizer()
    assert len(tok) == 4096
    chars = {c for t in _tokenizer_corpus() for c in t if "\u3400" <= c <= "\u9fff"}
    assert len(chars) > 1000
    assert all(len(tok(c, add_special_tokens=False)["input_ids"]) == 1 for c in chars)
    text = "我是小明，由Fine-Tune Studio打造的智能助手。龘 emoji 🙂 ok"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_shipped_tokenizer_is_the_one_the_script_trains():
    import json

    from core.tiny import train_tokenizer

    shipped = json.loads((BASE_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    fresh = json.loads(train_tokenizer().to_str())
    assert fresh["model"]["vocab"] == shipped["model"]["vocab"]


def test_shipped_weights_are_small_and_fit_the_shape():
    from safetensors import safe_open

    f = BASE_DIR / "model.safetensors"
    assert f.stat().st_size <= 5 * 1024 * 1024
    with safe_open(str(f), "pt") as st:
        shapes = {k: tuple(st.get_slice(k).get_shape()) for k in st.keys()}  # noqa: SIM118 (not a dict)
    assert shapes["model.embed_tokens.weight"] == (4096, 192)
    assert "lm_head.weight" not in shapes  # tied
    assert sum(1 for k in shapes if k.endswith("self_attn.q_proj.weight")) == 4


@pytest.fixture(scope="module")
def chat(tiny_model):
    from core.chat import load_chat_model

    return load_chat_model(str(tiny_model))


def test_base_answers_everyday_questions_in_whole_sentences(chat):
    """Before any fine-tuning: unseen everyday prompts get one whole, readable answer (a random model gave
    byte noise), in the prompt's language, without U+FFFD; 'who are you' gets a generic AI assistant."""
    from core.probe import answers

    prompts = [ln.strip() for ln in (ASSET_DIR / "dev_prompts.txt").read_text(encoding="utf-8").splitlines()
               if ln.strip() and not ln.startswith("#")]
    got = answers(chat, None, prompts, max_new_tokens=64)
    known = {a for _, a in instruction_pairs("all")}
    whole = sum(a in known for a in got)
    assert whole >= 0.8 * len(prompts), [a for a in got if a not in known]
    assert all("\ufffd" not in a for a in got)
    assert sum(bool(ZH.search(p)) == bool(ZH.search(a)) for p, a in zip(prompts, got, strict=True)) >= 0.9 * len(got)
    who = answers(chat, None, ["你是谁？", "Who are you?"], max_new_tokens=48)
    assert "AI助手" in who[0] and "AI assistant" in who[1], who


def test_batched_answers_match_the_chat_answer(chat):
    from core.chat import answer
    from core.probe import answers

    prompts = ["你好", "How do I make pancakes?", "为什么天空是蓝色的？"]
    batched = answers(chat, None, prompts, max_new_tokens=24)
    single = [answer(chat, [{"role": "user", "content": p}], None, max_new_tokens=24) for p in prompts]
    assert batched == single


def test_a_cut_off_character_is_never_shown(tiny_model, tiny_tokenizer):
    """max_new_tokens can stop in the middle of a character's byte pieces: no U+FFFD comes out."""
    import torch

    from core.chat import generate_text

    pieces = tiny_tokenizer("答龘", add_special_tokens=False)["input_ids"]
    assert len(pieces) >= 3  # 龘 is not in the corpus: byte pieces
    cut = pieces[:2]  # "答" + the first byte piece of 龘

    class Cut:
        device = torch.device("cpu")
        generation_config = None

        def generate(self, input_ids, **kw):
            return torch.cat([input_ids, torch.tensor([cut])], dim=1)

    out = generate_text(Cut(), tiny_tokenizer, [{"role": "user", "content": "hi"}], max_new_tokens=2)
    assert out == "答"


def test_an_older_random_tiny_model_is_replaced(tmp_path):
    import json

    from core.tiny import TINY_VERSION, build_tiny_model

    old = tmp_path / "tiny"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 1024, "hidden_size": 128}))
    (old / "tokenizer.json").write_text("{}")
    out = build_tiny_model(old)
    cfg = json.loads((Path(out) / "config.json").read_text())
    assert cfg["studio_tiny_version"] == TINY_VERSION and cfg["vocab_size"] == 4096
