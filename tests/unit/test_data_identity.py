"""The identity builder and question banks. `.venv/bin/python -m pytest tests/unit/test_data_identity.py`"""

from pathlib import Path

import pytest

from core.data import build_identity, fill_placeholders, identity_answer, question_bank, read_samples

REFDATA = Path(__file__).resolve().parents[2].parent / "shared" / "refdata"


def test_banks_are_big_enough_and_unique():
    zh, en = question_bank("zh"), question_bank("en")
    assert len(zh) >= 100 and len(en) >= 50
    assert len(set(zh)) == len(zh) and len(set(en)) == len(en)
    assert all(not q.startswith("#") for q in zh + en)


def test_bank_is_our_own_wording():
    ql = REFDATA / "xtuner/Q_list.txt"
    if not ql.is_file():
        pytest.skip("refdata missing")
    theirs = {ln.strip().rstrip("?？") for ln in ql.read_text(encoding="utf-8").splitlines()}
    assert not [q for q in question_bank("zh") if q.rstrip("?？") in theirs]


def test_every_answer_names_the_identity():
    out = build_identity("小天", "Alice", repeat=2, seed=3)
    assert len(out) == 2 * (len(question_bank("zh")) + len(question_bank("en")))
    for s in out:
        q, a = s["messages"][0]["content"], s["messages"][1]["content"]
        core = identity_answer("小天", "Alice", "en" if q.isascii() else "zh")
        assert core in a
    assert identity_answer("小天", "Alice", "zh") == "我是小天，由Alice打造的智能助手"
    assert len({s["messages"][1]["content"] for s in out}) > 5  # templates vary


def test_deterministic_and_seeded():
    a = build_identity("N", "A", seed=1)
    assert a == build_identity("N", "A", seed=1)
    assert a != build_identity("N", "A", seed=2)


def test_system_prompt_and_custom_questions():
    out = build_identity("N", "A", questions=["你是谁？", "Who are you?"], system="SYS", lang="zh")
    assert len(out) == 2 and all(s["messages"][0] == {"role": "system", "content": "SYS"} for s in out)


def test_mix_ratio():
    general = [{"messages": [{"role": "user", "content": f"g{k}"}, {"role": "assistant", "content": "x"}]}
               for k in range(1000)]
    out = build_identity("N", "A", lang="en", mix=general, ratio=0.25, seed=0)
    n_id = len(question_bank("en"))
    n_gen = sum(1 for s in out if s["messages"][0]["content"].startswith("g"))
    assert len(out) - n_gen == n_id and n_gen == round(n_id * 0.25 / 0.75)
    # a small pool is reused rather than running short
    out = build_identity("N", "A", lang="en", mix=general[:3], ratio=0.5)
    assert sum(1 for s in out if s["messages"][0]["content"].startswith("g")) == n_id


@pytest.mark.parametrize("kw", [{"repeat": 0}, {"ratio": 1.0}, {"ratio": -0.1}])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        build_identity("N", "A", **kw)


def test_llamafactory_placeholders():
    p = REFDATA / "llamafactory/identity.json"
    if not p.is_file():
        pytest.skip("refdata missing")
    tpl = list(read_samples(p))
    assert len(tpl) == 91
    filled = fill_placeholders(tpl[0], "小天", "Alice")
    assert "小天" in filled["messages"][1]["content"] and "{{" not in filled["messages"][1]["content"]
    out = build_identity("小天", "Alice", questions=["你是谁？"], extra=tpl)
    assert len(out) == 92 and not any("{{name}}" in m["content"] for s in out for m in s["messages"])
