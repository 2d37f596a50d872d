"""The training process: reads runs/<id>/config.yaml, trains, writes the run dir. Nothing else.

Started detached by core.jobs (or in the foreground by `python -m studio train CONFIG`):

    python -m core.train.entry workspace/runs/<run_id> [--resume latest|PATH]

Reads top to bottom: setup (model, tokenizer, data) -> train (transformers Trainer + PEFT) -> save.
SIGTERM (or a stop.request file) asks for a graceful stop: checkpoint, then exit.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

from core import queue, rundir
from core.config import RunConfig, load_config
from core.errors import StudioError


def log(msg: str) -> None:
    print(f"[studio {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------- setup

def pick_dtype(cfg: RunConfig):
    import torch

    if cfg.torch_dtype != "auto":
        return getattr(torch, cfg.torch_dtype)
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def pick_attention(wanted: str = "auto") -> str:
    """flash-attn when installed on a GPU, else PyTorch's own varlen flash kernel, else sdpa; a set value wins.

    Both flash paths skip the blocks between packed samples instead of masking them (sdpa with a
    block-diagonal mask falls back from its flash kernel to the slower memory-efficient one).
    """
    import torch

    from core.train import varlen

    if wanted == "auto" and torch.cuda.is_available():
        try:
            import flash_attn  # noqa: F401

            wanted = "flash_attention_2"
        except ImportError:
            wanted = varlen.NAME if varlen.available() else "sdpa"
    elif wanted == "auto":
        wanted = "sdpa"
    if wanted == varlen.NAME:
        varlen.register()
    return wanted


def load_tokenizer(model_path: Path, cfg: RunConfig):
    from transformers import AutoTokenizer

    from core.templates import apply_template

    tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=cfg.trust_remote_code)
    used = apply_template(tok, cfg.prompt_template)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok, used


def load_model(model_path: Path, cfg: RunConfig, dtype, local_rank: int = 0):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code, "attn_implementation": pick_attention(cfg.attn_implementation)}
    if cfg.method == "qlora":
        if not torch.cuda.is_available():
            raise StudioError("QLoRA needs a CUDA GPU (bitsandbytes 4-bit)", hint="use method: lora on this machine")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if dtype != torch.float32 else torch.bfloat16,
        )
        kwargs["device_map"] = {"": local_rank}
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    model.config.use_cache = False
    return model


def _gpu_bytes() -> int:
    import torch

    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def _estimate_bytes(cfg: RunConfig, model_path: Path | None, liger: bool, **changes) -> float:
    """The VRAM estimate of `cfg` with `changes`, for the model folder actually loaded (raises if no shape)."""
    import dataclasses

    from core.config.vram import estimate

    probe = dataclasses.replace(cfg, pretrained_model_name_or_path=str(model_path or cfg.pretrained_model_name_or_path),
                                **changes)
    return estimate(probe, fused_loss=liger)["total_gib"] * 2**30


def use_grad_checkpointing(cfg: RunConfig, model_path: Path | None, n_params: int,
                           liger: bool = False) -> tuple[bool, str]:
    """Recompute activations only where memory needs it (it costs ~1/3 more compute)."""
    import torch

    if cfg.gradient_checkpointing != "auto":
        return cfg.gradient_checkpointing != "false", "set in the config"
    if not torch.cuda.is_available():
        return False, "CPU run"
    free = _gpu_bytes()
    try:
        need = _estimate_bytes(cfg, model_path, liger, gradient_checkpointing="false")
    except Exception:  # no shape known: fall back on size alone
        need = n_params * 18.0
    if need < 0.85 * free:
        return False, f"estimate without it {need / 2**30:.1f} GiB fits in {free / 2**30:.0f} GiB"
    return True, f"estimate without it {need / 2**30:.1f} GiB > 85% of {free / 2**30:.0f} GiB"


LIGER_FAMILIES = {"llama", "qwen2", "qwen3", "mistral", "mixtral", "gemma", "gemma2", "phi3", "granite", "olmo2"}


def use_liger(model) -> tuple[bool, str]:
    """Liger's fused kernels (linear+cross-entropy, RMSNorm, RoPE, SwiGLU) where the family has them."""
    import torch

    if os.environ.get("STUDIO_NO_LIGER"):
        return False, "STUDIO_NO_LIGER set"
    if not torch.cuda.is_available():
        return False, "CPU run"
    family = getattr(model.config, "model_type", "")
    if family not in LIGER_FAMILIES:
        return False, f"no Liger kernels for {family}"
    try:
        import liger_kernel  # noqa: F401
    except ImportError:
        return False, "liger-kernel not installed"
    return True, f"{family}: fused linear cross-entropy, RMSNorm, RoPE, SwiGLU"


