"""The command line that reproduces a run: ours, and XTuner's where the config came from XTuner.

The Config page shows these under the form, and jobs writes train_command() to command.txt, so a
run started by clicking can be started again headless:

    python -c "from core.config.command import train_command; print(train_command('my.yaml'))"
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from core.config.schema import RunConfig, load_config

_XTUNER_DS = {"zero1": "deepspeed_zero1", "zero2": "deepspeed_zero2", "zero2_offload": "deepspeed_zero2_offload",
              "zero3": "deepspeed_zero3", "zero3_offload": "deepspeed_zero3_offload"}


def _q(s: str | os.PathLike) -> str:
    return shlex.quote(str(s))


def train_command(cfg_path: str | os.PathLike, cfg: RunConfig | None = None, *, n_gpus: int = 1,
                  work_dir: str | None = None, resume: str | None = None, detach: bool = False) -> str:
    """`python -m studio train CONFIG ...` for a config file (read to pick up work_dir/deepspeed).

    The config's own deepspeed and work_dir are already in the file, so they are not repeated; more
    than one GPU prefixes NPROC_PER_NODE=N as XTuner does.
    """
    if cfg is None and Path(cfg_path).is_file():
        cfg = load_config(cfg_path)
    parts = ["python", "-m", "studio", "train", _q(cfg_path)]
    if work_dir:
        parts += ["--work-dir", _q(work_dir)]
    if resume:
        parts += ["--resume"] if resume == "latest" else ["--resume", _q(resume)]
    if detach:
        parts.append("--detach")
    prefix = f"NPROC_PER_NODE={n_gpus} " if n_gpus > 1 else ""
    return prefix + " ".join(parts)


def xtuner_command(py_path: str | os.PathLike, *, deepspeed: str | None = None, work_dir: str | None = None,
                   n_gpus: int = 1, resume: str | None = None) -> str:
    """`xtuner train CONFIG.py ...`, the line the XTuner tutorial would run for the same config.

    `deepspeed` takes our names (zero2) or XTuner's (deepspeed_zero2, deepspeed_zero2.json).
    """
    parts = ["xtuner", "train", _q(py_path)]
    if work_dir:
        parts += ["--work-dir", _q(work_dir)]
    if deepspeed and deepspeed != "none":
        parts += ["--deepspeed", _q(_XTUNER_DS.get(deepspeed, deepspeed))]
    if resume:
        parts += ["--resume", _q(resume)]
    prefix = f"NPROC_PER_NODE={n_gpus} " if n_gpus > 1 else ""
    return prefix + " ".join(parts)
