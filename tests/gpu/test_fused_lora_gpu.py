"""GPU: the fused LoRA node in bf16 (fp32 adapters, the CUDA-only fp32-output GEMMs) against PEFT's own forward in fp32."""

from __future__ import annotations

import pytest
import torch

from core.train import fused_lora

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _group(bias: bool):
    """q/k/v-like siblings (different widths, one shared input) as a PEFT model on a tiny module tree."""
    from peft import LoraConfig, get_peft_model

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = torch.nn.Linear(256, 256, bias=bias)
            self.k_proj = torch.nn.Linear(256, 64, bias=bias)
            self.v_proj = torch.nn.Linear(256, 64, bias=bias)

        def forward(self, x):
            return self.q_proj(x).sum(-1) * 0.5 + (self.k_proj(x) * self.v_proj(x)).sum(-1)

    torch.manual_seed(0)
    cfg = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj"], init_lora_weights=False)
    return get_peft_model(Attn(), cfg).cuda()


@pytest.mark.parametrize("bias", [False, True])
def test_bf16_fused_group_matches_fp32_peft(bias):
    ref = _group(bias)
    fused = _group(bias)
    fused.base_model.model.to(torch.bfloat16)
    for n, p in fused.named_parameters():  # adapters stay fp32, as the engine keeps them
        if "lora_" in n:
            p.data = p.data.float()
    assert fused_lora.enable(fused) == (3, 1)
    x = torch.randn(4, 300, 256, device="cuda")
    ref(x).square().mean().backward()
    xb = x.to(torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fused(xb).float().square().mean().backward()
    grads = {n: p.grad for n, p in ref.named_parameters() if p.requires_grad}
    for n, p in fused.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None and p.grad.dtype == torch.float32, n
        cos = torch.nn.functional.cosine_similarity(p.grad.flatten(), grads[n].flatten(), dim=0)
        assert cos > 0.999, (n, cos.item())
