"""The studio clicked through on the tiny model with AppTest: identity data -> config -> run -> board ->
chat A/B -> merge. Every step goes through the pages, as a user would; only waiting reads the run dir."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parents[2] / "pages"


def page(name: str) -> AppTest:
    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=240)


def by_label(widgets, label):
    return next(w for w in widgets if w.label == label)


@pytest.mark.e2e
def test_identity_config_train_board_chat_merge(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_model)

    # ---- data: identity builder
    at = page("data").run()
    at.radio(key="data_tool").set_value("identity").run()
    at.text_input(key="id_name").set_value("小天")
    at.number_input(key="id_repeat").set_value(1)
    at.button(key="id_build").click().run()
    assert not at.exception
    data = tmp_path / "data" / "identity.jsonl"
    assert data.is_file() and sum(1 for _ in data.open()) > 100
    assert any("identity.jsonl" in s.value for s in at.success)

    # ---- config: the tiny recipe, a short run, saved
    at = page("config").run()
    assert not at.exception
    at.radio(key="config_section").set_value("schedule").run()  # one form section at a time, as a user clicks
    by_label(at.number_input, "max_steps").set_value(40)  # the tiny base already chats: a few steps move little
    at.radio(key="config_section").set_value("evaluation").run()
    by_label(at.number_input, "evaluation_freq").set_value(20)
    at.radio(key="config_section").set_value("saving").run()
    by_label(at.number_input, "save_steps").set_value(20)
    at.run()
    at.button(key="save_config").click().run()
    assert not at.exception
    cfg = tmp_path / "configs" / "tiny_chat_lora_identity_e3_copy.yaml"
    assert cfg.is_file()
    text = cfg.read_text(encoding="utf-8")
    assert "max_steps: 40" in text and "evaluation_freq: 20" in text and "save_steps: 20" in text and str(data) in text

    # ---- train: start from the page, wait on the run dir, the board shows metrics and answers
    at = page("train").run()
    at.button(key="start_run").click().run()
    assert not at.exception
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    run = runs[0]
    from core.jobs import run_state

    deadline = time.time() + 300
    while run_state(run)["state"] not in ("finished", "failed") and time.time() < deadline:
        time.sleep(1)
    assert run_state(run)["state"] == "finished", (run / "train.log").read_text()[-3000:]
    at = page("train").run()
    assert not at.exception
    loss = by_label(at.metric, "loss").value
    assert loss not in ("–", "") and float(loss) > 0
    assert at.table, "the run list and the evaluation grid are tables"
    grid = at.table[-1].value
    n_inputs = len(yaml.safe_load(cfg.read_text())["evaluation_inputs"])  # identity and everyday prompts
    assert list(grid.index) == [0, 20, 40] and grid.shape[1] == n_inputs == 4

    # ---- chat A/B: base on the left, the final adapter on the right, one prompt, answers on both sides
    at = page("chat").run()
    right = next(s for s in at.selectbox if s.key and s.key.startswith("right:"))
    adapter = next(o for o in right.options if o.endswith("· adapter"))
    right.set_value(adapter)
    at.run()
    at.sidebar.number_input[1].set_value(24)  # max new tokens
    at.chat_input[0].set_value("你是谁").run()
    assert not at.exception
    answers = [m for m in at.chat_message if m.name == "assistant"]
    assert len(answers) == 2
    texts = [m.markdown[0].value for m in answers]
    assert all(t.strip() for t in texts)
    assert texts[0] != texts[1], texts  # forty steps moved the adapter away from the base

    # ---- merge: the adapter into the tiny base, checked
    at = page("merge").run()
    at.button(key="merge_go").click().run()
    assert not at.exception
    assert any("Check passed" in s.value for s in at.success), [e.value for e in at.error]
    assert any((tmp_path / "merged").glob("*/config.json"))
