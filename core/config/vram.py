"""GPU memory estimate for a run config, before anything is downloaded or loaded.

    python -m studio estimate internlm2_chat_1_8b_qlora_identity_e3 [--gpus N] [--json]

The model's shape comes from config.json of a local folder, else from KNOWN_SHAPES (the recipes'
hub ids). The estimate is the sum of the tensors a training step keeps alive on one GPU, which is
what `torch.cuda.max_memory_allocated()` reports; `reserved_gib` adds the CUDA context and allocator
slack that nvidia-smi shows on top. Every term is in FORMULA so a user can check the arithmetic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.config.schema import RunConfig
from core.errors import StudioError
from core.fsio import load_json

GIB = 1024**3

# hidden, layers, heads, kv heads, intermediate, vocab (+ tied embeddings, qkv bias) of the models the
# recipes name, from their config.json on the hub; used when no local copy exists yet.
KNOWN_SHAPES: dict[str, dict[str, Any]] = {
    "internlm2-chat-1_8b": dict(hidden=2048, layers=24, heads=16, kv_heads=8, intermediate=8192, vocab=92544),
    "internlm2_5-7b-chat": dict(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=92544),
    "qwen2.5-0.5b-instruct": dict(hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864, vocab=151936,
                                  tied=True, qkv_bias=True),
    "qwen2.5-1.5b-instruct": dict(hidden=1536, layers=28, heads=12, kv_heads=2, intermediate=8960, vocab=151936,
                                  tied=True, qkv_bias=True),
    "qwen2.5-7b-instruct": dict(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064,
                                qkv_bias=True),
    "meta-llama-3-8b-instruct": dict(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256),
    # CLIP ViT-L/14 at 336 px: the vision tower only (577 positions = 24x24 patches + class token).
    "clip-vit-large-patch14-336": dict(hidden=1024, layers=24, heads=16, kv_heads=16, intermediate=4096, vocab=0,
                                       image_size=336, patch_size=14, vision=True),
    # core/tiny.py's defaults (vocab ~1k), for the estimate before the tiny model is first built
    "tiny": dict(hidden=128, layers=2, heads=4, kv_heads=2, intermediate=256, vocab=1024),
}

_ALIASES = {"internlm2-chat-1.8b": "internlm2-chat-1_8b", "internlm2.5-7b-chat": "internlm2_5-7b-chat",
            "llama-3-8b-instruct": "meta-llama-3-8b-instruct", "clip-l/336": "clip-vit-large-patch14-336"}

FORMULA = """\
P (parameters) = V*h*(1 or 2 if untied) + L*[h*(a+2k)*d + a*d*h + 3*h*f + 2h] + h
  (h hidden, L layers, a heads, k kv heads, d = h/a head dim, f intermediate, V vocab)
weights      = P_linear * bytes(w) + P_other * bytes(dtype);  bytes(w) = 2 (bf16/fp16), 4 (fp32),
               0.5 + 0.016 (nf4 + double-quant constants) for qlora; embeddings, norms, head stay 16-bit
LoRA params  = sum over targeted linears of r*(in + out), kept in fp32
gradients    = trainable params * (4 for LoRA | bytes(dtype) for full)       [/ N GPUs with ZeRO-2/3]
optimizer    = trainable params * (2 states * param bytes for AdamW | 2 for 8-bit | 0 for SGD);
               DeepSpeed keeps fp32 master + 2 fp32 states = 12 bytes            [/ N with ZeRO >= 1]
activations  = tokens * bytes(act) * per-layer saved values:
               no checkpointing: L * (6h + 2k*d + 4f [+ 6h + f LoRA dropout copies])
               checkpointing:    L * h  +  one layer recomputed (6h + 2k*d + 4f ...); offload: no L * h
               tokens = batch_size * max_length (packed rows are always full)
