"""The typed run config: validation names the field, YAML round-trips, unknown keys get a hint."""

from __future__ import annotations

import math
import typing

import pytest

from core.config import (
    FIELDS,
    ConfigError,
    RunConfig,
    config_from_dict,
    config_from_yaml,
    config_to_yaml,
    field_help,
    load_config,
)
from core.config.schema import MAX_EVAL_NEW_TOKENS, RANGES


def test_every_field_has_help_in_both_languages():
    for name in FIELDS:
        assert field_help(name, "en") and field_help(name, "zh"), name


def test_yaml_round_trip_keeps_every_value():
    cfg = RunConfig(pretrained_model_name_or_path="tiny", data_path="d.jsonl", SYSTEM='multi\nline: "quoted"',
                    evaluation_inputs=["你好", "a: b"], data_mapping={"input": "toy_input"}, lr=3e-4)
    assert config_from_yaml(config_to_yaml(cfg)) == cfg


@pytest.mark.parametrize("data, field, words", [
    ({"learning_rate": 1e-4}, "learning_rate", "did you mean 'lr'"),
    ({"max_lenght": 10}, "max_lenght", "did you mean 'max_length'"),
    ({"lr": "fast"}, "lr", "expected a number"),
    ({"lr": -1}, "lr", "must be > 0"),
    ({"batch_size": 1.5}, "batch_size", "whole number"),
    ({"method": "lora2"}, "method", "not one of lora, qlora, full"),
    ({"pack_to_max_length": "maybe"}, "pack_to_max_length", "true or false"),
    ({"evaluation_inputs": 3}, "evaluation_inputs", "expected a list"),
])
def test_bad_values_name_the_field(data, field, words):
    with pytest.raises(ConfigError) as e:
        config_from_dict(data, source="x.yaml")
    assert e.value.field == field and words in str(e.value) and str(e.value).startswith("x.yaml: ")


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(ConfigError, match="line 2"):
        config_from_yaml("lr: 1\n  bad: [\n")


# ---------------------------------------------------------------------------- every number finite and in range
# (issue 19, item 7)

BASE = "pretrained_model_name_or_path: tiny\ndata_path: d.jsonl\n"


@pytest.mark.parametrize("line, field, words", [
    ("lr: .nan", "lr", "finite"),
    ("lr: .inf", "lr", "finite"),
    ("lr: 1e400", "lr", "finite"),  # YAML reads it as text, float() makes it inf
    ("lr: 20000", "lr", "<= 1"),  # 2e4 for 2e-4
    ("max_epochs: .inf", "max_epochs", "finite"),
    ("max_epochs: -3", "max_epochs", ">= 0"),
    ("max_length: .nan", "max_length", "whole number"),
    ("max_length: .inf", "max_length", "whole number"),
    ("seed: -1", "seed", ">= 0"),
    ("eval_max_new_tokens: 100000000", "eval_max_new_tokens", "<= 4,096"),
    ("max_steps: -7", "max_steps", "-1 (use max_epochs) or > 0"),
    ("save_total_limit: 0", "save_total_limit", "-1 (keep all) or > 0"),
    ("weight_decay: .nan", "weight_decay", "finite"),
    ("max_norm: -1", "max_norm", ">= 0"),
    ("lora_r: 0", "lora_r", "> 0"),
    ("lora_alpha: -16", "lora_alpha", "> 0"),
    ("dataloader_num_workers: 100000", "dataloader_num_workers", "<= 64"),
])
def test_out_of_range_numbers_are_refused_at_load(tmp_path, line, field, words):
    p = tmp_path / "run.yaml"
    p.write_text(BASE + line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.field == field and words in str(e.value), str(e.value)
    assert str(e.value).startswith(f"{p}: {field}: ") and "\n" not in str(e.value)


def test_eval_max_new_tokens_float_from_a_form_is_bounded():
    with pytest.raises(ConfigError, match=rf"eval_max_new_tokens: must be > 0 and <= {MAX_EVAL_NEW_TOKENS:,}"):
        config_from_dict({"eval_max_new_tokens": 1e8})
    assert config_from_dict({"eval_max_new_tokens": MAX_EVAL_NEW_TOKENS}).eval_max_new_tokens == MAX_EVAL_NEW_TOKENS


def test_every_number_has_a_range_that_holds_its_default_and_refuses_nan():
    hints = typing.get_type_hints(RunConfig)
    numeric = {n for n in FIELDS if hints[n] in (int, float)}
    assert numeric == set(RANGES), "a numeric field without a range (or a range for no field)"
    default = RunConfig()
    for name, rng in RANGES.items():
        assert getattr(default, name) in rng, name
        for bad in (math.nan, math.inf, -math.inf, rng.high * 2 + 1, rng.low - 2):
            if bad == rng.also:
                continue
            with pytest.raises(ConfigError) as e:
                config_from_dict({name: bad})
            assert e.value.field == name, (name, bad)


@pytest.mark.parametrize("body, words", [
    ("max_length: " + "9" * 5000 + "\n", "4300 digits"),
    ("data_mapping: " + "[" * 5000 + "\n", "nested too deeply"),
])
def test_yaml_that_python_cannot_hold_gives_one_line(tmp_path, body, words):
    p = tmp_path / "run.yaml"
    p.write_text(BASE + body, encoding="utf-8")
    with pytest.raises(ConfigError, match=words) as e:
        load_config(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=words):
        config_from_yaml(BASE + body)
    p.write_bytes(b"lr: 1e-4\nSYSTEM: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)


def test_a_refused_config_creates_no_run_folder(tmp_path, monkeypatch):
    from studio.cli import main

    ws = tmp_path / "ws"
    monkeypatch.setenv("STUDIO_WORKSPACE", str(ws))
    p = tmp_path / "nan.yaml"
    p.write_text(BASE + "lr: .nan\n", encoding="utf-8")
    assert main(["train", str(p), "--detach"]) == 1
    assert main(["train", str(p)]) == 1
    assert main(["train", str(p), "--work-dir", str(tmp_path / "mine")]) == 1
    assert not ws.exists() and not (tmp_path / "mine").exists()


def test_list_and_mapping_items_must_be_text_so_an_alias_tree_is_refused(tmp_path):
    # "billion laughs": 9 levels of 9 aliases, 387M strings once anything renders it; YAML itself only
    # shares the references, so the file loads in a blink and must be refused by the schema
    anchors = "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    p = tmp_path / "laughs.yaml"
    p.write_text(BASE + "data_mapping:\n  l0: &l0 lol\n" + anchors + "evaluation_inputs: *l9\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.field == "data_mapping" and "expected text, got [" in str(e.value) and len(str(e.value)) < 300
    p.write_text(BASE + "evaluation_inputs: [[a, b], c]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"evaluation_inputs: item 1: expected text, got \['a', 'b'\]"):
        load_config(p)
    assert config_from_dict({"evaluation_inputs": ["a", 3, 2.5]}).evaluation_inputs == ["a", "3", "2.5"]
    assert config_from_dict({"data_mapping": {"input": "q", 1: 2}}).data_mapping == {"input": "q", "1": "2"}
    with pytest.raises(ConfigError, match=r"lora_target_modules: item 2: expected text"):
        config_from_dict({"lora_target_modules": ["q_proj", None]})


def test_an_oversized_config_file_is_refused_before_parsing(tmp_path):
    p = tmp_path / "big.yaml"
    with p.open("w", encoding="utf-8") as f:
        f.write(BASE + "SYSTEM: '" + "x" * (5 << 20) + "'\n")
    with pytest.raises(ConfigError, match="bytes; a config is a few KB"):
        load_config(p)
