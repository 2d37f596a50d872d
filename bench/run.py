"""GPU benchmarks: the studio's training engine against a naive transformers + peft loop, same run.

Random-weight models of real shapes (nothing is downloaded) are written once to a scratch folder
and loaded by both sides. The engine side goes through the same functions as `studio train`
(core.train.entry.load_model + build_trainer); the baseline is the loop a tutorial would write:
peft LoRA on all linear layers, sdpa, gradient checkpointing, torch AdamW, micro-batch 1, padding.

    python -m studio bench                                  # the default H100 suite (make bench)
    python -m studio bench --cases qwen7b-lora64-s2048 --steps 10 --out bench/results/x.json
    python -m studio bench --list

Prints one JSON line per measurement and writes them all to --out. Figures: tokens/s (non-pad),
MFU (4N + attention FLOPs per token over 989 TFLOP/s bf16 dense), peak memory allocated/reserved,
time to first step, and engine/baseline ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PEAK_FLOPS = 989e12  # H100 SXM bf16 dense

SHAPES = {
    "qwen7b": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                   num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, rope_theta=1e6,
                   tie_word_embeddings=False),
    "llama8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, rope_theta=5e5,
                    tie_word_embeddings=False),
    # InternLM2-1.8B in the Llama layout the studio converts it to
    "internlm2_1_8b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                           num_attention_heads=16, num_key_value_heads=8, vocab_size=92544, rope_theta=1e6,
                           tie_word_embeddings=False),
    "qwen1_5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                     num_attention_heads=12, num_key_value_heads=2, vocab_size=151936, rope_theta=1e6,
                     tie_word_embeddings=True),
}


@dataclass
class Case:
    name: str
    shape: str
    method: str = "lora"  # lora | qlora
    r: int = 64
    seq: int = 2048
    data: str = "packed"  # packed | varlen
    engine_batch: int = 1  # packed rows per micro-batch on the engine side
    engine_ckpt: str = "auto"
    sides: tuple = ("naive", "engine")
    extra: dict = field(default_factory=dict)


CASES = {c.name: c for c in [
    Case("qwen7b-lora64-s2048", "qwen7b", r=64, seq=2048),
    Case("qwen7b-lora16-s2048", "qwen7b", r=16, seq=2048),
    Case("qwen7b-lora64-s4096", "qwen7b", r=64, seq=4096),
    Case("qwen7b-lora64-varlen", "qwen7b", r=64, seq=2048, data="varlen"),
    Case("qwen7b-qlora64-s2048", "qwen7b", method="qlora", r=64, seq=2048, engine_ckpt="true"),
    Case("qwen7b-qlora64-s2048-fast", "qwen7b", method="qlora", r=64, seq=2048, sides=("engine",)),
    Case("internlm2_1_8b-lora64-s2048", "internlm2_1_8b", r=64, seq=2048),
    Case("internlm2_1_8b-lora16-s2048-b4", "internlm2_1_8b", r=16, seq=2048, engine_batch=4, sides=("engine",)),
    Case("llama8b-lora16-s2048", "llama8b", r=16, seq=2048),
]}
DEFAULT_SUITE = ["qwen7b-lora64-s2048", "qwen7b-qlora64-s2048", "internlm2_1_8b-lora64-s2048"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- models and data

def model_folder(shape: str, root: Path) -> Path:
    """A random-weight model of `shape` saved once (bf16 safetensors) plus the tiny tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from core.tiny import build_tokenizer

    out = root / shape
    if (out / "config.json").is_file():
        return out
    spec = dict(SHAPES[shape])
    cfg = AutoConfig.for_model(spec.pop("model_type"), **spec, max_position_embeddings=32768)
    t = time.time()
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, max_shard_size="5GB")
    build_tokenizer().save_pretrained(tmp)  # ids < 1024 are valid in every shape
    os.replace(tmp, out)
    log(f"built random {shape} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f}B) in {time.time() - t:.0f}s")
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return out


