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
    a = hidden.clone().requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any .item()/equal/nonzero on the way raises
    try:
        loss = fused_ce.linear_cross_entropy_sum(a, weight, target, chunk=1024)
        (loss / 2571.0).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
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
    assert fused_ce.install() == "studio driver (no host sync)"
    ours_loss, ours_grad = run()
    assert ours_loss == pytest.approx(liger_loss, rel=1e-3)
    cos = torch.nn.functional.cosine_similarity(ours_grad.flatten(), liger_grad.flatten(), dim=0)
    assert cos > 0.9999
