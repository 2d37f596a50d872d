"""Convert + validate of a 100,000-sample JSONL stream: memory stays flat, time stays small.

    .venv/bin/python -m pytest tests/e2e/test_data_scale.py -s     # prints the figures
"""

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")

ROOT = Path(__file__).resolve().parents[2]

# VmHWM is this process's own peak RSS; ru_maxrss would carry the (large) pytest parent's peak over exec.
_CHILD = """
import sys
from studio.cli import main
rc = main(sys.argv[1:])
hwm = next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
print("MAXRSS_KB", hwm, "RC", rc)
"""


def _make(path: Path, n: int) -> None:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as f:
        for k in range(n):
            f.write(json.dumps({"conversation": [{"system": "你是一个助手。", "input": f"问题{k}：" + "内容" * rng.randint(5, 60),
                                                  "output": "回答" * rng.randint(10, 100)}]}, ensure_ascii=False) + "\n")


def _run(*argv: str) -> tuple[float, int]:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _CHILD, *argv], cwd=ROOT, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t
    assert p.returncode == 0, p.stderr
    line = p.stdout.strip().splitlines()[-1].split()
    assert line[3] == "0", p.stderr
    return dt, int(line[1])


@pytest.mark.e2e
def test_100k_streams_flat_and_fast(tmp_path):
    figures = {}
    for n in (10_000, 100_000):
        src, out = tmp_path / f"in_{n}.jsonl", tmp_path / f"out_{n}.jsonl"
        _make(src, n)
        t_conv, rss_conv = _run("data", "convert", str(src), "-o", str(out))
        t_val, rss_val = _run("data", "validate", str(out))
        figures[n] = (t_conv, rss_conv, t_val, rss_val, src.stat().st_size)
        print(f"\n{n} samples ({src.stat().st_size / 1e6:.0f} MB): convert {t_conv:.2f}s peak {rss_conv / 1024:.0f} MB, "
              f"validate {t_val:.2f}s peak {rss_val / 1024:.0f} MB")
    t_conv, rss_conv, t_val, rss_val, size = figures[100_000]
    assert t_conv + t_val <= 15.0
    # flat: ten times the data (~60 MB) costs less than 10 MB more memory
    assert rss_conv - figures[10_000][1] < 10_240 and rss_val - figures[10_000][3] < 10_240
    assert max(rss_conv, rss_val) * 1024 < size