def split_micro_batches(cfg: RunConfig, model_path: Path | None, checkpointing: bool, liger: bool) -> tuple[int, int, str]:
    """(micro-batch, accumulation) for the same rows per optimizer step, in as few micro-batches as fit.

    batch_size x accumulative_counts rows per optimizer step is what the user chose; how many of them go
    through the GPU at once is the engine's business. The loss is normalised by the tokens of the whole
    optimizer step, so the result is the same, only faster when the GPU has room.
    """
    import torch

    total = cfg.batch_size * cfg.accumulative_counts
    if cfg.micro_batch_size > 0:  # validated: it divides total
        return cfg.micro_batch_size, total // cfg.micro_batch_size, "set in the config"
    if not torch.cuda.is_available() or cfg.accumulative_counts == 1 or cfg.deepspeed != "none":
        return cfg.batch_size, cfg.accumulative_counts, "as configured"
    room = 0.8 * _gpu_bytes()
    for m in sorted((m for m in range(cfg.batch_size + 1, total + 1) if total % m == 0), reverse=True):
        try:
            need = _estimate_bytes(cfg, model_path, liger, batch_size=m, accumulative_counts=total // m,
                                   gradient_checkpointing=cfg.gradient_checkpointing if checkpointing else "false")
        except Exception:  # no shape known: keep the user's split
            break
        if need < room:
            return m, total // m, f"estimate {need / 2**30:.1f} GiB fits in 80% of the GPU"
    return cfg.batch_size, cfg.accumulative_counts, "as configured (a bigger micro-batch would not fit)"


def use_fused_lora(model, cfg: RunConfig, deepspeed: str | None) -> str:
    """LoRA projections as one autograd node each, q/k/v and gate/up together (core/train/fused_lora.py)."""
    if cfg.method != "lora":
        return "off (QLoRA's 4-bit base keeps PEFT's forward)"
    if deepspeed or cfg.deepspeed != "none":
        return "off (DeepSpeed gathers each module's parameters in its own forward)"
    if os.environ.get("STUDIO_FUSED_LORA") == "0":
        return "off (STUDIO_FUSED_LORA=0)"
    from core.train import fused_lora

    n, groups = fused_lora.enable(model)
    return f"{n} projections, {groups} groups sharing their input" if n else "off (no plain LoRA linear)"


def add_lora(model, cfg: RunConfig, checkpointing: bool):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.method == "qlora":
        if getattr(model, "dtype", None) == torch.bfloat16:
            # PEFT's prepare_model_for_kbit_training would also upcast every 16-bit weight left (embeddings,
            # head, norms) to fp32: +2.2 GiB on a 7B for nothing, since bf16 autocast computes in bf16 anyway
            for p in model.parameters():
                p.requires_grad_(False)
        else:  # fp16 norms can overflow: keep PEFT's fp32 upcast there
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    targets = cfg.lora_target_modules
    target = "all-linear" if targets in (["all-linear"], ["all_linear"]) else targets
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=target,
        modules_to_save=cfg.lora_modules_to_save or None, task_type="CAUSAL_LM", bias="none",
    )
    model = get_peft_model(model, lora)
    if torch.cuda.is_available() and model.dtype in (torch.bfloat16, torch.float16):
        # LoRA weights are fp32; PEFT casts each layer's input to fp32 first (a full copy of the activations
        # per LoRA layer, forward and backward: ~17% of a 7B step). Under the Trainer's autocast the matmul
        # runs in 16-bit anyway, so the cast is skipped.
        for module in model.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
    return model


