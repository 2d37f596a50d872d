"""validate_file and the bad-input corpus (tests/fixtures/bad_data), through the library and the CLI.

    .venv/bin/python -m pytest tests/unit/test_data_validate.py
"""

import json
import re
from pathlib import Path

import pytest

from core.data import format_report, read_samples, validate_file, write_samples
from core.errors import DataError
from studio.cli import main

BAD = Path(__file__).resolve().parents[1] / "fixtures" / "bad_data"
# file -> (line, what the message says)
BROKEN = {
    "truncated.jsonl": (3, "truncated JSON"),
    "truncated_array.json": (3, "truncated JSON"),
    "wrong_types.jsonl": (2, "messages[0].content: must be text, got int"),
    "wrong_types_messages.jsonl": (1, "messages: must be a list"),
    "empty_conversation.jsonl": (2, "empty conversation"),
    "empty_messages.jsonl": (2, "empty conversation"),
    "missing_image.json": (16, "image: image not found"),
    "non_utf8.jsonl": (2, "not UTF-8"),
    "no_assistant.jsonl": (1, "no assistant turn"),
    "bad_role.jsonl": (1, "messages[0].role: unknown role"),
    "unknown_fields.jsonl": (1, "cannot tell the format"),
}
ACCEPTED = {"bom.jsonl": 2, "crlf.jsonl": 2, "bom_crlf_array.json": 2}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_raises_naming_the_line(name):
    line, what = BROKEN[name]
    with pytest.raises(DataError) as e:
        list(read_samples(BAD / name))
    assert e.value.line == line and what in str(e.value)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_cli_one_error_exit_1(name, tmp_path, capsys):
    line, what = BROKEN[name]
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(BAD / name), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and re.match(rf"error: \S*{re.escape(name)}:{line}: ", err[0]) and what in err[0]
    assert not out.exists()
    assert main(["data", "validate", str(BAD / name)]) == 1
    errs = [ln for ln in capsys.readouterr().err.splitlines() if re.match(rf"\S*{re.escape(name)}:\d+: ", ln)]
    assert len(errs) == 1 and f"{name}:{line}: " in errs[0]


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_bom_and_crlf_are_accepted(name, tmp_path):
    r = validate_file(BAD / name)
    assert r["ok"] and r["samples"] == ACCEPTED[name]
    s = list(read_samples(BAD / name))
    assert all("\r" not in m["content"] and "\ufeff" not in m["content"] for x in s for m in x["messages"])


def test_ten_megabyte_line(tmp_path, capsys):
    p = tmp_path / "huge.jsonl"
    with open(p, "w") as f:
        f.write('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
        f.write('{"messages": [{"role": "user", "content": "' + "x" * (10 << 20) + '"}]}\n')
    with pytest.raises(DataError, match="line is longer than 8 MB") as e:
        list(read_samples(p))
    assert e.value.line == 2
    assert main(["data", "convert", str(p), "-o", str(tmp_path / "o.jsonl")]) == 1
    assert "huge.jsonl:2: line is longer" in capsys.readouterr().err


def test_validate_collects_every_problem(tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    lines = [json.dumps(good), "{oops", json.dumps({"messages": []}), json.dumps(good),
             json.dumps({"messages": [{"role": "user", "content": 1}]})]
    p = tmp_path / "mixed.jsonl"
    p.write_text("\n".join(lines) + "\n")
    r = validate_file(p)
    assert r["samples"] == 2 and r["turns"] == 4 and not r["ok"]
    assert [e.split(": ")[0].rsplit(":", 1)[1] for e in r["errors"]] == ["2", "3", "5"]
    assert sum(r["dropped"].values()) == 3


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from core.tiny import build_tokenizer

    return build_tokenizer()


def test_token_lengths_with_chat_template(tiny_tokenizer, tmp_path):
    samples = [{"messages": [{"role": "user", "content": "hi " * k}, {"role": "assistant", "content": "ok"}]}
               for k in range(1, 101)]
    p = tmp_path / "t.jsonl"
    write_samples(samples, p)
    r = validate_file(p, tokenizer=tiny_tokenizer, max_length=60)
    t = r["tokens"]
    texts = [tiny_tokenizer.apply_chat_template(s["messages"], tokenize=False) for s in samples]
    lens = [len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert t["percentiles"]["max"] == max(lens) and t["percentiles"]["min"] == min(lens)
    assert t["truncated"] == sum(1 for v in lens if v > 60) > 0
    assert sum(h["count"] for h in t["histogram"]) == 100
    assert any(h["to"] == 60 for h in t["histogram"])


def test_validate_cli_with_tokenizer_folder(tiny_tokenizer, tmp_path, capsys):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    p = tmp_path / "t.jsonl"
    write_samples([{"messages": [{"role": "user", "content": "你好 " * 50}, {"role": "assistant", "content": "ok"}]}] * 3, p)
    assert main(["data", "validate", str(p), "--tokenizer", str(tmp_path / "tok"), "--max-length", "16", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["tokens"]["truncated"] == 3 and r["samples"] == 3
    assert main(["data", "validate", str(p), "--tokenizer", str(tmp_path / "nope")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_tokenizer_remote_code_only_when_asked(tmp_path, monkeypatch):
    import transformers

    seen = []

    def fake(path, **kw):
        seen.append(kw.get("trust_remote_code"))
        raise OSError("stop here")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    from core.data.validate import _load_tokenizer

    for kw in ({}, {"trust_remote_code": True}):
        with pytest.raises(DataError, match="cannot load a tokenizer"):
            _load_tokenizer(str(tmp_path), **kw)
    assert seen == [False, True]


def test_validate_reports_ignored_fields_and_media(tmp_path):
    rec = {"id": 7, "messages": [{"role": "user", "content": "<audio>what?"}, {"role": "assistant", "content": "rain"}],
           "audios": ["https://example.com/a.wav"]}
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    r = validate_file(p)
    assert r["ok"] and r["ignored"] == {"id": 1} and r["media"]["audios"] == 1
    text = format_report(r)
    assert "1 audios" in text and "ignored: id (1 rows)" in text
