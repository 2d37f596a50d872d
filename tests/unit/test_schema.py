"""The typed run config: validation names the field, YAML round-trips, unknown keys get a hint."""

from __future__ import annotations

import pytest

from core.config import (
    FIELDS,
    ConfigError,
    RunConfig,
    config_from_dict,
    config_from_yaml,
    config_to_yaml,
    field_help,
)


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