def _data_cache_key(cfg: RunConfig, tokenizer, path: Path) -> str:
    import hashlib

    st = path.stat()
    # v2: the cache is a numpy .npz read without pickle (v1 was a pickle, which runs code when replaced); the
    # rendering of tool calls, tools and reasoning changed the token ids too
    parts = [str(path.resolve()), str(st.st_size), str(st.st_mtime_ns), str(getattr(tokenizer, "name_or_path", "")),
             str(len(tokenizer)), str(tokenizer.chat_template), str(cfg.max_length), cfg.SYSTEM, cfg.data_format,
             json.dumps(cfg.data_mapping, sort_keys=True), cfg.image_folder, "v2"]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


def load_data(cfg: RunConfig, tokenizer, run_dir: Path):
    """Read + tokenize the data set; the token ids are cached between runs (same file, tokenizer, settings).

    The cache is data only (core.train.dataset.save_encoded: flat int32 arrays in an .npz, loaded with
    allow_pickle=False): a replaced or corrupt cache file is ignored and rebuilt, never executed.
    """
    from core.data import read_samples
    from core.train.dataset import SFTDataset, encode_all, load_encoded, pack, save_encoded
    from core.workspace import sub

    path = Path(cfg.data_path)
    if not path.is_file():
        raise StudioError(f"data_path: no data file at {path}", hint="build one on the Data page or with python -m studio data")
    cache = sub("cache") / "tokenized" / f"{_data_cache_key(cfg, tokenizer, path)}.npz"
    cached = None
    if cache.is_file():
        try:
            cached = load_encoded(cache)
            log(f"data: tokenized samples from the cache ({cache.name})")
        except ValueError as exc:
            log(f"data: ignoring the cache file {cache} ({exc}); tokenizing again")
    if cached is not None:
        encoded, stats = cached
    else:
        samples = read_samples(path, None if cfg.data_format == "auto" else cfg.data_format, cfg.data_mapping or None,
                               image_folder=cfg.image_folder or None)
        encoded, stats = encode_all(tokenizer, samples, cfg.max_length, cfg.SYSTEM, source=str(path))
        if encoded:
            save_encoded(cache, encoded, stats)
    if not encoded:
        raise StudioError(f"data_path: {path} has no sample with an answer to learn from",
                          hint="check the file with: python -m studio data validate " + str(path))
    rows = pack(encoded, cfg.max_length, cfg.seed) if cfg.pack_to_max_length else [[e] for e in encoded]
    stats["rows"] = len(rows)
    log(f"data: {stats['samples']} samples -> {len(encoded)} kept ({stats['dropped_no_loss']} without an answer, "
        f"{stats['truncated']} truncated at {cfg.max_length}), {stats['tokens']} tokens, "
        f"{len(rows)} {'packed rows' if cfg.pack_to_max_length else 'rows'}")
    return SFTDataset(rows), stats


def training_args(cfg: RunConfig, run_dir: Path, dtype, checkpointing: bool, deepspeed: str | None,
                  liger: bool = False):
    import torch
    from transformers import TrainingArguments

    ds_config = None
    stage = deepspeed or (cfg.deepspeed if cfg.deepspeed != "none" else None)
    if stage:
        from core.train.distributed import deepspeed_config_path

        ds_config = str(deepspeed_config_path(stage))
    return TrainingArguments(
        output_dir=str(run_dir / rundir.CHECKPOINTS),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.accumulative_counts,
        num_train_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_norm,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        lr_scheduler_type=cfg.lr_scheduler,
        # the fused AdamW kernel is the same maths in one launch per step
        optim="adamw_torch_fused" if cfg.optim == "adamw_torch" and torch.cuda.is_available() else cfg.optim,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=None,  # rotation is done by RunDirCallback on complete step-N folders
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=cfg.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        deepspeed=ds_config,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
        save_only_model=False,
        include_num_input_tokens_seen="non_padding",
        # each of these is a host sync per micro-batch (a NaN check, a blocking copy): the GPU waits on
        # Python in between. A NaN loss is logged as NaN instead of being smoothed over.
        logging_nan_inf_filter=False,
        accelerator_config={"non_blocking": torch.cuda.is_available()},
        use_liger_kernel=liger,
    )


