"""The zh/en table: both languages for every key, the same placeholders, and every key a page asks for exists."""

from __future__ import annotations

import re
import string
from pathlib import Path

from studio.ui.i18n import S, tr

REPO = Path(__file__).resolve().parents[2]
DYNAMIC = {  # keys built at run time: prefix -> the suffixes the code uses
    "config.from_": ["recipe", "saved"],
    "config.section_": ["model", "data", "method", "schedule", "saving", "evaluation", "system"],
    "data.lang_": ["both", "zh", "en"],
    "home.src_": ["tiny", "local", "hf", "modelscope"],
    "step.": ["model", "data", "config", "train", "chat", "merge", "publish"],
    "state.": ["queued", "running", "stopping", "stopped", "finished", "failed"],
    "train.": ["loss", "lr", "grad_norm"],
    "nav.": ["home", "data", "config", "train", "chat", "merge", "publish"],
}


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def test_both_languages_have_every_key_with_the_same_placeholders():
    for key, pair in S.items():
        assert isinstance(pair, tuple) and len(pair) == 2, key
        en, zh = pair
        assert en.strip() and zh.strip(), key
        assert _fields(en) == _fields(zh), key


def test_every_key_used_by_the_ui_exists():
    sources = list((REPO / "pages").glob("*.py")) + list((REPO / "studio").rglob("*.py"))
    used = set()
    for p in sources:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_]+)["']""", p.read_text(encoding="utf-8")))
    assert len(used) > 150
    missing = sorted(k for k in used if k not in S and k not in DYNAMIC)
    assert not missing, missing
    for prefix, suffixes in DYNAMIC.items():
        for s in suffixes:
            assert prefix + s in S, prefix + s


def test_chinese_side_is_chinese():
    zh_like = sum(bool(re.search(r"[\u4e00-\u9fff]", zh)) for _, zh in S.values())
    assert zh_like / len(S) > 0.9


def test_tr_formats():
    assert tr("train.started", "zh", run="r1") == "已启动训练 r1。"
    assert tr("train.started", "en", run="r1") == "Started run r1."
