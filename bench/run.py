"""GPU benchmarks: the studio's training engine against a naive transformers + peft loop, same run.

Random-weight models of real shapes (nothing is downloaded) are written once to a scratch folder
and loaded by both sides. The engine side goes through the same functions as `studio train`
(core.train.entry.load_model + build_trainer); the baseline is the loop a tutorial would write:
peft LoRA on all linear layers, sdpa, gradient checkpointing, torch AdamW, micro-batch 1, padding.

    python -m studio bench                                  # the default H100 suite (make bench)
    python -m studio bench --cases qwen7b-lora64-s2048 --steps 10 --out bench/results/x.json
    python -m studio bench --list
    python -m studio bench --cases qwen7b-lora64-s2048 --sides engine --profile --sync-check   # where time goes

Prints one JSON line per measurement and writes them all to --out. Figures: tokens/s (non-pad),
MFU (4N + attention FLOPs per token over 989 TFLOP/s bf16 dense), peak memory allocated/reserved,
time to first step, per-step GPU times (CUDA events, no sync per step), and engine/baseline ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import random
import shutil
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
    # CPU smoke of the bench code itself (tests); figures from it mean nothing
    "tiny": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=4096, rope_theta=1e4,
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
    engine_batch: int = 1  # packed rows per optimizer step on the engine side (it splits them as memory allows)
    engine_ckpt: str = "auto"
    sides: tuple = ("naive", "engine")
    extra: dict = field(default_factory=dict)  # RunConfig overrides on the engine side


CASES = {c.name: c for c in [
    Case("qwen7b-lora64-s2048", "qwen7b", r=64, seq=2048, engine_batch=4),
    Case("qwen7b-lora64-s2048-fp8", "qwen7b", r=64, seq=2048, engine_batch=4, sides=("engine",),
         extra={"fp8_base": True}),
    Case("qwen7b-lora16-s2048", "qwen7b", r=16, seq=2048, engine_batch=4),
    Case("qwen7b-lora64-s4096", "qwen7b", r=64, seq=4096, engine_batch=2),
    Case("qwen7b-lora64-varlen", "qwen7b", r=64, seq=2048, data="varlen", engine_batch=4),
    # the 8 GiB QLoRA: checkpointed layer inputs in CPU RAM, 8-bit AdamW (not paged: its states stay in what
    # max_memory_allocated counts), 4 packed rows per optimizer step in passes of 2
    Case("qwen7b-qlora64-s2048", "qwen7b", method="qlora", r=64, seq=2048, engine_batch=4, engine_ckpt="offload",
         extra={"micro_batch_size": 2, "optim": "adamw_8bit"}),
    Case("qwen7b-qlora64-s2048-ckpt", "qwen7b", method="qlora", r=64, seq=2048, engine_ckpt="true",
         sides=("engine",)),
    Case("qwen7b-qlora64-s2048-8bit", "qwen7b", method="qlora", r=64, seq=2048, engine_ckpt="true",
         sides=("engine",), extra={"optim": "paged_adamw_8bit"}),
    Case("qwen7b-qlora64-s2048-fast", "qwen7b", method="qlora", r=64, seq=2048, engine_batch=4, sides=("engine",)),
    Case("internlm2_1_8b-lora64-s2048", "internlm2_1_8b", r=64, seq=2048, engine_batch=8),
    Case("internlm2_1_8b-lora64-s2048-fp8", "internlm2_1_8b", r=64, seq=2048, engine_batch=8, sides=("engine",),
         extra={"fp8_base": True}),
    Case("internlm2_1_8b-qlora64-s2048", "internlm2_1_8b", method="qlora", r=64, seq=2048, engine_batch=8,
         sides=("engine",)),
    Case("llama8b-lora16-s2048", "llama8b", r=16, seq=2048, engine_batch=4),
    Case("tiny-lora8-s256", "tiny", r=8, seq=256, engine_batch=2),
]}
# not training cases: merge / chat speed on the 7B shape, LLaVA stage 2 QLoRA
OTHER = ["merge-qwen7b", "chat-qwen7b", "llava-qlora-1_8b", "merge-tiny", "chat-tiny"]
DEFAULT_SUITE = ["qwen7b-lora64-s2048", "qwen7b-qlora64-s2048", "internlm2_1_8b-lora64-s2048"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _dev() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peaks() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"peak_alloc_gib": 0.0, "peak_reserved_gib": 0.0}
    return {"peak_alloc_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
    with torch.device(_dev()):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        if shape == "tiny":
            model.float()
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, max_shard_size="5GB")
    build_tokenizer().save_pretrained(tmp)  # its 4,096 ids are valid in every shape
    os.replace(tmp, out)
    log(f"built random {shape} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f}B) in {time.time() - t:.0f}s")
    del model
    _free()
    return out


def make_samples(case: Case, n_tokens: int, seed: int = 0) -> list[dict]:
    """Synthetic samples: 'packed' = lengths 256..seq/2; 'varlen' = a chat-like mix, 32..seq."""
    rng = random.Random(seed)
    out, total = [], 0
    while total < n_tokens:
        n = rng.randint(min(256, case.seq // 4), case.seq // 2) if case.data == "packed" else int(min(case.seq, max(32, rng.lognormvariate(5.5, 0.9))))
        ids = [rng.randrange(4, 1024) for _ in range(n)]
        out.append({"input_ids": ids, "labels": [-100] * (n // 4) + ids[n // 4:]})
        total += n
    return out


def flops_per_token(n_params: int, shape: dict, avg_ctx: float) -> float:
    # forward 2N + backward (input grads only; frozen base) 2N, plus causal attention fwd+bwd
    return 4 * n_params + 6 * shape["num_hidden_layers"] * shape["hidden_size"] * avg_ctx


# ---------------------------------------------------------------------------- the two sides

def _naive_batches(case: Case, samples: list[dict], with_positions: bool):
    """Micro-batches of the naive loop. packed: rows of `seq` tokens, samples run together (no position reset)
    unless with_positions; varlen: 4 samples padded to the longest, as DataCollatorForSeq2Seq would."""
    import torch

    batches = []
    if with_positions:  # the agreement check: exactly the engine's packed rows, one per step
        from core.train.dataset import Collator

        collate = Collator(pad_token_id=0, packed=True)
        for row in samples:
            b = collate([row])
            batches.append((b["input_ids"], b["labels"], None, b["position_ids"]))
    elif case.data == "packed":
        flat_ids = [t for s in samples for t in s["input_ids"]]
        flat_lab = [t for s in samples for t in s["labels"]]
        for i in range(0, len(flat_ids) - case.seq + 1, case.seq):
            batches.append((torch.tensor([flat_ids[i:i + case.seq]]), torch.tensor([flat_lab[i:i + case.seq]]),
                            None, None))
    else:
        for i in range(0, len(samples) - 3, 4):
            group = samples[i:i + 4]
            w = max(len(s["input_ids"]) for s in group)
            ids = torch.tensor([s["input_ids"] + [0] * (w - len(s["input_ids"])) for s in group])
            lab = torch.tensor([s["labels"] + [-100] * (w - len(s["labels"])) for s in group])
            mask = torch.tensor([[1] * len(s["input_ids"]) + [0] * (w - len(s["input_ids"])) for s in group])
            batches.append((ids, lab, mask, None))
    return batches


def run_naive(case: Case, folder: Path, samples, steps: int, warmup: int, *, lr: float = 1e-4,
              with_positions: bool = False, checkpointing: bool = True, autocast: bool = False) -> dict:
    """The loop a tutorial would write: a bf16 model, peft LoRA (its default fp32 adapters), sdpa, gradient
    checkpointing, torch AdamW, micro-batch 1. autocast=True is the same loop under torch.autocast, a
    stronger baseline (side "naive_autocast")."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dev = _dev()
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    kw: dict = {"dtype": dtype, "attn_implementation": "sdpa"}
    if case.method == "qlora":
        from peft import prepare_model_for_kbit_training

        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
        kw["device_map"] = {"": 0}
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(folder, **kw)
    if case.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    else:
        model = model.to(dev)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=case.r, lora_alpha=2 * case.r, lora_dropout=0.0,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    batches = _naive_batches(case, samples, with_positions)
    _reset_peak()
    losses, first_step, tokens, t_start = [], None, 0, time.time()
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            _sync()
            t_start, tokens = time.time(), 0
        ids, lab, mask, pos = batches[step % len(batches)]
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast and dev == "cuda"):
            out = model(input_ids=ids.to(dev), labels=lab.to(dev),
                        attention_mask=None if mask is None else mask.to(dev),
                        position_ids=None if pos is None else pos.to(dev))
        out.loss.backward()
        if with_positions:  # the engine clips at max_norm 1.0; the agreement check must do the same maths
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss))
        tokens += int(ids.numel() if mask is None else mask.sum())
        if first_step is None:
            _sync()
            first_step = time.time() - t0
    _sync()
    dt = time.time() - t_start
    res = {"tokens_per_s": tokens / dt, "first_step_s": first_step, "losses": losses, **_peaks(),
           "gradient_checkpointing": checkpointing, "liger": False, "attention": "sdpa", "autocast": autocast,
           "micro_batch_tokens": int(batches[0][0].numel())}
    del model, opt
    return res


