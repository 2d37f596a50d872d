"""InternLM2 / InternLM2.5 checkpoints on current transformers: convert to the native Llama layout and back.

InternLM2 hub folders ship their own modeling code written for transformers 4.x, which the pinned
transformers 5 may refuse. The architecture is Llama with other names and a fused attention
projection, so the studio converts the weights once and loads them with LlamaForCausalLM:

    wqkv [(kv_heads * (groups + 2)) * head_dim, hidden], per kv group [q_1 .. q_groups, k, v]
        -> q_proj, k_proj, v_proj
    wo -> o_proj;  w1 / w3 / w2 -> gate_proj / up_proj / down_proj
    tok_embeddings -> embed_tokens;  output -> lm_head;  attention_norm / ffn_norm -> input /
    post_attention_layernorm

The tokenizer (sentencepiece tokenizer.model, tokenizer.json when present) and the chat template are
kept; only the class name changes so no remote code is needed. The original config.json is kept as
internlm2_config.json so that convert_llama_to_internlm2 can write a merged model back in the
InternLM2 layout (and its remote code files) for tools that expect it.

    python -m core.internlm2 to-llama SRC DST      |      python -m core.internlm2 to-internlm2 SRC DST
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from core.errors import StudioError

ORIGINAL_CONFIG = "internlm2_config.json"
_TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "added_tokens.json", "generation_config.json", "chat_template.jinja")
_REMOTE_CODE = ("configuration_internlm2.py", "modeling_internlm2.py", "tokenization_internlm2.py",
                "tokenization_internlm2_fast.py")


def _read_config(folder: str | os.PathLike) -> dict[str, Any]:
    p = Path(folder) / "config.json"
    if not p.is_file():
        raise StudioError(f"{folder}: no config.json", "give a Hugging Face model folder")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise StudioError(f"{p}:{e.lineno}: not valid JSON ({e.msg})") from None


def is_internlm2(folder: str | os.PathLike) -> bool:
    """True for a folder holding an InternLM2/2.5 checkpoint in its own (remote-code) layout."""
    p = Path(folder) / "config.json"
    if not p.is_file():
        return False
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    archs = cfg.get("architectures") or []
    return cfg.get("model_type") == "internlm2" or any(a.startswith("InternLM2") for a in archs)


# ---------------------------------------------------------------------------- config

def llama_config_dict(cfg: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of a LlamaConfig equivalent to an InternLM2 config.json."""
    heads = cfg["num_attention_heads"]
    kw = dict(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=cfg.get("num_key_value_heads") or heads, hidden_act=cfg.get("hidden_act", "silu"),
        max_position_embeddings=cfg.get("max_position_embeddings", 2048), rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
        attention_bias=bool(cfg.get("bias", False)), mlp_bias=False,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        bos_token_id=cfg.get("bos_token_id"), eos_token_id=cfg.get("eos_token_id"), pad_token_id=cfg.get("pad_token_id"),
        initializer_range=cfg.get("initializer_range", 0.02),
    )
    rope = {"rope_type": "default", "rope_theta": float(cfg.get("rope_theta", 10000.0))}
    scaling = cfg.get("rope_scaling")
    if scaling:
        kind = scaling.get("type") or scaling.get("rope_type")
        if kind not in ("dynamic", "linear"):
            raise StudioError(f"InternLM2 rope_scaling type {kind!r} is not supported", "expected dynamic or linear")
        rope.update(rope_type=kind, factor=float(scaling["factor"]))
    kw["rope_parameters"] = rope
    dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    if dtype:
        kw["dtype"] = dtype
    return kw


