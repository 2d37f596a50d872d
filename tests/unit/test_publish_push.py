"""Push against tests/fakehub: repos, file paths and bytes, where the token travels, plain advice.

    .venv/bin/python -m pytest tests/unit/test_publish_push.py
"""

import json
import logging
import socket

import pytest

from core.errors import StudioError
from core.publish import push, resolve_token
from tests.fakehub import FakeHub, fake_model_dir

TOKEN = "hf_PLANTED_Zq8w3x9TOKEN"


@pytest.fixture()
def ws(tmp_path, monkeypatch):
    root = tmp_path / "workspace"
    monkeypatch.setenv("STUDIO_WORKSPACE", str(root))
    return root


@pytest.fixture()
def merged(tmp_path):
    return fake_model_dir(tmp_path / "merged")


def _files_on_disk(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _assert_token_nowhere_on_disk(*roots):
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                assert TOKEN.encode() not in p.read_bytes(), f"token written to {p}"


# ---------------------------------------------------------------------------- tokens

def test_resolve_token_prefers_the_page_field_then_the_environment(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "from-env")
    monkeypatch.delenv("MODELSCOPE_API_TOKEN", raising=False)
    assert resolve_token("hf") == "from-env"
    assert resolve_token("hf", "  from-page ") == "from-page"
    assert resolve_token("modelscope") is None
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms")
    assert resolve_token("modelscope", "") == "ms"
    with pytest.raises(StudioError, match="hub"):
        resolve_token("github")


def test_a_push_without_a_token_says_where_to_get_one(merged, ws):
    with pytest.raises(StudioError) as e:
        push("hf", merged, "alice/tiny", token=None)
    assert "HF_TOKEN" in str(e.value) and "huggingface.co/settings/tokens" in str(e.value)


# ---------------------------------------------------------------------------- dry run

def test_dry_run_writes_everything_and_touches_no_network(merged, tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("dry run opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    out = tmp_path / "dry"
    result = push("modelscope", merged, "alice/tiny", token=None, space=True, dry_run_dir=out)
    assert result["dry_run"] is True
    model = _files_on_disk(out / "model")
    assert sorted(model) == ["README.md", "config.json", "generation_config.json", "model.safetensors",
                             "tokenizer.json", "tokenizer_config.json"]  # no trainer_state / rng_state
    assert model["model.safetensors"] == (merged / "model.safetensors").read_bytes()
    assert len(model["README.md"].decode()) >= 200
    assert sorted(_files_on_disk(out / "space")) == ["README.md", "app.py", "requirements.txt"]
    plan = json.loads((out / "plan.json").read_text())
    assert [c["call"] for c in plan["calls"]] == ["HubApi.create_repo", "HubApi.upload_folder",
                                                  "HubApi.create_repo", "HubApi.upload_folder", "HubApi.deploy_repo"]
    assert plan["model_url"].endswith("/models/alice/tiny") and plan["space_url"].endswith("/studios/alice/tiny")
    assert all("http" in c for c in plan["calls"])


def test_a_bad_source_is_refused_before_anything_is_written(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StudioError, match="neither config.json"):
        push("hf", empty, "alice/x", token=None, dry_run_dir=tmp_path / "dry")
    with pytest.raises(StudioError, match="not a repo id"):
        push("hf", fake_model_dir(tmp_path / "m", weights_bytes=10), "no-owner", token=None,
             dry_run_dir=tmp_path / "dry")
    assert not (tmp_path / "dry").exists()


def test_an_adapter_space_needs_a_hub_base_and_gets_it_written_in(tmp_path):
    adapter = fake_model_dir(tmp_path / "adapter", weights_bytes=10, adapter_base=str(tmp_path / "local-base"))
    with pytest.raises(StudioError, match="--base-model"):
        push("hf", adapter, "alice/lora", token=None, space=True, dry_run_dir=tmp_path / "dry")
    push("hf", adapter, "alice/lora", token=None, space=True, dry_run_dir=tmp_path / "dry",
         base_model="internlm/internlm2-chat-1_8b")
    staged = json.loads((tmp_path / "dry" / "model" / "adapter_config.json").read_text())
    assert staged["base_model_name_or_path"] == "internlm/internlm2-chat-1_8b"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] != staged[
        "base_model_name_or_path"]  # the user's folder is left alone


# ---------------------------------------------------------------------------- Hugging Face

@pytest.mark.parametrize("xet", [True, False], ids=["xet-installed-inline", "lfs-basic-transfer"])
def test_hf_push_creates_repos_and_commits_the_right_files(merged, ws, tmp_path, monkeypatch, caplog, capfd, xet):
    import huggingface_hub.constants as hf_constants

    # hf_xet's storage protocol cannot be faked: with it on, the fake answers "regular" for every file;
    # with it off, weights go through the LFS batch + PUT round trip.
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", not xet)
    caplog.set_level(logging.DEBUG)
    events = []
    with FakeHub(token=TOKEN, lfs=not xet) as hub:
        result = push("hf", merged, "alice/tiny", token=TOKEN, space=True, private=True, endpoint=hub.url,
                      progress=events.append)
        model = hub.files("model", "alice/tiny")
        space = hub.files("space", "alice/tiny")
        assert hub.meta("space", "alice/tiny")["sdk"] == "gradio"
        assert hub.meta("model", "alice/tiny")["visibility"] == "private"
        paths = [f"{r['method']} {r['path'].split('?')[0]}" for r in hub.requests]
        leaks = hub.where_is(TOKEN)
        lfs_puts = [p for p in paths if p.startswith("PUT /_lfs/")]

    assert sorted(model) == ["README.md", "config.json", "generation_config.json", "model.safetensors",
                             "tokenizer.json", "tokenizer_config.json"]
    assert model["model.safetensors"] == (merged / "model.safetensors").read_bytes()
    assert model["README.md"].decode().startswith("---\n")
    assert sorted(space) == ["README.md", "app.py", "requirements.txt"]
    assert b'MODEL_ID = "alice/tiny"' in space["app.py"]
    assert "POST /api/repos/create" in paths and "POST /api/models/alice/tiny/commit/main" in paths
    assert "POST /api/spaces/alice/tiny/commit/main" in paths
    assert len(lfs_puts) == (0 if xet else 1)
    # the token went in the Authorization header and nowhere else: not in a URL, a body, another header
    assert leaks and all(w.lower().endswith("header authorization") for w in leaks), leaks
    assert result["pushed"]["model"]["commit_url"].startswith(hub.url)
    assert any(e.get("stage") == "upload" and e.get("file") == "model.safetensors" for e in events)
    out, err = capfd.readouterr()
    assert TOKEN not in out + err + caplog.text + json.dumps(result, default=str)
    _assert_token_nowhere_on_disk(ws, tmp_path)


def test_hf_push_is_safe_to_repeat(merged, ws, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    with FakeHub(token=TOKEN) as hub:
        push("hf", merged, "alice/tiny", token=TOKEN, endpoint=hub.url)
        (merged / "config.json").write_text('{"model_type": "llama", "changed": true}')
        push("hf", merged, "alice/tiny", token=TOKEN, endpoint=hub.url)
        assert b"changed" in hub.files("model", "alice/tiny")["config.json"]
        assert len([c for c in hub.commits if c["repo"] == "alice/tiny"]) == 2


@pytest.mark.parametrize("step,code,words", [
    ("create", 401, ["refused the token", "settings/tokens", "HF_TOKEN"]),
    ("create", 403, ["may not", "'alice'", "write permission"]),
    ("commit", 404, ["could not find", "owner/name"]),
    ("commit", 409, ["conflict", "re-run"]),
])
def test_hf_errors_become_plain_advice(merged, ws, monkeypatch, step, code, words):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda s: None, raising=False)
    with FakeHub(token=TOKEN, fail={step: code}) as hub, pytest.raises(StudioError) as e:
        push("hf", merged, "alice/tiny", token=TOKEN, endpoint=hub.url)
    text = str(e.value)
    for w in words:
        assert w in text, text
    assert TOKEN not in text


def test_hf_wrong_token_is_refused_with_advice(merged, ws):
    with FakeHub(token=TOKEN) as hub, pytest.raises(StudioError, match="refused the token"):
        push("hf", merged, "alice/tiny", token="hf_wrong", endpoint=hub.url)


# ---------------------------------------------------------------------------- ModelScope

def test_modelscope_push_model_and_studio(merged, ws, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    with FakeHub(token=TOKEN) as hub:
        result = push("modelscope", merged, "alice/tiny", token=TOKEN, space=True, endpoint=hub.url)
        model = hub.files("model", "alice/tiny")
        studio = hub.files("studio", "alice/tiny")
        studio_meta = hub.meta("studio", "alice/tiny")
        deployed = list(hub.deployed)
        leaks = hub.where_is(TOKEN)
        create = [r for r in hub.requests if r["path"] == "/api/v1/models"][0]

    assert sorted(model) == ["README.md", "config.json", "generation_config.json", "model.safetensors",
                             "tokenizer.json", "tokenizer_config.json"]
    assert model["model.safetensors"] == (merged / "model.safetensors").read_bytes()
    assert len(model["README.md"].decode()) >= 200
    assert sorted(studio) == ["README.md", "app.py", "requirements.txt"]
    assert b'HUB = "modelscope"' in studio["app.py"]
    assert studio_meta["sdk_type"] == "gradio" and studio_meta["sdk_version"] == "6.31.0"
    assert json.loads(create["body"])["Visibility"] == 5  # public, so the tutorial's manual step is gone
    assert deployed == ["alice/tiny"] and result["pushed"]["space"]["deployed"] is True
    # the modelscope SDK sends the token as a Bearer header and as its m_session_id cookie; nowhere else
    kinds = {w.rsplit(": ", 1)[1].lower() for w in leaks}
    assert kinds == {"header authorization", "header cookie"}, leaks
    out, err = capfd.readouterr()
    assert TOKEN not in out + err + caplog.text + json.dumps(result, default=str)
    assert "Upload Report" not in out  # the SDK's report goes to stderr, stdout stays for --json
    _assert_token_nowhere_on_disk(ws, tmp_path)


@pytest.mark.parametrize("fail,words", [({"create": 401}, ["refused the token", "MODELSCOPE_API_TOKEN"]),
                                        ({"create": 403}, ["may not", "'alice'"]),
                                        ({"commit": 404}, ["could not find", "upload files", "owner/name"])])
def test_modelscope_errors_become_plain_advice(merged, ws, fail, words):
    with FakeHub(token=TOKEN, fail=fail) as hub, pytest.raises(StudioError) as e:
        push("modelscope", merged, "alice/tiny", token=TOKEN, endpoint=hub.url)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert TOKEN not in str(e.value)


def test_plan_push_stages_in_the_workspace_by_default(merged, ws):
    from core.publish import plan_push

    plan = plan_push("hf", merged, "alice/tiny", space=True, sdk="streamlit", private=True)
    stage = ws / "publish" / "hf-alice__tiny"
    assert plan["stage_dir"] == str(stage.resolve())
    assert (stage / "model" / "README.md").is_file() and (stage / "space" / "app.py").is_file()
    assert plan["calls"][0]["args"] == {"repo_id": "alice/tiny", "repo_type": "model", "private": True,
                                        "exist_ok": True}
    space_create = [c for c in plan["calls"] if c["call"] == "HfApi.create_repo"][1]
    assert space_create["args"]["space_sdk"] == "streamlit"
    assert plan["space_url"].endswith("/spaces/alice/tiny")