KERNEL_KINDS = [  # first match wins; names are the CUDA kernels' own
    ("attention", ("flash", "fmha", "attention")),
    ("gemm", ("nvjet", "gemm", "cutlass", "sm90_xmma", "ampere_", "cublas", "_scaled_mm")),
    ("triton", ("triton", "liger", "_kernel_")),
    ("optimizer", ("multi_tensor", "adam", "fused_adam")),
    ("copy/cast", ("copy", "memcpy", "memset", "cat_", "catarray")),
    ("reduce", ("reduce", "sum_", "norm")),
    ("elementwise", ("elementwise", "vectorized", "unrolled")),
]


def _kind(name: str) -> str:
    low = name.lower()
    for kind, keys in KERNEL_KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


def _profile_table(prof, n: int = 25) -> list[dict]:
    """GPU time by kernel kind, the GPU-busy share (kernel intervals merged, over the profiled wall time) and
    the top kernels: what a missed speed target is explained with."""
    from torch.autograd import DeviceType

    # ProfilerStep* is the profiler's own range drawn on the GPU timeline, not a kernel
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA and e.time_range.elapsed_us() > 0
               and not e.name.startswith("ProfilerStep")]
    if not kernels:
        return []
    kernels.sort(key=lambda e: e.time_range.start)
    spans = [(e.time_range.start, e.time_range.end) for e in kernels]
    busy, cur_s, cur_e = 0, spans[0][0], spans[0][1]
    gaps = []  # (idle us, index of the kernel after the gap): where the GPU waited on the host
    for i, (s, e) in enumerate(spans[1:], 1):
        if s > cur_e:
            busy += cur_e - cur_s
            gaps.append((s - cur_e, i))
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    wall = spans[-1][1] - spans[0][0]
    total = sum(e.time_range.elapsed_us() for e in kernels)
    kinds: dict[str, float] = {}
    per_name: dict[str, list] = {}
    for e in kernels:
        us, kind = e.time_range.elapsed_us(), _kind(e.name)
        kinds[kind] = kinds.get(kind, 0) + us
        acc = per_name.setdefault(e.name, [0.0, 0])
        acc[0] += us
        acc[1] += 1
    rows = [{"profile": "summary", "wall_ms": round(wall / 1e3, 1), "kernel_ms": round(total / 1e3, 1),
             "gpu_busy_share": round(busy / wall, 3)}]
    rows += [{"kind": k, "ms": round(v / 1e3, 1), "share": round(v / total, 3)}
             for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])]
    gaps.sort(reverse=True)
    rows.append({"idle_ms_in_gaps_over_1ms": round(sum(g for g, _ in gaps if g > 1000) / 1e3, 1),
                 "idle_ms_in_gaps_under_1ms": round(sum(g for g, _ in gaps if g <= 1000) / 1e3, 1),
                 "gaps": len(gaps)})
    host = [e for e in prof.events() if e.device_type != DeviceType.CUDA and not e.name.startswith("ProfilerStep")]
    for g, i in gaps[:10]:
        row = {"gap_ms": round(g / 1e3, 2), "before": kernels[i - 1].name[:60], "after": kernels[i].name[:60]}
        if g > 1000:  # what the host was doing while the GPU waited: the ops overlapping the gap the most
            lo, hi = spans[i][0] - g, spans[i][0]
            over = sorted(((min(hi, e.time_range.end) - max(lo, e.time_range.start), e) for e in host
                           if e.time_range.start < hi and e.time_range.end > lo), key=lambda t: -t[0])
            row["host"] = [f"{e.name[:50]} ({ov / 1e3:.1f}/{e.time_range.elapsed_us() / 1e3:.1f} ms)"
                           for ov, e in over[:8]]
        rows.append(row)
    for name, (us, calls) in sorted(per_name.items(), key=lambda kv: -kv[1][0])[:n]:
        rows.append({"kernel": name[:90], "kind": _kind(name), "ms": round(us / 1e3, 2),
                     "share": round(us / total, 3), "calls": calls})
    return rows


