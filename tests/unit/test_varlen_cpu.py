"""The varlen attention's CPU-checkable parts: segment boundaries from position ids, and the sdpa fallback."""

from __future__ import annotations

import torch

from core.train import varlen


def test_segments_from_position_ids_span_rows_and_samples():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]])
    cu, longest = varlen.segments(pos)
    assert cu.tolist() == [0, 3, 5, 6, 10, 12] and cu.dtype == torch.int32
    assert longest == 4
    # a new tensor with the same shape is not served from the one-entry cache
    cu2, longest2 = varlen.segments(torch.tensor([[0, 1, 2, 3, 4, 5], [0, 1, 0, 1, 2, 3]]))
    assert cu2.tolist() == [0, 6, 8, 12] and longest2 == 6


def test_fallback_is_plain_sdpa_when_not_a_packed_training_forward():
    from torch.nn.attention.varlen import varlen_attn  # noqa: F401  (the module must exist to fall back)

    class M(torch.nn.Module):
        is_causal = True
        num_key_value_groups = 1

    m = M().eval()
    q = torch.randn(1, 2, 5, 8)
    out, _ = varlen.varlen_attention(m, q, q, q, None, position_ids=torch.arange(5)[None])
    ref = torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).transpose(1, 2)
    assert torch.allclose(out, ref, atol=1e-6)


def test_micro_batch_size_must_divide_the_rows_per_step():
    import pytest

    from core.config import RunConfig
    from core.config.schema import ConfigError, validate

    validate(RunConfig(batch_size=2, accumulative_counts=8, micro_batch_size=4))
    with pytest.raises(ConfigError, match="micro_batch_size"):
        validate(RunConfig(batch_size=2, accumulative_counts=8, micro_batch_size=3))
