"""Trainer callbacks that speak the run-dir protocol: metrics, status, evaluation answers, checkpoints, stop.

Only rank 0 writes files (several-GPU runs run these callbacks on every rank).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from core import rundir
from core.fsio import append_jsonl, atomic_write_text
from core.templates import render_prompt, stop_token_ids


def _gpu_memory() -> dict:
    if not torch.cuda.is_available():
        return {}
    return {
        "gpu_mem_gib": round(torch.cuda.memory_allocated() / 2**30, 3),
        "gpu_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
        "gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3),
    }


def _test_slow_save(step: int) -> None:
    """Test-only: STUDIO_TEST_SLOW_SAVE="STEP:SECONDS" pauses between the Trainer's write of
    checkpoint-STEP and its COMPLETE mark, so a test can SIGKILL the run mid-save
    (tests/reliability/test_faults.py). Unset in normal use."""
    import os

    spec = os.environ.get("STUDIO_TEST_SLOW_SAVE", "")
    if spec.partition(":")[0] == str(step):
        time.sleep(float(spec.partition(":")[2] or 60))


# run-dir writes made while training go through one background thread, in order: each is a read + fsync'd
# atomic replace, and on the training thread it ran right after the step's host sync, with the GPU idle.
_writer: list = []  # [ThreadPoolExecutor] once started
_pending: list = []  # futures not yet checked


def later(fn, *args, **kwargs) -> None:
    """Run fn(*args, **kwargs) on the run-dir writer thread; an error from an earlier write is raised here."""
    from concurrent.futures import ThreadPoolExecutor

    while _pending and _pending[0].done():
        _pending.pop(0).result()  # re-raises a failed write (disk full ...) in the training thread
    if not _writer:
        _writer.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="rundir-writer"))
    _pending.append(_writer[0].submit(fn, *args, **kwargs))


def drain() -> None:
    """Wait for every queued run-dir write (before a final status, a checkpoint mark, the process end)."""
    while _pending:
        _pending.pop(0).result()


class AsyncLogs(TrainerCallback):
    """The loss, gradient norm and token count of a logged step, read off the GPU without waiting for it.

    The Trainer reads them with `.item()` at every logged step (every step by default) and counts tokens with
    one per micro-batch: each a host sync, after which the GPU idles while Python fetches and collates the next
    batch (~20 ms of a 0.5 s 7B step). Here the values are copied to pinned memory behind the step's kernels and
    the log is written once the copy has landed (normally by the next step's end), under the step it belongs
    to. A save, an evaluation, a stop and the end of training wait for it. Several processes keep the Trainer's
    own path (it gathers the loss over ranks).
    """

    def __init__(self):
        self.tokens = None  # non-padding tokens since the last read, summed on the GPU
        self.pad = None
        self.queue: list[dict] = []  # logged steps whose values may still be on their way
        self.trainer = None

    def install(self, trainer) -> bool:
        import inspect

        args = trainer.args
        original = getattr(trainer, "_maybe_log_save_evaluate", None)
        if args.world_size > 1 or original is None:
            return False
        signature = inspect.signature(original)
        if not {"tr_loss", "grad_norm", "start_time", "learning_rate"} <= set(signature.parameters):
            return False  # a Trainer whose logging hook looks different: leave it alone (token count included)
        self.trainer = trainer
        if args.include_num_input_tokens_seen == "non_padding" and hasattr(trainer, "_track_num_input_tokens"):
            self.pad = getattr(trainer.processing_class, "pad_token_id", None)
            trainer._track_num_input_tokens = self.track

        def maybe_log_save_evaluate(*a, **kw):
            bound = signature.bind(*a, **kw).arguments
            control, state = trainer.control, trainer.state
            if control.should_log and state.global_step > trainer._globalstep_last_logged:
                self._snapshot(bound["tr_loss"], bound["grad_norm"], bound.get("learning_rate"), bound["start_time"])
                control.should_log = False  # done here; the Trainer's own code still evaluates and saves
            self.emit(wait=bool(control.should_save or control.should_evaluate or control.should_training_stop
                                or control.should_epoch_stop))
            return original(*a, **kw)

        trainer._maybe_log_save_evaluate = maybe_log_save_evaluate
        return True

    def track(self, inputs) -> None:
        if "attention_mask" in inputs:
            n = inputs["attention_mask"].sum()
        elif "input_ids" in inputs:
            ids = inputs["input_ids"]
            n = (ids != self.pad).sum() if self.pad is not None else ids.numel()
        else:
            return
        self.tokens = n if self.tokens is None else self.tokens + n

    def _snapshot(self, tr_loss, grad_norm, learning_rate, start_time) -> None:
        trainer, state = self.trainer, self.trainer.state
        parts = [tr_loss.detach().double().reshape(1)]
        if isinstance(grad_norm, torch.Tensor):
            parts.append(grad_norm.detach().to(tr_loss.device, torch.float64).reshape(1))
        if self.tokens is not None:
            parts.append(self.tokens.to(tr_loss.device, torch.float64).reshape(1))
        values = torch.cat(parts)
        on_gpu = values.device.type == "cuda"
        host = torch.empty(values.shape, dtype=torch.float64, pin_memory=on_gpu)
        host.copy_(values, non_blocking=on_gpu)
        event = None
        if on_gpu:
            event = torch.cuda.Event()
            event.record()
        self.queue.append({
            "host": host, "event": event, "step": state.global_step, "epoch": state.epoch,
            "steps": state.global_step - trainer._globalstep_last_logged, "start_time": start_time,
            "grad_norm": "tensor" if isinstance(grad_norm, torch.Tensor) else grad_norm,
            "tokens": self.tokens is not None,
            "learning_rate": learning_rate if learning_rate is not None else trainer._get_learning_rate(),
        })
        self.tokens = None
        tr_loss -= tr_loss  # queued behind the copy of its sum (a new tensor): the next interval starts at 0
        trainer._globalstep_last_logged = state.global_step
        trainer.store_flos()

    def _landed(self, snap: dict) -> bool:
        return snap["event"] is None or snap["event"].query()

    def emit(self, wait: bool = False) -> None:
        """Log every queued step whose values have landed (all of them, waiting, when `wait`)."""
        if self.trainer is None:
            return
        trainer, state = self.trainer, self.trainer.state
        while self.queue and (wait or self._landed(self.queue[0])):
            snap = self.queue.pop(0)
            if snap["event"] is not None:
                snap["event"].synchronize()
            values = snap["host"].tolist()
            loss = values.pop(0)
            logs = {"loss": loss / snap["steps"]}
            if snap["grad_norm"] == "tensor":
                logs["grad_norm"] = values.pop(0)
            elif snap["grad_norm"] is not None:
                logs["grad_norm"] = snap["grad_norm"]
            logs["learning_rate"] = snap["learning_rate"]
            if snap["tokens"]:
                state.num_input_tokens_seen += int(values.pop(0))
            trainer._total_loss_scalar += loss
            now = state.global_step, state.epoch
            state.global_step, state.epoch = snap["step"], snap["epoch"]  # the log is of the step it was taken at
            try:
                trainer.log(logs, snap["start_time"])
            finally:
                state.global_step, state.epoch = now
        if wait and self.tokens is not None:  # a save or stop between two logs: its state needs the count now
            state.num_input_tokens_seen += int(self.tokens)
            self.tokens = None

    def on_train_end(self, args, state, control, **kw):
        self.emit(wait=True)


class FrozenHeap(TrainerCallback):
    """Keeps Python's garbage collector off the objects that exist when training starts.

    A full collection walks every tracked object: with torch, transformers, the model's modules and the
    tokenized data loaded that is millions, and the GPU runs dry while the step waits on it. Objects
    frozen at the start are never scanned; what the steps themselves create still is.
    """

    def on_train_begin(self, args, state, control, **kw):
        import gc
        import os

        if os.environ.get("STUDIO_GC_FREEZE", "1") != "0":
            gc.collect()
            gc.freeze()

    def on_train_end(self, args, state, control, **kw):
        import gc

        gc.unfreeze()  # a process that goes on (the bench, tests) gets its collector back whole


class RunDirCallback(TrainerCallback):
    """metrics.jsonl, status.json progress, atomic checkpoint folders, and graceful stop."""

    def __init__(self, run_dir: Path, save_total_limit: int, stop_flag: dict, is_main: bool):
        self.run_dir = Path(run_dir)
        self.save_total_limit = save_total_limit
        self.stop_flag = stop_flag
        self.is_main = is_main
        self.t0 = time.time()
        self.t_last = self.t0
        self.tokens_last = 0
        self.step0 = 0
        self.nonfinite_at = 0  # the first step whose logged loss was NaN/inf

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = self.t_last = time.time()
        self.step0 = state.global_step
        self.tokens_last = state.num_input_tokens_seen
        if self.is_main:
            rundir.write_status(self.run_dir, state="running", step=state.global_step, max_steps=state.max_steps,
                                train_started_at=self.t0)

    def on_log(self, args, state, control, logs=None, **kw):
        if not self.is_main or not logs or "loss" not in logs:
            return
        now = time.time()
        # counted by the Trainer as batches are consumed (non-pad tokens, summed over every rank)
        tokens = state.num_input_tokens_seen
        tps = (tokens - self.tokens_last) / max(now - self.t_last, 1e-9)
        done = state.global_step - self.step0
        left = state.max_steps - state.global_step
        eta = (now - self.t0) / done * left if done > 0 else None
        row = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "loss": logs.get("loss"),
            "lr": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "tokens_per_s": round(tps, 1),
            "tokens_seen": tokens,
            "elapsed_s": round(now - self.t0, 2),
            "eta_s": round(eta, 1) if eta is not None else None,
            "time": now,
            **_gpu_memory(),
        }
        loss = row["loss"]
        if isinstance(loss, float) and not math.isfinite(loss) and not self.nonfinite_at:
            # the Trainer no longer smooths a NaN/inf loss away (that check cost a host sync per micro-batch):
            # say so where the user looks, once
            self.nonfinite_at = state.global_step
            print(f"[studio] warning: the loss is {loss} at step {state.global_step}: training diverged. Lower lr, "
                  f"check the data, or use bf16 instead of fp16.", flush=True)
            later(rundir.write_status, self.run_dir, loss_nonfinite_step=state.global_step)
        later(append_jsonl, self.run_dir / rundir.METRICS, row)
        later(rundir.write_status, self.run_dir, step=state.global_step, max_steps=state.max_steps, eta_s=row["eta_s"],
              loss=row["loss"])
        self.t_last, self.tokens_last = now, tokens

    def on_step_end(self, args, state, control, **kw):
        want = bool(self.stop_flag.get("stop") or (self.run_dir / rundir.STOP_REQUEST).exists())
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # every rank must stop at the same step, or the others wait forever in the next all-reduce
            flag = torch.tensor([1.0 if want else 0.0],
                                device="cuda" if torch.distributed.get_backend() == "nccl" else "cpu")
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            want = bool(flag.item())
        if want:
            self.stop_flag["stop"] = True
            control.should_save = True
            control.should_training_stop = True
            if self.is_main:
                later(rundir.write_status, self.run_dir, state="stopping")
        return control

    def on_train_end(self, args, state, control, **kw):
        drain()

    def on_save(self, args, state, control, **kw):
        if not self.is_main:
            return
        # The Trainer writes checkpoint-N in place; a COMPLETE mark plus a rename to step-N makes
        # the finished folder appear atomically, so a kill mid-save never leaves a "latest" that is broken.
        src = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not src.is_dir():
            return
        drain()
        _test_slow_save(state.global_step)
        atomic_write_text(src / rundir.COMPLETE_MARK, f"{state.global_step}\n")
        dst = Path(args.output_dir) / f"step-{state.global_step}"
        if dst.exists():
            shutil.rmtree(dst)
        src.rename(dst)
        if self.save_total_limit > 0:
            for old in rundir.checkpoints(self.run_dir)[: -self.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)


class EvalSamplesCallback(TrainerCallback):
    """Answers evaluation_inputs before training and every evaluation_freq steps (samples.jsonl)."""

    def __init__(self, run_dir: Path, tokenizer, prompts: list[str], system: str, freq: int, max_new_tokens: int,
                 is_main: bool, images: list[str] | None = None, processor=None):
        self.run_dir = Path(run_dir)
        self.tokenizer = tokenizer
        self.prompts = [p for p in prompts if p and p.strip()]
        self.system = system
        self.freq = freq
        self.max_new_tokens = max_new_tokens
        self.is_main = is_main
        self.images = images or []
        self.processor = processor
        self.last_step = -1

    def answer_all(self, model) -> list[str]:
        from core.chat import generate_text

        was_training = model.training
        model.eval()
        # the training step's mixed precision: the engine lets LoRA layers skip their fp32 input cast
        dtype = getattr(model, "dtype", torch.float32)
        half = torch.cuda.is_available() and dtype in (torch.bfloat16, torch.float16)
        answers = []
        try:
            with torch.autocast("cuda", dtype=dtype) if half else contextlib.nullcontext():
                for i, prompt in enumerate(self.prompts):
                    messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
                        {"role": "user", "content": prompt}]
                    image = self.images[i] if i < len(self.images) else None
                    answers.append(generate_text(model, self.tokenizer, messages, max_new_tokens=self.max_new_tokens,
                                                 image=image, processor=self.processor))
        finally:
            if was_training:
                model.train()
        return answers

    def _record(self, model, step: int) -> None:
        if not self.prompts or step == self.last_step:
            return
        self.last_step = step
        t = time.time()
        answers = self.answer_all(model)
        if self.is_main:
            append_jsonl(self.run_dir / rundir.SAMPLES, {
                "step": step, "time": time.time(), "seconds": round(time.time() - t, 2),
                "answers": [{"prompt": p, "answer": a} for p, a in zip(self.prompts, answers, strict=True)],
            })

    def on_train_begin(self, args, state, control, model=None, **kw):
        if state.global_step == 0 or not (self.run_dir / rundir.SAMPLES).exists():
            self._record(model, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % self.freq == 0:
            self._record(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kw):
        self._record(model, state.global_step)


__all__ = ["RunDirCallback", "EvalSamplesCallback", "render_prompt", "stop_token_ids"]