def run_engine(case: Case, folder: Path, samples: list[dict], steps: int, warmup: int, scratch: Path, *,
               overrides: dict | None = None, rows: list | None = None, profile: bool = False,
               sync_check: bool = False) -> dict:
    """The studio's own path: load_model + build_trainer (varlen attention, Liger, micro-batches, fused AdamW)."""
    import torch
    from transformers import AutoTokenizer, TrainerCallback

    from core.config import RunConfig
    from core.train.dataset import SFTDataset, pack
    from core.train.entry import build_trainer, load_model

    dev = _dev()
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    settings = dict(pretrained_model_name_or_path=str(folder), data_path="-", method=case.method, lora_r=case.r,
                    lora_alpha=2 * case.r, lora_dropout=0.0, max_length=case.seq, pack_to_max_length=True,
                    batch_size=1, accumulative_counts=case.engine_batch, max_steps=warmup + steps, lr=1e-4,
                    warmup_ratio=0.0, lr_scheduler="constant", save_steps=10**6, evaluation_freq=10**6,
                    evaluation_inputs=[], gradient_checkpointing=case.engine_ckpt,
                    torch_dtype="bfloat16" if dev == "cuda" else "float32", logging_steps=1)
    settings.update(case.extra)
    settings.update(overrides or {})
    if int(settings.get("dataloader_num_workers", 0)):
        raise ValueError("the bench counts tokens in the collator, in this process: keep dataloader_num_workers at 0")
    cfg = RunConfig(**settings)
    tok = AutoTokenizer.from_pretrained(folder)
    t0 = time.time()
    model = load_model(folder, cfg, dtype)
    if case.method != "qlora":
        model = model.to(dev)
    rows = rows if rows is not None else pack(samples, case.seq, seed=0)
    losses: list[float] = []
    gc_time = {0: 0.0, 1: 0.0, 2: 0.0}
    gc_start: list = []

    def on_gc(phase: str, info: dict) -> None:  # time spent in each GC generation from the first step on
        if phase == "start" and ends:
            gc_start[:] = [time.perf_counter()]
        elif gc_start:
            gc_time[info["generation"]] += time.perf_counter() - gc_start[0]

    prof = None
    if profile and dev == "cuda":
        from torch.profiler import ProfilerActivity, schedule

        prof = torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                                      schedule=schedule(wait=max(0, warmup - 1), warmup=1, active=2, repeat=1))

    w = max(warmup, 1)
    ends: dict[int, float] = {}  # wall clock at the ends of step 1, step w and the last step, each after a sync
    events: list = []  # a CUDA event per step end: per-step GPU times without a sync per step

    syncs: dict[str, int] = {}
    checking: list = []  # [warnings.catch_warnings()] while the sync check is on

    def check_syncs(on: bool) -> None:
        import traceback
        import warnings

        if on:
            checking.append(warnings.catch_warnings())
            checking[0].__enter__()
            warnings.simplefilter("always")

            def record(message, category, filename, lineno, file=None, line=None):
                frames = [f for f in traceback.extract_stack()[:-1]
                          if "/torch/" not in f.filename and "warnings" not in f.filename]
                site = f"{'/'.join(frames[-1].filename.split('/')[-2:])}:{frames[-1].lineno} {frames[-1].name}" \
                    if frames else f"{filename}:{lineno}"
                syncs[site] = syncs.get(site, 0) + 1

            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")
        elif checking:
            torch.cuda.set_sync_debug_mode("default")
            checking.pop().__exit__(None, None, None)

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if sync_check and dev == "cuda" and state.global_step == w:
                check_syncs(True)

        def on_step_end(self, args, state, control, **kw):
            if sync_check and state.global_step == w + 2:
                check_syncs(False)
            if state.global_step in (1, w) or control.should_training_stop:  # the flow callback ran first
                _sync()
                ends[state.global_step] = time.time()
            if dev == "cuda":
                events.append(torch.cuda.Event(enable_timing=True))
                events[-1].record()
            else:
                events.append(time.time())
            if prof is not None:
                prof.step()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    run_dir = scratch / f"run-{case.name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(cfg, run_dir, model, tok, SFTDataset(rows), dtype=dtype, model_path=folder,
                            extra_callbacks=[Timer()])
    trainer.args.disable_tqdm = True
    batch_tokens: list[int] = []  # non-pad tokens of each micro-batch, counted on the CPU as the collator builds it
    collate = trainer.data_collator

    def counting_collate(batch_rows):
        batch_tokens.append(sum(len(s["input_ids"]) for row in batch_rows for s in row))
        return collate(batch_rows)

    trainer.data_collator = counting_collate
    _reset_peak()
    if prof is not None:
        prof.start()
    gc.callbacks.append(on_gc)
    try:
        trainer.train()
    finally:
        gc.callbacks.remove(on_gc)
        check_syncs(False)
    if prof is not None:
        prof.stop()
    _sync()
    accum = trainer.args.gradient_accumulation_steps
    last = max(ends)
    if dev == "cuda":
        step_s = [a.elapsed_time(b) / 1e3 for a, b in zip(events, events[1:], strict=False)]
    else:
        step_s = [b - a for a, b in zip(events, events[1:], strict=False)]
    res = {"tokens_per_s": sum(batch_tokens[w * accum:last * accum]) / (ends[last] - ends[w]),
           "first_step_s": ends[1] - t0, "losses": losses, **_peaks(),
           "step_s": [round(x, 3) for x in step_s], "gc_s": {k: round(v, 3) for k, v in gc_time.items()},
           "alloc_retries": torch.cuda.memory_stats().get("num_alloc_retries", 0) if dev == "cuda" else 0,
           # offload sets its layers up itself, with the Trainer's own checkpointing off
           "gradient_checkpointing": bool(trainer.args.gradient_checkpointing) or cfg.gradient_checkpointing == "offload",
           "checkpointing_mode": cfg.gradient_checkpointing,
           "liger": bool(trainer.args.use_liger_kernel), "attention": model.config._attn_implementation,
           "optim": str(getattr(trainer.args.optim, "value", trainer.args.optim)),
           "micro_batch": trainer.args.per_device_train_batch_size,
           "accumulation": accum,
           "micro_batch_tokens": trainer.args.per_device_train_batch_size * case.seq, "overrides": overrides or {}}
    if sync_check:
        res["host_syncs_in_2_steps"] = dict(sorted(syncs.items(), key=lambda kv: -kv[1]))
    if prof is not None:
        res["profile"] = _profile_table(prof)
    try:
        import dataclasses

        from core.config.vram import estimate

        est = estimate(dataclasses.replace(cfg, batch_size=res["micro_batch"], accumulative_counts=res["accumulation"],
                                           gradient_checkpointing=("offload" if cfg.gradient_checkpointing == "offload"
                                                                   else "true" if res["gradient_checkpointing"]
                                                                   else "false")),
                       fused_loss=res["liger"])
        res["vram_estimate_gib"] = est["total_gib"]
        if res["peak_alloc_gib"]:
            res["vram_estimate_error"] = round(est["total_gib"] / res["peak_alloc_gib"] - 1, 3)
    except Exception as e:  # the estimate is reported beside, never blocks a figure
        res["vram_estimate_error"] = f"{type(e).__name__}: {e}"
    del trainer, model
    return res