# ---------------------------------------------------------------------------- train

def trim_step_overheads(trainer, model) -> None:
    """Two pieces of Python the Trainer runs on every micro-batch, made cheap (same results).

    Both ran while the GPU had nothing queued (right after a step's host sync), ~10-15 ms each on a
    7B PEFT model: `model.train()` walks and re-sets every module (thousands) though they are already
    in training mode, and the FLOP count for the logs re-counts every parameter.
    """
    mods = list(model.modules())
    full_train = type(model).train

    def train(mode: bool = True):
        if any(m.training is not mode for m in mods):  # a read per module instead of a setattr per module
            full_train(model, mode)
        return model

    model.train = train
    main_input = getattr(model, "main_input_name", "input_ids")
    if hasattr(model, "num_parameters"):
        n = model.num_parameters(exclude_embeddings=True)  # the parameter count does not change while training
        trainer.floating_point_ops = lambda inputs: 6 * inputs[main_input].numel() * n if main_input in inputs else 0


def hand_head_rows(trainer) -> None:
    """The collator's `studio_head_rows` (labelled positions) go to the fused head, not into the model's forward."""
    from core.train import fused_ce

    compute_loss = trainer.compute_loss

    def with_rows(model, inputs, *a, **kw):
        with fused_ce.rows_for(inputs.pop("studio_head_rows", None)):
            return compute_loss(model, inputs, *a, **kw)

    trainer.compute_loss = with_rows


