"""The Config page shows the schema's range errors (issue 19, item 7): a NaN typed as the learning rate
or an evaluation length of 10^8 is named on the page and the config cannot be saved."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = Path(__file__).resolve().parents[2] / "pages" / "config.py"


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A bare workspace: the Config page needs no model (the estimate of `tiny` comes from its table)."""
    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path))
    return tmp_path


def test_config_page_names_a_non_finite_or_out_of_range_number(ws):
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.query_params["lang"] = "en"
    at.run()
    assert not at.exception
    at.radio(key="config_section").set_value("schedule").run()
    next(i for i in at.text_input if i.label == "lr").set_value("nan").run()
    assert any("lr" in e.value and "finite" in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="save_config").disabled
    next(i for i in at.text_input if i.label == "lr").set_value("2e-4").run()
    assert not at.error
    at.radio(key="config_section").set_value("evaluation").run()
    next(n for n in at.number_input if n.label == "eval_max_new_tokens").set_value(100_000_000).run()
    assert any("eval_max_new_tokens" in e.value and "4,096" in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="save_config").disabled
    assert not (ws / "configs").exists() or not any((ws / "configs").iterdir())