# ---------------------------------------------------------------------------- driver

def _row_out(row: dict) -> None:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                      if k not in ("losses", "profile")}), flush=True)
    for line in row.get("profile", []):
        print("  profile " + json.dumps(line), flush=True)


def n_params_of(folder: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).parameters())


def run_case(case: Case, root: Path, steps: int, warmup: int, overrides: dict | None = None,
             profile: bool = False, sync_check: bool = False) -> list[dict]:
    import torch

    folder = model_folder(case.shape, root)
    shape = SHAPES[case.shape]
    samples = make_samples(case, (warmup + steps + 2) * case.seq * max(1, case.engine_batch) + case.seq * 4)
    avg_ctx = sum(len(s["input_ids"]) ** 2 for s in samples) / sum(len(s["input_ids"]) for s in samples) / 2
    n_params = n_params_of(folder)
    out, results = [], {}
    name = case.name + "".join(f"+{k}={v}" for k, v in (overrides or {}).items())
    for side in case.sides:
        log(f"{name}: {side}")
        try:
            if side.startswith("naive"):
                r = run_naive(case, folder, samples, steps, warmup, autocast=side == "naive_autocast")
            else:
                r = run_engine(case, folder, samples, steps, warmup, root, overrides=overrides, profile=profile,
                               sync_check=sync_check)
        except torch.cuda.OutOfMemoryError as e:
            r = {"error": f"OOM: {str(e)[:200]}"}
        except Exception as e:  # one broken case must not cost the rest of a GPU lease
            import traceback

            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        _free()
        if "tokens_per_s" in r:
            r["mfu"] = r["tokens_per_s"] * flops_per_token(n_params, shape, avg_ctx) / PEAK_FLOPS
        row = {"case": name, "side": side, "shape": case.shape, "method": case.method, "r": case.r,
               "seq": case.seq, "data": case.data, "params": n_params, "steps": steps, **r}
        results[side] = row
        _row_out(row)
        out.append(row)
    if "tokens_per_s" in results.get("naive", {}) and "tokens_per_s" in results.get("engine", {}):
        ratio = results["engine"]["tokens_per_s"] / results["naive"]["tokens_per_s"]
        row = {"case": name, "side": "ratio", "engine_over_naive": ratio}
        if "tokens_per_s" in results.get("naive_autocast", {}):
            row["engine_over_naive_autocast"] = results["engine"]["tokens_per_s"] / results["naive_autocast"]["tokens_per_s"]
        out.append(row)
        print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return out


