"""The honest probe: does a fine-tuned model give its new name when asked who it is, and only then?

identity_hit_rate: the share of held-out identity questions (question-bank paraphrases never trained
on, see split_identity_questions) whose answer contains the name. leak_rate: the share of
open-domain prompts whose answer contains it; the prompts are the curated set in assets/probe/
(open_zh.txt, open_en.txt), written independently of every training set in the studio, so a model
that answers everything with its identity cannot hide behind prompts shaped like its general data.

    python -m studio probe tiny --adapter workspace/runs/<run_id>/adapter --name 小天 [--json]
    from core.probe import run_probe; run_probe("tiny", adapter="...", name="小天")
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

PROBE_DIR = Path(__file__).resolve().parents[1] / "assets" / "probe"


def probe_prompts(lang: str = "both") -> list[str]:
    """The open-domain probe prompts: lang "zh", "en" or "both" (zh first)."""
    if lang not in ("zh", "en", "both"):
        raise ValueError(f"lang must be 'zh', 'en' or 'both', got {lang!r}")
    out: list[str] = []
    for lg in (["zh", "en"] if lang == "both" else [lang]):
        lines = (PROBE_DIR / f"open_{lg}.txt").read_text(encoding="utf-8").splitlines()
        out += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    return out


def split_identity_questions(seed: int = 0, held_out_per_lang: int = 10) -> tuple[list[str], list[str]]:
    """(training questions, held-out questions) of the question banks; the held-out ones are never trained on."""
    from core.data import question_bank

    train, test = [], []
    for lang in ("zh", "en"):
        qs = list(question_bank(lang))
        random.Random(seed).shuffle(qs)
        test += qs[:held_out_per_lang]
        train += qs[held_out_per_lang:]
    return train, test


def hit_rate(answers: list[str], name: str) -> float:
    """Share of answers that contain `name`."""
    return sum(name in a for a in answers) / max(1, len(answers))


# The core phrases of core.data.identity.CORE, read back: what name was a data file built for?
_NAME_RES = [re.compile(r"我是(.{1,40}?)，由.{1,80}?打造的智能助手"),
             re.compile(r"I am (.{1,40}?), an AI assistant built by ")]


def identity_name_of(data_path: str | Path, limit: int = 5000) -> str | None:
    """The identity name a data file teaches (the commonest one in its answers), or None."""
    from core.data import read_samples

    names: Counter = Counter()
    try:
        for i, s in enumerate(read_samples(str(data_path))):
            if i >= limit:
                break
            for m in s.get("messages", []):
                if m.get("role") == "assistant" and isinstance(m.get("content"), str):
                    for rx in _NAME_RES:
                        names.update(rx.findall(m["content"]))
    except Exception:  # an unreadable file just has no default name; the data page reports its errors
        return None
    return names.most_common(1)[0][0] if names else None


def run_identity_name(path: str | Path) -> str | None:
    """The identity name of the run a model folder belongs to (an adapter, a checkpoint or the run
    folder itself): read back from the data its config.yaml trained on. None when there is no run."""
    import yaml

    p = Path(path)
    for folder in [p, *list(p.parents)[:3]]:
        cfg = folder / "config.yaml"
        if cfg.is_file() and (folder / "status.json").is_file():
            try:
                data = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("data_path")
            except (OSError, yaml.YAMLError):
                return None
            return identity_name_of(data) if data and Path(data).is_file() else None
    return None


def answers(chat, which: str | None, prompts: list[str], *, max_new_tokens: int = 32, batch: int = 16) -> list[str]:
    """Greedy answers to single-turn `prompts`, several prompts per generate() call (left padding)."""
    import torch

    from core.chat import _adapter_context, _gen_kwargs  # the same adapter switch and stop tokens as the chat

    tok = chat.tokenizer
    side = tok.padding_side
    tok.padding_side = "left"
    kw = _gen_kwargs(tok, chat.stop_ids, max_new_tokens, 0, 1.0, 0, 1.0)
    out: list[str] = []
    try:
        for i in range(0, len(prompts), batch):
            texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                             add_generation_prompt=True) for p in prompts[i:i + batch]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(chat.model.device)
            with _adapter_context(chat, which), torch.no_grad():
                gen = chat.model.generate(**enc, **kw, use_cache=True)
            for row in gen[:, enc["input_ids"].shape[1]:]:
                out.append(tok.decode(row, skip_special_tokens=True).replace("\ufffd", "").strip())
    finally:
        tok.padding_side = side
    return out


def probe_chat(chat, which: str | None, name: str, identity: list[str] | None = None,
               unrelated: list[str] | None = None, max_new_tokens: int = 32) -> dict:
    """Both rates (and per language) for one loaded model / adapter, with every answer."""
    identity = identity if identity is not None else split_identity_questions()[1]
    unrelated = unrelated if unrelated is not None else probe_prompts()
    id_ans = answers(chat, which, identity, max_new_tokens=max_new_tokens)
    other_ans = answers(chat, which, unrelated, max_new_tokens=max_new_tokens)
    zh = re.compile(r"[\u4e00-\u9fff]")

    def by_lang(prompts, ans):
        rows = {"zh": [a for p, a in zip(prompts, ans, strict=True) if zh.search(p)],
                "en": [a for p, a in zip(prompts, ans, strict=True) if not zh.search(p)]}
        return {lg: f"{sum(name in a for a in r)}/{len(r)}" for lg, r in rows.items()}

    return {
        "name": name,
        "identity_hit_rate": hit_rate(id_ans, name),
        "leak_rate": hit_rate(other_ans, name),
        "identity_hits": by_lang(identity, id_ans),
        "leaks": by_lang(unrelated, other_ans),
        "identity": [{"prompt": p, "answer": a} for p, a in zip(identity, id_ans, strict=True)],
        "unrelated": [{"prompt": p, "answer": a} for p, a in zip(unrelated, other_ans, strict=True)],
    }


def run_probe(model: str, adapter: str | None = None, *, name: str, identity: list[str] | None = None,
              unrelated: list[str] | None = None, max_new_tokens: int = 32, trust_remote_code: bool = False) -> dict:
    """Load `model` (+ `adapter`) and probe it; see probe_chat."""
    from core.chat import load_chat_model

    if not name.strip():
        raise ValueError("name must not be empty: the identity name to look for in the answers")
    chat = load_chat_model(model, {"probed": adapter} if adapter else None, trust_remote_code=trust_remote_code)
    res = probe_chat(chat, "probed" if adapter else None, name, identity, unrelated, max_new_tokens)
    return {"model": model, "adapter": adapter, **res}
