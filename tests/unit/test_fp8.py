"""core.train.fp8 on CPU (torch._scaled_mm has a CPU path): the FP8 base GEMMs stay close to the 16-bit ones,
forward and input gradient, and the LoRA weights still get their gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from core.train import fp8


def test_quantize_rows_round_trip():
    x = torch.randn(64, 96) * torch.logspace(-3, 3, 64)[:, None]  # rows of very different size
    q, s = fp8.quantize_rows(x)
    assert q.dtype == fp8.E4M3 and s.shape == (64, 1)
    back = q.float() * s
    assert ((back - x).norm(dim=1) / x.norm(dim=1)).max() < 0.05  # e4m3 keeps ~2 significant digits per row


def test_lora_model_with_fp8_base_matches_bf16():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 32))
    ref = get_peft_model(base, LoraConfig(r=8, target_modules=["0", "2"], init_lora_weights=False))
    fast = copy.deepcopy(ref)
    assert fp8.convert(fast) == 2
    assert fast.base_model.model[0].base_layer.weight.numel() == 0  # the 16-bit copy is gone
    x = torch.randn(5, 7, 64)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = ref(xa), fast(xb)
    assert (yb - ya).norm() / ya.norm() < 0.05
    ya.square().sum().backward()
    yb.square().sum().backward()
    assert (xb.grad - xa.grad).norm() / xa.grad.norm() < 0.08
    for (name, pa), (_, pb) in zip(ref.named_parameters(), fast.named_parameters(), strict=True):
        if pa.requires_grad:
            assert pb.grad is not None, name
            assert (pb.grad - pa.grad).norm() / pa.grad.norm() < 0.1, name


@pytest.mark.parametrize("rows", [1, 17])
def test_odd_row_counts_are_padded_for_the_kernel(rows):
    w = torch.randn(32, 48)
    lin = torch.nn.Linear(48, 32, bias=False)
    lin.weight.data.copy_(w)
    wq, ws = fp8.quantize_rows(w)
    x = torch.randn(rows, 48)
    xq, xs = fp8.quantize_rows(x)
    out = fp8._mm(xq, xs, wq, ws.reshape(1, -1), torch.float32)
    assert out.shape == (rows, 32)
    assert (out - lin(x)).norm() / lin(x).norm() < 0.06