def loss_agreement(root: Path, steps: int = 50, shape: str = "internlm2_1_8b", seq: int = 1024,
                   overrides: dict | None = None) -> dict:
    """Same rows, same order, same seed, same LoRA init: the engine's loss curve against the plain loop's.

    The data is learnable (each sample repeats a motif), so the curves fall and a changed result
    shows. The plain loop gets the engine's packed rows with their position ids, one row per step.
    """
    import torch

    from core.train.dataset import pack

    case = Case("agree", shape, r=16, seq=seq)
    folder = model_folder(shape, root)
    rng = random.Random(1)
    motifs = [[rng.randrange(4, 1024) for _ in range(8)] for _ in range(32)]
    samples, total = [], 0
    while total < (steps + 2) * seq:
        n = rng.randint(seq // 8, seq // 2)
        ids = (rng.choice(motifs) * (n // 8 + 1))[:n]
        samples.append({"input_ids": ids, "labels": list(ids)})
        total += n
    rows = pack(samples, seq, seed=0)[:steps]
    lr = 1e-3
    torch.manual_seed(0)
    naive = run_naive(case, folder, rows, steps, 0, lr=lr, with_positions=True, checkpointing=False, autocast=True)
    _free()
    torch.manual_seed(0)
    eng = run_engine(case, folder, [], steps, 1, root, rows=rows,
                     overrides={"gradient_checkpointing": "false", "lr": lr, "shuffle": False, "seed": 0,
                                "max_steps": steps, "accumulative_counts": 1, **(overrides or {})})
    _free()
    a, b = naive["losses"], eng["losses"]
    res = {"case": "loss-agreement", "shape": shape, "steps": steps, "naive_first": a[0], "engine_first": b[0],
           "naive_last10": sum(a[-10:]) / 10, "engine_last10": sum(b[-10:]) / 10,
           "engine_attention": eng["attention"], "engine_liger": eng["liger"], "engine_optim": eng["optim"],
           "engine_overrides": overrides or {},
           "naive_losses": a, "engine_losses": b}
    res["rel_diff_last10"] = abs(res["naive_last10"] - res["engine_last10"]) / res["naive_last10"]
    res["max_rel_diff_per_step"] = max(abs(x - y) / x for x, y in zip(a, b, strict=False))
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()
                      if not k.endswith("losses")}), flush=True)
    return res


