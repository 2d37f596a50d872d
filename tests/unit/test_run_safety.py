"""Run readers that survive any status.json, and `stop` / `--resume` that only touch the trainer a run started.

- a status.json of bytes, of the wrong JSON type, with wrongly typed fields, or a run folder vanishing
  while the runs are listed: that run shows as "unreadable" (with the reason) or is left out, the
  others are listed, in `studio runs` too;
- `stop` never signals a process group <= 1, our own group, a pid that is no longer the trainer, or a
  process of another host (status.json is a file anyone may have written);
- `train --resume` into a run whose trainer is alive is refused;
- no child process inherits STUDIO_PASSWORD.

    .venv/bin/python -m pytest tests/unit/test_run_safety.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import jobs, rundir
from core.errors import StudioError

_KILL = os.kill  # the real one: the `signals` fixture replaces os.kill until after other fixtures' teardown


@pytest.fixture()
def runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path))
    root = tmp_path / "runs"
    root.mkdir()
    return root


def _run(root: Path, name: str, status: bytes | dict) -> Path:
    d = root / name
    d.mkdir()
    data = status if isinstance(status, bytes) else json.dumps(status).encode()
    (d / rundir.STATUS).write_bytes(data)
    return d


BROKEN = {
    "bytes": (b"\xff\xfe\x00garbage\x80", "not UTF-8"),
    "list": (b"[1, 2, 3]", "expected an object"),
    "truncated": (b'{"state": "runn', "not JSON"),
    "state-int": ({"state": 5, "step": 1}, "'state'"),
    "state-unknown": ({"state": "exploded"}, "not one of"),
    "step-text": ({"state": "finished", "step": "ten", "max_steps": 8}, "'step'"),
    "pid-text": ({"state": "running", "pid": "1; rm -rf /", "pgid": 1}, "'pid'"),
    "error-dict": ({"state": "failed", "error": {"a": 1}}, "'error'"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_status_is_listed_as_unreadable_with_the_rest(runs, kind, capsys):
    from studio import cli

    content, reason = BROKEN[kind]
    _run(runs, "good", {"state": "finished", "step": 8, "max_steps": 8, "run_id": "good"})
    _run(runs, "bad", content)
    listed = {r["run_id"]: r for r in jobs.list_runs()}
    assert set(listed) == {"good", "bad"}
    assert listed["good"]["state"] == "finished"
    assert listed["bad"]["state"] == rundir.UNREADABLE
    assert reason in listed["bad"]["error"] and "status.json" in listed["bad"]["error"]
    assert jobs.run_state(runs / "bad")["state"] == rundir.UNREADABLE
    assert cli.main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "bad" in out and rundir.UNREADABLE in out
    assert cli.main(["runs", "--json"]) == 0
    assert {r["run_id"] for r in json.loads(capsys.readouterr().out)} == {"good", "bad"}


def test_a_fifo_a_folder_or_a_huge_status_is_unreadable_without_blocking(runs):
    fifo = runs / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / rundir.STATUS)  # reading it would block forever
    (runs / "folder" / rundir.STATUS).mkdir(parents=True)
    huge = _run(runs, "huge", b" " * (rundir.MAX_STATUS_BYTES + 1))
    assert huge.is_dir()
    listed = {r["run_id"]: r for r in jobs.list_runs()}
    assert "not a regular file" in listed["fifo"]["error"] and "not a regular file" in listed["folder"]["error"]
    assert "more than a status ever holds" in listed["huge"]["error"]
    assert all(r["state"] == rundir.UNREADABLE for r in listed.values())


def test_stop_on_an_unreadable_run_says_why(runs):
    _run(runs, "bad", b"\x80\x81")
    with pytest.raises(StudioError, match="not UTF-8"):
        jobs.stop_run("bad", timeout=1)


def test_writer_replaces_a_broken_status(runs):
    d = _run(runs, "bad", b"[]")
    rundir.write_status(d, state="running", step=1)
    assert rundir.read_status(d)["state"] == "running"


def test_a_run_deleted_while_listing_is_left_out(runs, monkeypatch):
    for name in ("a", "b", "c"):
        _run(runs, name, {"state": "finished", "run_id": name})
    real = Path.is_file

    def vanishing(self):  # "b" is there when the folder is listed, gone when it is looked at
        if self.parent.name == "b" and self.parent.exists():
            shutil.rmtree(self.parent)
            return True
        return real(self)

    monkeypatch.setattr(Path, "is_file", vanishing)
    real_stat = Path.stat

    def stat(self, *a, **k):
        if self.parent.name == "b" and self.parent.exists():
            shutil.rmtree(self.parent)
        return real_stat(self, *a, **k)

    monkeypatch.setattr(Path, "stat", stat)
    listed = [r["run_id"] for r in jobs.list_runs()]
    assert sorted(listed) == ["a", "c"]


def test_checkpoints_of_a_vanished_run_is_empty(tmp_path, monkeypatch):
    (tmp_path / rundir.CHECKPOINTS).mkdir()
    monkeypatch.setattr(Path, "iterdir", lambda self: (_ for _ in ()).throw(FileNotFoundError(2, "gone")))
    assert rundir.checkpoints(tmp_path) == [] and rundir.latest_checkpoint(tmp_path) is None


# ---------------------------------------------------------------------------- stop and resume

@pytest.fixture()
def bystander():
    """A live process that is not a trainer, in its own group (what a reused pid would point at)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        _KILL(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture()
def signals(monkeypatch):
    sent = []
    real_kill = os.kill
    monkeypatch.setattr(jobs.os, "killpg", lambda g, s: sent.append(("group", g, s)))
    monkeypatch.setattr(jobs.os, "kill", lambda p, s: sent.append(("pid", p, s)) if s else real_kill(p, s))
    return sent


def test_stop_never_signals_group_1_nor_a_process_that_is_not_the_trainer(runs, bystander, signals, monkeypatch):
    monkeypatch.setattr(jobs, "group_alive", lambda pgid: True)  # as on a box where init's group 1 is alive
    _run(runs, "r", {"state": "running", "pid": bystander.pid, "pgid": 1, "host": socket.gethostname()})
    assert jobs.stop_run("r", timeout=1.0) in jobs.TERMINAL
    assert not signals
    assert bystander.poll() is None


def test_a_trainer_naming_group_1_is_signalled_alone(runs, fake_trainer, signals, monkeypatch):
    monkeypatch.setattr(jobs, "group_alive", lambda pgid: True)
    _run(runs, "r", {"state": "running", "pid": fake_trainer.pid, "pgid": 1, "host": socket.gethostname(),
                     **rundir.process_identity(fake_trainer.pid)})
    jobs.stop_run("r", timeout=1.0)
    assert signals and all(kind == "pid" and n == fake_trainer.pid for kind, n, _ in signals), signals


def test_stop_never_signals_a_reused_pid(runs, bystander, signals):
    ident = rundir.process_identity(bystander.pid)
    ident["proc_start"] = ident["proc_start"] + "0"  # the trainer started at another time: its pid was reused
    _run(runs, "r", {"state": "running", "pid": bystander.pid, "pgid": bystander.pid, "host": socket.gethostname(),
                     **ident})
    assert jobs.run_state(runs / "r")["state"] == "failed"
    assert jobs.stop_run("r", timeout=1.0) in jobs.TERMINAL
    assert not signals and bystander.poll() is None


def test_stop_sends_no_signal_to_a_run_of_another_host(runs, bystander, signals):
    _run(runs, "r", {"state": "running", "pid": bystander.pid, "pgid": bystander.pid, "host": "another-box",
                     **rundir.process_identity(bystander.pid)})
    with pytest.raises(StudioError, match="another-box"):
        jobs.stop_run("r", timeout=1.0)
    assert not signals and bystander.poll() is None
    assert (runs / "r" / rundir.STOP_REQUEST).is_file()  # asked through the shared workspace instead


@pytest.fixture()
def fake_trainer():
    """A live process whose command line is a trainer's, as jobs would have recorded it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "core.train.entry"],
                            start_new_session=True)
    time.sleep(0.2)
    yield proc
    if proc.poll() is None:
        _KILL(proc.pid, signal.SIGKILL)
    proc.wait()


def test_stop_signals_the_trainer_group_it_recorded(runs, fake_trainer, monkeypatch):
    _run(runs, "r", {"state": "running", "pid": fake_trainer.pid, "pgid": fake_trainer.pid,
                     "host": socket.gethostname(), **rundir.process_identity(fake_trainer.pid)})
    assert jobs._signal_target(runs / "r", jobs.run_state(runs / "r")) == ("group", fake_trainer.pid)
    assert jobs.stop_run("r", timeout=1.0) == "stopped"
    assert fake_trainer.wait(timeout=10) != 0  # SIGTERM (no handler) ended it


def test_our_own_group_is_never_a_target(runs, fake_trainer, monkeypatch):
    monkeypatch.setattr(jobs.os, "getpgid", lambda pid: fake_trainer.pid)  # as if the trainer were in our group
    status = {"state": "running", "pid": fake_trainer.pid, "pgid": fake_trainer.pid, "host": socket.gethostname(),
              **rundir.process_identity(fake_trainer.pid)}
    assert jobs._signal_target(runs, status) == ("pid", fake_trainer.pid)


def test_resume_into_a_live_run_is_refused(runs, fake_trainer, tmp_path):
    from core.config import RunConfig, save_config

    d = runs / "live"
    d.mkdir()
    save_config(RunConfig(pretrained_model_name_or_path="tiny"), d / rundir.CONFIG)
    (d / rundir.STATUS).write_text(json.dumps({"state": "running", "pid": fake_trainer.pid, "pgid": fake_trainer.pid,
                                               "host": socket.gethostname(),
                                               **rundir.process_identity(fake_trainer.pid)}))
    with pytest.raises(StudioError, match="still running"):
        jobs.prepare_run(d / rundir.CONFIG, work_dir=str(d), resume="latest")
    fake_trainer.kill()
    fake_trainer.wait()
    run, _ = jobs.prepare_run(d / rundir.CONFIG, work_dir=str(d), resume="latest")  # dead: resumable
    assert run == d


def test_no_child_inherits_the_ui_password(monkeypatch):
    monkeypatch.setenv("STUDIO_PASSWORD", "correct horse battery")
    env = jobs._env()
    assert "STUDIO_PASSWORD" not in env and env["PYTHONPATH"]
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('STUDIO_PASSWORD'))"], env=env,
                         capture_output=True, text=True).stdout
    assert out.strip() == "None"


def test_identity_tells_a_process_from_a_later_one(fake_trainer):
    ident = rundir.process_identity(fake_trainer.pid)
    assert "core.train.entry" in ident["proc_cmd"]
    assert rundir.is_trainer(fake_trainer.pid, ident)
    assert not rundir.is_trainer(fake_trainer.pid, {**ident, "proc_cmd": "python other.py"})
    fake_trainer.send_signal(signal.SIGKILL)
    fake_trainer.wait()
    assert rundir.process_identity(fake_trainer.pid) == {} and not rundir.is_trainer(fake_trainer.pid, ident)
