"""Several GPUs: the DeepSpeed ZeRO configs and the torchrun launch line, as XTuner does it.

    NPROC_PER_NODE=2 python -m studio train CONFIG --deepspeed zero2

The JSON files in assets/deepspeed/ are exactly what `deepspeed_config(stage)` returns (a test
checks it): batch size, accumulation, clipping and precision stay "auto" so the Trainer fills them
from the one run config, and nothing can disagree.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STAGES = ("zero1", "zero2", "zero2_offload", "zero3", "zero3_offload")
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "deepspeed"


def deepspeed_config(stage: str) -> dict:
    """The ZeRO config a stage needs; offload variants move optimizer (and for ZeRO-3, weights) to CPU."""
    if stage not in STAGES:
        raise ValueError(f"deepspeed stage must be one of {', '.join(STAGES)}, got {stage!r}")
    level = int(stage[4])
    zero: dict = {"stage": level, "overlap_comm": True, "contiguous_gradients": True}
    if level >= 2:
        zero["reduce_bucket_size"] = "auto"
    if level == 3:
        zero.update({"stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                     # the final adapter must be a normal PEFT folder: gather the shards when saving
                     "stage3_gather_16bit_weights_on_model_save": True})
    if stage.endswith("offload"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if level == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto", "initial_scale_power": 16},
    }


def deepspeed_config_path(stage: str) -> Path:
    """The shipped JSON for `stage` (what the Trainer is given)."""
    path = ASSETS / f"{stage}.json"
    if not path.is_file():
        deepspeed_config(stage)  # raises a clear error for an unknown stage
        raise FileNotFoundError(f"{path} is missing: run python -m core.train.distributed to write it")
    return path


def nproc() -> int:
    try:
        return max(1, int(os.environ.get("NPROC_PER_NODE", "1") or 1))
    except ValueError:
        return 1


def launch_argv(entry_args: list[str]) -> list[str]:
    """`python -m core.train.entry ARGS`, or the torchrun line for NPROC_PER_NODE > 1."""
    n = nproc()
    if n == 1:
        return [sys.executable, "-m", "core.train.entry", *entry_args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
            "-m", "core.train.entry", *entry_args]


if __name__ == "__main__":
    ASSETS.mkdir(parents=True, exist_ok=True)
    for s in STAGES:
        (ASSETS / f"{s}.json").write_text(json.dumps(deepspeed_config(s), indent=2) + "\n", encoding="utf-8")
        print(ASSETS / f"{s}.json")
