"""AppTest for the Data page's inspection of a file: media kinds and the fields nothing reads are shown,
in both languages, and the preview names each row's media and unused fields.

    .venv/bin/python -m pytest -q tests/unit/test_data_page.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parents[2] / "pages"


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace whose chosen model is a word-level tokenizer made here (the page only needs a tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path))
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    model = tmp_path / "models" / "words"
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(model)
    (model / "config.json").write_text("{}")
    (tmp_path / "studio.json").write_text(json.dumps({"model": str(model)}))
    return tmp_path


def _page(lang: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / "data.py"), default_timeout=120)
    at.query_params["lang"] = lang
    return at


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_data_page_shows_media_kinds_and_ignored_fields(ws, lang):
    f = ws / "data" / "mm.jsonl"
    f.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": 1, "category": "x", "messages": [{"role": "user", "content": "<video>What is it?"},
                                                    {"role": "assistant", "content": "A dog."}],
             "videos": ["https://example.com/a.mp4"]},
            {"id": 2, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    state = json.loads((ws / "studio.json").read_text())
    (ws / "studio.json").write_text(json.dumps(state | {"data": str(f)}))
    at = _page(lang).run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(w.value for w in at.warning)
    assert "category (1" in text and "id (2" in text
    shown = " ".join(str(m.value) for m in at.markdown)
    assert ("1 videos" if lang == "en" else "1 个视频") in shown
    df = at.dataframe[0].value
    media_col = "media" if lang == "en" else "媒体"
    ignored_col = "ignored fields" if lang == "en" else "未读取字段"
    assert list(df[media_col]) == ["https://example.com/a.mp4", ""]
    assert list(df[ignored_col]) == ["category, id", "id"]
