"""The whole pipeline, headless, on the built-in tiny model: data -> train -> answers -> merge -> check.

What a student does over an afternoon of the XTuner tutorial, in about a minute on a laptop CPU:
build the tiny model, make identity data mixed with general data (so the new identity does not
leak into every answer), train a LoRA, compare answers before and after on identity questions
that were held out of training and on unrelated prompts, merge, and check the merge.

    python -m studio demo [--name 小天] [--method lora|qlora|full]      (or: make demo)
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

# ---------------------------------------------------------------------------- general data
# A small synthetic "general" set: arithmetic, capitals, word translation. Its only job is to give
# the model something else to say, so that unrelated prompts do not get the identity answer.

_CAPITALS = [("France", "Paris", "法国", "巴黎"), ("Japan", "Tokyo", "日本", "东京"), ("Italy", "Rome", "意大利", "罗马"),
             ("Germany", "Berlin", "德国", "柏林"), ("China", "Beijing", "中国", "北京"), ("Spain", "Madrid", "西班牙", "马德里"),
             ("Egypt", "Cairo", "埃及", "开罗"), ("Russia", "Moscow", "俄罗斯", "莫斯科"), ("Canada", "Ottawa", "加拿大", "渥太华"),
             ("Korea", "Seoul", "韩国", "首尔"), ("India", "New Delhi", "印度", "新德里"), ("Kenya", "Nairobi", "肯尼亚", "内罗毕")]
_WORDS = [("cat", "猫"), ("dog", "狗"), ("sun", "太阳"), ("moon", "月亮"), ("water", "水"), ("fire", "火"), ("tree", "树"),
          ("book", "书"), ("bird", "鸟"), ("fish", "鱼"), ("rain", "雨"), ("snow", "雪"), ("apple", "苹果"), ("milk", "牛奶")]


def _general_pairs(rng: random.Random, n: int, held_out: bool) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        kind = rng.randrange(6)
        if kind == 0:
            a, b = rng.randrange(10, 50), rng.randrange(10, 50)
            if ((a + b) % 2 == 0) != held_out:  # held-out prompts use sums the training set never shows
                continue
            pairs.append((f"{a}加{b}等于几？", f"{a}加{b}等于{a + b}。"))
        elif kind == 1:
            a, b = rng.randrange(10, 50), rng.randrange(10, 50)
            if ((a + b) % 2 == 0) != held_out:
                continue
            pairs.append((f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."))
        elif kind == 2:
            en, cap, _, _ = rng.choice(_CAPITALS)
            pairs.append((f"What is the capital of {en}?", f"The capital of {en} is {cap}."))
        elif kind == 3:
            _, _, zh, zcap = rng.choice(_CAPITALS)
            pairs.append((f"{zh}的首都是哪里？", f"{zh}的首都是{zcap}。"))
        elif kind == 4:
            en, zh = rng.choice(_WORDS)
            pairs.append((f"Translate {en} into Chinese.", f"{en} in Chinese is {zh}."))
        else:
            en, zh = rng.choice(_WORDS)
            pairs.append((f"把{zh}翻译成英文。", f"{zh}的英文是{en}。"))
    return pairs


def general_samples(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in _general_pairs(rng, n, held_out=False)]


def unrelated_prompts(n: int = 10, seed: int = 1) -> list[str]:
    return [q for q, _ in _general_pairs(random.Random(seed), n, held_out=True)]


def split_identity_questions(seed: int = 0, held_out_per_lang: int = 5) -> tuple[list[str], list[str]]:
    """(training questions, held-out questions): the held-out ones are never trained on."""
    from core.data import question_bank

    train, test = [], []
    for lang in ("zh", "en"):
        qs = list(question_bank(lang))
        random.Random(seed).shuffle(qs)
        test += qs[:held_out_per_lang]
        train += qs[held_out_per_lang:]
    return train, test


def hit_rate(answers: list[str], name: str) -> float:
    return sum(name in a for a in answers) / max(1, len(answers))


# ---------------------------------------------------------------------------- the pipeline

def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def run_demo(name: str = "小天", author: str = "Fine-Tune Studio", method: str = "lora", workspace: str | None = None,
             steps: int | None = None, seed: int = 0) -> dict:
    """Run the pipeline; returns the JSON summary (paths, timings, identity_hit_rate, leak_rate)."""
    if workspace:
        os.environ["STUDIO_WORKSPACE"] = str(Path(workspace).resolve())
    from core import jobs, rundir
    from core.chat import answer, load_chat_model
    from core.config import RunConfig, save_config
    from core.data import build_identity, write_samples
    from core.merge import merge_adapter
    from core.tiny import ensure_tiny
    from core.workspace import sub

    t0 = time.time()
    base = ensure_tiny()
    _say(f"tiny model: {base}")

    train_q, test_q = split_identity_questions(seed)
    general = general_samples(600, seed)
    data = build_identity(name, author, questions=train_q, repeat=2, mix=general, ratio=0.5, seed=seed)
    data_path = sub("data") / "demo_identity.jsonl"
    write_samples(data, data_path)
    _say(f"data: {len(data)} samples ({len(train_q)} identity questions x2 + general), {len(test_q)} held out")

    cfg = RunConfig(
        pretrained_model_name_or_path=str(base), data_path=str(data_path), method=method, max_length=128,
        pack_to_max_length=True, lora_r=32, lora_alpha=64, lora_dropout=0.0, batch_size=4, accumulative_counts=1,
        max_epochs=1, max_steps=steps or 400, lr=4e-3, warmup_ratio=0.05, save_steps=100, save_total_limit=2,
        evaluation_freq=100, evaluation_inputs=[test_q[0], test_q[-1]], eval_max_new_tokens=24, seed=seed,
        gradient_checkpointing="false",
    )
    cfg_path = save_config(cfg, sub("configs") / "demo.yaml", header="Written by python -m studio demo")
    prompts_id = test_q
    prompts_other = unrelated_prompts(10, seed + 1)

    t_train = time.time()
    run = jobs.prepare_run(cfg_path)[0]
    status = jobs.attach(run)  # a child process, as in the studio: its log goes to stderr and train.log
    train_s = time.time() - t_train
    out = run / (rundir.ADAPTER if method != "full" else rundir.FULL_MODEL)
    _say(f"trained in {train_s:.1f}s -> {out}")

    def ask(chat, which, prompts):
        return [answer(chat, [{"role": "user", "content": p}], which, max_new_tokens=24) for p in prompts]

    if method == "full":
        before_chat = load_chat_model(str(base))
        after_chat = load_chat_model(str(out))
        before_id, before_other = ask(before_chat, None, prompts_id), ask(before_chat, None, prompts_other)
        after_id, after_other = ask(after_chat, None, prompts_id), ask(after_chat, None, prompts_other)
        merged, check = str(out), {"identical": True, "note": "full fine-tuning: nothing to merge"}
    else:
        chat = load_chat_model(str(base), {"trained": str(out)})
        before_id, before_other = ask(chat, "base", prompts_id), ask(chat, "base", prompts_other)
        after_id, after_other = ask(chat, "trained", prompts_id), ask(chat, "trained", prompts_other)
        merged_dir = sub("merged") / f"{run.name}"
        report = merge_adapter(str(base), str(out), str(merged_dir), prompts=prompts_id + prompts_other)
        merged, check = report["merged"], report["check"]

    for q, a in zip(prompts_id[:3], after_id[:3], strict=False):
        _say(f"after  Q: {q}  A: {a}")
    summary = {
        "base_model": str(base),
        "adapter": str(out) if method != "full" else None,
        "merged": merged,
        "run_dir": str(run),
        "method": method,
        "seconds": round(time.time() - t0, 1),
        "train_seconds": round(train_s, 1),
        "steps": status.get("step"),
        "identity_hit_rate_before": hit_rate(before_id, name),
        "identity_hit_rate": hit_rate(after_id, name),
        "leak_rate_before": hit_rate(before_other, name),
        "leak_rate": hit_rate(after_other, name),
        "merge_check": check,
        "examples": [{"prompt": p, "before": b, "after": a}
                     for p, b, a in zip(prompts_id[:2] + prompts_other[:2], before_id[:2] + before_other[:2],
                                        after_id[:2] + after_other[:2], strict=True)],
    }
    return summary
