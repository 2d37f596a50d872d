"""The language-model head and its cross-entropy in chunks of tokens, with no host sync (Liger's kernel, our driver).

Liger's fused linear cross-entropy never holds the whole logits (a 7B's 152k vocabulary over 8k tokens is 2.3 GiB
in bf16), but its driver reads the count of labelled tokens with `.item()` in the forward and compares the upstream
gradient with `torch.equal` in the backward: two host syncs per micro-batch. The count also reaches its Triton
kernel as an integer argument, which Triton specialises on (divisible by 16 or not), so the first micro-batch whose
count flipped that compiled a second variant mid-run: a 0.1-0.2 s stall at a random step.

This driver computes the summed loss, the form transformers uses with gradient accumulation (it divides by the
step's label count itself), so the kernel's integer arguments are constants. Only the rows that carry a label go
through the head when the collator has said which (prompt tokens need no logits). Per chunk: one GEMM for the logits,
Liger's kernel turns them in place into the loss and d(loss)/d(logits), one GEMM for the hidden states' gradient,
kept for the backward, which only scales it. The head's weight gets no gradient (LoRA and QLoRA freeze it): a
trainable head keeps Liger's own path. `STUDIO_FUSED_CE=0` keeps Liger's path everywhere.

    python -m pytest tests/unit/test_fused_ce.py          # the chunk driver against torch's cross-entropy (CPU)
    python -m pytest tests/gpu -k fused_ce                 # with Liger's kernel (GPU)
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os

import torch

from core.train.dataset import IGNORE

DRIVER = "studio driver (no host sync, labelled rows only)"
# transient logits per chunk are bounded by this many bytes (Liger bounds them by the hidden states' size)
CHUNK_BYTES = 256 * 2**20


def chunk_rows(vocab: int, itemsize: int) -> int:
    """Tokens per chunk: as many as keep one chunk's logits under CHUNK_BYTES, a multiple of 128 (GEMM tiles)."""
    return max(128, CHUNK_BYTES // (vocab * itemsize) // 128 * 128)


def _ce_rows_reference(logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor, ignore_index: int) -> None:
    """What Liger's kernel does, in torch: loss per row into `loss`, d(loss)/d(logits) into `logits` in place."""
    full = logits.float()
    valid = target != ignore_index
    safe = torch.where(valid, target, 0)
    lse = torch.logsumexp(full, dim=-1)
    picked = full.gather(1, safe[:, None])[:, 0]
    loss.copy_(torch.where(valid, lse - picked, 0.0))
    grad = torch.softmax(full, dim=-1)
    grad[torch.arange(len(safe), device=grad.device), safe] -= 1.0
    logits.copy_(grad * valid[:, None])


@functools.cache
def _liger_kernel():
    """Liger's cross-entropy Triton kernel, or None where it is missing or its arguments are not the known ones."""
    try:
        from liger_kernel.ops.cross_entropy import liger_cross_entropy_kernel
    except ImportError:
        return None
    want = {"X_ptr", "X_stride", "Y_ptr", "Y_stride", "weight_ptr", "loss_ptr", "z_loss_ptr", "loss_stride",
            "token_accuracy_ptr", "token_accuracy_stride", "predicted_tokens_ptr", "predicted_tokens_stride", "n_cols",
            "n_non_ignore", "sum_non_ignore_weight", "weight_sum", "ignore_index", "lse_square_scale",
            "label_smoothing", "reduction", "softcap", "RETURN_Z_LOSS", "RETURN_TOKEN_ACCURACY",
            "RETURN_PREDICTED_TOKENS", "BLOCK_SIZE", "HAS_WEIGHT", "HAS_SOFTCAPPING", "HAS_GRADIENTS"}
    fn = getattr(liger_cross_entropy_kernel, "fn", None)
    if fn is None or set(inspect.signature(fn).parameters) != want:
        return None
    return liger_cross_entropy_kernel


def _ce_rows_liger(logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor, ignore_index: int) -> None:
    import triton

    _liger_kernel()[(logits.shape[0],)](
        X_ptr=logits, X_stride=logits.stride(-2), Y_ptr=target, Y_stride=target.stride(-1), weight_ptr=None,
        loss_ptr=loss, z_loss_ptr=None, loss_stride=loss.stride(-1), token_accuracy_ptr=None, token_accuracy_stride=0,
        predicted_tokens_ptr=None, predicted_tokens_stride=0, n_cols=logits.shape[1],
        # unused by a summed loss; constants, so the kernel is compiled once
        n_non_ignore=1, sum_non_ignore_weight=1, weight_sum=0.0,
        ignore_index=ignore_index, lse_square_scale=0.0, label_smoothing=0.0, reduction="sum", softcap=None,
        RETURN_Z_LOSS=False, RETURN_TOKEN_ACCURACY=False, RETURN_PREDICTED_TOKENS=False,
        BLOCK_SIZE=min(32768, triton.next_power_of_2(logits.shape[1])), HAS_WEIGHT=False, HAS_SOFTCAPPING=False,
        HAS_GRADIENTS=True, num_warps=32,
    )


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, target, ignore_index, chunk):
        n, vocab = hidden.shape[0], weight.shape[0]
        need = ctx.needs_input_grad[0]
        kernel = _ce_rows_liger if hidden.is_cuda and _liger_kernel() is not None else _ce_rows_reference
        loss = torch.zeros(n, dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden) if need else None
        buf = torch.empty((min(chunk, n), vocab), dtype=hidden.dtype, device=hidden.device)
        for start in range(0, n, chunk):
            end = min(start + chunk, n)
            logits = buf[: end - start]
            torch.mm(hidden[start:end], weight.t(), out=logits)
            kernel(logits, target[start:end], loss[start:end], ignore_index)
            if need:
                torch.mm(logits, weight, out=grad[start:end])
        ctx.save_for_backward(grad)
        return loss.sum()

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return grad * grad_out.to(grad.dtype), None, None, None, None


