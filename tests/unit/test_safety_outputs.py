"""Issue 19, item 1: a command deletes only what it created. Each folder writer (merge, tiny, publish
--dry-run, copy-cfg, download) is pointed at a folder holding a user's file: the file must survive and
the command must exit 1 with the message. Plus the rule itself (core.fsio.output_dir) and the UI's
output-name check.

    .venv/bin/python -m pytest -q tests/unit/test_safety_outputs.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.errors import StudioError
from core.fsio import OUTPUT_MARKER, check_output_dir, output_dir, read_marker
from studio import cli
from tests.fakehub import fake_model_dir

NOT_EMPTY = "is not empty; choose a new folder or pass --overwrite"


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "thesis.txt").write_text("my only copy")
    return path


def _survived(path: Path) -> bool:
    return (path / "thesis.txt").read_text() == "my only copy"


@pytest.fixture()
def adapter(tmp_path_factory, tiny_model) -> Path:
    """A real (tiny) LoRA adapter inside a run folder, as training leaves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path_factory.mktemp("runs") / "run-1"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"state": "finished"}))
    (run / "config.yaml").write_text(f"pretrained_model_name_or_path: {tiny_model}\n")
    (run / "checkpoints" / "step-2").mkdir(parents=True)
    (run / "checkpoints" / "step-2" / "weights").write_text("checkpoint")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(run / "adapter")
    return run / "adapter"


# ---------------------------------------------------------------------------- the rule itself

