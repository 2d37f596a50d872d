"""The engine's per-step Python trimmed: logs and token count without a host sync, a cheap model.train(),
the FLOP count from a cached parameter count, run-dir writes off the training thread. Same results."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from core.train import callbacks
from core.train.entry import trim_step_overheads


def _tiny_trainer(tiny_model, tiny_tokenizer, run_dir, *, lagged: bool):
    """A LoRA run of 6 steps on the CPU logging every step, saving at 3 and 6; with or without AsyncLogs."""
    from transformers import AutoModelForCausalLM, TrainerCallback, set_seed

    from core.config import RunConfig
    from core.train.dataset import SFTDataset, encode_sample, pack
    from core.train.entry import build_trainer

    qa = [("你是谁？", "我是小天。"), ("What is 2 plus 3?", "2 plus 3 is 5."), ("Hi", "Hello there."),
          ("Name a colour.", "Blue."), ("Count to three.", "One, two, three.")] * 4
    enc = [encode_sample(tiny_tokenizer, {"messages": [{"role": "user", "content": q},
                                                       {"role": "assistant", "content": a}]}, 64) for q, a in qa]
    cfg = RunConfig(pretrained_model_name_or_path=str(tiny_model), data_path="-", method="lora", lora_r=4,
                    lora_alpha=8, max_length=48, pack_to_max_length=True, batch_size=1, accumulative_counts=2,
                    max_steps=6, lr=1e-3, save_steps=3, save_total_limit=5, evaluation_freq=10**6,
                    evaluation_inputs=[], logging_steps=1, torch_dtype="float32")
    seen: list[int] = []

    class Seen(TrainerCallback):  # how many steps were logged when a step ends (before its own log)
        def on_step_end(self, args, state, control, **kw):
            seen.append(sum("loss" in h for h in state.log_history))

    set_seed(0)  # the LoRA weights' initial values
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    trainer = build_trainer(cfg, run_dir, model, tiny_tokenizer, SFTDataset(pack(enc, 48)), dtype=torch.float32,
                            model_path=tiny_model, extra_callbacks=[Seen()])
    logs = next(c for c in trainer.callback_handler.callbacks if isinstance(c, callbacks.AsyncLogs))
    if lagged:  # as a GPU one step behind: a step's values land once a later step has ended
        logs._landed = lambda snap: snap["step"] < trainer.state.global_step
    else:  # the Trainer's own path
        del trainer._maybe_log_save_evaluate, trainer._track_num_input_tokens
    return trainer, seen


def test_logs_read_a_step_late_are_the_same_logs(tiny_model, tiny_tokenizer, tmp_path):
    """AsyncLogs: every step logged once, under its own step, with the Trainer's values; saves and the end wait."""
    import json

    from core import rundir

    runs = {}
    for lagged in (False, True):
        trainer, seen = _tiny_trainer(tiny_model, tiny_tokenizer, tmp_path / str(lagged), lagged=lagged)
        trainer.train()
        callbacks.drain()
        ckpt = json.loads((tmp_path / str(lagged) / rundir.CHECKPOINTS / "step-3" / "trainer_state.json").read_text())
        runs[lagged] = (trainer.state, seen, ckpt, rundir.metrics(tmp_path / str(lagged)))
    (state, seen, ckpt, metrics), (lstate, lseen, lckpt, lmetrics) = runs[False], runs[True]
    assert seen == [0, 1, 2, 3, 4, 5]
    assert lseen == [0, 0, 1, 3, 3, 4]  # a step late, except that the save at step 3 waited for every value
    entries = [h for h in state.log_history if "loss" in h]
    lentries = [h for h in lstate.log_history if "loss" in h]
    assert [h["step"] for h in lentries] == [1, 2, 3, 4, 5, 6] == [h["step"] for h in entries]
    for a, b in zip(entries, lentries, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6) and b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
        assert (b["learning_rate"], b["epoch"], b["num_input_tokens_seen"]) == (
            a["learning_rate"], a["epoch"], a["num_input_tokens_seen"])
    assert lstate.num_input_tokens_seen == state.num_input_tokens_seen > 0
    assert lckpt["num_input_tokens_seen"] == ckpt["num_input_tokens_seen"]  # the checkpoint holds the count of step 3
    assert [h["step"] for h in lckpt["log_history"] if "loss" in h] == [1, 2, 3]
    assert [m["step"] for m in lmetrics] == [1, 2, 3, 4, 5, 6]
    assert [m["tokens_seen"] for m in lmetrics] == [m["tokens_seen"] for m in metrics]
    assert not callbacks.AsyncLogs().install(SimpleNamespace(args=SimpleNamespace(world_size=2)))  # the Trainer's


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


def test_expandable_segments_by_default_and_a_users_allocator_setting_wins(monkeypatch):
    import os

    from core.train.entry import use_expandable_segments

    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    use_expandable_segments()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:512")
    use_expandable_segments()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:512"
