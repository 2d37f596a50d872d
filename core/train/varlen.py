"""Padding-free attention for packed rows through PyTorch's own flash kernel (no flash-attn wheel needed).

A packed row holds several samples; per-sample position ids say where each one starts. sdpa can only
keep them apart with a dense block-diagonal mask, which rules out its flash kernel; flash-attn's
varlen kernel skips the masked blocks altogether. PyTorch >= 2.10 ships that kernel as
torch.nn.attention.varlen.varlen_attn, so the studio registers it with transformers under the
name "studio_varlen". The sample boundaries come from the collator (cu_seq_lens_*, computed on the
CPU) or, failing that, from the position ids. Everything that is not a packed training forward
(generation with a KV cache, right-padded rows) goes to transformers' causal sdpa path, so one model
serves training and the evaluation answers in between (see register() for why no mask is needed).

    from core.train.varlen import register, available
    if available(): register(); AutoModelForCausalLM.from_pretrained(path, attn_implementation="studio_varlen")
"""

from __future__ import annotations

import functools
import inspect

import torch

NAME = "studio_varlen"
# the last position_ids tensor and its (cu_seqlens, longest): computed once per forward, not once per layer.
# Holding the tensor itself keeps its memory from being reused, so `is` cannot match a newer batch.
_seen: dict = {}


def available() -> bool:
    """True on a CUDA machine whose PyTorch has the varlen flash kernel."""
    if not torch.cuda.is_available():
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    major, _ = torch.cuda.get_device_capability()
    return major >= 8  # the flash kernel needs Ampere or newer


def boundaries(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """cu_seqlens (int32, starts of every sample + the end) and the longest sample, from position ids.

    On the CPU (the collator) this is free; on the GPU the int() is a host sync.
    """
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0, as_tuple=True)[0]
    if starts.numel() == 0 or int(starts[0]) != 0:  # a row that does not begin a sample: treat it as one
        starts = torch.cat([starts.new_zeros(1), starts])
    cu = torch.cat([starts, starts.new_tensor([flat.numel()])]).to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())


def segments(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """boundaries() of the forward's position ids, computed once per forward, not once per layer."""
    if _seen.get("tensor") is position_ids and _seen.get("version") == position_ids._version:
        return _seen["value"]
    value = boundaries(position_ids)
    _seen.update(tensor=position_ids, version=position_ids._version, value=value)
    return value


@functools.cache
def _kernel_params() -> frozenset[str]:
    """varlen_attn's keyword names, read once: its signature changed between PyTorch releases."""
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     position_ids=None, **kwargs):
    """transformers attention interface: (B, H, S, D) in, (B, S, H, D) out."""
    from torch.nn.attention.varlen import varlen_attn
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    b, hq, s, d = query.shape
    packed_forward = (module.training and position_ids is not None and key.shape[2] == s and dropout == 0.0
                      and query.dtype in (torch.bfloat16, torch.float16) and kwargs.get("sliding_window") is None)
    params = _kernel_params()
    if scaling is not None and abs(scaling - d ** -0.5) > 1e-6 and "scale" not in params:
        packed_forward = False  # a kernel without a scale argument only does 1/sqrt(d)
    if not packed_forward:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    hk = key.shape[1]
    if kwargs.get("cu_seq_lens_q") is not None and kwargs.get("max_length_q") is not None:
        cu, longest = kwargs["cu_seq_lens_q"], int(kwargs["max_length_q"])  # from the collator: no host sync
    else:
        cu, longest = segments(position_ids if position_ids.shape[0] == b else position_ids.expand(b, -1))
    q = query.transpose(1, 2).reshape(b * s, hq, d)
    k = key.transpose(1, 2).reshape(b * s, hk, d)
    v = value.transpose(1, 2).reshape(b * s, hk, d)
    # the causal switch moved between releases: is_causal (2.10) -> window_size=(-1, 0) (later)
    kw: dict = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    if hk != hq:
        if "enable_gqa" in params:
            kw["enable_gqa"] = True
        else:  # older kernels want as many K/V heads as query heads
            k = k.repeat_interleave(hq // hk, dim=1)
            v = v.repeat_interleave(hq // hk, dim=1)
    if scaling is not None and "scale" in params:
        kw["scale"] = scaling
    out = varlen_attn(q, k, v, cu, cu, longest, longest, **kw)
    return out.reshape(b, s, hq, d), None


def register() -> str:
    """Make "studio_varlen" a transformers attention implementation (idempotent); returns the name.

    No mask function is registered with it, on purpose: transformers then skips mask building for this
    name altogether. For packed rows that work was wasted (the kernel takes sample boundaries, not a mask)
    and cost a host sync per forward (its packed-sequence check) plus an s x s mask. The other inputs this
    model sees while training are unpadded or right-padded (the evaluation answers, one prompt at a time;
    unpacked rows), where causal sdpa without a mask gives the same result: a real token never looks at the
    padding after it.
    """
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, varlen_attention)
    return NAME
