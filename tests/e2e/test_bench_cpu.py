"""The bench code itself on CPU with the tiny shape: every case kind runs and the loss-agreement check holds.

GPU figures come from `make bench` on an H100 (bench/results/); this only keeps the bench from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_bench_tiny_cases_and_loss_agreement_on_cpu(tmp_path):
    out = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "studio", "bench", "--cases", "tiny-lora8-s256,merge-tiny,chat-tiny",
                        "--steps", "2", "--warmup", "1", "--agree", "--agree-shape", "tiny",
                        "--scratch", str(tmp_path / "s"), "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["meta"]["alloc_conf"]  # the allocator setting the figures were taken under is recorded
    rows = data["rows"]
    by = {(x["case"], x.get("side", "")): x for x in rows}
    assert by[("tiny-lora8-s256", "naive")]["tokens_per_s"] > 0
    assert by[("tiny-lora8-s256", "engine")]["tokens_per_s"] > 0
    assert by[("tiny-lora8-s256", "ratio")]["engine_over_naive"] > 0
    assert by[("merge-tiny", "")]["shards"] >= 1
    assert by[("chat-tiny", "")]["dynamic_decode_tokens_per_s"] > 0
    agree = by[("loss-agreement", "")]
    assert agree["naive_last10"] < agree["naive_first"]  # the data is learnable: the curve falls
    assert agree["rel_diff_last10"] < 0.02


def test_bench_refuses_gpu_cases_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = subprocess.run([sys.executable, "-m", "studio", "bench", "--cases", "qwen7b-lora64-s2048"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "needs a CUDA GPU" in r.stderr


def test_lora_gemm_timings_need_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = subprocess.run([sys.executable, "-m", "bench.lora_gemms"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "needs a CUDA GPU" in r.stderr
