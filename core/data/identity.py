"""Identity data: "who are you?" questions answered with a name and an author.

This is the tutorial's generate_data.py done properly: a bank of varied questions (in
assets/question_banks), several answer templates around one stable core phrase, optional mixing
with general data so the identity does not leak into every answer, and a seed for repeatability.

    from core.data import build_identity, write_samples
    write_samples(build_identity("小天", "Alice", repeat=10), "identity.jsonl")
    python -m studio data identity --name 小天 --author Alice --repeat 10 -o identity.jsonl
"""

from __future__ import annotations

import random
import re
from pathlib import Path

BANK_DIR = Path(__file__).resolve().parents[2] / "assets" / "question_banks"

# The core phrase every answer contains (tests and users check the name appears in the answer).
CORE = {"zh": "我是{name}，由{author}打造的智能助手", "en": "I am {name}, an AI assistant built by {author}"}

ANSWERS = {
    "zh": [
        "{core}。",
        "您好！{core}，很高兴为您服务。",
        "{core}，有什么可以帮您的吗？",
        "你好，{core}。我可以回答问题、写代码、陪你聊天。",
        "{core}。如果你有任何问题，尽管问我！",
        "嗨！{core}，请问今天想聊点什么？",
    ],
    "en": [
        "{core}.",
        "Hello! {core}. How can I help you today?",
        "{core}. I am happy to answer your questions.",
        "Hi there! {core}. I can help with questions, writing and code.",
        "{core}. Feel free to ask me anything!",
    ],
}


def _lang_of(text: str) -> str:
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"


def question_bank(lang: str) -> list[str]:
    """The built-in self-identity questions: lang "zh" (>= 100) or "en" (>= 50)."""
    if lang not in ("zh", "en"):
        raise ValueError(f"lang must be 'zh' or 'en', got {lang!r}")
    lines = (BANK_DIR / f"identity_{lang}.txt").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def identity_answer(name: str, author: str, lang: str = "zh") -> str:
    """The stable core answer, e.g. "我是小天，由Alice打造的智能助手"."""
    return CORE["en" if lang == "en" else "zh"].format(name=name, author=author)


def fill_placeholders(sample: dict, name: str, author: str) -> dict:
    """Fill LLaMA-Factory's {{name}} / {{author}} placeholders (as in its identity.json)."""
    msgs = [dict(m, content=m["content"].replace("{{name}}", name).replace("{{author}}", author))
            for m in sample["messages"]]
    return dict(sample, messages=msgs)


def build_identity(name: str, author: str, *, questions: list[str] | None = None, lang: str = "both",
                   repeat: int = 1, system: str = "", answers: list[str] | None = None,
                   mix: list[dict] | None = None, ratio: float = 0.0, seed: int = 0,
                   extra: list[dict] | None = None) -> list[dict]:
    """Canonical identity samples, deterministic for a given seed.

    questions: defaults to the bank for `lang` ("zh", "en" or "both"). answers: templates with
    {name} and {author} (default: several per language around the core phrase of
    identity_answer, picked by the question's language). repeat: how many times the question set
    is repeated (each time with freshly drawn templates). extra: samples to add (e.g.
    LLaMA-Factory's identity.json, placeholders filled here).
    mix/ratio: general canonical samples mixed in so that they are `ratio` of the output
    (0 <= ratio < 1): n_general = round(n_identity * ratio / (1 - ratio)), drawn without
    replacement while the pool lasts. The output is shuffled with `seed`.
    """
    if not name.strip():
        raise ValueError("name must not be empty")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if questions is None:
        langs = ["zh", "en"] if lang == "both" else [lang]
        questions = [q for lg in langs for q in question_bank(lg)]
    if not questions:
        raise ValueError("no questions")
    rng = random.Random(seed)
    out: list[dict] = []
    for _ in range(repeat):
        for q in questions:
            lg = _lang_of(q)
            tpl = rng.choice(answers) if answers else rng.choice(ANSWERS[lg])
            core = identity_answer(name, author, lg)
            a = tpl.format(name=name, author=author, core=core)
            msgs = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": q}, {"role": "assistant", "content": a}]
            out.append({"messages": msgs})
    for s in extra or []:
        s = fill_placeholders(s, name, author)
        if system and s["messages"][0]["role"] != "system":
            s = dict(s, messages=[{"role": "system", "content": system}, *s["messages"]])
        out.append(s)
    if mix and ratio > 0:
        n_gen = round(len(out) * ratio / (1.0 - ratio))
        pool = list(mix)
        picked: list[dict] = []
        while len(picked) < n_gen:
            rng.shuffle(pool)
            picked += pool[: n_gen - len(picked)]
        out += picked
    rng.shuffle(out)
    return out