def build_trainer(cfg: RunConfig, run_dir: Path, model, tokenizer, dataset, *, dtype, model_path: Path | None = None,
                  stop_flag: dict | None = None, deepspeed: str | None = None, is_main: bool = True,
                  extra_callbacks: list | None = None):
    """The engine: LoRA/QLoRA/full on the given model, speed choices made and logged, Trainer ready."""
    import dataclasses

    import torch
    from transformers import Trainer

    from core.train.callbacks import AsyncLogs, EvalSamplesCallback, FrozenHeap, RunDirCallback
    from core.train.dataset import Collator

    n_params = sum(p.numel() for p in model.parameters())
    liger, why_liger = use_liger(model)
    checkpointing, why_ckpt = use_grad_checkpointing(cfg, model_path, n_params, liger)
    offload = checkpointing and cfg.gradient_checkpointing == "offload"
    if offload and (deepspeed or cfg.deepspeed != "none" or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        offload, why_ckpt = False, "offload is single-GPU only: plain checkpointing on this launch"
        cfg = dataclasses.replace(cfg, gradient_checkpointing="true")
    if cfg.method in ("lora", "qlora"):
        model = add_lora(model, cfg, checkpointing)
        if checkpointing:
            model.enable_input_require_grads()
        if cfg.fp8_base:
            from core.train import fp8

            if cfg.method != "lora":
                log("fp8_base: ignored (LoRA on a 16-bit base only)")
            elif not fp8.available():
                log("fp8_base: ignored (needs a GPU with FP8 tensor cores, compute capability 8.9+)")
            else:
                log(f"fp8_base: {fp8.convert(model)} frozen base linears run their GEMMs in FP8")
        log(f"fused LoRA: {use_fused_lora(model, cfg, deepspeed)}")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"method: {cfg.method} r={cfg.lora_r} alpha={cfg.lora_alpha}; trainable {trainable:,} of {n_params:,} "
            f"({100 * trainable / n_params:.2f}%)")
    else:
        log(f"method: full fine-tuning, {n_params:,} parameters")
    if offload:
        from core.train import offload as offloading

        offloading.enable(model)
    log(f"engine: dtype {dtype}, attention {model.config._attn_implementation}, "
        f"packing {'on (no cross-sample attention)' if cfg.pack_to_max_length else 'off'}, "
        f"gradient checkpointing {('on, inputs offloaded to CPU' if offload else 'on') if checkpointing else 'off'} "
        f"({why_ckpt}), "
        f"liger {'on' if liger else 'off'} ({why_liger}), device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    head_rows = False
    if liger:
        from core.train import fused_ce

        head_rows, why_head = fused_ce.install()
        log(f"head + cross-entropy: {why_head}")
    attention = getattr(model.config, "_attn_implementation", "")
    collator = Collator(pad_token_id=tokenizer.pad_token_id, packed=cfg.pack_to_max_length,
                        varlen=cfg.pack_to_max_length and attention in ("studio_varlen", "flash_attention_2"),
                        head_rows=head_rows)
    micro, accum, why_micro = split_micro_batches(cfg, model_path, checkpointing, liger)
    # offload's layers are already set up: the Trainer must not re-enable its own checkpointing over them
    args = training_args(dataclasses.replace(cfg, batch_size=micro, accumulative_counts=accum), run_dir, dtype,
                         checkpointing and not offload, deepspeed, liger)
    log(f"optimizer: {getattr(args.optim, 'value', args.optim)}; {micro} row(s) x {accum} accumulation per optimizer "
        f"step ({why_micro}), <= {micro * accum * cfg.max_length} tokens")
    logs = AsyncLogs()
    callbacks = [
        logs,
        RunDirCallback(run_dir, cfg.save_total_limit, stop_flag if stop_flag is not None else {}, is_main),
        EvalSamplesCallback(run_dir, tokenizer, cfg.evaluation_inputs, cfg.SYSTEM, cfg.evaluation_freq,
                            cfg.eval_max_new_tokens, is_main),
        *(extra_callbacks or []),
        FrozenHeap(),
    ]
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      processing_class=tokenizer, callbacks=callbacks)
    logs.install(trainer)
    trim_step_overheads(trainer, model)
    if head_rows:
        hand_head_rows(trainer)
    if not cfg.shuffle:  # rows in file order (packing already placed them); the Trainer always shuffles otherwise
        from torch.utils.data import SequentialSampler

        trainer._get_train_sampler = lambda *a, **k: SequentialSampler(dataset)
    return trainer


def train(cfg: RunConfig, run_dir: Path, resume: str | None = None, deepspeed: str | None = None,
          stop_flag: dict | None = None) -> str:
    """Train per `cfg` into `run_dir`; returns 'finished' or 'stopped'."""
    from transformers import set_seed

    from core.models import resolve_model

    stop_flag = stop_flag if stop_flag is not None else {}
    run_dir = Path(run_dir)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    is_main = int(os.environ.get("RANK", "0")) == 0
    set_seed(cfg.seed)

    if cfg.model_type == "llava":
        from core.llava import train_llava

        return train_llava(cfg, run_dir, resume=resume, deepspeed=deepspeed, stop_flag=stop_flag)

    model_path = resolve_model(cfg.pretrained_model_name_or_path, cfg.model_hub)
    log(f"model: {model_path}")
    tokenizer, template = load_tokenizer(model_path, cfg)
    log(f"chat template: {template}")
    dataset, _ = load_data(cfg, tokenizer, run_dir)

    dtype = pick_dtype(cfg)
    model = load_model(model_path, cfg, dtype, local_rank)
    trainer = build_trainer(cfg, run_dir, model, tokenizer, dataset, dtype=dtype, model_path=model_path,
                            stop_flag=stop_flag, deepspeed=deepspeed, is_main=is_main)

    ckpt = None
    if resume:
        ckpt = rundir.latest_checkpoint(run_dir) if resume == "latest" else Path(resume)
        if ckpt is None:
            log("resume: no complete checkpoint yet, starting from the beginning")
        else:
            log(f"resume: from {ckpt}")
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)

    # ---------------------------------------------------------------------------- save
    stopped = bool(stop_flag.get("stop"))
    if is_main and not stopped:
        out = run_dir / (rundir.ADAPTER if cfg.method != "full" else rundir.FULL_MODEL)
        tmp = out.with_name(out.name + ".tmp")
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if out.exists():
            import shutil

            shutil.rmtree(out)
        tmp.rename(out)
        log(f"saved {out}")
    return "stopped" if stopped else "finished"