def _internlm2_config_from_llama(cfg: dict[str, Any]) -> dict[str, Any]:
    """An InternLM2 config.json for a Llama config (used when no original config was kept)."""
    rope = cfg.get("rope_parameters") or {}
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    scaling = None
    if rope.get("rope_type") in ("dynamic", "linear"):
        scaling = {"type": rope["rope_type"], "factor": rope["factor"]}
    return {
        "architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2",
        "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                     "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
                     "AutoModel": "modeling_internlm2.InternLM2ForCausalLM"},
        "vocab_size": cfg["vocab_size"], "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"], "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"], "num_key_value_heads": cfg["num_key_value_heads"],
        "hidden_act": cfg.get("hidden_act", "silu"), "max_position_embeddings": cfg["max_position_embeddings"],
        "rms_norm_eps": cfg["rms_norm_eps"], "bias": bool(cfg.get("attention_bias", False)), "rope_theta": theta,
        "rope_scaling": scaling, "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "bos_token_id": cfg.get("bos_token_id"), "eos_token_id": cfg.get("eos_token_id"),
        "pad_token_id": cfg.get("pad_token_id"), "torch_dtype": cfg.get("dtype") or cfg.get("torch_dtype"),
        "initializer_range": cfg.get("initializer_range", 0.02), "use_cache": True,
    }


# ---------------------------------------------------------------------------- weights

def split_wqkv(wqkv, num_heads: int, num_kv_heads: int, head_dim: int):
    """wqkv (or its bias) laid out per kv group as [q_1..q_g, k, v] -> (q, k, v) in Llama's order."""
    groups = num_heads // num_kv_heads
    rest = wqkv.shape[1:]
    w = wqkv.reshape(num_kv_heads, groups + 2, head_dim, *rest)
    q = w[:, :groups].reshape(num_heads * head_dim, *rest)
    k = w[:, groups].reshape(num_kv_heads * head_dim, *rest)
    v = w[:, groups + 1].reshape(num_kv_heads * head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()


def fuse_wqkv(q, k, v, num_heads: int, num_kv_heads: int, head_dim: int):
    """The inverse of split_wqkv."""
    import torch

    groups = num_heads // num_kv_heads
    rest = q.shape[1:]
    qg = q.reshape(num_kv_heads, groups, head_dim, *rest)
    kg = k.reshape(num_kv_heads, 1, head_dim, *rest)
    vg = v.reshape(num_kv_heads, 1, head_dim, *rest)
    return torch.cat([qg, kg, vg], dim=1).reshape(-1, *rest).contiguous()


_SIMPLE_TO_LLAMA = [
    (r"^model\.tok_embeddings\.", "model.embed_tokens."),
    (r"^output\.", "lm_head."),
    (r"^model\.norm\.", "model.norm."),
    (r"\.attention\.wo\.", ".self_attn.o_proj."),
    (r"\.feed_forward\.w1\.", ".mlp.gate_proj."),
    (r"\.feed_forward\.w3\.", ".mlp.up_proj."),
    (r"\.feed_forward\.w2\.", ".mlp.down_proj."),
    (r"\.attention_norm\.", ".input_layernorm."),
    (r"\.ffn_norm\.", ".post_attention_layernorm."),
]
_SIMPLE_TO_INTERNLM2 = [
    (r"^model\.embed_tokens\.", "model.tok_embeddings."),
    (r"^lm_head\.", "output."),
    (r"\.self_attn\.o_proj\.", ".attention.wo."),
    (r"\.mlp\.gate_proj\.", ".feed_forward.w1."),
    (r"\.mlp\.up_proj\.", ".feed_forward.w3."),
    (r"\.mlp\.down_proj\.", ".feed_forward.w2."),
    (r"\.input_layernorm\.", ".attention_norm."),
    (r"\.post_attention_layernorm\.", ".ffn_norm."),
]


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pat, rep in rules:
        key = re.sub(pat, rep, key)
    return key


def _head_dims(cfg: dict[str, Any]) -> tuple[int, int, int]:
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    return heads, kv, cfg.get("head_dim") or cfg["hidden_size"] // heads


def internlm2_to_llama_state(sd: dict, cfg: dict[str, Any]) -> dict:
    """Rename and split one (partial) InternLM2 state dict into Llama names."""
    heads, kv, hd = _head_dims(cfg)
    out = {}
    for key, t in sd.items():
        if ".attention.wqkv." in key:
            q, k, v = split_wqkv(t, heads, kv, hd)
            base = key.replace(".attention.wqkv.", ".self_attn.{}.")
            out[base.format("q_proj")], out[base.format("k_proj")], out[base.format("v_proj")] = q, k, v
        elif key.endswith("rotary_emb.inv_freq"):
            continue  # a buffer the model rebuilds
        else:
            out[_rename(key, _SIMPLE_TO_LLAMA)] = t
    return out


def llama_to_internlm2_state(sd: dict, cfg: dict[str, Any]) -> dict:
    """Rename and fuse a Llama state dict into InternLM2 names (q/k/v of a layer must be in `sd` together)."""
    heads, kv, hd = _head_dims(cfg)
    out, pending = {}, {}
    for key, t in sd.items():
        m = re.search(r"\.self_attn\.(q|k|v)_proj\.(weight|bias)$", key)
        if m:
            prefix = key[: m.start()]
            pending.setdefault((prefix, m.group(2)), {})[m.group(1)] = t
            continue
        out[_rename(key, _SIMPLE_TO_INTERNLM2)] = t
    for (prefix, kind), parts in pending.items():
        if set(parts) != {"q", "k", "v"}:
            raise StudioError(f"{prefix}: q/k/v projections are split across shards; cannot fuse them",
                              "re-save the model with a larger max_shard_size")
        out[f"{prefix}.attention.wqkv.{kind}"] = fuse_wqkv(parts["q"], parts["k"], parts["v"], heads, kv, hd)
    return out


def _shards(folder: Path) -> list[Path]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        p = folder / index
        if p.is_file():
            files = sorted(set(json.loads(p.read_text(encoding="utf-8"))["weight_map"].values()))
            return [folder / f for f in files]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).is_file():
            return [folder / single]
    raise StudioError(f"{folder}: no model weights (model.safetensors or pytorch_model.bin)")


