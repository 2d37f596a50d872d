"""Issue 19, item 2 and the corrupt-config bullet: no Python code from a model folder runs unless asked
(--trust-remote-code), and a damaged config.json / adapter_config.json is one line naming the file.

The planted folder is the tiny model plus evil.py, which writes a file the moment it is imported, and
an auto_map in config.json (and tokenizer_config.json) pointing at it.

    .venv/bin/python -m pytest -q tests/unit/test_safety_models.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.errors import StudioError
from studio import cli

EVIL = '''import pathlib
pathlib.Path({marker!r}).write_text("this ran")
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast


class EvilConfig(LlamaConfig):
    model_type = {model_type!r}


class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig


class EvilTokenizer(PreTrainedTokenizerFast):
    pass
'''


def _planted(tiny_model: Path, folder: Path, model_type: str) -> tuple[Path, Path]:
    shutil.copytree(tiny_model, folder, ignore=shutil.ignore_patterns(".studio-output.json"))
    marker = folder.parent / f"EXECUTED-{folder.name}"
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker), model_type=model_type))
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(model_type=model_type, architectures=["EvilModel"],
               auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(cfg))
    tcfg = json.loads((folder / "tokenizer_config.json").read_text())
    tcfg["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tcfg))
    return folder, marker


@pytest.fixture()
def adapter(tmp_path, tiny_model) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


@pytest.fixture()
def modules_cache(tmp_path, monkeypatch):
    # where transformers copies a folder's .py files before importing them: kept out of ~/.cache
    import transformers.dynamic_module_utils as dmu

    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    return tmp_path / "modules"


# ---------------------------------------------------------------------------- remote code

def test_chat_refuses_a_folder_that_needs_its_own_code_and_runs_none_of_it(tiny_model, tmp_path, modules_cache):
    from core.chat import load_chat_model

    folder, marker = _planted(tiny_model, tmp_path / "evil", "evilmodel")
    with pytest.raises(StudioError, match="--trust-remote-code"):
        load_chat_model(str(folder))
    assert not marker.exists()


def test_chat_of_a_known_model_type_ignores_the_shipped_code(tiny_model, tmp_path, modules_cache):
    from core.chat import answer, load_chat_model

    folder, marker = _planted(tiny_model, tmp_path / "llama-with-code", "llama")
    chat = load_chat_model(str(folder))
    assert isinstance(answer(chat, [{"role": "user", "content": "hi"}], max_new_tokens=2), str)
    assert not marker.exists()


def test_trust_remote_code_is_what_lets_the_code_run(tiny_model, tmp_path, modules_cache):
    from core.chat import load_chat_model

    folder, marker = _planted(tiny_model, tmp_path / "evil", "evilmodel")
    try:
        load_chat_model(str(folder), trust_remote_code=True)
    except Exception:  # noqa: S110 - whether the planted classes load is beside the point
        pass
    assert marker.read_text() == "this ran"  # the flag is wired through to transformers


def test_merge_refuses_a_base_that_needs_its_own_code(tiny_model, tmp_path, adapter, modules_cache, capsys):
    folder, marker = _planted(tiny_model, tmp_path / "evil", "evilmodel")
    assert cli.main(["merge", str(folder), str(adapter), str(tmp_path / "out"), "--no-check"]) == 1
    assert "--trust-remote-code" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_validate_does_not_run_a_tokenizer_folders_code(tiny_model, tmp_path, modules_cache):
    from core.data.validate import validate_file

    folder, marker = _planted(tiny_model, tmp_path / "evil", "llama")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "yo"}]}) + "\n")
    try:
        validate_file(data, tokenizer=str(folder))
    except StudioError:
        pass  # refusing is fine; running the planted code is not
    assert not marker.exists()


def test_cli_chat_has_the_flag_and_it_is_off_by_default():
    args = cli.build_parser().parse_args(["chat", "tiny"])
    assert args.trust_remote_code is False
    assert cli.build_parser().parse_args(["merge", "a", "b", "c", "--trust-remote-code"]).trust_remote_code
    assert cli.build_parser().parse_args(["download", "a/b"]).trust_remote_code is False


# ---------------------------------------------------------------------------- damaged configs

@pytest.mark.parametrize("text,says", [("{\"model_type\": \"llama\",", "config.json:1: not valid JSON"),
                                       ("[1, 2]", "a model config is a JSON object"),
                                       ("\udcff", "not UTF-8")])
def test_a_damaged_config_json_is_one_line_naming_the_file(tiny_model, tmp_path, text, says, capsys):
    from core.models import resolve_model

    folder = tmp_path / "broken"
    shutil.copytree(tiny_model, folder)
    (folder / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(StudioError, match=says):
        resolve_model(str(folder))
    prompts = tmp_path / "p.txt"
    prompts.write_text("hi\n")
    assert cli.main(["chat", str(folder), "--prompts", str(prompts)]) == 1
    err = capsys.readouterr().err
    assert str(folder / "config.json") in err and "Traceback" not in err
    assert cli.main(["merge", str(folder), str(tmp_path), str(tmp_path / "out")]) == 1


def test_a_damaged_adapter_config_is_one_line(tiny_model, adapter, tmp_path, capsys):
    (adapter / "adapter_config.json").write_text("{oops")
    assert cli.main(["merge", str(tiny_model), str(adapter), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "adapter_config.json:1: not valid JSON" in err and not (tmp_path / "out").exists()
