"""The fused LoRA path gives PEFT's loss and LoRA gradients; groups form; anything unusual keeps PEFT's forward."""

from __future__ import annotations

import copy

import pytest
import torch

from core.train import fused_lora


def _lora_model(tiny_model, dropout: float = 0.0, bias: bool = False):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(tiny_model)
    cfg.attention_bias = bias  # Qwen2-style biased q/k/v
    base = AutoModelForCausalLM.from_pretrained(tiny_model, config=cfg, dtype=torch.float32)
    # init_lora_weights=False: B is random too, so every LoRA gradient is non-zero and compared
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear",
                                            init_lora_weights=False))
    model.train()
    return model


def _grads(model, ids):
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _assert_same_step(plain, fused):
    ids = torch.randint(3, 200, (2, 40))
    loss_a, ga = _grads(plain, ids)
    loss_b, gb = _grads(fused, ids)
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    for k in ga:
        assert torch.allclose(ga[k], gb[k], rtol=1e-4, atol=1e-6), k


@pytest.mark.parametrize("bias", [False, True])
def test_fused_matches_peft(tiny_model, bias):
    plain = _lora_model(tiny_model, bias=bias)
    fused = copy.deepcopy(plain)
    layers = fused.config.num_hidden_layers
    n, groups = fused_lora.enable(fused)
    assert n == 7 * layers and groups == 2 * layers  # q/k/v and gate/up per layer; o and down alone
    calls = []
    orig = fused_lora._FusedLoRA.apply
    fused_lora._FusedLoRA.apply = lambda *a: calls.append(len(a[1][1])) or orig(*a)
    try:
        ids = torch.randint(3, 200, (2, 40))
        loss_a, ga = _grads(plain, ids)
        loss_b, gb = _grads(fused, ids)
    finally:
        fused_lora._FusedLoRA.apply = orig
    assert sorted(calls) == sorted([3, 2, 1, 1] * layers)  # one node per group, not one per projection
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert ga.keys() == gb.keys() and len(ga) == 14 * layers
    for k in ga:
        assert torch.allclose(ga[k], gb[k], rtol=1e-4, atol=1e-6), k


def test_dropout_gradients_are_those_of_the_masks_drawn():
    """With dropout the fused node's gradients match finite differences (same masks: the RNG reseeded per call)."""
    torch.manual_seed(0)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    w1, w2 = torch.randn(7, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    a1 = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    b1 = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)
    a2 = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    b2 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)

    def f(x, a1, b1, a2, b2):
        torch.manual_seed(7)
        return fused_lora._FusedLoRA.apply(x, (0.3, (2.0, 0.5), True), w1, None, a1, b1, w2, None, a2, b2)

    assert torch.autograd.gradcheck(f, (x, a1, b1, a2, b2))
    # and the dropout is real: some positions of the LoRA input are zeroed
    y_train = f(x, a1, b1, a2, b2)[0]
    y_eval = fused_lora._FusedLoRA.apply(x, (0.3, (2.0, 0.5), False), w1, None, a1, b1, w2, None, a2, b2)[0]
    assert not torch.allclose(y_train, y_eval)


def test_dropout_model_in_eval_mode_matches_peft(tiny_model):
    plain = _lora_model(tiny_model, dropout=0.1)
    fused = copy.deepcopy(plain)
    fused_lora.enable(fused)
    plain.eval()
    fused.eval()
    ids = torch.randint(3, 200, (1, 24))
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, fused(input_ids=ids).logits, atol=1e-5)


def test_disabled_adapter_and_unusual_calls_keep_peft(tiny_model):
    plain = _lora_model(tiny_model)
    fused = copy.deepcopy(plain)
    fused_lora.enable(fused)
    ids = torch.randint(3, 200, (1, 24))
    with torch.no_grad():
        with plain.disable_adapter():
            base_a = plain(input_ids=ids).logits
        with fused.disable_adapter():
            base_b = fused(input_ids=ids).logits
        assert torch.allclose(base_a, base_b, atol=1e-6)
        # a member called alone with another input computes on its own (nothing stale handed out)
        q = fused.base_model.model.model.layers[0].self_attn.q_proj
        k = fused.base_model.model.model.layers[0].self_attn.k_proj
        h1, h2 = torch.randn(1, 3, q.in_features), torch.randn(1, 3, q.in_features)
        pk = plain.base_model.model.model.layers[0].self_attn.k_proj
        q(h1)
        assert set(q._studio_group.pending) == {1, 2}  # k's and v's outputs wait for their calls
        assert torch.allclose(k(h1), pk(h1), atol=1e-6)  # handed out
        assert set(q._studio_group.pending) == {2}
        assert torch.allclose(k(h2), pk(h2), atol=1e-6)  # another input: computed, not the stale one
    assert fused_lora.disable(fused) == 7 * fused.config.num_hidden_layers
    assert not hasattr(q, "_studio_group") and "forward" not in q.__dict__


def test_ineligible_layers_are_left_alone(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    dora = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", use_dora=True))
    assert fused_lora.enable(dora) == (0, 0)


def test_fused_matches_peft_under_bf16_autocast(tiny_model):
    """The training setup: a bf16 base, fp32 LoRA weights, autocast. Same loss and gradients up to bf16 rounding."""
    plain = _lora_model(tiny_model)
    for p in plain.parameters():
        if not p.requires_grad:
            p.data = p.data.to(torch.bfloat16)
    for m in plain.modules():  # as the engine sets it on a GPU: autocast does the casting
        if hasattr(m, "cast_input_dtype_enabled"):
            m.cast_input_dtype_enabled = False
    fused = copy.deepcopy(plain)
    fused_lora.enable(fused)
    ids = torch.randint(3, 200, (2, 40))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_a, ga = _grads(plain, ids)
        loss_b, gb = _grads(fused, ids)
    assert abs(loss_a.item() - loss_b.item()) < 2e-2
    for k in ga:
        assert gb[k].dtype == torch.float32
        assert torch.nn.functional.cosine_similarity(ga[k].flatten(), gb[k].flatten(), dim=0) > 0.99, k


@pytest.mark.parametrize("mode", ["trainer", "offload"])
def test_fused_under_gradient_checkpointing(tiny_model, mode):
    """The recompute calls the group again with a new input: gradients still equal the plain ones."""
    from core.train import offload

    plain = _lora_model(tiny_model)
    fused = copy.deepcopy(plain)
    fused_lora.enable(fused)
    fused.enable_input_require_grads()
    if mode == "trainer":
        fused.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        offload.enable(fused)
    _assert_same_step(plain, fused)


def test_a_subset_of_targets_groups_what_it_has(tiny_model):
    """LoRA on q_proj and v_proj only (a common recipe): q and v form a group, k stays a plain linear."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    plain = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    fused = copy.deepcopy(plain)
    layers = fused.config.num_hidden_layers
    assert fused_lora.enable(fused) == (2 * layers, layers)
    _assert_same_step(plain, fused)