# ---------------------------------------------------------------------------- process entry

_NO_SPACE = ("no space left on device", "os error 28", "errno 28")
# torch.save reports a short write as "unexpected pos ..." / an iostream error, without the errno
_SHORT_WRITE = ("unexpected pos", "iostream error", "file write failed")


def _disk_full(exc: BaseException, run_dir: Path | None) -> bool:
    """ENOSPC, however the library that hit it words it (tokenizers and safetensors raise their own types)."""
    chain, e = [], exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT) for x in chain):
        return True
    text = " ".join(str(x).lower() for x in chain)
    if any(m in text for m in _NO_SPACE):
        return True
    if run_dir is not None and any(m in text for m in _SHORT_WRITE):
        import shutil

        where = run_dir / rundir.CHECKPOINTS if (run_dir / rundir.CHECKPOINTS).is_dir() else run_dir
        try:
            return shutil.disk_usage(where).free < 64 * 2**20
        except OSError:
            return False
    return False


def explain(exc: BaseException, run_dir: Path | None = None) -> tuple[str, str | None]:
    """A human error line and a hint for the status file (`run_dir` lets a full disk be recognised)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return ("CUDA out of memory", "lower max_length or batch_size, use method: qlora, or set "
                "gradient_checkpointing: true (the Config page's VRAM estimate shows what fits)")
    if _disk_full(exc, run_dir):
        return ("disk full while writing", "free space in the workspace or lower save_total_limit; earlier "
                "checkpoints are intact")
    if isinstance(exc, StudioError):
        return (str(exc).split("\n  hint: ")[0], exc.hint)
    return (f"{type(exc).__name__}: {exc}", "see train.log for the traceback")


def _drop_incomplete_checkpoints(run_dir: Path) -> None:
    """A save that failed leaves checkpoint-N without a COMPLETE mark: remove it (it frees the disk too)."""
    import shutil

    root = run_dir / rundir.CHECKPOINTS
    if root.is_dir():
        for p in root.glob("checkpoint-*"):
            if p.is_dir() and not (p / rundir.COMPLETE_MARK).exists():
                shutil.rmtree(p, ignore_errors=True)


def _wait_in_queue(run_dir: Path, stop_flag: dict, is_main: bool, pid: int):
    """Take this device's place in the queue (core.queue); (lock or None, go on?)."""

    def stop_asked() -> bool:
        return bool(stop_flag.get("stop") or (run_dir / rundir.STOP_REQUEST).exists())

    if not queue.enabled():
        return None, True
    if not is_main:  # rank 0 holds the lock for every rank of this launch
        return None, queue.wait_for_rank0(run_dir, should_stop=stop_asked)

    def on_wait(info: dict) -> None:
        who = info.get("run_id") or "another run"
        st = rundir.read_status(run_dir)
        if st.get("state") != "queued" or st.get("waiting_for") != who or st.get("pid") != pid:
            if st.get("waiting_for") != who:
                log(f"queued: device {queue.device_key()} is busy with run {who}; starting when it ends")
            rundir.write_status(run_dir, state="queued", waiting_for=who, pid=pid, pgid=os.getpgid(0),
                                queued_at=st.get("queued_at") or time.time(), device=queue.device_key())

    held = queue.acquire(run_dir, on_wait=on_wait, should_stop=stop_asked)
    return held, held is not None


