"""The Home page's environment check: GPU, CUDA, memory, disk, versions, workspace (no streamlit here).

    python -c "from studio.ui.env import environment; import json; print(json.dumps(environment(), indent=1))"
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib import metadata

from core.workspace import workspace_root

PACKAGES = ("torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "deepspeed", "streamlit",
            "huggingface_hub", "modelscope")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def _meminfo() -> dict[str, float]:
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, value = line.split(":", 1)
                if key in ("MemTotal", "MemAvailable"):
                    out[key] = int(value.split()[0]) / 1024**2  # kB -> GiB
    except OSError:
        pass
    return out


def gpus() -> list[dict]:
    import torch

    found = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            found.append({"index": i, "name": torch.cuda.get_device_name(i), "total_gib": round(total / 1024**3, 1),
                          "free_gib": round(free / 1024**3, 1),
                          "bf16": bool(torch.cuda.is_bf16_supported())})
    return found


def environment() -> dict:
    import torch

    root = workspace_root()
    disk = shutil.disk_usage(root)
    mem = _meminfo()
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
        "cuda_available": bool(torch.cuda.is_available()), "cuda_version": torch.version.cuda or "-",
        "gpus": gpus(), "ram_total_gib": round(mem.get("MemTotal", 0), 1),
        "ram_available_gib": round(mem.get("MemAvailable", 0), 1),
        "disk_free_gib": round(disk.free / 1024**3, 1), "disk_total_gib": round(disk.total / 1024**3, 1),
        "workspace": str(root), "hf_endpoint": os.environ.get("HF_ENDPOINT", ""),
        "versions": {p: _version(p) for p in PACKAGES},
    }