# ---------------------------------------------------------------------------- merge, chat, LLaVA

def merge_bench(root: Path, shape: str) -> dict:
    """Merge a rank-64 all-linear adapter (random, non-zero) into the shape, sharded save, then the check."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.merge import merge_adapter

    folder = model_folder(shape, root)
    adapter = root / f"adapter-{shape}"
    if not (adapter / "adapter_config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, device_map=_dev())
        peft_model = get_peft_model(model, LoraConfig(r=64, lora_alpha=16, target_modules="all-linear",
                                                      init_lora_weights=False, task_type="CAUSAL_LM"))
        peft_model.save_pretrained(adapter)
        del model, peft_model
        _free()
    out = root / f"merged-{shape}"
    t = time.time()
    rep = merge_adapter(str(folder), str(adapter), str(out), check=False, max_shard_size="5GB")
    res = {"case": f"merge-{shape}", "seconds_load_merge_save": round(time.time() - t, 2),
           "load_and_merge_seconds": rep["merge_seconds"], "save_seconds": rep["save_seconds"],
           "shards": len(rep["shards"])}
    _free()
    if os.environ.get("BENCH_MERGE_CHECK"):  # the reload + token-for-token check, timed apart
        t = time.time()
        rep2 = merge_adapter(str(folder), str(adapter), str(out), check=True, max_shard_size="5GB", max_new_tokens=16)
        res.update(seconds_with_check=round(time.time() - t, 2), check=rep2.get("check", {}).get("identical"))
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(res), flush=True)
    return res


def chat_bench(root: Path, shape: str) -> dict:
    """Time to first token and decode tokens/s of the studio's chat loading (bf16), dynamic and static cache."""
    import torch

    from core.chat import load_chat_model

    folder = model_folder(shape, root)
    chat = load_chat_model(str(folder))
    model, tok = chat.model, chat.tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": "请介绍一下你自己, and what can you do for me today?"}],
                                   tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
    res: dict = {"case": f"chat-{shape}", "prompt_tokens": int(ids.shape[1])}
    n = 128
    # the studio's chat path (core.fastgen: static cache + the one-token forward as a CUDA graph) beside
    # transformers' generate with its dynamic cache; generate's static cache compiles for minutes on a 7B,
    # so it is measured only when asked
    sides = ["studio_graph", "dynamic"] + (["static_compile"] if os.environ.get("BENCH_STATIC_CACHE") else [])
    for side in sides:
        try:
            with torch.no_grad():
                if side == "studio_graph":
                    from core import fastgen

                    if not fastgen.enabled(model):
                        continue
                    t = time.time()
                    dec = fastgen.Decoder.for_model(model, ids.shape[1] + n)
                    list(dec.generate(ids, max_new_tokens=n))  # warm-up: allocates the cache, captures the graph
                    res[f"{side}_warmup_s"] = round(time.time() - t, 2)

                    def run(k, dec=dec):
                        return sum(1 for _ in dec.generate(ids, max_new_tokens=k))
                else:
                    kw = {"do_sample": False, "pad_token_id": 0, "use_cache": True}
                    if side == "static_compile":
                        kw["cache_implementation"] = "static"
                    t = time.time()
                    model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)  # warm-up (compiles for static)
                    res[f"{side}_warmup_s"] = round(time.time() - t, 2)

                    def run(k, kw=kw, model=model):
                        return model.generate(ids, max_new_tokens=k, min_new_tokens=k, **kw).shape[1] - ids.shape[1]
                firsts = []
                for _ in range(5):
                    _sync()
                    t = time.time()
                    run(1)
                    _sync()
                    firsts.append(time.time() - t)
                _sync()
                t = time.time()
                made = run(n)
                _sync()
                total = time.time() - t
            first = sorted(firsts)[2]
            res[f"{side}_first_token_s"] = round(first, 4)
            res[f"{side}_decode_tokens_per_s"] = round((made - 1) / max(total - first, 1e-9), 1)
        except Exception as e:  # the static path depends on the installed transformers/torch
            res[f"{side}_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    del chat, model
    _free()
    print(json.dumps(res), flush=True)
    return res


def llava_bench(root: Path, steps: int = 12) -> dict:
    """Stage 2 QLoRA through `studio train` on a random CLIP-L/336 + InternLM2-1.8B-shape LLM."""
    import subprocess

    import torch
    import yaml
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from core.llava import build_llava_model

    llm = model_folder("internlm2_1_8b", root)
    clip = root / "clip-l-336"
    if not (clip / "config.json").is_file():
        torch.manual_seed(0)
        vcfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                image_size=336, patch_size=14, projection_dim=768)
        CLIPVisionModel(vcfg).to(torch.bfloat16).save_pretrained(clip)
        CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}).save_pretrained(clip)
    llava = build_llava_model(llm, clip, root / "llava-1_8b-clip336")
    data_dir = root / "llava-data"
    data_dir.mkdir(exist_ok=True)
    rng = random.Random(0)
    samples = []
    for i in range(64):
        img = data_dir / f"{i}.png"
        if not img.is_file():
            Image.new("RGB", (336 + 16 * (i % 5), 336), (rng.randrange(256), rng.randrange(256), rng.randrange(256))).save(img)
        answer = " ".join(rng.choice(["红色", "蓝色", "a ball", "a cat", "on the table", "图片"]) for _ in range(40))
        samples.append({"messages": [{"role": "user", "content": "<image>\n图片里有什么？"},
                                     {"role": "assistant", "content": answer}], "images": [str(img)]})
    data = data_dir / "data.jsonl"
    data.write_text("\n".join(json.dumps(s, ensure_ascii=False) for s in samples) + "\n", encoding="utf-8")
    cfg = root / "llava-qlora.yaml"
    cfg.write_text(yaml.safe_dump(dict(
        pretrained_model_name_or_path=str(llava), model_type="llava", llava_stage="finetune", method="qlora",
        data_path=str(data), max_length=2048, batch_size=4, accumulative_counts=1, max_steps=steps, lr=2e-4,
        lora_r=64, lora_alpha=16, save_steps=10**6, evaluation_freq=10**6, evaluation_inputs=[], logging_steps=1,
        gradient_checkpointing="auto")), encoding="utf-8")
    run = root / "llava-run"
    shutil.rmtree(run, ignore_errors=True)
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "studio", "train", str(cfg), "--work-dir", str(run)],
                       capture_output=True, text=True, timeout=560)
    res: dict = {"case": "llava-qlora-1_8b-clip336", "rc": r.returncode, "wall_s": round(time.time() - t, 1)}
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").is_file() else []
    steps_m = [m for m in metrics if "tokens_per_s" in m]
    if steps_m:
        tail = steps_m[len(steps_m) // 2:]
        res["tokens_per_s"] = round(sum(m["tokens_per_s"] for m in tail) / len(tail), 1)
        res["peak_alloc_gib"] = max(m.get("gpu_peak_gib", 0) for m in steps_m)
        res["peak_reserved_gib"] = max(m.get("gpu_reserved_gib", 0) for m in steps_m)
        res["loss_first_last"] = [steps_m[0].get("loss"), steps_m[-1].get("loss")]
    log_text = (run / "train.log").read_text() if (run / "train.log").is_file() else r.stderr
    res["log"] = [ln for ln in log_text.splitlines() if any(k in ln for k in ("engine", "gradient checkpointing",
                                                                            "trainable", "data:", "Error", "error"))][:8]
    print(json.dumps(res, ensure_ascii=False), flush=True)
    return res


def _parse_sets(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k.strip()] = yaml.safe_load(v)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(DEFAULT_SUITE))
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--scratch", default=os.environ.get("BENCH_SCRATCH", "/tmp/studio-bench"))
    p.add_argument("--out", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="RunConfig override on the engine side (repeatable), e.g. attn_implementation=sdpa")
    p.add_argument("--sides", default="", help="naive,engine or one of them (default: the case's own)")
    p.add_argument("--profile", action="store_true", help="print the engine's top GPU kernels for 2 steps")
    p.add_argument("--sync-check", action="store_true",
                   help="list where the engine's steps w+1 and w+2 wait on the GPU (torch's sync debug mode)")
    p.add_argument("--agree", action="store_true", help="also compare loss curves over 50 steps")
    p.add_argument("--agree-shape", default="internlm2_1_8b")
    p.add_argument("--list", action="store_true")
    a = p.parse_args(argv)
    if a.list:
        for name in [*CASES, *OTHER]:
            print(name)
        return 0
    from core.train.entry import use_expandable_segments

    use_expandable_segments()  # as `studio train` runs; the naive side shares the process (within noise there: results)
    import torch

    names = [c for c in a.cases.split(",") if c]
    unknown = [n for n in names if n not in CASES and n not in OTHER]
    if unknown:
        print(f"unknown case(s): {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    tiny_only = all("tiny" in n for n in names) and (not a.agree or a.agree_shape == "tiny")
    if not torch.cuda.is_available() and not tiny_only:
        print("bench needs a CUDA GPU (figures are GPU figures); nothing run. The tiny cases run on CPU "
              "to check the bench itself.", file=sys.stderr)
        return 1
    root = Path(a.scratch)
    root.mkdir(parents=True, exist_ok=True)
    meta = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "time": time.strftime("%Y-%m-%d %H:%M"), "argv": argv or sys.argv[1:],
            "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")}
    from importlib import metadata

    for mod in ("transformers", "peft", "bitsandbytes", "liger-kernel"):
        try:
            meta[mod.replace("-", "_")] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            meta[mod.replace("-", "_")] = None
    rows: list[dict] = []
    overrides = _parse_sets(a.set)

    def save() -> None:  # after every case: a lease cut short still leaves what it measured
        if a.out:
            from core.fsio import atomic_write_json

            atomic_write_json(a.out, {"meta": meta, "rows": rows})

    for name in names:
        try:
            if name.startswith("merge-"):
                rows.append(merge_bench(root, name.split("-", 1)[1]))
            elif name.startswith("chat-"):
                rows.append(chat_bench(root, name.split("-", 1)[1]))
            elif name.startswith("llava-"):
                rows.append(llava_bench(root))
            else:
                case = CASES[name]
                if a.sides:
                    case = dataclasses.replace(case, sides=tuple(x for x in a.sides.split(",") if x))
                rows += run_case(case, root, a.steps, a.warmup, overrides, a.profile, a.sync_check)
        except Exception as e:  # keep going: the rest of the lease is worth more than one case
            import traceback

            traceback.print_exc()
            rows.append({"case": name, "error": f"{type(e).__name__}: {str(e)[:300]}"})
        save()
    if a.agree:
        rows.append(loss_agreement(root, shape=a.agree_shape, seq=256 if a.agree_shape == "tiny" else 1024,
                                   overrides=overrides))
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
