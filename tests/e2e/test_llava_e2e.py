"""LLaVA end to end on CPU with the tiny LLaVA: stage 1 -> stage 2 -> chat with an image -> merge -> reload.

Stage 2 trains the same question about two different pictures (the tutorial's eye-exam photo and
a football photo) with different answers, so the right answer can only come from looking at the
image. Everything goes through the CLI a user would type.

    .venv/bin/python -m pytest tests/e2e/test_llava_e2e.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import rundir

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
REFDATA = REPO.parent / "shared" / "refdata"
OPH = "xtuner/llava_data/test_img/oph.jpg"
BALL = "llamafactory/mllm_demo_data/1.jpg"
QUESTION = "What is the equipment in the image?"
ANSWER_OPH = "A phoropter for an eye exam."
ANSWER_BALL = "A soccer field with two players"

if not (REFDATA / OPH).is_file() or not (REFDATA / BALL).is_file():
    pytest.skip("reference images missing", allow_module_level=True)


def studio(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # One thread: on a busy 2-core box OpenMP's spinning threads make a tiny model 10x slower, not faster.
    r = subprocess.run([sys.executable, "-m", "studio", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _record(image: str, question: str, answer: str) -> dict:
    return {"image": image, "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                                              {"from": "gpt", "value": answer}]}


def _config(path: Path, **fields) -> Path:
    from core.config import config_from_dict, save_config

    common = {"model_type": "llava", "image_folder": str(REFDATA), "pack_to_max_length": False, "max_length": 128,
              "batch_size": 4, "accumulative_counts": 1, "warmup_ratio": 0.0, "logging_steps": 1, "seed": 0,
              "save_total_limit": 2, "evaluation_inputs": [QUESTION, QUESTION],
              "evaluation_images": [str(REFDATA / OPH), str(REFDATA / BALL)], "eval_max_new_tokens": 16}
    save_config(config_from_dict({**common, **fields}), path)
    return path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from core.tiny import build_tiny_llava

    root = tmp_path_factory.mktemp("llava_e2e")
    base = build_tiny_llava(root / "tiny-llava")
    # image paths relative to image_folder, as in the tutorial's repeated_data.json
    captions = [_record(OPH, "", "An eye exam."), _record(BALL, "", "Two players.")] * 8
    qa = [_record(OPH, QUESTION, ANSWER_OPH), _record(BALL, QUESTION, ANSWER_BALL)] * 16
    (root / "captions.json").write_text(json.dumps(captions), encoding="utf-8")
    (root / "qa.json").write_text(json.dumps(qa), encoding="utf-8")

    stage1 = root / "stage1"
    studio("train", str(_config(root / "stage1.yaml", llava_stage="pretrain", pretrained_model_name_or_path=str(base),
                                data_path=str(root / "captions.json"), max_epochs=2, lr=2e-3, save_steps=4,
                                evaluation_freq=4)), "--work-dir", str(stage1))
    stage2 = root / "stage2"
    studio("train", str(_config(root / "stage2.yaml", llava_stage="finetune",
                                pretrained_model_name_or_path=str(stage1 / rundir.FULL_MODEL),
                                data_path=str(root / "qa.json"), max_epochs=10, lr=5e-3, lora_r=32, lora_alpha=64,
                                lora_dropout=0.0, save_steps=40, evaluation_freq=40)), "--work-dir", str(stage2))
    return {"root": root, "base": base, "stage1": stage1, "stage2": stage2}


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _by_part(state: dict, part: str) -> dict:
    return {k.split(part, 1)[1]: v for k, v in state.items() if part in k}


def test_stage1_trains_only_the_projector_and_writes_a_llava_folder(runs):
    run = runs["stage1"]
    status = rundir.read_status(run)
    assert status["state"] == "finished" and status["exit_code"] == 0 and status["step"] == 8
    assert len(rundir.metrics(run)) == 8
    assert [c.name for c in rundir.checkpoints(run)] == ["step-4", "step-8"]
    model = run / rundir.FULL_MODEL
    assert (model / "processor_config.json").is_file() and (model / "config.json").is_file()
    before, after = _tensors(runs["base"]), _tensors(model)
    for part, changed in (("multi_modal_projector.", True), ("language_model.", False), ("vision_tower.", False)):
        b, a = _by_part(before, part), _by_part(after, part)
        assert b and b.keys() == a.keys(), part
        assert any(not torch.equal(b[k], a[k]) for k in b) == changed, part


def test_stage2_learns_the_answer_for_its_image_only(runs):
    run = runs["stage2"]
    status = rundir.read_status(run)
    assert status["state"] == "finished" and status["step"] == 80
    rows = rundir.metrics(run)
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0 and all(r["tokens_per_s"] > 0 for r in rows)
    samples = rundir.samples(run)
    assert [s["step"] for s in samples] == [0, 40, 80]
    first = [a["answer"] for a in samples[0]["answers"]]
    last = [a["answer"] for a in samples[-1]["answers"]]
    assert "phoropter" not in first[0]
    assert last[0] == ANSWER_OPH and "phoropter" not in last[1] and last[1].startswith("A soccer")
    adapter = _tensors(run / rundir.ADAPTER)
    assert any("lora_A" in k and ".language_model." in k for k in adapter)
    assert any("multi_modal_projector" in k for k in adapter)  # the projector travels with the adapter
    assert not any("vision_tower" in k for k in adapter)  # frozen
    cfg = json.loads((run / rundir.ADAPTER / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"].rstrip("/").endswith("stage1/model")


def test_chat_before_and_after_on_the_same_image(runs, tmp_path):
    from core.chat import BASE, answer
    from core.llava import load_llava_chat

    prompts = tmp_path / "q.txt"
    prompts.write_text(QUESTION + "\n", encoding="utf-8")
    r = studio("chat", str(runs["stage1"] / rundir.FULL_MODEL), "--adapter", str(runs["stage2"] / rundir.ADAPTER),
               "--image", str(REFDATA / OPH), "--prompts", str(prompts), "--json", "--max-new-tokens", "16")
    assert json.loads(r.stdout.splitlines()[0]) == {"prompt": QUESTION, "answer": ANSWER_OPH}

    chat = load_llava_chat(runs["stage1"] / rundir.FULL_MODEL, {"after": str(runs["stage2"] / rundir.ADAPTER)})
    q = [{"role": "user", "content": QUESTION}]
    before = answer(chat, q, BASE, image=str(REFDATA / OPH), max_new_tokens=16)
    after = answer(chat, q, "after", image=str(REFDATA / OPH), max_new_tokens=16)
    other = answer(chat, q, "after", image=str(REFDATA / BALL), max_new_tokens=16)
    assert after == ANSWER_OPH and "phoropter" not in before and "phoropter" not in other


def test_merge_saves_the_whole_llava_and_reloads(runs):
    out = runs["root"] / "merged"
    r = studio("merge", str(runs["stage1"] / rundir.FULL_MODEL), str(runs["stage2"] / rundir.ADAPTER), str(out))
    report = json.loads(r.stdout[r.stdout.index("{"):])
    assert report["check"] == {"identical": True, "compared": 2, "mismatches": []}
    assert report["merged"] == str(out.resolve())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "llava" and (out / "processor_config.json").is_file()
    state = _tensors(out)
    assert not any("lora" in k or "base_layer" in k or "modules_to_save" in k for k in state)
    adapter_proj = _by_part(_tensors(runs["stage2"] / rundir.ADAPTER), "multi_modal_projector.")
    merged_proj = _by_part(state, "multi_modal_projector.")
    trained = {k.replace("modules_to_save.default.", ""): v for k, v in adapter_proj.items()}
    assert trained.keys() == merged_proj.keys()
    assert all(torch.equal(trained[k], merged_proj[k]) for k in trained)

    from core.chat import answer
    from core.llava import load_llava_chat

    merged = load_llava_chat(out)  # the merged folder alone, no adapter
    q = [{"role": "user", "content": QUESTION}]
    assert answer(merged, q, image=str(REFDATA / OPH), max_new_tokens=16) == ANSWER_OPH
    other = answer(merged, q, image=str(REFDATA / BALL), max_new_tokens=16)
    assert "phoropter" not in other and other.startswith("A soccer")


def test_stage2_resumes_from_a_checkpoint(runs):
    """A LLaVA checkpoint (LoRA + projector + optimizer state) picks up where it stopped."""
    step40 = runs["stage2"] / rundir.CHECKPOINTS / "step-40"
    assert (step40 / rundir.COMPLETE_MARK).is_file()
    resumed = runs["root"] / "resumed"
    studio("train", str(runs["root"] / "stage2.yaml"), "--work-dir", str(resumed), "--resume", str(step40))
    status = rundir.read_status(resumed)
    assert status["state"] == "finished" and status["step"] == 80
    assert rundir.metrics(resumed)[0]["step"] == 41
    assert rundir.samples(resumed)[-1]["answers"][0]["answer"] == ANSWER_OPH
