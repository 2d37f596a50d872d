"""FP8 (e4m3) GEMMs for the frozen base weights under LoRA, on GPUs with FP8 tensor cores (Hopper+).

A LoRA step on a bf16 model spends most of its time in the frozen base's GEMMs: the forward X.W^T and the
input gradient dY.W (the base weights get no gradient). Both run here in FP8 with one scale per row:
W is quantized once, twice (per output row for the forward, per input column for the backward, which is
what torch._scaled_mm's row-wise scaling needs), and the activations / incoming gradients are quantized
per token as they come. The bf16 copy of W is then dropped, so memory stays the same. LoRA's own small
matrices stay in 16/32-bit. Opt-in (RunConfig.fp8_base): on the H100 it made a 7B LoRA step 14% faster,
but the loss curve drifted 7.6% from bf16 over 50 steps (bench/results), so it is not the default.

    from core.train import fp8; fp8.convert(peft_model)    # after get_peft_model
"""

from __future__ import annotations

import functools

import torch

E4M3 = torch.float8_e4m3fn
_MAX = 448.0  # largest finite e4m3 value


def available() -> bool:
    """A CUDA GPU with FP8 tensor cores (compute capability 8.9 or newer) and torch._scaled_mm."""
    if not torch.cuda.is_available() or not hasattr(torch, "_scaled_mm"):
        return False
    return torch.cuda.get_device_capability() >= (8, 9)


def _quantize_eager(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp_min(1e-12)
    scale = amax / _MAX
    return (x.float() / scale).to(E4M3), scale


@functools.cache
def _quantize_fn():
    # compiled, the abs/amax/scale/cast chain is one kernel instead of five passes over the activations
    if torch.cuda.is_available():
        try:
            return torch.compile(_quantize_eager, dynamic=True)
        except Exception:  # no compiler backend here: the eager version is the same maths
            pass
    return _quantize_eager


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / scale in e4m3, scale (rows, 1) fp32) with one scale per row of a 2-D tensor."""
    return (_quantize_fn() if x.is_cuda else _quantize_eager)(x)


def _mm(a: torch.Tensor, sa: torch.Tensor, b_rows: torch.Tensor, sb: torch.Tensor, dtype) -> torch.Tensor:
    """a (M, K) fp8 @ b_rows (N, K)^T, row-wise scales; M padded to a multiple of 16 for the kernel."""
    m = a.shape[0]
    pad = -m % 16
    if pad:
        a = torch.cat([a, a.new_zeros(pad, a.shape[1])])
        sa = torch.cat([sa, sa.new_ones(pad, 1)])
    out = torch._scaled_mm(a, b_rows.t(), scale_a=sa, scale_b=sb, out_dtype=dtype)
    return out[:m] if pad else out


class _FP8Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_fwd, s_fwd, w_bwd, s_bwd, bias):
        dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float32) else torch.bfloat16
        shape = x.shape
        xq, sx = quantize_rows(x.reshape(-1, shape[-1]))
        y = _mm(xq, sx, w_fwd, s_fwd, dtype)
        if bias is not None:
            y = y + bias.to(dtype)
        ctx.save_for_backward(w_bwd, s_bwd)
        ctx.shape, ctx.dtype = shape, x.dtype
        return y.reshape(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        w_bwd, s_bwd = ctx.saved_tensors
        gq, sg = quantize_rows(grad.reshape(-1, grad.shape[-1]))
        dtype = grad.dtype if grad.dtype in (torch.bfloat16, torch.float32) else torch.bfloat16
        gx = _mm(gq, sg, w_bwd, s_bwd, dtype).to(ctx.dtype)
        return gx.reshape(ctx.shape), None, None, None, None, None


def _fp8_forward(self, x: torch.Tensor) -> torch.Tensor:
    return _FP8Linear.apply(x, self.fp8_w_fwd, self.fp8_s_fwd, self.fp8_w_bwd, self.fp8_s_bwd, self.bias)


def convert(model) -> int:
    """Swap every frozen nn.Linear under a LoRA layer to the FP8 path; returns how many were swapped."""
    import types

    from peft.tuners.lora import LoraLayer

    n = 0
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        base = module.get_base_layer()
        if type(base) is not torch.nn.Linear or base.weight.requires_grad:
            continue
        w = base.weight.data
        if w.shape[0] % 16 or w.shape[1] % 16 or not w.is_floating_point():
            continue
        wf, sf = quantize_rows(w)                   # rows = output features: the forward's scales
        wb, sb = quantize_rows(w.t().contiguous())  # rows = input features: the backward's scales
        base.register_buffer("fp8_w_fwd", wf, persistent=False)
        base.register_buffer("fp8_s_fwd", sf.reshape(1, -1), persistent=False)
        base.register_buffer("fp8_w_bwd", wb, persistent=False)
        base.register_buffer("fp8_s_bwd", sb.reshape(1, -1), persistent=False)
        # the 16-bit weight is no longer read: free it (its shape lives on in in_/out_features)
        base.weight = torch.nn.Parameter(w.new_empty(0), requires_grad=False)
        base.forward = types.MethodType(_fp8_forward, base)
        n += 1
    return n
