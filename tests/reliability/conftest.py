"""Shared helpers of the reliability tests: a short tiny-model config, the CLI as a subprocess, waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def studio(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess:
    """`python -m studio ARGS` in a child process (the way a user runs it)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=cwd or REPO, capture_output=True, text=True,
                          timeout=timeout, env=full)


def wait_for(pred, timeout: float = 120.0, every: float = 0.2) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(every)
    return False


@pytest.fixture(scope="session")
def general_data(tmp_path_factory) -> Path:
    from core.data import write_samples
    from core.demo import general_samples

    path = tmp_path_factory.mktemp("reliability-data") / "general.jsonl"
    write_samples(general_samples(120), path)
    return path


@pytest.fixture()
def make_config(tmp_path, tiny_model, general_data):
    """Write a short LoRA config on the tiny model; keyword arguments override fields."""

    def make(name: str = "cfg.yaml", **over) -> Path:
        cfg = {"pretrained_model_name_or_path": str(tiny_model), "data_path": str(general_data), "max_length": 64,
               "lora_r": 4, "lora_alpha": 8, "batch_size": 2, "accumulative_counts": 1, "max_steps": 8, "lr": 1e-3,
               "save_steps": 4, "save_total_limit": -1, "evaluation_freq": 1000, "evaluation_inputs": [],
               "gradient_checkpointing": "false", "logging_steps": 1, **over}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        return path

    return make
