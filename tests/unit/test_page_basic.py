"""AppTest for the Home, Data, Config and Train pages: each renders without an exception in both
languages, shows its main controls, and one action does what it says (files land in the workspace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parents[2] / "pages"


def page(name: str, lang: str = "en") -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120)
    at.query_params["lang"] = lang
    return at


@pytest.mark.parametrize("name", ["home", "data", "config", "train", "chat", "merge", "publish"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_page_renders(ws, name, lang):
    at = page(name, lang).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title, "every page has a title"
    assert at.sidebar.radio[0].label == "Language / 语言"
    if lang == "zh":
        assert any("\u4e00" <= c <= "\u9fff" for c in at.title[0].value)


def test_home_env_and_tiny_default(ws):
    at = page("home").run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert {"GPU", "CUDA", "Memory free", "Disk free"} <= set(labels)
    assert at.radio(key="model_src").options == ["Built-in tiny model", "Local folder", "Hugging Face",
                                                  "ModelScope 魔搭"] or at.radio(key="model_src").options
    at.button(key="use_tiny").click().run()
    state = json.loads((ws / "studio.json").read_text())
    assert Path(state["model"]).resolve() == (ws / "models" / "tiny").resolve()


def test_home_local_folder_is_checked(ws, tmp_path_factory):
    at = page("home").run()
    at.radio(key="model_src").set_value("local").run()
    empty = tmp_path_factory.mktemp("not_a_model")
    at.text_input(key="local_path").set_value(str(empty))
    at.button(key="use_folder").click().run()
    assert any("config.json" in e.value for e in at.error)


def test_home_offline_hub_download_says_so(ws, monkeypatch):
    import core.models

    monkeypatch.setattr(core.models, "is_online", lambda host="", timeout=3.0: False)
    at = page("home").run()
    at.radio(key="model_src").set_value("modelscope").run()
    at.text_input(key="hub_id").set_value("Shanghai_AI_Laboratory/internlm2-chat-1_8b")
    at.button(key="download").click().run()
    assert any("offline" in e.value for e in at.error)
    assert not (ws / "models" / ".downloads").exists()  # nothing started


def test_data_identity_then_inspect_shows_report(ws):
    at = page("data").run()
    at.radio(key="data_tool").set_value("identity").run()
    at.text_input(key="id_name").set_value("Nova")
    at.number_input(key="id_repeat").set_value(1)
    at.slider(key="id_mix").set_value(0.0)
    at.button(key="id_build").click().run()
    assert not at.exception
    out = ws / "data" / "identity.jsonl"
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all("Nova" in r["messages"][-1]["content"] for r in rows)
    at = page("data").run()  # a fresh session finds it as the current data file (state on disk)
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Samples"] == str(len(rows))
    assert any("valid" in s.value for s in at.success)


def test_data_validation_lists_line_numbers(ws):
    bad = ws / "data" / "bad.jsonl"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                   '{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    (ws / "studio.json").write_text(json.dumps({"data": str(bad)}))
    at = page("data").run()
    assert not at.exception
    assert at.error and "1 problems" in at.error[0].value
    assert f"{bad}:2:" in at.code[0].value


def test_data_replace_preview_and_apply(ws):
    src = ws / "data" / "a.jsonl"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text('{"messages": [{"role": "user", "content": "who"}, {"role": "assistant", "content": "I am Bob"}]}\n')
    (ws / "studio.json").write_text(json.dumps({"data": str(src)}))
    at = page("data").run()
    at.radio(key="data_tool").set_value("replace").run()
    at.text_input(key="rep_old").set_value("Bob")
    at.text_input(key="rep_new").set_value("Ann")
    at.button(key="rep_apply").click().run()
    assert not at.exception
    assert "I am Ann" in (ws / "data" / "a_replaced.jsonl").read_text()


def test_config_yaml_error_names_field_and_save(ws):
    at = page("config").run()
    assert not at.exception
    assert at.radio(key="config_section").value == "model"
    assert any(s.label == "model_hub" for s in at.selectbox)
    assert not any(n.label == "lora_r" for n in at.number_input), "one section drawn at a time"
    assert not any(a.label == "YAML" for a in at.text_area), "the YAML editor only when chosen"
    assert "python -m studio train" in at.code[-1].value
    at.radio(key="config_section").set_value("method").run()
    assert any(n.label == "lora_r" for n in at.number_input)
    at.radio(key="config_view").set_value("yaml").run()
    yaml_box = next(a for a in at.text_area if a.label == "YAML")
    yaml_box.set_value(yaml_box.value.replace("lora_r: 16", "lora_r: -3")).run()
    assert any("lora_r" in e.value for e in at.error)
    assert at.button(key="save_config").disabled, "an invalid config cannot be saved"
    at = page("config").run()
    at.button(key="save_config").click().run()
    saved = ws / "configs" / "tiny_chat_lora_identity_e3_copy.yaml"
    assert saved.is_file()
    from core.config import load_config

    assert load_config(saved).lora_r == 16


def test_config_sections_keep_edits_and_yaml_round_trips(ws):
    from core.config import load_config

    at = page("config").run()
    at.radio(key="config_section").set_value("method").run()
    next(n for n in at.number_input if n.label == "lora_r").set_value(8)
    # the edit and the switch to another section in one rerun, as a fast click after typing sends them
    at.radio(key="config_section").set_value("schedule").run()
    next(n for n in at.number_input if n.label == "max_steps").set_value(7)
    next(i for i in at.text_input if i.label == "lr").set_value("-1").run()
    assert any("lr" in e.value for e in at.error)
    at.radio(key="config_section").set_value("saving").run()
    assert any("lr" in e.value and "Schedule" in e.value for e in at.error), "names the section off screen"
    at.radio(key="config_section").set_value("schedule").run()
    assert next(i for i in at.text_input if i.label == "lr").value == "-1", "the text as typed, not reset"
    next(i for i in at.text_input if i.label == "lr").set_value("3e-4").run()
    assert not at.error
    at.radio(key="config_view").set_value("yaml").run()
    yaml_box = next(a for a in at.text_area if a.label == "YAML")
    assert "lora_r: 8" in yaml_box.value and "max_steps: 7" in yaml_box.value and "lr: 0.0003" in yaml_box.value
    yaml_box.set_value(yaml_box.value.replace("lora_r: 8", "lora_r: 4")).run()
    assert not at.error
    at.radio(key="config_view").set_value("form").run()
    at.radio(key="config_section").set_value("method").run()
    assert next(n for n in at.number_input if n.label == "lora_r").value == 4, "a valid YAML edit shows in the form"
    at.button(key="save_config").click().run()
    assert not at.exception
    cfg = load_config(ws / "configs" / "tiny_chat_lora_identity_e3_copy.yaml")
    assert (cfg.lora_r, cfg.max_steps, cfg.lr) == (4, 7, 3e-4)


def test_train_page_start_error_names_the_field(ws):
    from core.config import RunConfig, save_config

    cfg = RunConfig(pretrained_model_name_or_path="tiny", data_path=str(ws / "data" / "missing.jsonl"))
    save_config(cfg, ws / "configs" / "c.yaml")
    at = page("train").run()
    assert not at.exception
    assert at.button(key="start_run")
    at.button(key="start_run").click().run()
    assert any("data_path" in e.value for e in at.error)
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_train_page_says_when_the_loss_diverged(ws, lang):
    import time

    from core import rundir

    run = ws / "runs" / "20260101-000000-nan"
    run.mkdir(parents=True)
    rundir.write_status(run, state="running", run_id=run.name, step=9, max_steps=100, pid=None,
                        loss_nonfinite_step=9, updated_at=time.time())
    at = page("train", lang).run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(w.value for w in at.warning)
    assert ("step 9" in text) if lang == "en" else ("第 9 步" in text)


@pytest.mark.parametrize("name", ["home", "train", "chat", "merge", "publish"])
def test_every_page_lists_an_unreadable_run_beside_the_others(ws, name):
    import shutil

    from core import rundir

    runs = ws / "runs"
    good = runs / "20260101-000001-good"
    good.mkdir(parents=True)
    rundir.write_status(good, state="finished", run_id=good.name, step=8, max_steps=8)
    for bad, content in (("20260101-000002-bytes", b"\xff\xfe\x80"), ("20260101-000003-types", b'{"state": 5}'),
                         ("20260101-000004-list", b"[]")):
        (runs / bad).mkdir()
        (runs / bad / rundir.STATUS).write_bytes(content)
    if name in ("chat", "merge", "publish"):  # they list runs that have an adapter: give the broken ones one
        for d in runs.iterdir():
            shutil.copytree(ws / "models" / "tiny", d / rundir.ADAPTER, dirs_exist_ok=True)
            (d / rundir.ADAPTER / "adapter_config.json").write_text("{}")
    at = page(name).run()
    assert not at.exception, [e.value for e in at.exception]
    if name in ("home", "train"):
        shown = " ".join(x.value.to_csv() for x in (*at.dataframe, *at.table))
        assert "good" in shown and "unreadable" in shown and "bytes" in shown
