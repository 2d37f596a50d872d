"""GPU checks (skipped without CUDA): QLoRA demo, a 1.5B-shape QLoRA adapter that merges, bench smoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.gpu, pytest.mark.e2e]
REPO = Path(__file__).resolve().parents[2]


def test_qlora_demo_runs_on_the_gpu():
    import torch

    from core.demo import run_demo

    torch.cuda.reset_peak_memory_stats()
    s = run_demo(method="qlora")
    assert s["identity_hit_rate"] >= 0.8 and s["leak_rate"] <= 0.2, s["examples"]
    log = (Path(s["run_dir"]) / "train.log").read_text()
    assert "method: qlora" in log and "device cuda" in log


def test_qlora_adapter_on_a_1_5b_shape_merges(tmp_path):
    from bench.run import model_folder
    from core.data import write_samples
    from core.demo import general_samples
    from core.merge import merge_adapter

    base = model_folder("qwen1_5b", Path(os.environ.get("BENCH_SCRATCH", "/tmp/studio-bench")))
    write_samples(general_samples(300), tmp_path / "d.jsonl")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(dict(pretrained_model_name_or_path=str(base), data_path=str(tmp_path / "d.jsonl"),
                                       method="qlora", max_length=512, max_steps=20, lr=2e-4, batch_size=2,
                                       accumulative_counts=1, save_steps=10, evaluation_freq=10,
                                       evaluation_inputs=["hi"], eval_max_new_tokens=8)))
    r = subprocess.run([sys.executable, "-m", "studio", "train", str(cfg), "--work-dir", str(tmp_path / "run")],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for line in (tmp_path / "run" / "train.log").read_text().splitlines():  # the log lines the closing note quotes
        if any(k in line for k in ("method:", "engine:", "optimizer:", "data:", "saved", "finished")):
            print(line)
    report = merge_adapter(str(base), str(tmp_path / "run" / "adapter"), str(tmp_path / "merged"))
    print(json.dumps({k: v for k, v in report.items() if k != "check"} | {"identical": report["check"].get("identical")}))
    assert report["check"]["compared"] >= 1


def test_bench_smoke(tmp_path):
    out = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "studio", "bench", "--cases", "internlm2_1_8b-lora64-s2048", "--steps", "3",
                        "--warmup", "1", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {(x["case"], x["side"]): x for x in json.loads(out.read_text())["rows"]}
    eng = rows[("internlm2_1_8b-lora64-s2048", "engine")]
    assert eng["tokens_per_s"] > 0 and eng["liger"] in (True, False)
    assert rows[("internlm2_1_8b-lora64-s2048", "ratio")]["engine_over_naive"] > 0
