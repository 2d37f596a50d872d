"""Every shipped recipe loads, validates, documents itself and can be estimated; list/copy behave like XTuner."""

from __future__ import annotations

import pytest
import yaml

from core.config import FIELDS, RunConfig
from core.config.recipes import (
    copy_recipe,
    list_recipes,
    load_recipe,
    recipe_header,
    recipe_path,
    resolve_config,
)
from core.config.vram import estimate
from core.errors import StudioError

RECIPES = list_recipes()


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_and_validates(name: str) -> None:
    cfg = load_recipe(name)
    assert isinstance(cfg, RunConfig)
    raw = yaml.safe_load(recipe_path(name).read_text(encoding="utf-8"))
    assert set(raw) == set(FIELDS), "recipe keys must be exactly RunConfig's fields"
    header = recipe_header(name)
    assert header.startswith(f"{name}: ")
    assert f"python -m studio train {name}" in header
    est = estimate(cfg)
    assert 0 < est["total_gib"] < 200


def test_gallery_has_the_issue_models() -> None:
    needed = ["tiny_chat_lora_identity_e3",
              "internlm2_chat_1_8b_qlora_identity_e3", "internlm2_chat_1_8b_lora_identity_e3",
              "internlm2_chat_1_8b_full_identity_e3", "internlm2_5_chat_7b_qlora_identity_e3",
              "internlm2_5_chat_7b_lora_identity_e3", "internlm2_5_chat_7b_full_identity_e3",
              "qwen2_5_0_5b_instruct_lora_identity_e3", "qwen2_5_1_5b_instruct_qlora_identity_e3",
              "qwen2_5_7b_instruct_qlora_identity_e3", "llama3_8b_instruct_qlora_identity_e3"]
    for n in needed:
        assert n in RECIPES
    llava = [n for n in RECIPES if n.startswith("llava_")]
    assert llava
    cfg = load_recipe(llava[0])
    assert cfg.model_type == "llava" and "clip-vit-large-patch14-336" in cfg.visual_encoder_name_or_path
    assert cfg.max_length == 2048 - (336 // 14) ** 2


def test_tiny_recipe_points_at_the_builtin_model_and_workspace_data() -> None:
    cfg = load_recipe("tiny_chat_lora_identity_e3")
    assert cfg.pretrained_model_name_or_path == "tiny"
    assert cfg.data_path == "workspace/data/identity.jsonl"
    assert cfg.method == "lora"


def test_trade_off_notes_are_inline() -> None:
    text = recipe_path("internlm2_chat_1_8b_qlora_identity_e3").read_text(encoding="utf-8")
    assert "pack_to_max_length: true  # " in text
    assert "method: qlora  # " in text


def test_list_cfg_pattern_is_a_case_insensitive_substring_or_glob() -> None:
    assert list_recipes("INTERNLM2_CHAT_1_8B") == [n for n in RECIPES if "internlm2_chat_1_8b" in n]
    assert list_recipes("qwen2_5_*_instruct_qlora*") == ["qwen2_5_1_5b_instruct_qlora_identity_e3",
                                                          "qwen2_5_7b_instruct_qlora_identity_e3"]
    assert list_recipes("no-such-model") == []


def test_copy_cfg_writes_name_copy_and_keeps_comments(tmp_path) -> None:
    dst = copy_recipe("tiny_chat_lora_identity_e3", tmp_path / "cfg")
    assert dst.name == "tiny_chat_lora_identity_e3_copy.yaml"
    assert dst.read_bytes() == recipe_path("tiny_chat_lora_identity_e3").read_bytes()
    dst.write_text(dst.read_text(encoding="utf-8").replace("max_length: 256", "max_length: 128"), encoding="utf-8")
    with pytest.raises(StudioError, match="already exists"):
        copy_recipe("tiny_chat_lora_identity_e3", tmp_path / "cfg")
    assert "max_length: 128" in dst.read_text(encoding="utf-8")  # the edit survived
    copy_recipe("tiny_chat_lora_identity_e3", tmp_path / "cfg", overwrite=True)
    assert "max_length: 256" in dst.read_text(encoding="utf-8")


def test_unknown_recipe_suggests_close_names(tmp_path) -> None:
    with pytest.raises(StudioError) as e:
        copy_recipe("internlm2_chat_1_8b_qlora_alpaca_e3", tmp_path)
    assert "internlm2_chat_1_8b_qlora_identity_e3" in str(e.value)
    assert not any(tmp_path.iterdir())


def test_resolve_config_takes_files_or_names(tmp_path) -> None:
    assert resolve_config("tiny_chat_lora_identity_e3") == recipe_path("tiny_chat_lora_identity_e3")
    f = copy_recipe("tiny_chat_lora_identity_e3", tmp_path)
    assert resolve_config(str(f)) == f
    with pytest.raises(StudioError, match="import-xtuner"):
        resolve_config(tmp_path / "x_copy.py")
    with pytest.raises(StudioError, match="no config file"):
        resolve_config(tmp_path / "missing.yaml")


def test_cli_list_and_copy(tmp_path, capsys) -> None:
    from studio.cli import main

    assert main(["list-cfg", "-p", "llama3"]) == 0
    assert "llama3_8b_instruct_qlora_identity_e3" in capsys.readouterr().out
    assert main(["list-cfg", "-p", "zzz"]) == 1
    assert main(["copy-cfg", "tiny_chat_lora_identity_e3", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith("tiny_chat_lora_identity_e3_copy.yaml")
    assert main(["copy-cfg", "nope", str(tmp_path)]) == 1
    assert "error: no recipe named 'nope'" in capsys.readouterr().err
