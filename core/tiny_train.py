"""Pretrain the built-in tiny chat model on the project's own instruction set (the script that made assets/tiny_chat/base).

A full fine-tune from a seeded random init of core.tiny's shape (4 layers, hidden 192, tied
embeddings, 4,096-token tokenizer) on every pair of assets/tiny_chat/*.jsonl, rendered with the
tiny model's ChatML template, loss on the assistant turns only. A quarter of the rows are two
pairs joined as a two-turn chat (so history does not derail it) and some questions lose their final
punctuation (people type "how do I cook rice"). Writes model.safetensors (fp16, lm_head tied so not
stored) next to the tokenizer it trained with.

    python -m core.tiny_train assets/tiny_chat/base                       # the shipped base (GPU: ~1 min)
    python -m core.tiny_train /tmp/base --device cpu --steps 3000         # CPU works too: ~1 h on 2 cores
    python -m core.tiny_train assets/tiny_chat/base --tokenizer           # also re-train tokenizer.json first

The shipped weights were made with the first command on one NVIDIA H200 (seed 0, the defaults
below); a rerun gives the same model up to GPU floating-point nondeterminism.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

PUNCT = "？?。.！!"


# ---------------------------------------------------------------------------- data

def encode_pair(tok, q: str, a: str) -> tuple[list[int], list[int]]:
    """(ids, labels) of one user/assistant exchange in ChatML; labels -100 outside the answer."""
    prompt = tok.encode(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n").ids
    answer = tok.encode(f"{a}<|im_end|>").ids
    nl = tok.encode("\n").ids
    return prompt + answer + nl, [-100] * len(prompt) + answer + [-100] * len(nl)


def make_row(encoded: list[tuple[list[int], list[int], int, int]], rng: random.Random, vocab: int,
             noise: float) -> tuple[list[int], list[int]]:
    """One training row: one or two encoded exchanges; with probability `noise` a question is blurred.

    Blurring drops or swaps some of the question's tokens (never the template's), so a question the
    model has not seen still leads into one whole, fluent answer instead of a mix of several.
    """
    turns = 2 if rng.random() < 0.25 else 1
    ids: list[int] = []
    labels: list[int] = []
    for i, lab, q_start, q_end in rng.sample(encoded, turns):
        q = i[q_start:q_end]  # after "<|im_start|>user\n"
        if rng.random() < noise and len(q) > 2:
            rate = rng.uniform(0.1, 0.5)
            q = [t if rng.random() > 0.2 else rng.randrange(4, vocab) for t in q if rng.random() > rate] or q[:1]
            i = i[:q_start] + q + i[q_end:]
            lab = lab[:q_start] + [-100] * len(q) + lab[q_end:]
        ids += i
        labels += lab
    return ids, labels


def encode_all(tok, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int], int, int]]:
    """Each pair (and its question without final punctuation) as (ids, labels, question start, end)."""
    out = []
    head = len(tok.encode("<|im_start|>user\n").ids)
    for q, a in pairs:
        for qq in {q, q.rstrip(PUNCT) or q}:
            ids, labels = encode_pair(tok, qq, a)
            q_end = head + len(tok.encode(qq).ids)
            out.append((ids, labels, head, q_end))
    return out


# ---------------------------------------------------------------------------- training

def train(out: Path, *, steps: int = 3000, batch: int = 64, lr: float = 3e-3, warmup: int = 100,
          noise: float = 0.8, seed: int = 0, device: str = "cuda") -> dict:
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

    from core.tiny import build_model_config, instruction_pairs

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    pad = tok.token_to_id("<|endoftext|>")
    pairs = instruction_pairs("all")
    encoded = encode_all(tok, pairs)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    cfg = build_model_config(tok.get_vocab_size())
    model = LlamaForCausalLM(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[tiny_train] {len(pairs)} pairs, {n_params / 1e6:.2f}M parameters, {steps} steps x {batch} rows on {device}",
          file=sys.stderr)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:  # linear warmup, cosine down to a tenth
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    t0 = time.time()
    model.train()
    for step in range(steps):
        rows = [make_row(encoded, rng, tok.get_vocab_size(), noise) for _ in range(batch)]
        width = max(len(i) for i, _ in rows)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in rows], device=device)
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows], device=device)
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in rows], device=device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 250 == 0 or step == steps - 1:
            print(f"[tiny_train] step {step} loss {loss.item():.4f} lr {lr_at(step):.2e} {time.time() - t0:.0f}s",
                  file=sys.stderr, flush=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous()
             for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    return {"params": n_params, "seconds": round(time.time() - t0, 1), "final_loss": round(loss.item(), 4)}


def evaluate(out: Path, prompts: list[str], device: str = "cpu", max_new_tokens: int = 48) -> dict:
    """Greedy answers of the model in `out` to `prompts`: how many are one whole answer of the
    instruction set, how many keep the prompt's language, how many hold U+FFFD."""
    import re

    import torch
    from safetensors.torch import load_file
    from transformers import LlamaForCausalLM

    from core.tiny import build_model_config, build_tokenizer, instruction_pairs

    tok = build_tokenizer(out / "tokenizer.json")
    model = LlamaForCausalLM(build_model_config(len(tok)))
    model.load_state_dict({k: v.float() for k, v in load_file(str(out / "model.safetensors")).items()}, strict=False)
    model.tie_weights()
    model.to(device).eval()
    known = {a for _, a in instruction_pairs("all")}
    zh = re.compile(r"[\u4e00-\u9fff]")
    rows = []
    for p in prompts:
        enc = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True).to(device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
        a = tok.decode(gen[0][enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        rows.append({"prompt": p, "answer": a, "whole": a in known,
                     "same_lang": bool(zh.search(p)) == bool(zh.search(a)), "fffd": "\ufffd" in a})
    n = max(1, len(rows))
    return {"whole": sum(r["whole"] for r in rows) / n, "same_lang": sum(r["same_lang"] for r in rows) / n,
            "fffd": sum(r["fffd"] for r in rows), "rows": rows}


# ---------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.tiny_train", description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder holding tokenizer.json; model.safetensors is written there")
    ap.add_argument("--tokenizer", action="store_true", help="train tokenizer.json first (core.tiny.train_tokenizer)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.8, help="share of rows whose question is blurred")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--eval", metavar="PROMPTS", help="only evaluate the model in OUT on a prompts file (one a line)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.eval:
        import json

        lines = Path(args.eval).read_text(encoding="utf-8").splitlines()
        res = evaluate(out, [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")], args.device)
        print(json.dumps(res, ensure_ascii=False, indent=1))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    if args.tokenizer or not (out / "tokenizer.json").is_file():
        from core.tiny import train_tokenizer

        train_tokenizer().save(str(out / "tokenizer.json"))
    print(train(out, steps=args.steps, batch=args.batch, lr=args.lr, noise=args.noise, seed=args.seed,
                device=args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
