"""The whole pipeline, headless, on the built-in tiny model: data -> train -> answers -> merge -> check.

What a student does over an afternoon of the XTuner tutorial, in a couple of minutes on a laptop
CPU: take the tiny chat model (it already answers everyday questions), make identity data mixed with
general data from the same broad instruction set the base learned from (so the new name does not
leak into every answer), train a LoRA, then ask identity questions that were held out of training
and the open-domain probe set (assets/probe, written independently of all training data) before
and after, merge, and check the merge token for token.

    python -m studio demo [--name 小天] [--method lora|qlora|full]      (or: make demo)
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from core.probe import answers, hit_rate, probe_prompts, split_identity_questions

# ---------------------------------------------------------------------------- general data
# The general half of the identity data: pairs of the project's own zh/en instruction set
# (assets/tiny_chat, many topics and sentence shapes), the set the tiny base was pretrained on, so
# the fine-tune keeps answering them as before. Never the generic "I am an AI assistant" pairs:
# those questions now get the new identity.


_WRAP = {"zh": ["请问，{q}", "{q}谢谢！", "我想知道：{q}", "{q}简单说说就行。", "问一下，{q}", "{q}请回答。"],
         "en": ["Quick question: {q}", "{q} Thanks!", "I wonder: {q}", "{q} Keep it short, please.",
                "Can I ask something? {q}", "Hey, {q}"]}


def blur_question(q: str, rng: random.Random, rate: float = 0.3) -> str:
    """`q` as a question the base has not seen word for word: some words (en) or characters (zh) left
    out, or the question wrapped in an everyday opening or closing ("请问，…", "… Thanks!")."""
    zh = any("\u4e00" <= c <= "\u9fff" for c in q)
    if rng.random() < 0.5:
        return rng.choice(_WRAP["zh" if zh else "en"]).format(q=q)
    units = list(q) if zh else q.split(" ")
    kept = [u for u in units if rng.random() > rate] or units[:1]
    return ("" if zh else " ").join(kept)


def general_samples(n: int, seed: int = 0, blur: float = 0.0) -> list[dict]:
    """`n` general chat samples (zh and en), shuffled with `seed`; whole passes over the set when n exceeds it.

    blur: the share of samples whose question is blurred (blur_question) while the answer stays, so
    that a fine-tune learns "unfamiliar everyday question -> the usual kind of answer", not
    "unfamiliar question -> the new identity".
    """
    from core.tiny import instruction_pairs

    pairs = instruction_pairs("general")
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        batch = list(pairs)
        rng.shuffle(batch)
        out += batch[: n - len(out)]
    if blur > 0:
        out = [(blur_question(q, rng) if rng.random() < blur else q, a) for q, a in out]
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in out]


def unrelated_prompts(n: int = 10, seed: int = 1) -> list[str]:
    """`n` open-domain probe prompts (half zh, half en), drawn with `seed`: see core.probe."""
    rng = random.Random(seed)
    zh, en = probe_prompts("zh"), probe_prompts("en")
    return rng.sample(zh, min(len(zh), (n + 1) // 2)) + rng.sample(en, min(len(en), n // 2))


def identity_dominance(n_identity_questions: int, repeat: int, ratio: float,
                       n_general: int | None = None) -> dict | None:
    """{share, n_identity, n_general} when XTuner-style `repeat` makes identity samples dominate the data, else None.

    Measured on the tiny model (issue 20): once identity samples are more than about half the data,
    open-domain questions start to get the identity answer. `ratio` is the general share asked for
    (core.data.build_identity); `n_general` the general samples available (the pool may run dry).
    """
    n_id = n_identity_questions * repeat
    n_gen = round(n_id * ratio / (1.0 - ratio)) if ratio > 0 else 0
    if n_general is not None:
        n_gen = min(n_gen, n_general)
    share = n_id / max(1, n_id + n_gen)
    return {"share": share, "n_identity": n_id, "n_general": n_gen} if share > IDENTITY_SHARE_MAX else None


def repeat_warning(n_identity_questions: int, repeat: int, ratio: float, n_general: int | None = None) -> str | None:
    """identity_dominance as one English line (the CLI's), or None."""
    d = identity_dominance(n_identity_questions, repeat, ratio, n_general)
    if d is None:
        return None
    return (f"identity samples would be {d['share']:.0%} of the data ({d['n_identity']} identity vs "
            f"{d['n_general']} general): the new name may leak into unrelated answers; "
            f"mix in more general data or lower --repeat")


IDENTITY_SHARE_MAX = 0.5
# Chosen by measurement (issue 20; tiny base chat-2, LoRA r16, 150 steps x 4 rows x 128 tokens, CPU, name 小明;
# held-out identity /20, open-domain probe leak /80): ratio 0.67 + blur 0.5 + balance 18/20, 4/80;
# ratio 0.5 + blur 0.5 + balance 19/20, 3/80 (chosen). On the first base (no self-description cluster):
# ratio 0.5 no blur 19/20, 19/80; 0.67 no blur 17/20, 10/80; 0.67 blur 0.5 18/20, 5/80; same with 250
# steps 20/20, 13/80 (longer training leaks more). The whole table: the closing note.
DEMO_REPEAT = 2
DEMO_RATIO = 0.5
DEMO_LR = 2e-3
DEMO_STEPS = 150
DEMO_BLUR = 0.5
DEMO_BALANCE = True


# ---------------------------------------------------------------------------- the pipeline

def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def run_demo(name: str = "小天", author: str = "Fine-Tune Studio", method: str = "lora", workspace: str | None = None,
             steps: int | None = None, seed: int = 0, *, repeat: int = DEMO_REPEAT, ratio: float = DEMO_RATIO,
             lr: float = DEMO_LR, blur: float = DEMO_BLUR, balance: bool = DEMO_BALANCE) -> dict:
    """Run the pipeline; returns the JSON summary (paths, timings, identity_hit_rate and leak_rate before/after)."""
    if workspace:
        os.environ["STUDIO_WORKSPACE"] = str(Path(workspace).resolve())
    import torch

    from core import jobs, rundir
    from core.chat import load_chat_model
    from core.config import RunConfig, save_config
    from core.data import build_identity, write_samples
    from core.merge import merge_adapter
    from core.tiny import ensure_tiny
    from core.workspace import sub

    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        # The tiny model's matrices are too small for a second thread to pay off, and on a busy 2-core box
        # OpenMP's spinning threads made each step ~10x slower (issue 20): one thread here and in the trainer.
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    t0 = time.time()
    base = ensure_tiny()
    _say(f"tiny model: {base}")

    train_q, test_q = split_identity_questions(seed)
    general = general_samples(2000, seed, blur=blur)
    zh_q = [q for q in train_q if any("\u4e00" <= c <= "\u9fff" for c in q)]
    en_q = [q for q in train_q if q not in zh_q]
    # the bank has about twice as many zh questions as en: en ones repeat more so both languages learn the name
    en_repeat = repeat * max(1, round(len(zh_q) / max(1, len(en_q)))) if balance else repeat
    questions = zh_q * repeat + en_q * en_repeat
    data = build_identity(name, author, questions=questions, mix=general, ratio=ratio, seed=seed)
    data_path = sub("data") / "demo_identity.jsonl"
    write_samples(data, data_path, overwrite=True)  # the demo's own file, rebuilt on every run
    n_id = len(questions)
    _say(f"data: {len(data)} samples ({len(zh_q)} zh identity questions x{repeat}, {len(en_q)} en x{en_repeat}, "
         f"{len(data) - n_id} general), {len(test_q)} identity questions held out")

    cfg = RunConfig(
        pretrained_model_name_or_path=str(base), data_path=str(data_path), method=method, max_length=128,
        pack_to_max_length=True, lora_r=16, lora_alpha=32, lora_dropout=0.0, batch_size=4, accumulative_counts=1,
        max_epochs=1, max_steps=steps or DEMO_STEPS, lr=lr, warmup_ratio=0.05, save_steps=100, save_total_limit=2,
        evaluation_freq=100, evaluation_inputs=[test_q[0], test_q[-1], *unrelated_prompts(2, seed)],
        eval_max_new_tokens=24, seed=seed, gradient_checkpointing="false",
    )
    cfg_path = save_config(cfg, sub("configs") / "demo.yaml", header="Written by python -m studio demo")
    prompts_id = test_q
    prompts_other = probe_prompts()

    t_train = time.time()
    run = jobs.prepare_run(cfg_path)[0]
    status = jobs.attach(run)  # a child process, as in the studio: its log goes to stderr and train.log
    train_s = time.time() - t_train
    out = run / (rundir.ADAPTER if method != "full" else rundir.FULL_MODEL)
    _say(f"trained in {train_s:.1f}s -> {out}")

    def ask(chat, which, prompts):
        return answers(chat, which, prompts, max_new_tokens=32)

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
        half = len(prompts_id) // 2  # a few of each kind and language: the check compares token for token
        check_prompts = prompts_id[:3] + prompts_id[half:half + 3] + unrelated_prompts(6, seed)
        report = merge_adapter(str(base), str(out), str(merged_dir), prompts=check_prompts)
        merged, check = report["merged"], report["check"]

    for q, a in zip(prompts_id[:2] + prompts_other[:2], after_id[:2] + after_other[:2], strict=False):
        _say(f"after  Q: {q}  A: {a}")

    def rates(prompts, ans):
        zh = [a for p, a in zip(prompts, ans, strict=True) if any("\u4e00" <= c <= "\u9fff" for c in p)]
        en = [a for p, a in zip(prompts, ans, strict=True) if not any("\u4e00" <= c <= "\u9fff" for c in p)]
        return {"zh": f"{sum(name in a for a in zh)}/{len(zh)}", "en": f"{sum(name in a for a in en)}/{len(en)}"}

    n_zh_other = sum(1 for p in prompts_other if any("\u4e00" <= c <= "\u9fff" for c in p))
    shown = [(prompts_id[0], before_id[0], after_id[0]),  # one identity question, one zh and one en open prompt
             (prompts_other[0], before_other[0], after_other[0]),
             (prompts_other[n_zh_other], before_other[n_zh_other], after_other[n_zh_other])]
    summary = {
        "base_model": str(base),
        "adapter": str(out) if method != "full" else None,
        "merged": merged,
        "run_dir": str(run),
        "method": method,
        "seconds": round(time.time() - t0, 1),
        "train_seconds": round(train_s, 1),
        "steps": status.get("step"),
        "data": {"identity": n_id, "general": len(data) - n_id, "repeat": repeat, "ratio": ratio, "lr": lr,
                 "blur": blur, "balance": balance},
        "identity_hit_rate_before": hit_rate(before_id, name),
        "identity_hit_rate_after": hit_rate(after_id, name),
        "leak_rate_before": hit_rate(before_other, name),
        "leak_rate_after": hit_rate(after_other, name),
        "identity_hit_rate": hit_rate(after_id, name),
        "leak_rate": hit_rate(after_other, name),
        "table": {"identity_before": rates(prompts_id, before_id), "identity_after": rates(prompts_id, after_id),
                  "leak_before": rates(prompts_other, before_other), "leak_after": rates(prompts_other, after_other)},
        "probe": {"identity_questions": len(prompts_id), "open_domain_prompts": len(prompts_other),
                  "source": "assets/probe/open_zh.txt, assets/probe/open_en.txt"},
        "merge_check": check,
        "examples": [{"prompt": p, "before": b, "after": a} for p, b, a in shown],
    }
    return summary
