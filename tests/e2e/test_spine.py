"""The spine end to end on CPU: demo, chat CLI, detached runs killed and resumed, stop, bad configs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from core import jobs, rundir

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def studio(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def demo_summary():
    from core.demo import run_demo

    return run_demo(name="小天", author="Tester")


def test_demo_learns_identity_without_leaking(demo_summary):
    s = demo_summary
    assert s["identity_hit_rate_before"] == 0 and s["leak_rate_before"] == 0
    assert s["identity_hit_rate"] >= 0.8, s["examples"]
    assert s["leak_rate"] <= 0.2, s["examples"]
    # issue 20: leak measured on the open-domain probe set; readable before/after examples (1 identity, 2 other)
    assert s["identity_hit_rate_after"] == s["identity_hit_rate"] and s["leak_rate_after"] == s["leak_rate"]
    assert s["probe"]["open_domain_prompts"] >= 60 and s["probe"]["identity_questions"] == 20
    assert len(s["examples"]) == 3 and "小天" in s["examples"][0]["after"]
    assert all(e["before"] and e["after"] and "\ufffd" not in e["before"] + e["after"] for e in s["examples"])
    assert s["merge_check"]["identical"] and s["merge_check"]["compared"] >= 10
    for key in ("base_model", "adapter", "merged"):
        assert Path(s[key]).is_dir()


def test_demo_run_dir_follows_the_protocol(demo_summary):
    run = Path(demo_summary["run_dir"])
    status = rundir.read_status(run)
    assert status["state"] == "finished" and status["exit_code"] == 0 and status["step"] == status["max_steps"]
    rows = rundir.metrics(run)
    assert len(rows) == status["max_steps"] and all(r["tokens_per_s"] > 0 for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    steps = [s["step"] for s in rundir.samples(run)]
    assert steps[0] == 0 and steps[-1] == status["max_steps"] and len(steps) >= 3
    cks = rundir.checkpoints(run)
    assert cks and all((c / "adapter_model.safetensors").is_file() for c in cks)
    assert (run / "command.txt").read_text().startswith("python -m studio train")
    assert (run / "adapter" / "adapter_config.json").is_file()


def test_chat_cli_answers_a_prompt_file_as_json(demo_summary, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("你是谁？\nWhat is 12 plus 13?\n", encoding="utf-8")
    r = studio("chat", demo_summary["base_model"], "--adapter", demo_summary["adapter"], "--prompts", str(prompts),
               "--json", "--max-new-tokens", "24")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["prompt"] for x in rows] == ["你是谁？", "What is 12 plus 13?"]
    assert "小天" in rows[0]["answer"] and "小天" not in rows[1]["answer"]


def test_merged_model_chats_alone(demo_summary, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "请介绍一下你自己"}, ensure_ascii=False) + "\n", encoding="utf-8")
    r = studio("chat", demo_summary["merged"], "--prompts", str(prompts), "--json")
    assert r.returncode == 0, r.stderr
    assert "小天" in json.loads(r.stdout.splitlines()[0])["answer"]


def _config(tmp_path: Path, demo_summary, **over) -> Path:
    from core.data import write_samples
    from core.demo import general_samples

    data = tmp_path / "general.jsonl"
    write_samples(general_samples(200), data)
    cfg = {"pretrained_model_name_or_path": demo_summary["base_model"], "data_path": str(data), "max_length": 128,
           "lora_r": 8, "lora_alpha": 16, "batch_size": 2, "accumulative_counts": 1, "max_steps": 40, "lr": 1e-3,
           "save_steps": 8, "save_total_limit": 2, "evaluation_freq": 1000, "evaluation_inputs": ["hi"],
           "eval_max_new_tokens": 4, "gradient_checkpointing": "false", **over}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def _wait(pred, timeout=120.0, every=0.3):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(every)
    return False


def test_detached_run_killed_then_resumed(demo_summary, tmp_path):
    cfg = _config(tmp_path, demo_summary, max_steps=40)
    work = tmp_path / "run"
    r = studio("train", str(cfg), "--work-dir", str(work), "--detach")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["run_dir"] == str(work)
    assert _wait(lambda: len(rundir.checkpoints(work)) >= 1 and rundir.read_status(work).get("step", 0) >= 12)
    killed_at = rundir.latest_checkpoint(work)
    os.killpg(rundir.read_status(work)["pgid"], signal.SIGKILL)
    assert _wait(lambda: jobs.run_state(work)["state"] == "failed", 10)
    assert "without a word" in jobs.run_state(work)["error"]
    ck_step = int(killed_at.name.split("-")[1])

    r = studio("train", str(cfg), "--work-dir", str(work), "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resume: from" in r.stderr
    status = rundir.read_status(work)
    assert status["state"] == "finished" and status["step"] == 40
    steps = [m["step"] for m in rundir.metrics(work)]
    # the checkpoint it resumed from: the one seen before the kill, or one completed between that look and the kill
    resumed = int(re.search(r"resume: from \S*step-(\d+)", r.stderr).group(1))
    assert resumed >= ck_step
    # after the kill the step count continues from the checkpoint, not from zero: the second process's rows
    # are resumed+1 .. 40 (the first process may have logged resumed+1 too, before it was killed)
    second = max(i for i, s in enumerate(steps) if s == resumed + 1)
    assert steps[second:] == list(range(resumed + 1, 41))
    assert steps[0] == 1 and max(steps[:second] or [0]) >= 12


def test_stop_is_graceful(demo_summary, tmp_path):
    cfg = _config(tmp_path, demo_summary, max_steps=5000, save_steps=1000)
    run = jobs.start_run(cfg)  # under workspace/runs, so `runs` lists it
    assert _wait(lambda: rundir.read_status(run).get("step", 0) >= 3)
    assert jobs.stop_run(str(run), timeout=60) == "stopped"
    status = rundir.read_status(run)
    ck = rundir.latest_checkpoint(run)
    assert ck is not None and int(ck.name.split("-")[1]) == status["step"]
    assert not jobs.pid_alive(status["pid"])
    listed = {r["run_id"]: r for r in json.loads(studio("runs", "--json").stdout)}
    assert listed[run.name]["state"] == "stopped"


@pytest.mark.parametrize("over, words", [
    ({"lerning_rate": 1}, "lerning_rate: unknown setting"),
    ({"lr": "fast"}, "lr: expected a number"),
    ({"pretrained_model_name_or_path": "/nope/model"}, "pretrained_model_name_or_path: model path /nope/model does not exist"),
    ({"data_path": "/nope/data.jsonl"}, "data_path: no data file at /nope/data.jsonl"),
])
def test_bad_config_exits_1_naming_the_field(demo_summary, tmp_path, over, words):
    cfg = _config(tmp_path, demo_summary, **over)
    work = tmp_path / "never"
    r = studio("train", str(cfg), "--work-dir", str(work))
    assert r.returncode == 1 and words in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2
    assert not work.exists()  # nothing half-written


def test_interactive_chat_like_xtuner(demo_summary):
    r = subprocess.run([sys.executable, "-m", "studio", "chat", demo_summary["base_model"], "--adapter",
                        demo_summary["adapter"], "--max-new-tokens", "24"], cwd=REPO, input="你是谁？\nRESET\nEXIT\n",
                       capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    assert "小天" in r.stdout and "EXIT" in r.stderr and "(conversation reset)" in r.stderr


def test_full_finetune_on_pretraining_text(demo_summary, tmp_path):
    """The other paradigm: plain text (loss on every token), full fine-tuning, saved as a whole model."""
    from core.data import read_samples

    data = tmp_path / "pretrain.jsonl"
    data.write_text("\n".join(json.dumps({"conversation": [{"input": "", "output": f"The number {i} follows {i - 1}."}]})
                              for i in range(1, 80)) + "\n", encoding="utf-8")
    assert next(iter(read_samples(data)))["messages"][0]["role"] == "pretrain"
    cfg = _config(tmp_path, demo_summary, method="full", max_steps=30, lr=1e-3, save_steps=15)
    text = cfg.read_text().replace(str(tmp_path / "general.jsonl"), str(data))
    cfg.write_text(text)
    work = tmp_path / "full"
    r = studio("train", str(cfg), "--work-dir", str(work))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "method: full fine-tuning" in r.stderr
    rows = rundir.metrics(work)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (work / "model" / "config.json").is_file() and not (work / "adapter").exists()
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n", encoding="utf-8")
    r = studio("chat", str(work / "model"), "--prompts", str(prompts), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["prompt"] == "hello", r.stderr[-2000:]


def test_offloaded_checkpointing_trains_through_the_cli(demo_summary, tmp_path):
    """gradient_checkpointing: offload goes through `studio train`, says so in the log, and learns."""
    cfg = _config(tmp_path, demo_summary, max_steps=12, save_steps=100, gradient_checkpointing="offload")
    work = tmp_path / "offload"
    r = studio("train", str(cfg), "--work-dir", str(work))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "gradient checkpointing on, inputs offloaded to CPU (set in the config)" in r.stderr
    rows = rundir.metrics(work)
    assert len(rows) == 12 and rows[-1]["loss"] < rows[0]["loss"]
    assert (work / "adapter" / "adapter_config.json").is_file()