def make_samples(case: Case, n_tokens: int, seed: int = 0) -> list[dict]:
    """Synthetic samples: 'packed' = lengths 256..seq/2; 'varlen' = a chat-like mix, 32..seq."""
    rng = random.Random(seed)
    out, total = [], 0
    while total < n_tokens:
        n = rng.randint(256, case.seq // 2) if case.data == "packed" else int(min(case.seq, max(32, rng.lognormvariate(5.5, 0.9))))
        ids = [rng.randrange(4, 1024) for _ in range(n)]
        out.append({"input_ids": ids, "labels": [-100] * (n // 4) + ids[n // 4:]})
        total += n
    return out


def flops_per_token(n_params: int, shape: dict, avg_ctx: float) -> float:
    # forward 2N + backward (input grads only; frozen base) 2N, plus causal attention fwd+bwd
    return 4 * n_params + 6 * shape["num_hidden_layers"] * shape["hidden_size"] * avg_ctx


# ---------------------------------------------------------------------------- the two sides

def run_naive(case: Case, folder: Path, samples: list[dict], steps: int, warmup: int) -> dict:
    """The loop a tutorial would write."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kw: dict = {"dtype": torch.bfloat16, "attn_implementation": "sdpa"}
    if case.method == "qlora":
        from peft import prepare_model_for_kbit_training

        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
        kw["device_map"] = {"": 0}
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(folder, **kw)
    if case.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    else:
        model = model.cuda()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=case.r, lora_alpha=2 * case.r, lora_dropout=0.0,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    # micro-batches: packed data = one full row of `seq` tokens (samples concatenated, no position reset);
    # varlen = 4 samples padded to the longest, as a plain DataCollatorForSeq2Seq would do
    batches = []
    if case.data == "packed":
        flat_ids = [t for s in samples for t in s["input_ids"]]
        flat_lab = [t for s in samples for t in s["labels"]]
        for i in range(0, len(flat_ids) - case.seq + 1, case.seq):
            batches.append((torch.tensor([flat_ids[i:i + case.seq]]), torch.tensor([flat_lab[i:i + case.seq]]), None))
    else:
        for i in range(0, len(samples) - 3, 4):
            group = samples[i:i + 4]
            w = max(len(s["input_ids"]) for s in group)
            ids = torch.tensor([s["input_ids"] + [0] * (w - len(s["input_ids"])) for s in group])
            lab = torch.tensor([s["labels"] + [-100] * (w - len(s["labels"])) for s in group])
            mask = torch.tensor([[1] * len(s["input_ids"]) + [0] * (w - len(s["input_ids"])) for s in group])
            batches.append((ids, lab, mask))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    losses, first_step, tokens, t_start = [], None, 0, None
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            torch.cuda.synchronize()
            t_start, tokens = time.time(), 0
        ids, lab, mask = batches[step % len(batches)]
        out = model(input_ids=ids.cuda(), labels=lab.cuda(), attention_mask=None if mask is None else mask.cuda())
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss))
        tokens += int(ids.numel() if mask is None else mask.sum())
        if first_step is None:
            torch.cuda.synchronize()
            first_step = time.time() - t0
    torch.cuda.synchronize()
    dt = time.time() - t_start
    res = {"tokens_per_s": tokens / dt, "first_step_s": first_step, "losses": losses,
           "peak_alloc_gib": torch.cuda.max_memory_allocated() / 2**30,
           "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30, "gradient_checkpointing": True,
           "liger": False, "micro_batch_tokens": int(batches[0][0].numel())}
    del model, opt
    return res


def run_engine(case: Case, folder: Path, samples: list[dict], steps: int, warmup: int, scratch: Path) -> dict:
    """The studio's own path: load_model + build_trainer (Liger, packing, checkpointing by memory, fused AdamW)."""
    import torch
    from transformers import AutoTokenizer, TrainerCallback

    from core.config import RunConfig
    from core.train.dataset import SFTDataset, pack
    from core.train.entry import build_trainer, load_model

    cfg = RunConfig(pretrained_model_name_or_path=str(folder), data_path="-", method=case.method, lora_r=case.r,
                    lora_alpha=2 * case.r, lora_dropout=0.0, max_length=case.seq, pack_to_max_length=True,
                    batch_size=case.engine_batch, accumulative_counts=1, max_steps=warmup + steps, lr=1e-4,
                    warmup_ratio=0.0, lr_scheduler="constant", save_steps=10**6, evaluation_freq=10**6,
                    evaluation_inputs=[], gradient_checkpointing=case.engine_ckpt, torch_dtype="bfloat16",
                    logging_steps=1)
    tok = AutoTokenizer.from_pretrained(folder)
    t0 = time.time()
    model = load_model(folder, cfg, torch.bfloat16)
    if case.method != "qlora":
        model = model.cuda()
    rows = pack(samples, case.seq, seed=0)
    marks: dict = {"t": [], "loss": []}

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            marks["t"].append(time.time())
            marks.setdefault("tokens", []).append(state.num_input_tokens_seen)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                marks["loss"].append(float(logs["loss"]))

    run_dir = scratch / f"run-{case.name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(cfg, run_dir, model, tok, SFTDataset(rows), dtype=torch.bfloat16, model_path=folder,
                            extra_callbacks=[Timer()])
    trainer.args.disable_tqdm = True
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    trainer.train()
    t, tk = marks["t"], marks["tokens"]
    res = {"tokens_per_s": (tk[-1] - tk[warmup - 1]) / (t[-1] - t[warmup - 1]), "first_step_s": t[0] - t0,
           "losses": marks["loss"], "peak_alloc_gib": torch.cuda.max_memory_allocated() / 2**30,
           "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
           "gradient_checkpointing": bool(trainer.args.gradient_checkpointing), "liger": bool(trainer.args.use_liger_kernel),
           "optim": trainer.args.optim, "micro_batch_tokens": case.engine_batch * case.seq}
    try:
        from core.config.vram import estimate

        est = estimate(cfg.__class__(**{**cfg.to_dict(), "gradient_checkpointing":
                                        "true" if res["gradient_checkpointing"] else "false"}))
        res["vram_estimate_gib"] = est["total_gib"]
        res["vram_estimate_error"] = round(est["total_gib"] / res["peak_alloc_gib"] - 1, 3)
    except Exception as e:  # the estimate is reported beside, never blocks a figure
        res["vram_estimate_error"] = f"{type(e).__name__}: {e}"
    del trainer, model
    return res


# ---------------------------------------------------------------------------- driver

def run_case(case: Case, root: Path, steps: int, warmup: int) -> list[dict]:
    import torch

    folder = model_folder(case.shape, root)
    shape = SHAPES[case.shape]
    samples = make_samples(case, (warmup + steps + 2) * case.seq * max(1, case.engine_batch) + case.seq * 4)
    avg_ctx = sum(len(s["input_ids"]) ** 2 for s in samples) / sum(len(s["input_ids"]) for s in samples) / 2
    from transformers import AutoConfig

    n_params = None
    out = []
    results = {}
    for side in case.sides:
        log(f"{case.name}: {side}")
        try:
            r = run_naive(case, folder, samples, steps, warmup) if side == "naive" else \
                run_engine(case, folder, samples, steps, warmup, root)
        except torch.cuda.OutOfMemoryError as e:
            r = {"error": f"OOM: {str(e)[:200]}"}
        except Exception as e:  # one broken case must not cost the rest of a GPU lease
            import traceback

            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        gc.collect()
        torch.cuda.empty_cache()
        if n_params is None:
            from transformers import AutoModelForCausalLM

            with torch.device("meta"):
                n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).parameters())
        if "tokens_per_s" in r:
            r["mfu"] = r["tokens_per_s"] * flops_per_token(n_params, shape, avg_ctx) / PEAK_FLOPS
        row = {"case": case.name, "side": side, "shape": case.shape, "method": case.method, "r": case.r,
               "seq": case.seq, "data": case.data, "params": n_params, "steps": steps, **r}
        results[side] = row
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "losses"}),
              flush=True)
        out.append(row)
    if "naive" in results and "engine" in results and "tokens_per_s" in results["naive"] and "tokens_per_s" in results["engine"]:
        ratio = results["engine"]["tokens_per_s"] / results["naive"]["tokens_per_s"]
        out.append({"case": case.name, "side": "ratio", "engine_over_naive": ratio})
        print(json.dumps({"case": case.name, "engine_over_naive": round(ratio, 2)}), flush=True)
    return out


