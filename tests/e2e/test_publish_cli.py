"""`python -m studio publish` end to end against tests/fakehub, with a planted token.

    .venv/bin/python -m pytest tests/e2e/test_publish_cli.py -m e2e

The CLI runs in a subprocess with HF_ENDPOINT / MODELSCOPE_ENDPOINT pointed at the fake hub, the
token in HF_TOKEN / MODELSCOPE_API_TOKEN, and HOME and the workspace in tmp folders; afterwards the
token must appear in no file under those folders, not in stdout/stderr, and in no request except
the auth headers.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakehub import FakeHub

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "PLANTED-tok-4f9c2e7a1b"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from core.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny")


def _run(args, env_extra, tmp_path):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "MODELSCOPE_API_TOKEN")}
    env.update(HOME=str(home), STUDIO_WORKSPACE=str(tmp_path / "workspace"), HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1", **env_extra)
    return subprocess.run([sys.executable, "-m", "studio", "publish", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _token_files(*roots):
    return [str(p) for root in roots for p in Path(root).rglob("*")
            if p.is_file() and TOKEN.encode() in p.read_bytes()]


@pytest.mark.parametrize("hub,env_name,endpoint_var,space_type", [
    ("hf", "HF_TOKEN", "HF_ENDPOINT", "space"),
    ("modelscope", "MODELSCOPE_API_TOKEN", "MODELSCOPE_ENDPOINT", "studio"),
])
def test_cli_publish_pushes_and_leaks_no_token(tiny, tmp_path, hub, env_name, endpoint_var, space_type):
    with FakeHub(token=TOKEN) as fake:
        proc = _run([hub, str(tiny), "--repo", "alice/tiny", "--space"], {env_name: TOKEN, endpoint_var: fake.url},
                    tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        model = fake.files("model", "alice/tiny")
        space = fake.files(space_type, "alice/tiny")
        leaks = fake.where_is(TOKEN)
    summary = json.loads(proc.stdout)
    assert summary["model_url"].startswith(fake.url)
    assert "model.safetensors" in model and model["model.safetensors"] == (tiny / "model.safetensors").read_bytes()
    assert sorted(space) == ["README.md", "app.py", "requirements.txt"]
    assert leaks and all(w.lower().endswith(("header authorization", "header cookie")) for w in leaks), leaks
    assert TOKEN not in proc.stdout and TOKEN not in proc.stderr
    assert _token_files(tmp_path) == []
    assert "publish: published" in proc.stderr


def test_cli_dry_run_needs_no_token_and_lists_the_calls(tiny, tmp_path):
    proc = _run(["hf", str(tiny), "--repo", "alice/tiny", "--space", "--dry-run", str(tmp_path / "dry")],
                {"HF_ENDPOINT": "http://127.0.0.1:9"}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "dry" / "plan.json").read_text())
    assert [c["call"] for c in plan["calls"]][:2] == ["HfApi.create_repo", "HfApi.preupload_lfs_files"]
    assert plan["calls"][-1]["call"] == "HfApi.create_commit"
    assert (tmp_path / "dry" / "space" / "app.py").is_file()


def test_cli_without_a_token_fails_with_one_line_of_advice(tiny, tmp_path):
    proc = _run(["modelscope", str(tiny), "--repo", "alice/tiny"], {}, tmp_path)
    assert proc.returncode == 1
    assert "MODELSCOPE_API_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
