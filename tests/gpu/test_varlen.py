"""GPU: the studio_varlen attention (PyTorch's flash varlen kernel) keeps packed samples apart exactly."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu]

from core.train import varlen  # noqa: E402

needs_kernel = pytest.mark.skipif(not varlen.available(), reason="no CUDA GPU with torch's varlen flash kernel")


@needs_kernel
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_packed_forward_and_backward_match_each_sample_alone(kv_heads):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=kv_heads, vocab_size=512, max_position_embeddings=1024)
    varlen.register()
    ref = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
    ref.config._attn_implementation = "sdpa"
    fast = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
    fast.load_state_dict(ref.state_dict())
    fast.config._attn_implementation = varlen.NAME
    lengths = [37, 120, 5, 94]
    samples = [torch.randint(0, 512, (n,), device="cuda") for n in lengths]
    ids = torch.cat(samples)[None]
    pos = torch.cat([torch.arange(n, device="cuda") for n in lengths])[None]
    fast.train()
    packed = fast(input_ids=ids, position_ids=pos).logits[0].float()
    packed.sum().backward()
    ref.train()
    alone = torch.cat([ref(input_ids=s[None]).logits[0].float() for s in samples])
    assert (packed - alone).abs().max().item() < 0.05 * alone.abs().max().item()
    # cross-sample leakage would move the later samples' logits far more than bf16 rounding
    assert torch.allclose(packed[:37], alone[:37], atol=3e-2, rtol=3e-2)
    assert fast.model.layers[0].self_attn.q_proj.weight.grad is not None


@needs_kernel
def test_generation_goes_through_sdpa_and_matches():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256)
    varlen.register()
    a = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    a.config._attn_implementation = "sdpa"
    b = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    b.load_state_dict(a.state_dict())
    b.config._attn_implementation = varlen.NAME
    ids = torch.randint(0, 256, (1, 12), device="cuda")
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert a.generate(ids, **kw).tolist() == b.generate(ids, **kw).tolist()
