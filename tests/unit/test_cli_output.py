"""`python -m studio` results reach the real stdout (library banners go to stderr), for every verb group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("args", [
    ("list-cfg", "-p", "tiny", "--json"),
    ("estimate", "tiny_chat_lora_identity_e3", "--json"),
    ("runs", "--json"),
])
def test_json_results_are_on_stdout(args):
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)


def test_data_validate_json_is_on_stdout(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
                    + "\n", encoding="utf-8")
    r = _run("data", "validate", str(data), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["samples"] == 1
