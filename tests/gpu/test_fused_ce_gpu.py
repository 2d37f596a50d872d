"""GPU: the head + cross-entropy driver with Liger's kernel equals torch's loss and Liger's own path, with no host sync."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _inputs(n=3000, h=512, vocab=32000):
    torch.manual_seed(0)
    hidden = torch.randn(n, h, device="cuda", dtype=torch.bfloat16)
    weight = (torch.randn(vocab, h, device="cuda") / h**0.5).to(torch.bfloat16)
    target = torch.randint(0, vocab, (n,), device="cuda")
    target[::7] = -100
    return hidden, weight, target


def test_kernel_path_equals_torch_and_never_syncs():
    pytest.importorskip("liger_kernel")
    from core.train import fused_ce

    assert fused_ce._liger_kernel() is not None, "Liger's kernel arguments changed: the driver would fall back"
    hidden, weight, target = _inputs()
    a, c = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    keep = torch.nonzero(target != -100)[:, 0]  # as the collator hands them over, on the device already
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any .item()/equal/nonzero on the way raises
    try:
        loss = fused_ce.linear_cross_entropy_sum(a, weight, target, chunk=1024)
        (loss / 2571.0).backward()
        some = fused_ce.linear_cross_entropy_sum(c, weight, target, chunk=1024, rows=keep)
        (some / 2571.0).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    # the same rows, in other GEMM shapes (the GEMMs may split their sums differently): bf16-close
    assert some.item() == pytest.approx(loss.item(), rel=1e-3)
    assert torch.nn.functional.cosine_similarity(c.grad.float().flatten(), a.grad.float().flatten(), dim=0) > 0.9999
    b = hidden.clone().float().requires_grad_()
    want = torch.nn.functional.cross_entropy(b @ weight.float().t(), target, ignore_index=-100, reduction="sum")
    (want / 2571.0).backward()
    assert loss.item() == pytest.approx(want.item(), rel=2e-3)
    cos = torch.nn.functional.cosine_similarity(a.grad.float().flatten(), b.grad.flatten(), dim=0)
    assert cos > 0.999 and a.grad[::7].abs().max() == 0


def test_install_routes_liger_loss_through_the_driver(monkeypatch):
    pytest.importorskip("liger_kernel")
    from liger_kernel.transformers.model import loss_utils

    from core.train import fused_ce

    monkeypatch.setattr(loss_utils, "fixed_fused_linear_cross_entropy", loss_utils.fixed_fused_linear_cross_entropy)
    hidden, weight, target = _inputs(n=2 * 1500)
    labels = target.view(2, 1500)
    items = (labels[:, 1:] != -100).sum()

    def run():
        x = hidden.view(2, 1500, -1).clone().requires_grad_()
        loss = loss_utils.LigerForCausalLMLoss(x, weight, labels, hidden_size=512, num_items_in_batch=items)
        loss.backward()
        return loss.item(), x.grad.float()

    liger_loss, liger_grad = run()
    assert fused_ce.install() == (True, fused_ce.DRIVER)
    ours_loss, ours_grad = run()
    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:].reshape(-1)
    with fused_ce.rows_for(torch.nonzero(shifted != -100)[:, 0]):
        rows_loss, rows_grad = run()
    assert rows_loss == pytest.approx(ours_loss, rel=1e-3)
    assert torch.nn.functional.cosine_similarity(rows_grad.flatten(), ours_grad.flatten(), dim=0) > 0.9999
    assert ours_loss == pytest.approx(liger_loss, rel=1e-3)
    cos = torch.nn.functional.cosine_similarity(ours_grad.flatten(), liger_grad.flatten(), dim=0)
    assert cos > 0.9999
