"""Start, watch, stop and resume training runs through the run-dir protocol (DESIGN.md).

A run is a folder under workspace/runs/. `start_run` freezes the config there and starts
`python -m core.train.entry RUN_DIR` in its own session and process group, so it outlives the
CLI, the Streamlit server and the SSH tunnel that started it. Everything else only reads files.

    python -m studio train assets/recipes/tiny_chat_lora_identity_e3.yaml --detach
    python -m studio runs
    python -m studio stop <run_id>
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from core import rundir
from core.config import RunConfig, load_config, save_config
from core.errors import StudioError
from core.fsio import atomic_write_text
from core.workspace import runs_dir

TERMINAL = ("stopped", "finished", "failed")
LIVE = ("queued", "running", "stopping")
SECRET_ENV = ("STUDIO_PASSWORD",)  # never passed to a child process


# ---------------------------------------------------------------------------- config checks

def resolve_config_path(config: str | os.PathLike) -> Path:
    """A YAML path, or a recipe name as list-cfg prints it."""
    p = Path(config)
    if p.is_file():
        return p
    if not p.suffix:
        try:
            from core.config.recipes import recipe_path

            return recipe_path(str(config))
        except (ImportError, StudioError, FileNotFoundError, KeyError, ValueError):
            pass
    raise StudioError(f"no config file at {p}", hint="give a YAML path or a recipe name from: python -m studio list-cfg")


def _has_chat_template(folder: Path) -> bool:
    """Does the tokenizer in `folder` carry a chat template? (True when it cannot tell: the trainer decides)"""
    import json

    if any((folder / n).exists() for n in ("chat_template.jinja", "chat_template.json", "additional_chat_templates")):
        return True
    try:
        tc = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return not isinstance(tc, dict) or bool(tc.get("chat_template"))


def preflight(cfg: RunConfig) -> RunConfig:
    """Checks that would otherwise fail minutes later in the trainer; paths made absolute."""
    from core.models import looks_like_hub_id

    name = cfg.pretrained_model_name_or_path
    if not name:
        raise StudioError("pretrained_model_name_or_path: no model given", hint="a folder, a hub id, or 'tiny'")
    if name in ("tiny", "tiny-llava"):
        from core.models import resolve_model

        resolve_model(name)  # built here once, not by every rank of a several-process run
    else:
        p = Path(name).expanduser()
        if p.exists():
            if not (p / "config.json").is_file():
                raise StudioError(f"pretrained_model_name_or_path: {p} has no config.json",
                                  hint="expected a Hugging Face model folder (config.json, weights, tokenizer)")
            cfg.pretrained_model_name_or_path = str(p.resolve())
            if cfg.prompt_template in ("auto", "") and cfg.model_type != "llava" and not _has_chat_template(p):
                raise StudioError(f"prompt_template: the tokenizer in {p} has no chat template and prompt_template "
                                  "is 'auto'", hint="set prompt_template to one of internlm2_chat, qwen_chat, "
                                  "llama3_chat, default (the one the model was trained with)")
        elif not looks_like_hub_id(name):
            raise StudioError(f"pretrained_model_name_or_path: model path {name} does not exist",
                              hint="expected a model folder, a hub id like Qwen/Qwen2.5-0.5B-Instruct, or 'tiny'")
    if not cfg.data_path:
        raise StudioError("data_path: no data file given", hint="build one on the Data page or: python -m studio data identity")
    data = Path(cfg.data_path).expanduser()
    if not data.is_file():
        raise StudioError(f"data_path: no data file at {data}", hint="check the path (relative paths start at the folder you run from)")
    cfg.data_path = str(data.resolve())
    if cfg.image_folder:
        cfg.image_folder = str(Path(cfg.image_folder).expanduser().resolve())
    return cfg


# ---------------------------------------------------------------------------- run folders

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "run"


def new_run_dir(cfg_path: Path, work_dir: str | None = None) -> Path:
    if work_dir:
        d = Path(work_dir)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        d = runs_dir() / f"{stamp}-{_slug(cfg_path.stem)}"
        n = 1
        while d.exists():
            n += 1
            d = runs_dir() / f"{stamp}-{_slug(cfg_path.stem)}-{n}"
    return d


def train_command(run_dir: Path, cfg_path: str, resume: str | None, deepspeed: str | None) -> str:
    parts = ["python", "-m", "studio", "train", str(cfg_path), "--work-dir", str(run_dir)]
    if resume:
        parts += ["--resume"] + ([] if resume == "latest" else [resume])
    if deepspeed:
        parts += ["--deepspeed", deepspeed]
    return shlex.join(parts)


def prepare_run(config: str | os.PathLike, work_dir: str | None = None, resume: str | None = None,
                deepspeed: str | None = None) -> tuple[Path, RunConfig]:
    """Validate everything, then write config.yaml/command.txt/status.json (queued) into the run dir.

    With --resume into an existing run dir, its frozen config is kept.
    """
    cfg_path = resolve_config_path(config)
    if resume and work_dir and (Path(work_dir) / rundir.CONFIG).is_file():
        run = Path(work_dir)
        _refuse_live(run)  # a second trainer on the same folder would overwrite the first one's checkpoints
        cfg = load_config(run / rundir.CONFIG)
        return run, cfg
    cfg = preflight(load_config(cfg_path))
    run = new_run_dir(cfg_path, work_dir or (cfg.work_dir or None))
    _refuse_live(run)
    run.mkdir(parents=True, exist_ok=True)
    cfg.work_dir = str(run.resolve())
    save_config(cfg, run / rundir.CONFIG, header=f"Frozen config of run {run.name}; source: {cfg_path}")
    atomic_write_text(run / rundir.COMMAND, train_command(run, str(cfg_path), resume, deepspeed) + "\n")
    rundir.write_status(run, state="queued", run_id=run.name, created_at=time.time(), config_source=str(cfg_path))
    return run, cfg


def _refuse_live(run: Path) -> None:
    if not (run / rundir.STATUS).is_file():
        return
    status = run_state(run)
    if status.get("state") in LIVE:
        where = f" on {status['host']}" if status.get("host") not in (None, socket.gethostname()) else ""
        raise StudioError(f"{run} holds a run that is still {status['state']}{where}",
                          hint=f"stop it first (python -m studio stop {run}), or pick another --work-dir")


def _entry_argv(run: Path, resume: str | None, deepspeed: str | None) -> list[str]:
    from core.train.distributed import launch_argv

    args = [str(run)]
    if resume:
        args += ["--resume", resume]
    if deepspeed:
        args += ["--deepspeed", deepspeed]
    return launch_argv(args)


def _project_root() -> str:
    return str(Path(__file__).resolve().parents[1])


def _env() -> dict:
    # the UI's password stays with the UI: a trainer (and whatever it starts) has no use for it
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env["PYTHONPATH"] = _project_root() + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _lower_priority(pid: int) -> None:
    """A detached run yields the CPU to the UI and the SSH session when they contend (STUDIO_TRAIN_NICE, default 5).

    On a GPU box the run waits on the GPU and loses nothing; on a 2-core laptop the board keeps
    drawing while a CPU run trains. Set before the trainer imports torch, so its data-loader workers
    and torchrun ranks inherit it.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, pid, int(os.environ.get("STUDIO_TRAIN_NICE", "5")))
    except (OSError, ValueError, AttributeError):  # not permitted, or no such call on this OS: run as is
        pass


