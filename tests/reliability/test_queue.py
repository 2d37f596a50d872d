"""The per-device queue (core.queue): one training run per device, a second one waits, a killed holder
never blocks it, STUDIO_QUEUE=0 turns it off, and a queued run can be stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from core import jobs, queue, rundir
from tests.reliability.conftest import REPO, wait_for

pytestmark = pytest.mark.e2e


def _holder_process(run_dir) -> subprocess.Popen:
    """Another process that takes the device lock for `run_dir` and sleeps (a stand-in for a run)."""
    code = ("import sys, time; from core import queue; f = queue.acquire(sys.argv[1]); "
            "print('held', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == "held"
    return p


def test_device_key_follows_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert queue.device_key() == "all"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert queue.device_key() == "1,0" and queue.lock_path().name == "device-1,0.lock"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "../../x")
    assert "/" not in queue.device_key()


def test_a_sigkilled_holder_frees_the_device(tmp_path):
    p = _holder_process(tmp_path / "holder-run")
    try:
        assert queue.is_held() and queue.holder()["run_id"] == "holder-run"
        t0 = time.time()
        got = queue.acquire(tmp_path / "me", should_stop=lambda: time.time() - t0 > 1.0, poll_s=0.05)
        assert got is None  # still busy: gave up when told to stop
        p.send_signal(signal.SIGKILL)
        p.wait()
        got = queue.acquire(tmp_path / "me", should_stop=lambda: time.time() - t0 > 10, poll_s=0.05)
        assert got is not None, "the lock of a killed process must be free at once"
        assert queue.holder()["run_id"] == "me"
        queue.release(got)
        assert not queue.is_held()
    finally:
        p.kill()
        p.wait()


def test_a_dead_holder_whose_child_keeps_the_flock_does_not_block_the_queue(tmp_path):
    """The trainer died, a process it forked (a data-loader worker, say) lives on holding the flock: the
    next run must still start (the lock names the trainer's pid and start time; a waiter breaks it)."""
    code = ("import os, sys, time; from core import queue; f = queue.acquire(sys.argv[1]); "
            "pid = os.fork()\n"
            "if pid == 0:\n    time.sleep(600); os._exit(0)\n"
            "print(pid, flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "holder-run")], cwd=REPO,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(p.stdout.readline())
    try:
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert queue.is_held(), "the forked child still holds the flock"
        t0 = time.time()
        got = queue.acquire(tmp_path / "me", should_stop=lambda: time.time() - t0 > 15, poll_s=0.05)
        assert got is not None, "a leftover child of a dead holder blocked the queue"
        assert time.time() - t0 < 5 and queue.holder()["run_id"] == "me" and queue.is_held()
        # a live holder is never broken: a third waiter still waits
        t1 = time.time()
        assert queue.acquire(tmp_path / "third", should_stop=lambda: time.time() - t1 > 1.0, poll_s=0.05) is None
        queue.release(got)
    finally:
        os.kill(child, signal.SIGKILL)


def test_queue_off_never_waits(tmp_path, monkeypatch):
    p = _holder_process(tmp_path / "holder-run")
    try:
        monkeypatch.setenv("STUDIO_QUEUE", "0")
        assert queue.acquire(tmp_path / "me", should_stop=lambda: True) is None
        assert not queue.enabled()
    finally:
        p.kill()
        p.wait()


def test_queued_run_starts_when_the_holder_is_killed(make_config, tmp_path):
    """A real run waits while another process holds the device, names it, and starts the moment the
    holder dies, even by SIGKILL (the kernel drops a flock with its process)."""
    p = _holder_process(tmp_path / "busy")
    try:
        run = jobs.start_run(make_config(max_steps=2, save_steps=100), work_dir=str(tmp_path / "waiting"))
        assert wait_for(lambda: rundir.read_status(run).get("waiting_for") == "busy", 60), rundir.log_tail(run)
        time.sleep(1.0)
        st = jobs.run_state(run)
        assert st["state"] == "queued" and not rundir.metrics(run), st  # alive, not mistaken for dead
        p.send_signal(signal.SIGKILL)
        killed_at = time.time()
        p.wait()
        assert wait_for(lambda: jobs.run_state(run)["state"] in jobs.TERMINAL, 180), rundir.log_tail(run)
        st = rundir.read_status(run)
        assert st["state"] == "finished" and st.get("waiting_for") is None, st
        assert killed_at <= st["started_at"] < killed_at + 5
    finally:
        p.kill()
        p.wait()


@pytest.mark.soak
def test_second_run_waits_for_the_first_then_starts(make_config, tmp_path):
    """Two real runs on the same device: B is queued naming A, and starts only after A finished."""
    cfg = make_config(max_steps=6, save_steps=100)
    a = jobs.start_run(cfg, work_dir=str(tmp_path / "run-a"))
    assert wait_for(lambda: rundir.read_status(a).get("state") == "running", 60)
    b = jobs.start_run(cfg, work_dir=str(tmp_path / "run-b"))
    assert wait_for(lambda: rundir.read_status(b).get("waiting_for") == "run-a", 60), rundir.read_status(b)
    assert jobs.run_state(b)["state"] == "queued"
    assert wait_for(lambda: jobs.run_state(b)["state"] in jobs.TERMINAL, 300), rundir.log_tail(b)
    sa, sb = rundir.read_status(a), rundir.read_status(b)
    assert sa["state"] == "finished" and sb["state"] == "finished", (sa, sb)
    assert sb["started_at"] >= sa["ended_at"], "B trained while A still held the device"
    assert "queued: device all is busy with run run-a" in (b / rundir.LOG).read_text()


def test_a_queued_run_can_be_stopped(make_config, tmp_path):
    p = _holder_process(tmp_path / "busy")
    try:
        run = jobs.start_run(make_config(), work_dir=str(tmp_path / "queued-run"))
        assert wait_for(lambda: rundir.read_status(run).get("waiting_for") == "busy", 60), rundir.log_tail(run)
        t0 = time.time()
        assert jobs.stop_run(str(run), timeout=30) == "stopped"
        assert time.time() - t0 < 10, "a queued run stops at once, it has nothing to save"
        st = rundir.read_status(run)
        assert st["state"] == "stopped" and not rundir.metrics(run)
    finally:
        p.kill()
        p.wait()