def _load_shard(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


def _convert_weights(src: Path, tmp: Path, fn, cfg: dict[str, Any]) -> None:
    """Convert shard by shard (memory = one shard); always writes safetensors with a fresh index."""
    from safetensors.torch import save_file

    shards = _shards(src)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        sd = fn(_load_shard(shard), cfg)
        name = "model.safetensors" if len(shards) == 1 else f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp / name), metadata={"format": "pt"})
        for k, v in sd.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def _finish(tmp: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)  # the folder appears whole or not at all
    return dst


def _start(src: Path, dst: Path) -> Path:
    if src.resolve() == dst.resolve():
        raise StudioError(f"{dst}: the output folder must differ from the input")
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


# ---------------------------------------------------------------------------- public API

def convert_internlm2_to_llama(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write an InternLM2 checkpoint folder as a LlamaForCausalLM folder (tokenizer + chat template kept)."""
    from transformers import LlamaConfig

    src, dst = Path(src), Path(dst)
    cfg = _read_config(src)
    if not is_internlm2(src):
        raise StudioError(f"{src} is not an InternLM2 checkpoint (model_type {cfg.get('model_type')!r})")
    tmp = _start(src, dst)
    try:
        llama = LlamaConfig(**llama_config_dict(cfg))
        llama.architectures = ["LlamaForCausalLM"]
        llama.save_pretrained(tmp)
        (tmp / ORIGINAL_CONFIG).write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
        _convert_weights(src, tmp, internlm2_to_llama_state, cfg)
        _copy_tokenizer(src, tmp, to_llama=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _finish(tmp, dst)


def convert_llama_to_internlm2(src: str | os.PathLike, dst: str | os.PathLike,
                               original: str | os.PathLike | None = None) -> Path:
    """Write a Llama-layout folder (e.g. a merged model) back in the InternLM2 layout.

    The InternLM2 config comes from `original` (the hub folder) or from the internlm2_config.json that
    convert_internlm2_to_llama left; the remote code files are copied from `original` when given.
    """
    src, dst = Path(src), Path(dst)
    cfg = _read_config(src)
    if cfg.get("model_type") != "llama":
        raise StudioError(f"{src} is not a Llama-layout model (model_type {cfg.get('model_type')!r})")
    kept = src / ORIGINAL_CONFIG
    if original is not None and (Path(original) / "config.json").is_file():
        icfg = _read_config(original)
    elif kept.is_file():
        icfg = json.loads(kept.read_text(encoding="utf-8"))
    else:
        icfg = _internlm2_config_from_llama(cfg)
    # shapes and dtype from the model being written, the rest (auto_map, names) from the original
    fresh = _internlm2_config_from_llama(cfg)
    for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "torch_dtype"):
        if fresh.get(k) is not None:
            icfg[k] = fresh[k]
    tmp = _start(src, dst)
    try:
        (tmp / "config.json").write_text(json.dumps(icfg, indent=2, ensure_ascii=False), encoding="utf-8")
        _convert_weights(src, tmp, llama_to_internlm2_state, cfg)
        _copy_tokenizer(src, tmp, to_llama=False, original=Path(original) if original else None)
        if original:
            for name in _REMOTE_CODE:
                if (Path(original) / name).is_file():
                    shutil.copy2(Path(original) / name, tmp / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _finish(tmp, dst)


def _copy_tokenizer(src: Path, tmp: Path, *, to_llama: bool, original: Path | None = None) -> None:
    for name in _TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    tc = tmp / "tokenizer_config.json"
    if not tc.is_file():
        return
    data = json.loads(tc.read_text(encoding="utf-8"))
    if to_llama:
        # The sentencepiece model is Llama-style; the native class reads it without remote code.
        data.pop("auto_map", None)
        data["tokenizer_class"] = "LlamaTokenizer"
    elif original is not None and (original / "tokenizer_config.json").is_file():
        orig = json.loads((original / "tokenizer_config.json").read_text(encoding="utf-8"))
        for k in ("auto_map", "tokenizer_class"):
            if k in orig:
                data[k] = orig[k]
    tc.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def ensure_native(folder: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder to load with native transformers: `folder` itself, or its Llama conversion (made once).

    The conversion lives beside the other models (workspace/models/<name>-llama) and is reused while
    it is newer than the source config.
    """
    folder = Path(folder)
    if not is_internlm2(folder):
        return folder
    if cache_dir is None:
        from core.workspace import sub

        cache_dir = sub("models")
    dst = Path(cache_dir) / f"{folder.resolve().name}-llama"
    if (dst / "config.json").is_file() and (dst / "config.json").stat().st_mtime >= (folder / "config.json").stat().st_mtime:
        return dst
    return convert_internlm2_to_llama(folder, dst)


# ---------------------------------------------------------------------------- reference + test model

def build_tiny_internlm2(out_dir: str | os.PathLike, *, seed: int = 0, vocab: int = 320, hidden: int = 64,
                         layers: int = 2, heads: int = 4, kv_heads: int = 2, intermediate: int = 128,
                         bias: bool = False, rope_scaling: dict | None = None) -> Path:
    """A random InternLM2-layout checkpoint (config.json with auto_map + safetensors), for tests."""
    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2",
           "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                        "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
           "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": intermediate,
           "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
           "hidden_act": "silu", "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "bias": bias,
           "rope_theta": 1000000.0, "rope_scaling": rope_scaling, "tie_word_embeddings": False,
           "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "torch_dtype": "float32"}
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.08):
        return torch.randn(*shape, generator=g) * scale

    hd = hidden // heads
    sd = {"model.tok_embeddings.weight": rnd(vocab, hidden, scale=0.5), "output.weight": rnd(vocab, hidden),
          "model.norm.weight": 1 + rnd(hidden, scale=0.1)}
    for i in range(layers):
        p = f"model.layers.{i}."
        sd[p + "attention.wqkv.weight"] = rnd((heads + 2 * kv_heads) * hd, hidden)
        sd[p + "attention.wo.weight"] = rnd(hidden, heads * hd)
        if bias:
            sd[p + "attention.wqkv.bias"] = rnd((heads + 2 * kv_heads) * hd)
            sd[p + "attention.wo.bias"] = rnd(hidden)
        sd[p + "feed_forward.w1.weight"] = rnd(intermediate, hidden)
        sd[p + "feed_forward.w3.weight"] = rnd(intermediate, hidden)
        sd[p + "feed_forward.w2.weight"] = rnd(hidden, intermediate)
        sd[p + "attention_norm.weight"] = 1 + rnd(hidden, scale=0.1)
        sd[p + "ffn_norm.weight"] = 1 + rnd(hidden, scale=0.1)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return out


