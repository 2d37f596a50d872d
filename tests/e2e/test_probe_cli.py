"""`python -m studio probe` end to end on the tiny model (issue 20): both rates as JSON, a missing file is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_probe_cli_prints_both_rates(tiny_model, tmp_path):
    ids = tmp_path / "id.txt"
    ids.write_text("你是谁？\nWho are you?\n", encoding="utf-8")
    other = tmp_path / "other.txt"
    other.write_text("# a comment\n怎么煮米饭？\nHow do I make pancakes?\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "studio", "probe", str(tiny_model), "--name", "小明", "--identity",
                        str(ids), "--prompts", str(other), "--max-new-tokens", "24", "--json"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["identity_hit_rate"] == 0 and res["leak_rate"] == 0  # the base has no name
    assert res["leaks"] == {"zh": "0/1", "en": "0/1"} and len(res["unrelated"]) == 2
    assert all(x["answer"] and "\ufffd" not in x["answer"] for x in res["identity"] + res["unrelated"])
    bad = subprocess.run([sys.executable, "-m", "studio", "probe", str(tiny_model), "--name", "x", "--prompts",
                          str(tmp_path / "nope.txt")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "nope.txt" in bad.stderr
