"""Two processes on CPU (torchrun + gloo): files written once, stop ends every rank."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from core import jobs, rundir

pytestmark = pytest.mark.e2e


@pytest.fixture()
def cfg(tmp_path, tiny_model) -> Path:
    from core.data import write_samples
    from core.demo import general_samples

    write_samples(general_samples(200), tmp_path / "g.jsonl")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(dict(
        pretrained_model_name_or_path=str(tiny_model), data_path=str(tmp_path / "g.jsonl"), max_length=128, lora_r=8,
        batch_size=2, accumulative_counts=1, max_steps=12, lr=1e-3, save_steps=6, evaluation_freq=6,
        evaluation_inputs=["hi"], eval_max_new_tokens=4)))
    return path


def test_two_ranks_write_each_file_once(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    run = jobs.start_run(cfg, work_dir=str(tmp_path / "run"))
    end = time.time() + 180
    while time.time() < end and jobs.run_state(run)["state"] not in jobs.TERMINAL:
        time.sleep(0.5)
    status = jobs.run_state(run)
    assert status["state"] == "finished", rundir.log_tail(run)
    assert [m["step"] for m in rundir.metrics(run)] == list(range(1, 13))  # rank 0 only: no duplicates
    assert [s["step"] for s in rundir.samples(run)] == [0, 6, 12]
    assert [p.name for p in rundir.checkpoints(run)] == ["step-6", "step-12"]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert "nproc_per_node=2" in " ".join(jobs._entry_argv(run, None, None))


def test_stop_ends_every_rank(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    data = yaml.safe_load(cfg.read_text())
    data.update(max_steps=100000, save_steps=100000)
    cfg.write_text(yaml.safe_dump(data))
    run = jobs.start_run(cfg, work_dir=str(tmp_path / "run"))
    end = time.time() + 120
    while time.time() < end and rundir.read_status(run).get("step", 0) < 3:
        time.sleep(0.3)
    pgid = rundir.read_status(run)["pgid"]
    assert jobs.group_alive(pgid)
    assert jobs.stop_run(str(run), timeout=60) == "stopped"
    assert not jobs.group_alive(pgid)  # torchrun and both ranks are gone
    assert rundir.latest_checkpoint(run) is not None
    assert rundir.read_status(run).get("error") in (None, "")  # stopped gracefully, not killed
    assert not os.path.exists(run / rundir.STOP_REQUEST)
