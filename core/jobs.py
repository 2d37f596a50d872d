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
        cfg = load_config(run / rundir.CONFIG)
        return run, cfg
    cfg = preflight(load_config(cfg_path))
    run = new_run_dir(cfg_path, work_dir or (cfg.work_dir or None))
    if (run / rundir.STATUS).is_file() and rundir.read_status(run).get("state") in ("running", "queued", "stopping"):
        raise StudioError(f"{run} holds a run that is still {rundir.read_status(run)['state']}",
                          hint="stop it first, or pick another --work-dir")
    run.mkdir(parents=True, exist_ok=True)
    cfg.work_dir = str(run.resolve())
    save_config(cfg, run / rundir.CONFIG, header=f"Frozen config of run {run.name}; source: {cfg_path}")
    atomic_write_text(run / rundir.COMMAND, train_command(run, str(cfg_path), resume, deepspeed) + "\n")
    rundir.write_status(run, state="queued", run_id=run.name, created_at=time.time(), config_source=str(cfg_path))
    return run, cfg


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
    env = dict(os.environ)
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
    rundir.write_status(run, pid=proc.pid, pgid=proc.pid, launched_at=time.time())
    return run


def run_foreground(config: str | os.PathLike, work_dir: str | None = None, resume: str | None = None,
                   deepspeed: str | None = None) -> int:
    """Train attached to this terminal, the log both shown (stderr) and written to train.log."""
    run, _ = prepare_run(config, work_dir, resume, deepspeed)
    print(f"run dir: {run}", file=sys.stderr, flush=True)
    attach(run, resume, deepspeed)
    return 0


def attach(run: Path, resume: str | None = None, deepspeed: str | None = None) -> dict:
    """Run the trainer for a prepared run dir as a child, teeing its output; returns the final status."""
    (run / rundir.STOP_REQUEST).unlink(missing_ok=True)
    with open(run / rundir.LOG, "ab") as log:
        proc = subprocess.Popen(_entry_argv(run, resume, deepspeed), env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        try:
            for chunk in iter(lambda: proc.stdout.read1(4096), b""):
                log.write(chunk)
                log.flush()
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait()
    status = rundir.read_status(run)
    if code != 0:
        raise StudioError(f"run {run.name} failed: {status.get('error') or f'exit code {code}'}", hint=status.get("hint"))
    return status


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


def run_state(run: Path) -> dict:
    """status.json, with a run whose process died without a word reported as failed."""
    status = rundir.read_status(run)
    status.setdefault("run_id", run.name)
    state = status.get("state")
    if state in ("running", "stopping", "queued") and status.get("pid") and not pid_alive(status.get("pid")):
        status["state"] = "failed"
        status["error"] = status.get("error") or "the training process ended without a word (killed, or the machine restarted)"
        status["hint"] = "resume it: python -m studio train " + str(run / rundir.CONFIG) + f" --work-dir {run} --resume"
    status["run_dir"] = str(run)
    ck = rundir.latest_checkpoint(run)
    status["latest_checkpoint"] = str(ck) if ck else None
    return status


def list_runs() -> list[dict]:
    root = runs_dir()
    runs = [p for p in root.iterdir() if (p / rundir.STATUS).is_file()]
    runs.sort(key=lambda p: (p / rundir.STATUS).stat().st_mtime, reverse=True)
    return [run_state(p) for p in runs]


def find_run(run_id: str) -> Path:
    p = Path(run_id)
    if (p / rundir.STATUS).is_file():
        return p
    p = runs_dir() / run_id
    if (p / rundir.STATUS).is_file():
        return p
    raise StudioError(f"no run named {run_id}", hint="see: python -m studio runs")


def stop_run(run_id: str, timeout: float = 60.0) -> str:
    """Ask the run to checkpoint and exit; kill its whole process group after `timeout` seconds."""
    run = find_run(run_id)
    status = run_state(run)
    if status["state"] in TERMINAL:
        return status["state"]
    # The stop request file is seen by every rank at the same step end (the ranks agree through an
    # all-reduce), so a several-GPU run checkpoints and exits together. Signals come only after that.
    atomic_write_text(run / rundir.STOP_REQUEST, str(time.time()))
    pgid = status.get("pgid") or status.get("pid")
    t0 = time.time()
    signalled = False
    while time.time() - t0 < timeout:
        if not (group_alive(pgid) if pgid else pid_alive(status.get("pid"))):
            break
        if not signalled and time.time() - t0 > timeout / 2 and pgid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            signalled = True
        time.sleep(0.3)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
            os.killpg(pgid, signal.SIGKILL)
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
