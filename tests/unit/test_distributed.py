"""DeepSpeed configs and the torchrun launch line."""

from __future__ import annotations

import json
import sys

import pytest

from core.train.distributed import ASSETS, STAGES, deepspeed_config, deepspeed_config_path, launch_argv


@pytest.mark.parametrize("stage", STAGES)
def test_shipped_json_is_what_the_stage_needs(stage):
    shipped = json.loads(deepspeed_config_path(stage).read_text())
    assert shipped == deepspeed_config(stage)
    zero = shipped["zero_optimization"]
    assert zero["stage"] == int(stage[4])
    assert ("offload_optimizer" in zero) == stage.endswith("offload")
    assert ("offload_param" in zero) == (stage == "zero3_offload")
    if stage.startswith("zero3"):
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True  # the adapter is saved whole
    # everything the run config owns is left to the Trainer
    assert shipped["train_micro_batch_size_per_gpu"] == shipped["gradient_accumulation_steps"] == "auto"


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="zero4"):
        deepspeed_config("zero4")
    assert sorted(p.stem for p in ASSETS.glob("*.json")) == sorted(STAGES)


def test_launch_line_follows_nproc_per_node(monkeypatch):
    monkeypatch.delenv("NPROC_PER_NODE", raising=False)
    assert launch_argv(["RUN"]) == [sys.executable, "-m", "core.train.entry", "RUN"]
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    argv = launch_argv(["RUN", "--deepspeed", "zero2"])
    assert argv[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc_per_node=2" in argv
    assert argv[-4:] == ["core.train.entry", "RUN", "--deepspeed", "zero2"]