logits       = tokens * V * (2 bf16 + 4 fp32 upcast + 4 log-softmax) bytes
LLaVA        = + CLIP tower weights (16-bit, frozen) + projector (trainable, 1024*h + h*h)
total        = weights + LoRA + gradients + optimizer + activations + logits   (what max_memory_allocated shows)
reserved     = total * 1.1 + 0.5 GiB CUDA context                             (what nvidia-smi shows)"""


# ---------------------------------------------------------------------------- model shape

def _norm_id(model: str) -> str:
    tail = model.rstrip("/").split("/")[-1].lower()
    return _ALIASES.get(tail, tail)


# A shape number beyond this is not a model a GPU holds (the largest open models have hidden ~16k,
# vocab ~256k); it is a broken or hostile config.json, refused before the arithmetic.
_MAX_DIM = 10_000_000


def shape_from_config_json(cfg: dict[str, Any]) -> dict[str, Any]:
    """Read the shape out of a Hugging Face config.json dict (Llama, Qwen2, InternLM2, LLaVA, CLIP)."""
    if not isinstance(cfg, dict):
        kind = {list: "an array", str: "a string", bool: "true/false", type(None): "null"}.get(type(cfg), "a number")
        raise StudioError(f"config.json holds {kind}, not an object",
                          "re-download the model folder; config.json is a JSON object {...}")
    if "text_config" in cfg and isinstance(cfg["text_config"], dict) and "hidden_size" in cfg["text_config"]:
        return shape_from_config_json(cfg["text_config"])
    if "vision_config" in cfg and isinstance(cfg["vision_config"], dict) and "hidden_size" not in cfg:
        vc = dict(cfg["vision_config"])
        vc.setdefault("hidden_size", 1024)
        vc["_vision"] = True
        cfg = vc
    try:
        h = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        shape = dict(hidden=h, layers=int(cfg["num_hidden_layers"]), heads=heads,
                     kv_heads=int(cfg.get("num_key_value_heads") or heads),
                     intermediate=int(cfg["intermediate_size"]), vocab=int(cfg.get("vocab_size") or 0),
                     tied=bool(cfg.get("tie_word_embeddings", False)),
                     qkv_bias=bool(cfg.get("attention_bias") or cfg.get("bias") or cfg.get("model_type") == "qwen2"))
        if cfg.get("head_dim"):
            shape["head_dim"] = int(cfg["head_dim"])
        if cfg.get("_vision") or cfg.get("model_type") == "clip_vision_model":
            shape.update(vision=True, vocab=0, image_size=int(cfg.get("image_size", 336)),
                         patch_size=int(cfg.get("patch_size", 14)))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise StudioError(f"config.json lacks a shape field ({e})",
                          "the estimate needs hidden_size, num_hidden_layers, num_attention_heads, intermediate_size") from None
    for k, v in shape.items():
        out_of_range = isinstance(v, int) and not isinstance(v, bool) and not 0 <= v <= _MAX_DIM
        if out_of_range or (k in ("hidden", "layers", "heads", "kv_heads", "intermediate", "head_dim",
                                  "patch_size", "image_size") and v == 0):
            raise StudioError(f"config.json: {k} = {v} is not a model shape",
                              f"every size must be a whole number from 1 to {_MAX_DIM:,} (vocab may be 0)")
    return shape


def model_shape(model: str) -> dict[str, Any]:
    """Shape of a local folder (its config.json) or of a known hub id; the source is in shape['source']."""
    if model == "tiny":
        # the built tiny model if there is one (without creating the workspace just to look)
        folder = Path(os.environ.get("STUDIO_WORKSPACE", "workspace")) / "models" / "tiny"
        if (folder / "config.json").is_file():
            model = str(folder)
    p = Path(model).expanduser()
    if (p / "config.json").is_file():
        cfg = load_json(p / "config.json", hint="re-download the model folder or fix the file")
        try:
            shape = shape_from_config_json(cfg)
        except StudioError as e:  # name the file, not just "config.json"
            msg = str(e).split("\n")[0].replace("config.json", str(p / "config.json"), 1)
            raise StudioError(msg, e.hint) from None
        except RecursionError:  # text_config inside text_config inside ...
            raise StudioError(f"{p / 'config.json'}: not a model config (nested too deeply)",
                              "re-download the model folder") from None
        return {**shape, "source": str(p / "config.json")}
    key = _norm_id(model)
    if key in KNOWN_SHAPES:
        return {"tied": False, "qkv_bias": False, **KNOWN_SHAPES[key], "source": f"built-in table ({key})"}
    raise StudioError(f"unknown model shape for {model!r}",
                      "download it first (python -m studio download ID) or give a local folder with config.json")


# ---------------------------------------------------------------------------- parameter counts

def _linears(s: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in, out) of each linear layer in one transformer block, by Llama/PEFT module name."""
    h, f = s["hidden"], s["intermediate"]
    d = s.get("head_dim") or h // s["heads"]
    if s.get("vision"):  # CLIP: q,k,v,out_proj + fc1, fc2
        return {"q_proj": (h, h), "k_proj": (h, h), "v_proj": (h, h), "o_proj": (h, h), "fc1": (h, f), "fc2": (f, h)}
    return {"q_proj": (h, s["heads"] * d), "k_proj": (h, s["kv_heads"] * d), "v_proj": (h, s["kv_heads"] * d),
            "o_proj": (s["heads"] * d, h), "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}


# InternLM2 / other spellings a user may write in lora_target_modules
_TARGET_ALIASES = {"wqkv": ("q_proj", "k_proj", "v_proj"), "wo": ("o_proj",), "w1": ("gate_proj",),
                   "w3": ("up_proj",), "w2": ("down_proj",), "q": ("q_proj",), "k": ("k_proj",),
                   "v": ("v_proj",), "o": ("o_proj",), "out_proj": ("o_proj",)}


def count_params(s: dict[str, Any]) -> dict[str, int]:
    """linear (inside blocks), embed (input + output head), other (norms, biases)."""
    lin = sum(i * o for i, o in _linears(s).values()) * s["layers"]
    h, V = s["hidden"], s["vocab"]
    embed = V * h * (1 if s.get("tied") else 2)
    if s.get("vision"):
        n_pos = (s["image_size"] // s["patch_size"]) ** 2 + 1
        embed = 3 * s["patch_size"] ** 2 * h + n_pos * h + h  # patch conv + positions + class token
    d = s.get("head_dim") or h // s["heads"]
    other = s["layers"] * 2 * h + h + (s["layers"] * (s["heads"] + 2 * s["kv_heads"]) * d if s.get("qkv_bias") else 0)
    return {"linear": lin, "embed": embed, "other": other, "total": lin + embed + other}


def lora_params(s: dict[str, Any], r: int, targets: list[str]) -> int:
    lin = _linears(s)
    if not targets or "all-linear" in targets:
        chosen = set(lin)
    else:
        chosen = set()
        for t in targets:
            t = t.split(".")[-1]
            chosen.update(x for x in _TARGET_ALIASES.get(t, (t,)) if x in lin)
    return sum(r * (lin[n][0] + lin[n][1]) for n in chosen) * s["layers"]


# ---------------------------------------------------------------------------- the estimate

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "auto": 2}


def _use_checkpointing(cfg: RunConfig, n_params: int) -> bool:
    if cfg.gradient_checkpointing in ("true", "false", "offload"):
        return cfg.gradient_checkpointing != "false"
    return n_params >= 1_000_000_000  # 'auto': on for >= 1B-parameter models (assumption, stated in the output)


def estimate(cfg: RunConfig, n_gpus: int = 1, shape: dict[str, Any] | None = None,
             fused_loss: bool = False) -> dict[str, Any]:
    """GPU memory of one training step on one of `n_gpus` GPUs: total GiB, a breakdown and the formula.

    `shape` overrides the lookup (tests, or a model not on disk yet). `fused_loss`: the engine runs
    Liger's fused linear cross-entropy, which never holds the whole logits tensor.
    """
    if n_gpus < 1:
        raise StudioError(f"n_gpus must be >= 1, got {n_gpus}")
    s = shape or model_shape(cfg.pretrained_model_name_or_path)
    n = count_params(s)
    wb = _DTYPE_BYTES[cfg.torch_dtype]  # weights / activations dtype on GPU ('auto' = bf16)
    act_b = 4 if cfg.torch_dtype == "float32" else 2
    stage = cfg.deepspeed
    zero = 0 if stage == "none" else int(stage[4])
    offload = stage.endswith("offload")
    full = cfg.method == "full"

    # weights: 4-bit linears for qlora; ZeRO-3 partitions every weight across GPUs
    lin_bytes = 0.5 + 0.016 if cfg.method == "qlora" else wb
    weights = n["linear"] * lin_bytes + (n["embed"] + n["other"]) * wb
    notes = []

    trainable = n["total"] if full else lora_params(s, cfg.lora_r, cfg.lora_target_modules)
    extra_w = 0
    if cfg.model_type == "llava":
        vit = model_shape(cfg.visual_encoder_name_or_path or "clip-vit-large-patch14-336")
        nv = count_params(vit)
        projector = vit["hidden"] * s["hidden"] + s["hidden"] * s["hidden"] + 2 * s["hidden"]
        extra_w = nv["total"] * wb
        weights += extra_w
        trainable += projector
        notes.append(f"LLaVA: CLIP tower {nv['total'] / 1e6:.0f}M params frozen in 16-bit, projector "
                     f"{projector / 1e6:.1f}M trainable; max_length already leaves room for the image tokens")
    if zero == 3:
        weights /= n_gpus
        notes.append(f"ZeRO-3: weights partitioned over {n_gpus} GPU(s)")

    p_bytes = wb if full else 4  # PEFT keeps adapter weights in fp32
    lora_w = 0 if full else trainable * 4
    grads = trainable * p_bytes
    if zero >= 2:
        grads /= n_gpus
    if zero:
        opt = trainable * 12  # DeepSpeed: fp32 master copy + Adam m + v
        opt = 0 if offload else opt / n_gpus
    elif cfg.optim in ("paged_adamw_8bit", "adamw_8bit"):
        opt = trainable * 2
    elif cfg.optim == "sgd":
        opt = 0
    else:
        opt = trainable * 2 * p_bytes

    # activations of one micro-batch
    h, L, f, V = s["hidden"], s["layers"], s["intermediate"], s["vocab"]
    d = s.get("head_dim") or h // s["heads"]
    tokens = cfg.batch_size * cfg.max_length
    per_layer = 6 * h + 2 * s["kv_heads"] * d + 4 * f
    if not full and cfg.lora_dropout > 0:
        per_layer += 6 * h + f  # each LoRA branch keeps its own dropped-out copy of its input
    ckpt = _use_checkpointing(cfg, n["total"])
    # checkpointing keeps each layer's input (L * h); offload moves those to CPU RAM
    act_ckpt = tokens * act_b * ((0 if cfg.gradient_checkpointing == "offload" else L * h) + per_layer)
    act_full = tokens * act_b * L * per_layer
    activations = act_ckpt if ckpt else act_full
    # logits in 16-bit, their fp32 upcast and its gradient; the fused loss works on chunks of rows instead
    logits = tokens * V * (act_b + 4 + 4)
    if fused_loss:
        logits = min(logits, 8 * 1024 * V * (act_b + 4 + 4)) / 4
        notes.append("fused linear cross-entropy: logits computed chunk by chunk")

    total = weights + lora_w + grads + opt + activations + logits
    breakdown = {
        "weights": weights / GIB, "lora_params": lora_w / GIB, "gradients": grads / GIB,
        "optimizer": opt / GIB, "activations": activations / GIB, "logits": logits / GIB,
    }
    if cfg.gradient_checkpointing == "auto":
        notes.append(f"gradient_checkpointing auto assumed {'on' if ckpt else 'off'} "
                     f"({n['total'] / 1e9:.2f}B params; on from 1B)")
    if offload:
        notes.append("offload: optimizer state lives in CPU RAM "
                     f"({trainable * 12 / GIB:.1f} GiB there)")
    return {
        "model": cfg.pretrained_model_name_or_path, "shape_source": s.get("source", "given"),
        "method": cfg.method, "n_gpus": n_gpus, "deepspeed": stage, "gradient_checkpointing": ckpt,
        "params": n["total"], "trainable_params": trainable, "tokens_per_step": tokens,
        "breakdown_gib": {k: round(v, 3) for k, v in breakdown.items()},
        "activations_no_ckpt_gib": round(act_full / GIB, 3), "activations_ckpt_gib": round(act_ckpt / GIB, 3),
        "total_gib": round(total / GIB, 2), "reserved_gib": round(total * 1.1 / GIB + 0.5, 2),
        "notes": notes, "formula": FORMULA,
    }


def format_estimate(est: dict[str, Any]) -> str:
    """A human table of an estimate() result."""
    lines = [f"{est['model']}  method={est['method']}  gpus={est['n_gpus']}  deepspeed={est['deepspeed']}  "
             f"gradient_checkpointing={'on' if est['gradient_checkpointing'] else 'off'}",
             f"params {est['params'] / 1e6:,.1f}M, trainable {est['trainable_params'] / 1e6:,.2f}M, "
             f"{est['tokens_per_step']} tokens per micro-batch  (shape: {est['shape_source']})", ""]
    for k, v in est["breakdown_gib"].items():
        lines.append(f"  {k:<12} {v:8.2f} GiB")
    lines.append(f"  {'total':<12} {est['total_gib']:8.2f} GiB   (~{est['reserved_gib']:.1f} GiB in nvidia-smi)")
    lines += [f"  note: {n}" for n in est["notes"]]
    lines += ["", "formula:"] + ["  " + ln for ln in est["formula"].splitlines()]
    return "\n".join(lines)