def loss_agreement(root: Path, steps: int = 50) -> dict:
    """Same data, same seed, same LoRA init: the engine's loss curve against the baseline's."""
    import torch

    case = Case("agree", "internlm2_1_8b", r=16, seq=1024)
    folder = model_folder(case.shape, root)
    samples = make_samples(case, (steps + 4) * case.seq)
    # both sides see identical rows: the baseline gets the engine's packed rows flattened, one row per step
    from core.train.dataset import pack

    rows = pack(samples, case.seq, seed=0)
    flat = [s for r in rows for s in r]
    torch.manual_seed(0)
    naive = run_naive(Case("agree", case.shape, r=16, seq=case.seq), folder, flat, steps, 0)
    gc.collect()
    torch.cuda.empty_cache()
    torch.manual_seed(0)
    eng = run_engine(Case("agree", case.shape, r=16, seq=case.seq, engine_ckpt="false"), folder, flat, steps, 1, root)
    a = sum(naive["losses"][-10:]) / 10
    b = sum(eng["losses"][-10:]) / 10
    res = {"case": "loss-agreement", "steps": steps, "naive_last10": a, "engine_last10": b,
           "rel_diff": abs(a - b) / a, "naive_losses": naive["losses"], "engine_losses": eng["losses"]}
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("losses")}), flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(DEFAULT_SUITE))
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--scratch", default=os.environ.get("BENCH_SCRATCH", "/tmp/studio-bench"))
    p.add_argument("--out", default=None)
    p.add_argument("--agree", action="store_true", help="also compare loss curves over 50 steps")
    p.add_argument("--list", action="store_true")
    a = p.parse_args(argv)
    if a.list:
        for c in CASES.values():
            print(c.name)
        return 0
    import torch

    if not torch.cuda.is_available():
        print("bench needs a CUDA GPU (figures are GPU figures); nothing run", file=sys.stderr)
        return 1
    root = Path(a.scratch)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    meta = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "time": time.strftime("%Y-%m-%d %H:%M")}
    try:
        import transformers

        meta["transformers"] = transformers.__version__
    except ImportError:
        pass
    for name in [c for c in a.cases.split(",") if c]:
        rows += run_case(CASES[name], root, a.steps, a.warmup)
    if a.agree:
        rows.append(loss_agreement(root))
    if a.out:
        from core.fsio import atomic_write_json

        atomic_write_json(a.out, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
