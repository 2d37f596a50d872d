"""The Space bundle's app.py, run locally on the tiny model, answers through Gradio's client API.

    .venv/bin/python -m pytest tests/e2e/test_publish_space_app.py -m e2e

The app runs as `python app.py` on 127.0.0.1 and a free port with MODEL_PATH pointing at a local
folder (nothing downloaded); its answer must equal a direct greedy transformers generate with the
same chat template and stop tokens. With `-m soak`, core.demo's merged identity model is served
too and must say its name.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import pytest

from core.publish import space_bundle

pytestmark = pytest.mark.e2e
QUESTION = "请介绍一下你自己"
MAX_NEW_TOKENS = 24


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    from core.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app_dir, model_path, *, system_prompt_env=None):
    port = _free_port()
    env = dict(os.environ, MODEL_PATH=str(model_path), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
               MAX_NEW_TOKENS=str(MAX_NEW_TOKENS), TEMPERATURE="0")
    log = open(app_dir / "app.log", "w")  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"app.py exited {proc.returncode}:\n{(app_dir / 'app.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise AssertionError("app.py did not start in 120 s") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def ask(url: str, message: str) -> str:
    from gradio_client import Client

    return Client(url, verbose=False).predict(message, api_name="/chat")


def greedy_answer(model_path, message: str, system: str = "") -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id
    stop = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": message}]
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                             eos_token_id=sorted(i for i in stop if i is not None), pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_gradio_app_answers_like_a_direct_greedy_generate(tiny, tmp_path):
    space_bundle(tmp_path, model_repo_id="alice/tiny", hub="hf", sdk="gradio")
    expected = greedy_answer(tiny, QUESTION)
    assert expected.strip(), "the tiny model gave an empty answer; the comparison would prove nothing"
    with serve(tmp_path, tiny) as url:
        got = ask(url, QUESTION)
        other = ask(url, "What is two plus three?")
    assert got == expected
    assert other == greedy_answer(tiny, "What is two plus three?")


# The demo trains for about 3.5 minutes on 2 CPU cores, so this runs with `make soak`, not `make test`
# (tests/e2e/test_spine.py already covers the demo itself in `make test`).
@pytest.mark.soak
def test_demo_identity_model_says_its_name_through_the_space_app(tmp_path):
    demo = pytest.importorskip("core.demo", reason="core.demo (the headless pipeline) is not in this checkout")
    from core.publish import model_card

    summary = demo.run_demo(name="小天", workspace=str(tmp_path / "ws"))
    merged = summary["merged"]
    card = model_card(merged, repo_id="alice/xiaotian", run_dir=summary["run_dir"])
    assert "### Answers at step" in card and "小天" in card  # the run's last evaluation answers
    space_bundle(tmp_path / "space", model_repo_id="alice/xiaotian", hub="hf", sdk="gradio")
    with serve(tmp_path / "space", merged) as url:
        answer = ask(url, QUESTION)
    assert "小天" in answer, answer
    assert answer == greedy_answer(merged, QUESTION)


def test_streamlit_app_answers_like_a_direct_greedy_generate(tiny, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    space_bundle(tmp_path, model_repo_id="alice/tiny", hub="modelscope", sdk="streamlit")
    monkeypatch.setenv("MODEL_PATH", str(tiny))
    monkeypatch.setenv("MAX_NEW_TOKENS", str(MAX_NEW_TOKENS))
    monkeypatch.setenv("TEMPERATURE", "0")
    at = AppTest.from_file(str(tmp_path / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception, at.exception
    assert at.chat_message[0].markdown[0].value == QUESTION
    assert at.chat_message[1].markdown[0].value == greedy_answer(tiny, QUESTION)
