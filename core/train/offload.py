"""Gradient checkpointing with the saved layer inputs in CPU RAM (gradient_checkpointing: offload).

Plain checkpointing keeps one hidden state per decoder layer on the GPU (layers x tokens x hidden: 0.8 GiB
for a 7B at 4,096 tokens) and recomputes the rest in the backward pass. Here those inputs are copied to
pinned CPU memory as the forward pass goes (on the GPU's stream, so the copy overlaps the next layer)
and brought back just before the layer's recompute; the GPU then holds one layer's activations at a time.
That is what lets a 7B QLoRA run 4 packed rows per pass in 8 GiB (bench/results). Single-process runs only:
the recompute happens inside backward() like reentrant checkpointing, which DDP/DeepSpeed handle differently.

    from core.train import offload; offload.enable(model)   # after get_peft_model + enable_input_require_grads
"""

from __future__ import annotations

import torch


class _OffloadedLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run, hidden, *args):
        ctx.run, ctx.args, ctx.device = run, args, hidden.device
        # the recompute must see the same dropout masks and the same autocast as this forward
        ctx.cpu_rng = torch.get_rng_state()
        ctx.gpu_rng = torch.cuda.get_rng_state(hidden.device) if hidden.is_cuda else None
        ctx.autocast = (torch.is_autocast_enabled(hidden.device.type), torch.get_autocast_dtype(hidden.device.type))
        ctx.saved = hidden.detach().to("cpu", non_blocking=True)
        with torch.no_grad():
            out = run(hidden, *args)
        if not isinstance(out, torch.Tensor):
            raise TypeError("gradient_checkpointing: offload needs decoder layers that return a tensor "
                            f"(got {type(out).__name__}); use gradient_checkpointing: true")
        return out

    @staticmethod
    def backward(ctx, grad):
        hidden = ctx.saved.to(ctx.device, non_blocking=True).requires_grad_(True)
        ctx.saved = None
        devices = [ctx.device] if ctx.gpu_rng is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(ctx.cpu_rng)
            if ctx.gpu_rng is not None:
                torch.cuda.set_rng_state(ctx.gpu_rng, ctx.device)
            with torch.enable_grad(), torch.autocast(ctx.device.type, dtype=ctx.autocast[1], enabled=ctx.autocast[0]):
                out = ctx.run(hidden, *ctx.args)
        torch.autograd.backward(out, grad)
        return (None, hidden.grad) + (None,) * len(ctx.args)


def offloaded_checkpoint(run, hidden: torch.Tensor, *args):
    """Drop-in for transformers' `_gradient_checkpointing_func(partial(forward, ...), hidden_states)`."""
    return _OffloadedLayer.apply(run, hidden, *args)


def enable(model) -> int:
    """Checkpoint every decoder layer of `model` (PEFT-wrapped or not) with offloading; returns how many."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    n = 0
    for module in model.modules():
        if isinstance(module, GradientCheckpointingLayer):
            module.gradient_checkpointing = True
            module._gradient_checkpointing_func = offloaded_checkpoint
            n += 1
    if hasattr(model, "config"):
        model.config.use_cache = False
    return n
