"""The chunked head + cross-entropy driver (core/train/fused_ce.py) against torch's own, on the CPU.

The GPU twin (tests/gpu/test_fused_ce_gpu.py) runs the same driver with Liger's kernel and without host syncs.
"""

from __future__ import annotations

import pytest
import torch

from core.train.fused_ce import IGNORE, chunk_rows, linear_cross_entropy_sum


def test_summed_loss_and_gradient_equal_torch_across_chunks_and_ignored_rows():
    torch.manual_seed(0)
    n, h, vocab = 37, 16, 50
    hidden = torch.randn(n, h, dtype=torch.float64)
    weight = torch.randn(vocab, h, dtype=torch.float64)
    target = torch.randint(0, vocab, (n,))
    target[[0, 5, 6, 36]] = IGNORE  # sample starts and padding carry no loss
    a = hidden.clone().requires_grad_()
    loss = linear_cross_entropy_sum(a, weight, target, chunk=8)  # 5 chunks, the last one short
    (loss * 0.37).backward()  # the caller's division by the step's label count
    b = hidden.clone().requires_grad_()
    want = torch.nn.functional.cross_entropy(b @ weight.t(), target, ignore_index=IGNORE, reduction="sum")
    (want * 0.37).backward()
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    assert torch.allclose(a.grad, b.grad, atol=1e-6)
    assert a.grad[[0, 5, 6, 36]].abs().max() == 0 < a.grad[1].abs().min()  # a row without a label learns nothing


def test_all_rows_ignored_gives_zero_and_a_trainable_head_is_refused():
    hidden = torch.randn(4, 8, requires_grad=True)
    weight = torch.randn(10, 8)
    loss = linear_cross_entropy_sum(hidden, weight, torch.full((4,), IGNORE))
    loss.backward()
    assert loss.item() == 0.0 and hidden.grad.abs().max() == 0
    with pytest.raises(ValueError, match="frozen"):
        linear_cross_entropy_sum(hidden, weight.requires_grad_(), torch.zeros(4, dtype=torch.long))


def test_chunks_bound_the_transient_logits():
    assert chunk_rows(152064, 2) == 768  # Qwen2.5's vocabulary in bf16: 768 x 152k x 2 bytes <= 256 MiB
    assert chunk_rows(152064, 2) * 152064 * 2 <= 256 * 2**20
    assert chunk_rows(10_000_000, 4) == 128  # never below one GEMM tile