def start_run(config: str | os.PathLike, work_dir: str | None = None, resume: str | None = None,
              deepspeed: str | None = None) -> Path:
    """Start a detached training process; returns the run dir at once."""
    run, _ = prepare_run(config, work_dir, resume, deepspeed)
    (run / rundir.STOP_REQUEST).unlink(missing_ok=True)
    log = open(run / rundir.LOG, "ab")  # noqa: SIM115 - handed to the child, closed here after spawn
    try:
        proc = subprocess.Popen(
            _entry_argv(run, resume, deepspeed), cwd=os.getcwd(), env=_env(), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # own session: survives the UI
        )
    finally:
        log.close()
    _lower_priority(proc.pid)
    # reap our own child when it ends, so a finished run never lingers as a zombie of the UI server
    threading.Thread(target=proc.wait, daemon=True).start()
    rundir.write_status(run, pid=proc.pid, pgid=proc.pid, launched_at=time.time(), host=socket.gethostname(),
                        **rundir.process_identity(proc.pid))
    return run


def run_foreground(config: str | os.PathLike, work_dir: str | None = None, resume: str | None = None,
                   deepspeed: str | None = None) -> int:
    """Train attached to this terminal: train.log shown on stderr as the trainer writes it."""
    run, _ = prepare_run(config, work_dir, resume, deepspeed)
    print(f"run dir: {run}", file=sys.stderr, flush=True)
    try:
        status = attach(run, resume, deepspeed)
    except KeyboardInterrupt:  # stopped as asked (Ctrl-C / kill): a checkpoint was saved
        status = rundir.read_status(run)
        print(f"run {run.name}: {status.get('state')}; resume: python -m studio train {run / rundir.CONFIG} "
              f"--work-dir {run} --resume", file=sys.stderr, flush=True)
        return 0
    print(f"run {run.name}: {status.get('state')}", file=sys.stderr, flush=True)
    return 0


