"""Faults a shared dev box brings: a kill in the middle of a checkpoint save, a full disk, CUDA out of
memory. Each must end in a state the user can act on: the last complete checkpoint resumes, earlier
checkpoints stay intact, status.json says what happened and what to do (never a bare traceback).

The kill-mid-save test uses STUDIO_TEST_SLOW_SAVE (core/train/callbacks.py) to hold a save open after the
Trainer wrote checkpoint-N and before it is marked COMPLETE and renamed to step-N. The full disk is a
real tmpfs of a few hundred KB mounted on the run's checkpoints/ folder (needs root; skipped otherwise).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from core import jobs, rundir
from core.train import entry
from tests.reliability.conftest import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture()
def keep_sigterm():
    """entry.run installs a SIGTERM handler; give pytest its own back afterwards."""
    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)


def _check_loads(ckpt: Path) -> None:
    from safetensors.torch import load_file

    assert (ckpt / rundir.COMPLETE_MARK).is_file()
    assert load_file(str(ckpt / "adapter_model.safetensors"))  # intact, readable tensors
    assert (ckpt / "trainer_state.json").is_file() and (ckpt / "optimizer.pt").is_file()


def test_sigkill_mid_save_resumes_from_last_complete_checkpoint(make_config, tmp_path, monkeypatch, keep_sigterm,
                                                               capsys):
    cfg = make_config(max_steps=6, save_steps=2)
    run = tmp_path / "run"
    monkeypatch.setenv("STUDIO_TEST_SLOW_SAVE", "4:120")
    run = jobs.start_run(cfg, work_dir=str(run))
    partial = run / rundir.CHECKPOINTS / "checkpoint-4"
    # the Trainer finished writing checkpoint-4 (its state file is last) and the save is held open
    assert wait_for(lambda: (partial / "trainer_state.json").is_file(), 180), rundir.log_tail(run)
    os.killpg(rundir.read_status(run)["pgid"], signal.SIGKILL)
    assert wait_for(lambda: jobs.run_state(run)["state"] == "failed", 10)

    assert partial.is_dir() and not (partial / rundir.COMPLETE_MARK).exists()
    assert not (run / rundir.CHECKPOINTS / "step-4").exists()
    assert [p.name for p in rundir.checkpoints(run)] == ["step-2"]
    assert jobs.run_state(run)["latest_checkpoint"].endswith("step-2")

    monkeypatch.delenv("STUDIO_TEST_SLOW_SAVE")
    capsys.readouterr()
    assert entry.run(run, resume="latest") == 0  # in this process: saves a second interpreter start
    out = capsys.readouterr().out
    assert f"resume: from {run / rundir.CHECKPOINTS / 'step-2'}" in out
    status = rundir.read_status(run)
    assert status["state"] == "finished" and status["step"] == 6
    steps = [m["step"] for m in rundir.metrics(run)]
    restart = next(i for i in range(1, len(steps)) if steps[i] <= steps[i - 1])
    assert steps[restart] == 3 and steps[-1] == 6, steps
    assert [p.name for p in rundir.checkpoints(run)] == ["step-2", "step-4", "step-6"]
    for ck in rundir.checkpoints(run):
        _check_loads(ck)
    assert not partial.exists(), "the re-saved step 4 replaced the half-written folder"


def _foreground(cfg: Path, work: Path, log: Path) -> subprocess.Popen:
    import sys

    from tests.reliability.conftest import REPO

    return subprocess.Popen([sys.executable, "-m", "studio", "train", str(cfg), "--work-dir", str(work)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"), start_new_session=True)  # noqa: SIM115


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_a_foreground_train_checkpoints_then_exits(make_config, tmp_path, sig):
    """`kill` (or Ctrl-C) on `studio train CONFIG` in a terminal is a stop: checkpoint, then exit; the
    trainer writes its own train.log, so the CLI going away never cuts it off mid-save."""
    cfg = make_config(max_steps=2000, save_steps=100000)
    work = tmp_path / "run"
    cli = _foreground(cfg, work, tmp_path / "cli.err")
    try:
        assert wait_for(lambda: (rundir.read_status(work).get("step") or 0) >= 2, 240), rundir.log_tail(work)
        cli.send_signal(sig)  # the CLI only, not the trainer
        assert cli.wait(timeout=180) == 0, (tmp_path / "cli.err").read_text()[-2000:]
        status = jobs.run_state(work)
        assert status["state"] == "stopped", status
        assert status["step"] < 2000 and status["latest_checkpoint"], status
        _check_loads(Path(status["latest_checkpoint"]))
        log = (work / rundir.LOG).read_text()
        assert "stop requested" in log and "stopped" in log.splitlines()[-1]
        assert "stopping: saving a checkpoint" in (tmp_path / "cli.err").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cli.pid, signal.SIGKILL)
        pgid = rundir.read_status(work).get("pgid")
        if pgid and pgid > 1 and jobs.group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)


def test_the_trainer_outlives_a_killed_foreground_cli_and_keeps_its_log(make_config, tmp_path):
    cfg = make_config(max_steps=30, save_steps=10)
    work = tmp_path / "run"
    cli = _foreground(cfg, work, tmp_path / "cli.err")
    try:
        assert wait_for(lambda: (rundir.read_status(work).get("step") or 0) >= 1, 240), rundir.log_tail(work)
        os.killpg(cli.pid, signal.SIGKILL)  # the terminal and its CLI are gone at once
        cli.wait()
        assert wait_for(lambda: jobs.run_state(work)["state"] in jobs.TERMINAL, 240), rundir.log_tail(work)
        status = jobs.run_state(work)
        assert status["state"] == "finished" and status["step"] == 30, status
        assert "finished" in (work / rundir.LOG).read_text().splitlines()[-1]
    finally:
        pgid = rundir.read_status(work).get("pgid")
        if pgid and pgid > 1 and jobs.group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)


@contextlib.contextmanager
def _tmpfs(where: Path, size_kb: int):
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", f"studio-test-{uuid.uuid4().hex[:6]}",
                        str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): the full-disk test needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_during_save_fails_clearly_and_keeps_earlier_checkpoints(make_config, tmp_path, keep_sigterm):
    cfg = make_config(max_steps=12, save_steps=2)
    # one complete checkpoint's size, measured on a normal disk
    probe, _ = jobs.prepare_run(make_config("probe.yaml", max_steps=2, save_steps=2), work_dir=str(tmp_path / "probe"))
    assert entry.run(probe) == 0
    one = sum(f.stat().st_size for f in rundir.latest_checkpoint(probe).rglob("*") if f.is_file())
    shutil.rmtree(probe)

    run, _ = jobs.prepare_run(cfg, work_dir=str(tmp_path / "run"))
    with _tmpfs(run / rundir.CHECKPOINTS, size_kb=int(one * 2.5 / 1024) + 8):
        assert entry.run(run) == 1
        status = rundir.read_status(run)
        assert status["state"] == "failed"
        assert status["error"] == "disk full while writing", status
        assert "free space" in status["hint"] and "Traceback" not in status["error"]
        kept = rundir.checkpoints(run)
        assert [p.name for p in kept] == ["step-2", "step-4"], os.listdir(run / rundir.CHECKPOINTS)
        for ck in kept:
            _check_loads(ck)
        assert not (run / rundir.ADAPTER).exists()
        assert not list((run / rundir.CHECKPOINTS).glob("checkpoint-*")), "the half-written save is removed"
        assert "disk full" in (jobs.run_state(run)["error"])


def test_cuda_oom_ends_as_failed_with_a_hint(make_config, tmp_path, monkeypatch, keep_sigterm):
    import torch
    from transformers import Trainer

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total)")

    monkeypatch.setattr(Trainer, "training_step", oom)
    run, _ = jobs.prepare_run(make_config(), work_dir=str(tmp_path / "run"))
    assert entry.run(run) == 1
    status = rundir.read_status(run)
    assert status["state"] == "failed" and status["error"] == "CUDA out of memory"
    for word in ("max_length", "batch_size", "qlora", "gradient_checkpointing"):
        assert word in status["hint"], status["hint"]
    assert "Traceback" not in status["error"] + status["hint"]
    assert not rundir.checkpoints(run) and not (run / rundir.ADAPTER).exists()


@pytest.mark.parametrize("exc", [
    OSError(28, "No space left on device"),
    Exception("No space left on device (os error 28)"),  # tokenizers
    RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors
])
def test_explain_recognises_every_wording_of_a_full_disk(exc):
    assert entry.explain(exc)[0] == "disk full while writing"


def test_explain_torch_short_write_is_disk_full_only_when_the_disk_is(tmp_path):
    short = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert entry.explain(short, tmp_path)[0].startswith("RuntimeError")  # plenty of room here
    with _tmpfs(tmp_path / "full", size_kb=64) as where:
        (where / "fill").write_bytes(b"\0" * (64 * 1024 - 4096))
        assert entry.explain(short, where)[0] == "disk full while writing"