def reference_forward(folder: str | os.PathLike, input_ids):
    """Logits of an InternLM2-layout checkpoint computed straight from its weights, in fp32.

    Written from InternLM2's documented semantics (not its remote code): RMSNorm, rotary embeddings
    on the rotate-half convention, grouped wqkv laid out per kv group as [q_1..q_g, k, v], causal
    attention with kv heads shared by their group, and SwiGLU w2(silu(w1 x) * w3 x).
    """
    import torch

    folder = Path(folder)
    cfg = _read_config(folder)
    sd = {}
    for shard in _shards(folder):
        sd.update({k: v.float() for k, v in _load_shard(shard).items()})
    heads, kv, hd = _head_dims(cfg)
    groups = heads // kv
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = float(cfg.get("rope_theta", 10000.0))
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 1:
        ids = ids[None]
    b, s = ids.shape

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(s, dtype=torch.float32), inv)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(x):  # x: b, h, s, d
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    x = sd["model.tok_embeddings.weight"][ids]
    mask = torch.full((s, s), float("-inf")).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "attention_norm.weight"])
        qkv = h @ sd[p + "attention.wqkv.weight"].T
        if p + "attention.wqkv.bias" in sd:
            qkv = qkv + sd[p + "attention.wqkv.bias"]
        qkv = qkv.view(b, s, kv, groups + 2, hd)
        q = qkv[:, :, :, :groups].reshape(b, s, heads, hd).transpose(1, 2)
        k = qkv[:, :, :, groups].transpose(1, 2)
        v = qkv[:, :, :, groups + 1].transpose(1, 2)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(groups, dim=1)  # query head j reads kv head j // groups
        v = v.repeat_interleave(groups, dim=1)
        att = (q @ k.transpose(-1, -2)) / hd**0.5 + mask
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, s, heads * hd)
        o = o @ sd[p + "attention.wo.weight"].T
        if p + "attention.wo.bias" in sd:
            o = o + sd[p + "attention.wo.bias"]
        x = x + o
        h = rms(x, sd[p + "ffn_norm.weight"])
        ff = torch.nn.functional.silu(h @ sd[p + "feed_forward.w1.weight"].T) * (h @ sd[p + "feed_forward.w3.weight"].T)
        x = x + ff @ sd[p + "feed_forward.w2.weight"].T
    x = rms(x, sd["model.norm.weight"])
    head = sd.get("output.weight", sd["model.tok_embeddings.weight"])
    return x @ head.T


def reference_greedy(folder: str | os.PathLike, input_ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation with reference_forward (no cache: recomputes the prefix each step)."""
    import torch

    ids = list(input_ids)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            ids.append(int(reference_forward(folder, torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(input_ids):]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in ("to-llama", "to-internlm2"):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    fn = convert_internlm2_to_llama if args[0] == "to-llama" else convert_llama_to_internlm2
    print(fn(args[1], args[2]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