def test_a_non_empty_folder_is_refused_and_keeps_its_file(tmp_path):
    target = _user_folder(tmp_path / "out")
    with pytest.raises(StudioError, match=NOT_EMPTY), output_dir(target, kind="merge") as tmp:
        (tmp / "x").write_text("new")
    assert _survived(target) and sorted(p.name for p in target.iterdir()) == ["thesis.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp folder left behind


def test_an_earlier_output_of_the_same_command_is_replaced_once_the_new_one_is_complete(tmp_path):
    target = tmp_path / "out"
    with output_dir(target, kind="merge") as tmp:
        (tmp / "old.bin").write_text("old")
    assert read_marker(target)["kind"] == "merge"
    with pytest.raises(RuntimeError), output_dir(target, kind="merge") as tmp:  # fails half-way
        (tmp / "new.bin").write_text("half")
        raise RuntimeError("disk full")
    assert (target / "old.bin").read_text() == "old"  # the old output is untouched until the new one is done
    with output_dir(target, kind="merge") as tmp:
        (tmp / "new.bin").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_replaces_a_user_folder_but_never_another_commands_output(tmp_path):
    user = _user_folder(tmp_path / "user")
    with output_dir(user, kind="merge", overwrite=True) as tmp:
        (tmp / "model.bin").write_text("m")
    assert not (user / "thesis.txt").exists() and (user / "model.bin").is_file()
    with pytest.raises(StudioError, match="output of `merge`, not of `tiny`"):
        check_output_dir(user, kind="tiny", overwrite=True)


def test_never_a_source_its_parent_the_workspace_the_current_folder_or_a_run(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    monkeypatch.setenv("STUDIO_WORKSPACE", str(ws))
    src = _user_folder(tmp_path / "models" / "base")
    for target, why in [(src, "the source folder"), (src.parent, "a parent of the source folder"),
                        (src / "sub", "inside the source folder"), (ws, "the workspace root"),
                        (ws / "merged", "the workspace's merged/ folder")]:
        with pytest.raises(StudioError, match=why):
            check_output_dir(target, kind="merge", overwrite=True, sources=[src])
    cwd = _user_folder(tmp_path / "cwd" / "here")
    monkeypatch.chdir(cwd)
    for target in (".", "..", str(tmp_path)):
        with pytest.raises(StudioError, match="current folder"):
            check_output_dir(target, kind="merge", overwrite=True)
    run = _user_folder(tmp_path / "runs" / "run")
    (run / "status.json").write_text("{}")
    with pytest.raises(StudioError, match="holds a training run"):
        check_output_dir(run, kind="merge", overwrite=True)
    with pytest.raises(StudioError, match="holds a training run"):  # a folder of runs
        check_output_dir(run.parent, kind="merge", overwrite=True)
    assert _survived(src) and _survived(cwd) and _survived(run)


# ---------------------------------------------------------------------------- each writer, from the CLI

def test_merge_into_the_run_folder_or_a_user_folder_is_refused(adapter, tiny_model, tmp_path, capsys):
    run = adapter.parent
    before = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
    for out in (run, run / "adapter", run.parent):
        assert cli.main(["merge", str(tiny_model), str(adapter), str(out), "--overwrite"]) == 1
        assert "never" in capsys.readouterr().err
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == before
    user = _user_folder(tmp_path / "mine")
    assert cli.main(["merge", str(tiny_model), str(adapter), str(user)]) == 1
    assert NOT_EMPTY in capsys.readouterr().err and _survived(user)


def test_merge_into_the_current_folder_is_refused(adapter, tiny_model, tmp_path, monkeypatch, capsys):
    here = _user_folder(tmp_path / "here")
    monkeypatch.chdir(here)
    assert cli.main(["merge", str(tiny_model), str(adapter), ".", "--overwrite"]) == 1
    assert "the current folder" in capsys.readouterr().err and _survived(here)


def test_tiny_to_a_user_folder_is_refused(tmp_path, capsys):
    user = _user_folder(tmp_path / "mine")
    assert cli.main(["tiny", "--to", str(user)]) == 1
    assert NOT_EMPTY in capsys.readouterr().err and _survived(user)
    assert cli.main(["tiny", "--to", str(user), "--force"]) == 1
    assert _survived(user)


def test_tiny_force_rebuilds_its_own_folder(tmp_path):
    out = tmp_path / "tiny"
    assert cli.main(["tiny", "--to", str(out)]) == 0
    assert read_marker(out)["kind"] == "tiny"
    assert cli.main(["tiny", "--to", str(out), "--force"]) == 0
    assert (out / "config.json").is_file()


def test_publish_dry_run_never_deletes_what_is_in_the_folder(tmp_path, capsys):
    src = fake_model_dir(tmp_path / "merged", weights_bytes=10)
    ft = tmp_path / "ft"  # the XTuner tutorial's layout: /root/ft/model is the base model
    base = _user_folder(ft / "model")
    args = ["publish", "hf", str(src), "--repo", "alice/x", "--space", "--dry-run", str(ft)]
    assert cli.main(args) == 1
    assert NOT_EMPTY in capsys.readouterr().err and _survived(base)
    assert cli.main([*args[:-1], str(src)]) == 1  # the source itself, even with --overwrite
    assert cli.main([*args[:-1], str(src.parent), "--overwrite"]) == 1
    assert (src / "model.safetensors").is_file()
    dry = tmp_path / "dry"
    assert cli.main([*args[:-1], str(dry)]) == 0
    assert cli.main([*args[:-1], str(dry)]) == 0  # its own earlier dry run: replaced, no flag needed
    assert read_marker(dry)["kind"] == "publish" and (dry / "plan.json").is_file()


def test_copy_cfg_force_never_replaces_a_folder(tmp_path, capsys):
    from core.config.recipes import list_recipes

    name = list_recipes()[0]
    clash = _user_folder(tmp_path / "cfgs" / f"{name}_copy.yaml")  # a folder where the copy would go
    assert cli.main(["copy-cfg", name, str(tmp_path / "cfgs"), "--force"]) == 1
    assert "not a plain file" in capsys.readouterr().err and _survived(clash)


def _fake_snapshot(files: dict[str, str]):
    def snapshot_download(repo_id, local_dir, **_):
        for name, text in files.items():
            Path(local_dir, name).write_text(text)
        return local_dir
    return snapshot_download


def test_download_to_a_user_folder_is_refused_and_a_download_records_its_origin(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        _fake_snapshot({"config.json": json.dumps({"model_type": "llama"}), "model.bin": "w"}))
    user = _user_folder(tmp_path / "mine")
    assert cli.main(["download", "owner/model", "--hub", "hf", "--to", str(user)]) == 1
    assert NOT_EMPTY in capsys.readouterr().err and _survived(user)
    assert sorted(p.name for p in user.iterdir()) == ["thesis.txt"]
    fresh = tmp_path / "fresh"
    assert cli.main(["download", "owner/model", "--hub", "hf", "--to", str(fresh)]) == 0
    assert read_marker(fresh) | {"created": 0} == {"kind": "download", "created": 0, "model_id": "owner/model",
                                                     "hub": "hf", "trust_remote_code": False}
    assert (fresh / "model.bin").is_file() and not any(p.name.endswith(".download") for p in tmp_path.iterdir())
    assert cli.main(["download", "other/model", "--hub", "hf", "--to", str(fresh)]) == 1
    assert "holds the download of owner/model" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the UI's name fields

@pytest.mark.parametrize("name", [".", "..", "", "  ", "/etc", "a/b", "a\\b", "../x", "~", ".hidden"])
def test_output_names_from_the_ui_are_plain_folder_names(name, tmp_path):
    from core.workspace import output_name

    with pytest.raises(ValueError):
        output_name(tmp_path, name)


def test_a_plain_output_name_lands_inside_its_folder(tmp_path):
    from core.workspace import output_name

    assert output_name(tmp_path, " my-model_1.0 ") == tmp_path.resolve() / "my-model_1.0"


def test_the_merge_page_refuses_dot_as_the_output_name(ws, adapter):
    from streamlit.testing.v1 import AppTest

    run = ws / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"run_id": "r1", "state": "finished"}))
    (run / "config.yaml").write_text(f"pretrained_model_name_or_path: {ws / 'models' / 'tiny'}\n")
    os.symlink(adapter, run / "adapter")
    other = _user_folder(ws / "merged" / "someone-else")
    at = AppTest.from_file(str(Path(cli.__file__).resolve().parents[1] / "pages" / "merge.py"), default_timeout=60)
    at.run()
    at.text_input[1].set_value(".").run()
    assert at.error and not at.button, [e.value for e in at.error]
    assert _survived(other)


def test_the_internlm2_conversion_never_replaces_a_user_folder_of_its_name(tmp_path):
    from core.internlm2 import build_tiny_internlm2
    from core.models import resolve_model

    base = build_tiny_internlm2(tmp_path / "internlm2")
    user = _user_folder(tmp_path / "internlm2-llama-layout")
    with pytest.raises(StudioError, match=NOT_EMPTY):
        resolve_model(str(base))
    assert _survived(user)
    (user / "thesis.txt").unlink()
    assert (resolve_model(str(base)) / "config.json").is_file()  # an empty folder of that name is fine


@pytest.mark.parametrize("marker", [b"\xff\xfe not json", b"[1]", b'{"kind": 3}'])
def test_a_damaged_marker_counts_as_none(tmp_path, marker):
    target = _user_folder(tmp_path / "out")
    (target / OUTPUT_MARKER).write_bytes(marker)
    assert read_marker(target) is None
    with pytest.raises(StudioError, match=NOT_EMPTY):
        check_output_dir(target, kind="merge")
    assert _survived(target)
