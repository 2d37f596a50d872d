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


def test_only_the_labelled_rows_through_the_head_gives_the_same_loss_and_gradient():
    from core.train.dataset import Collator, labelled_rows

    rows = [[{"input_ids": [5, 6, 7, 8], "labels": [IGNORE, IGNORE, 7, 8]}, {"input_ids": [9, 4], "labels": [9, 4]}],
            [{"input_ids": [3, 3, 3], "labels": [IGNORE, 3, 3]}]]
    for varlen in (False, True):
        batch = Collator(pad_token_id=0, packed=True, varlen=varlen, head_rows=True)(rows)
        labels = batch["labels"]
        shifted = torch.cat([labels[:, 1:], torch.full((labels.shape[0], 1), IGNORE)], dim=1).reshape(-1)
        assert batch["studio_head_rows"].tolist() == torch.nonzero(shifted != IGNORE)[:, 0].tolist()
    assert labelled_rows(torch.tensor([[IGNORE, 1, IGNORE, 2]])).tolist() == [0, 2]
    assert "studio_head_rows" not in Collator(pad_token_id=0, packed=True)(rows)

    torch.manual_seed(1)
    hidden = torch.randn(2, 9, 8, dtype=torch.float64)
    weight = torch.randn(30, 8, dtype=torch.float64)
    target = torch.randint(0, 30, (2, 9))
    target[0, :5] = IGNORE
    target[1, 7:] = IGNORE
    keep = torch.nonzero(target.reshape(-1) != IGNORE)[:, 0]
    a, b = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    full = linear_cross_entropy_sum(a, weight, target)
    some = linear_cross_entropy_sum(b, weight, target, rows=keep)
    full.backward()
    some.backward()
    assert some.item() == pytest.approx(full.item(), rel=1e-6)
    assert torch.allclose(a.grad, b.grad, atol=1e-7)


def test_the_engine_takes_the_rows_out_of_the_batch_for_the_head():
    from types import SimpleNamespace

    from core.train import fused_ce
    from core.train.entry import hand_head_rows

    seen = []
    trainer = SimpleNamespace(compute_loss=lambda model, inputs, **kw: seen.append((set(inputs), list(fused_ce._rows))))
    hand_head_rows(trainer)
    rows = torch.tensor([1, 2])
    trainer.compute_loss(None, {"input_ids": 1, "studio_head_rows": rows}, num_items_in_batch=3)
    assert seen[0][0] == {"input_ids"} and seen[0][1][0] is rows  # the model never sees the key
    assert fused_ce._rows == []  # and the next forward does not inherit them