def _drain_writes() -> None:
    """Progress writes still queued by the callbacks land before the final status (which must win)."""
    try:
        from core.train.callbacks import drain

        drain()
    except Exception:  # a failed progress write must not hide the failure being reported
        traceback.print_exc()


def run(run_dir: str | os.PathLike, resume: str | None = None, deepspeed: str | None = None) -> int:
    run_dir = Path(run_dir).resolve()
    stop_flag: dict = {}
    is_main = int(os.environ.get("RANK", "0")) == 0

    def on_term(signum, frame):
        stop_flag["stop"] = True
        log("stop requested: saving a checkpoint, then exiting")

    signal.signal(signal.SIGTERM, on_term)
    # under torchrun the launcher's pid (written by jobs) stays the run's pid; the group holds every rank
    launched = rundir.read_status(run_dir).get("pid") if os.environ.get("LOCAL_RANK") else None
    pid = launched or os.getpid()
    held = None
    try:
        held, go = _wait_in_queue(run_dir, stop_flag, is_main, pid)
    except BaseException as e:  # e.g. the workspace's locks/ folder cannot be written
        traceback.print_exc()
        error, hint = explain(e)
        if is_main:
            rundir.write_status(run_dir, state="failed", error=error, hint=hint, exit_code=1, ended_at=time.time())
        return 1
    if not go:  # stopped while still queued
        if is_main:
            rundir.write_status(run_dir, state="stopped", waiting_for=None, exit_code=0, ended_at=time.time())
        log("stopped while queued")
        return 0
    if is_main:
        rundir.write_status(run_dir, state="running", pid=pid, pgid=os.getpgid(0), waiting_for=None,
                            started_at=time.time(), error=None, hint=None, exit_code=None, loss_nonfinite_step=None,
                            host=socket.gethostname(), **rundir.process_identity(pid))  # what `stop` checks
    try:
        cfg = load_config(run_dir / rundir.CONFIG)
        state = train(cfg, run_dir, resume=resume, deepspeed=deepspeed, stop_flag=stop_flag)
        if is_main:  # written before the lock is released, so the next run starts after "finished"
            rundir.write_status(run_dir, state=state, exit_code=0, ended_at=time.time())
    except BaseException as e:  # every failure ends in status.json, not only in the log
        traceback.print_exc()
        _drain_writes()
        error, hint = explain(e, run_dir)
        if isinstance(e, KeyboardInterrupt):
            error, hint = "interrupted", "resume with: python -m studio train --resume"
        if is_main:
            _drop_incomplete_checkpoints(run_dir)
            rundir.write_status(run_dir, state="failed", error=error, hint=hint, exit_code=1, ended_at=time.time())
        log(f"failed: {error}" + (f" (hint: {hint})" if hint else ""))
        return 1
    finally:
        queue.release(held)  # the next queued run may start (process exit would do it too)
    log(state)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run_dir")
    p.add_argument("--resume", default=None)
    p.add_argument("--deepspeed", default=None)
    a = p.parse_args(argv)
    use_expandable_segments()
    own_log(Path(a.run_dir))
    return run(a.run_dir, resume=a.resume, deepspeed=a.deepspeed)


def own_log(run_dir: Path) -> None:
    """stdout and stderr go to the run's train.log, opened here: the log never depends on a parent
    process (a foreground CLI that is killed) staying alive to copy it."""
    fd = os.open(run_dir / rundir.LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def use_expandable_segments() -> None:
    """Let PyTorch's allocator grow segments in place unless the user configured it (read at the first CUDA allocation).

    Packed micro-batches change length every step; with fixed segments the cache fragments: a 7B LoRA run on an
    H100 held 76.4 GiB reserved for 53.6 GiB allocated (2.8 GiB from the card's end), 53.6 GiB with this, at the
    same speed (bench/results).
    """
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


if __name__ == "__main__":
    sys.exit(main())