def attach(run: Path, resume: str | None = None, deepspeed: str | None = None) -> dict:
    """Run the trainer for a prepared run dir and follow its log; returns the final status.

    The trainer writes train.log itself and has its own session, as a detached run does: this process
    dying (a closed terminal, `kill`) never cuts it off mid-save. SIGINT (Ctrl-C) and SIGTERM here are
    a stop, as `studio stop` asks it: the trainer saves a checkpoint, then exits, and this raises
    KeyboardInterrupt, so a caller with more to do (the demo) does not go on as if training had finished.
    """
    (run / rundir.STOP_REQUEST).unlink(missing_ok=True)
    log_path = run / rundir.LOG
    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(_entry_argv(run, resume, deepspeed), env=_env(), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rundir.write_status(run, pid=proc.pid, pgid=proc.pid, launched_at=time.time(), host=socket.gethostname(),
                        **rundir.process_identity(proc.pid))
    asked = []

    def on_signal(signum, frame) -> None:
        if not asked:
            print("\nstopping: saving a checkpoint, then exiting", file=sys.stderr, flush=True)
            atomic_write_text(run / rundir.STOP_REQUEST, str(time.time()))
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        else:
            print(f"still saving; to abandon the checkpoint: kill -9 {proc.pid}", file=sys.stderr, flush=True)
        asked.append(signum)

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: the caller keeps its own handling
            pass
    try:
        code = _follow(log_path, start, proc)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        (run / rundir.STOP_REQUEST).unlink(missing_ok=True)
    status = rundir.read_status(run)
    if code != 0:
        raise StudioError(f"run {run.name} failed: {status.get('error') or f'exit code {code}'}", hint=status.get("hint"))
    if asked:
        raise KeyboardInterrupt
    return status


def _follow(log_path: Path, offset: int, proc: subprocess.Popen) -> int:
    """Copy what the trainer appends to its log onto stderr until it exits; its exit code."""
    echo = True
    with open(log_path, "rb") as f:
        f.seek(offset)
        while True:
            code = proc.poll()
            chunk = f.read(1 << 16)
            if chunk and echo:
                try:
                    if hasattr(sys.stderr, "buffer"):
                        sys.stderr.buffer.write(chunk)
                    else:  # a captured stderr (tests, notebooks) takes text
                        sys.stderr.write(chunk.decode("utf-8", "replace"))
                    sys.stderr.flush()
                except (OSError, ValueError):  # the terminal is gone: keep waiting, quietly
                    echo = False
            elif not chunk and code is not None:
                return code
            elif not chunk:
                time.sleep(0.2)


# ---------------------------------------------------------------------------- watch / stop

def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def group_alive(pgid: int | None) -> bool:
    """Is any live (non-zombie) process left in process group `pgid`? (torchrun + every rank)"""
    if not pgid:
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _here(status: dict) -> bool:
    """Was this run started on this machine? (a shared workspace may hold runs of several)"""
    return status.get("host") in (None, socket.gethostname())


def trainer_alive(status: dict) -> bool:
    """Is the process status.json names still the trainer it started? (False for a reused pid)"""
    pid = status.get("pid")
    if not pid or not pid_alive(pid):
        return False
    return rundir.is_trainer(pid, status) if Path("/proc").is_dir() else True


def run_state(run: Path) -> dict:
    """status.json, with a run whose process died without a word reported as failed.

    An unreadable status.json comes back as state "unreadable" with the reason, never as an exception.
    """
    status = rundir.read_status(run)
    status.setdefault("run_id", run.name)
    state = status.get("state")
    if state in LIVE and status.get("pid") and _here(status) and not trainer_alive(status):
        status["state"] = "failed"
        status["error"] = status.get("error") or "the training process ended without a word (killed, or the machine restarted)"
        status["hint"] = "resume it: python -m studio train " + str(run / rundir.CONFIG) + f" --work-dir {run} --resume"
    status["run_dir"] = str(run)
    ck = rundir.latest_checkpoint(run)
    status["latest_checkpoint"] = str(ck) if ck else None
    return status


def list_runs() -> list[dict]:
    """Every run under workspace/runs, newest first; a broken one is listed as "unreadable", a vanishing one left out."""
    found = []
    try:
        entries = list(runs_dir().iterdir())
    except OSError:
        return []
    for p in entries:
        try:
            found.append((p.joinpath(rundir.STATUS).stat().st_mtime, p))
        except OSError:  # no status.json (not a run), or the run is being deleted right now
            continue
    found.sort(key=lambda x: x[0], reverse=True)
    out = []
    for _, p in found:
        status = run_state(p)
        if status.get("state") is None and not p.exists():  # deleted between the listing and the read
            continue
        if status.get("state") is None:
            status.update(rundir.unreadable(p, f"{p / rundir.STATUS}: no state"))
            status["run_dir"] = str(p)
        out.append(status)
    return out


def find_run(run_id: str) -> Path:
    p = Path(run_id)
    if (p / rundir.STATUS).is_file():
        return p
    p = runs_dir() / run_id
    if (p / rundir.STATUS).is_file():
        return p
    raise StudioError(f"no run named {run_id}", hint="see: python -m studio runs")


def _signal_target(run: Path, status: dict) -> tuple[str, int] | None:
    """("group", pgid) or ("pid", pid) that may be signalled to stop this run, or None when nothing may.

    Only the trainer this run started, on this machine: never a group <= 1, never our own group, never
    a pid that now belongs to another process.
    """
    pid, pgid = status.get("pid"), status.get("pgid")
    if not _here(status) or not isinstance(pid, int) or pid <= 1 or not trainer_alive(status):
        return None
    try:
        real_group = os.getpgid(pid)
    except OSError:
        return None
    if isinstance(pgid, int) and pgid > 1 and pgid == real_group and pgid != os.getpgid(0):
        return "group", pgid
    return "pid", pid


def _send(target: tuple[str, int] | None, sig: int) -> None:
    if target is None:
        return
    kind, n = target
    with contextlib.suppress(ProcessLookupError, PermissionError):
        (os.killpg if kind == "group" else os.kill)(n, sig)


def stop_run(run_id: str, timeout: float = 60.0) -> str:
    """Ask the run to checkpoint and exit; kill its trainer (its whole process group) after `timeout` seconds.

    Signals go only to the trainer this run started on this machine (`_signal_target`); a run of
    another host is asked through stop.request alone (a shared workspace carries it there).
    """
    run = find_run(run_id)
    status = run_state(run)
    if status["state"] in TERMINAL:
        return status["state"]
    if status["state"] == rundir.UNREADABLE:
        raise StudioError(f"cannot stop {run.name}: {status['error']}", hint=status.get("hint"))
    # The stop request file is seen by every rank at the same step end (the ranks agree through an
    # all-reduce), so a several-GPU run checkpoints and exits together. Signals come only after that.
    atomic_write_text(run / rundir.STOP_REQUEST, str(time.time()))
    target = _signal_target(run, status)
    remote = not _here(status)

    def alive() -> bool:
        if remote:
            return rundir.read_status(run).get("state") in LIVE
        if target and target[0] == "group":
            return group_alive(target[1])
        return trainer_alive(status)

    t0 = time.time()
    signalled = False
    while time.time() - t0 < timeout:
        if not alive():
            break
        if not signalled and time.time() - t0 > timeout / 2:
            _send(target, signal.SIGTERM)
            signalled = True
        time.sleep(0.3)
    else:
        if remote:
            raise StudioError(f"run {run.name} runs on {status.get('host')}, not on this machine, and did not stop "
                              f"within {timeout:.0f} s", hint=f"stop it on {status.get('host')}: python -m studio "
                              f"stop {run.name} (stop.request stays, so it stops at its next step)")
        _send(target, signal.SIGKILL)
        rundir.write_status(run, state="stopped", error="did not stop in time; killed", ended_at=time.time())
    final = rundir.read_status(run).get("state")
    if final not in TERMINAL:
        rundir.write_status(run, state="stopped", ended_at=time.time())
        final = "stopped"
    try:
        (run / rundir.STOP_REQUEST).unlink()
    except FileNotFoundError:
        pass
    return final
