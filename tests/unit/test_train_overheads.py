"""The engine's per-step Python trimmed: token count without a sync per micro-batch, a cheap model.train(),
the FLOP count from a cached parameter count, run-dir writes off the training thread. Same results."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from core.train import callbacks
from core.train.entry import trim_step_overheads


def _fake_trainer(world_size=1):
    return SimpleNamespace(args=SimpleNamespace(world_size=world_size, include_num_input_tokens_seen="non_padding"),
                           processing_class=SimpleNamespace(pad_token_id=0),
                           _track_num_input_tokens=lambda inputs: None)


def test_token_count_is_read_only_when_a_log_needs_it():
    tc = callbacks.TokenCount()
    tr = _fake_trainer()
    assert tc.install(tr) and tr._track_num_input_tokens == tc.track
    state = SimpleNamespace(num_input_tokens_seen=100)
    tr._track_num_input_tokens({"input_ids": torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]])})
    tr._track_num_input_tokens({"input_ids": torch.tensor([[1, 2, 3, 4]]), "attention_mask": torch.tensor([[1, 1, 1, 0]])})
    quiet = SimpleNamespace(should_log=False, should_save=False, should_training_stop=False, should_evaluate=False)
    tc.on_step_end(None, state, quiet)
    assert state.num_input_tokens_seen == 100  # nothing read yet: no sync
    tc.on_step_end(None, state, SimpleNamespace(**{**vars(quiet), "should_log": True}))
    assert state.num_input_tokens_seen == 100 + 3 + 3  # non-pad tokens, then the attention mask's count
    assert not callbacks.TokenCount().install(_fake_trainer(world_size=2))  # several ranks: the Trainer sums them


def test_cheap_train_keeps_every_module_in_the_asked_mode(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.1))
    trainer = SimpleNamespace()
    expected_flops = 6 * 12 * model.num_parameters(exclude_embeddings=True)
    trim_step_overheads(trainer, model)
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model.base_model.model.model.layers[0].mlp.eval()  # someone switched one part alone: the next train() sees it
    model.train()
    assert all(m.training for m in model.modules())
    assert trainer.floating_point_ops({"input_ids": torch.zeros(3, 4, dtype=torch.long)}) == expected_flops
    assert trainer.floating_point_ops({}) == 0


def test_background_writes_land_in_order_and_failures_surface(tmp_path):
    out = tmp_path / "log.txt"

    def append(text):
        with open(out, "a") as f:
            f.write(text)

    for i in range(20):
        callbacks.later(append, f"{i},")
    callbacks.drain()
    assert out.read_text() == "".join(f"{i}," for i in range(20))

    def fail():
        raise OSError(28, "No space left on device")

    callbacks.later(fail)
    with pytest.raises(OSError, match="No space"):
        callbacks.drain()
    callbacks.later(fail)
    callbacks._pending[-1].exception()  # wait until it has failed
    with pytest.raises(OSError):
        callbacks.later(append, "x")  # the next write reports it, on the training thread
    callbacks.drain()


def test_frozen_heap_freezes_for_the_run_and_gives_the_collector_back():
    import gc

    cb = callbacks.FrozenHeap()
    cb.on_train_begin(None, None, None)
    try:
        assert gc.get_freeze_count() > 0  # what existed at the start is out of the collector's walks
    finally:
        cb.on_train_end(None, None, None)
    assert gc.get_freeze_count() == 0


def test_a_nan_loss_is_reported_once(tmp_path, capsys):
    """The Trainer's NaN filter is off (a sync per micro-batch): a diverged loss is logged, flagged, said once."""
    from core import rundir

    cb = callbacks.RunDirCallback(tmp_path, save_total_limit=2, stop_flag={}, is_main=True)
    state = SimpleNamespace(global_step=7, max_steps=10, num_input_tokens_seen=0, epoch=0.1)
    cb.on_log(None, state, None, logs={"loss": 1.5})
    cb.on_log(None, state, None, logs={"loss": float("nan")})
    state.global_step = 8
    cb.on_log(None, state, None, logs={"loss": float("inf")})
    callbacks.drain()
    assert rundir.read_status(tmp_path)["loss_nonfinite_step"] == 7
    assert capsys.readouterr().out.count("training diverged") == 1
    losses = [m["loss"] for m in rundir.metrics(tmp_path)]
    assert losses[0] == 1.5 and losses[1] != losses[1] and losses[2] == float("inf")