def linear_cross_entropy_sum(hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                             ignore_index: int = IGNORE, chunk: int | None = None,
                             rows: torch.Tensor | None = None) -> torch.Tensor:
    """sum over labelled rows of cross_entropy(hidden @ weight.T, target), fp32; gradient to `hidden` only.

    `rows`: the indices of the labelled rows when known beforehand (the collator's `studio_head_rows`); only
    they go through the head, the others get a zero gradient, as they would anyway.
    """
    if weight.requires_grad:
        raise ValueError("linear_cross_entropy_sum gives no gradient to the head's weight; it must be frozen")
    hidden = hidden.reshape(-1, hidden.shape[-1]).to(weight.dtype)
    target = target.reshape(-1).to(hidden.device)
    if rows is not None and rows.numel() < target.numel():
        rows = rows.to(hidden.device, non_blocking=True)
        hidden, target = hidden.index_select(0, rows), target.index_select(0, rows)
    hidden, target = hidden.contiguous(), target.contiguous()
    chunk = chunk or chunk_rows(weight.shape[0], weight.element_size())
    return _LinearCrossEntropy.apply(hidden, weight, target, ignore_index, chunk)


# the labelled rows of the micro-batch now in the forward (set by the engine around each forward, see rows_for)
_rows: list = []


@contextlib.contextmanager
def rows_for(rows: torch.Tensor | None):
    """While a forward runs: the head only needs these rows (flat indices over batch x length)."""
    _rows[:] = [rows]
    try:
        yield
    finally:
        _rows.clear()


# the keyword arguments Liger's loss helper may pass on, and the values this driver implements
_DEFAULTS = {"bias": None, "ce_weight": None, "lse_square_scale": 0.0, "label_smoothing": 0.0, "return_z_loss": False,
             "use_token_scaling": False}


def install() -> tuple[bool, str]:
    """Route Liger's causal-LM loss (every model family it patches) through this driver: (on, what was done)."""
    if os.environ.get("STUDIO_FUSED_CE") == "0":
        return False, "Liger's own (STUDIO_FUSED_CE=0)"
    try:
        from liger_kernel.transformers.model import loss_utils
    except ImportError:
        return False, "Liger's own (liger-kernel not installed)"
    if _liger_kernel() is None:
        return False, "Liger's own (its cross-entropy kernel's arguments changed)"
    original = loss_utils.fixed_fused_linear_cross_entropy
    if getattr(original, "studio_driver", False):
        return True, DRIVER

    def fixed_fused_linear_cross_entropy(hidden_states, lm_head_weight, target, num_items_in_batch=None,
                                         ignore_index=IGNORE, final_logit_softcapping=None, accum_dtype=None,
                                         return_token_accuracy=False, return_predicted_tokens=False, **kwargs):
        plain = (final_logit_softcapping is None and accum_dtype is None and not return_token_accuracy
                 and not return_predicted_tokens and not lm_head_weight.requires_grad and hidden_states.is_cuda
                 and all(k in _DEFAULTS and v == _DEFAULTS[k] for k, v in kwargs.items()))
        if not plain:
            return original(hidden_states, lm_head_weight, target, num_items_in_batch, ignore_index,
                            final_logit_softcapping, accum_dtype, return_token_accuracy=return_token_accuracy,
                            return_predicted_tokens=return_predicted_tokens, **kwargs)
        rows = _rows[0] if _rows else None
        if rows is not None and rows.numel() > target.numel():
            rows = None  # not this forward's rows (a shape check only: reading the values would be a sync)
        loss = linear_cross_entropy_sum(hidden_states, lm_head_weight, target, ignore_index, rows=rows)
        if num_items_in_batch is None:  # a mean over this batch's labels, still without reading the count
            return loss / (target != ignore_index).sum().clamp(min=1)
        return loss / num_items_in_batch

    fixed_fused_linear_cross_entropy.studio_driver = True
    loss_utils.fixed_fused_linear_cross_entropy = fixed_fused_linear_cross_entropy
    return True, DRIVER
