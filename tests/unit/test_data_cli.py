"""`python -m studio data ...` end to end, in process. `.venv/bin/python -m pytest tests/unit/test_data_cli.py`"""

import json
from pathlib import Path

import pytest
from PIL import Image

from core.data import identity_answer, read_samples
from studio.cli import main

REFDATA = Path(__file__).resolve().parents[2].parent / "shared" / "refdata"
needs_refdata = pytest.mark.skipif(not REFDATA.is_dir(), reason="../shared/refdata not present")


def test_identity_cli(tmp_path, capsys):
    out = tmp_path / "id.jsonl"
    assert main(["data", "identity", "--name", "小天", "--author", "Alice", "--repeat", "2", "--lang", "zh",
                 "-o", str(out)]) == 0
    rows = list(read_samples(out))
    assert len(rows) >= 200 and all(identity_answer("小天", "Alice", "zh") in r["messages"][1]["content"] for r in rows)
    assert "wrote" in capsys.readouterr().err
    again = tmp_path / "id2.jsonl"
    main(["data", "identity", "--name", "小天", "--author", "Alice", "--repeat", "2", "--lang", "zh", "-o", str(again)])
    assert out.read_bytes() == again.read_bytes()


@needs_refdata
def test_identity_mix_and_template_cli(tmp_path):
    out = tmp_path / "id.jsonl"
    assert main(["data", "identity", "--name", "N", "--lang", "en", "--mix",
                 str(REFDATA / "llamafactory/alpaca_en_demo.json"), "--ratio", "0.5",
                 "--template", str(REFDATA / "llamafactory/identity.json"), "-o", str(out)]) == 0
    rows = list(read_samples(out))
    n_id = 58 + 91
    assert len(rows) == 2 * n_id
    assert main(["data", "identity", "--name", "N", "--ratio", "0.5", "-o", str(out)]) == 2


@needs_refdata
def test_convert_cli_counts_and_formats(tmp_path, capsys):
    out = tmp_path / "a.jsonl"
    assert main(["data", "convert", str(REFDATA / "xtuner/assistant_Tuner.jsonl"), "-o", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["samples"] == 1500 and r["format"] == "xtuner"
    back = tmp_path / "x.jsonl"
    assert main(["data", "convert", str(out), "--to", "xtuner", "-o", str(back)]) == 0
    assert json.loads(back.read_text(encoding="utf-8").splitlines()[0])["conversation"][0]["input"]
    toy = tmp_path / "toy.jsonl"
    assert main(["data", "convert", str(REFDATA / "xtuner/demo_data/multi_turn_1_data.json"), "--map",
                 "system=toy_system", "input=toy_input", "output=toy_output", "-o", str(toy)]) == 0
    assert len(next(read_samples(toy))["messages"]) == 5
    llava = tmp_path / "l" / "llava.json"
    assert main(["data", "convert", str(REFDATA / "xtuner/llava_data/unique_data.json"), "--to", "llava",
                 "-o", str(llava)]) == 0
    assert len(json.loads(llava.read_text())) == 6


@needs_refdata
def test_replace_cli_dry_run_writes_nothing(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["data", "replace", str(REFDATA / "xtuner/assistant_Tuner.jsonl"), "--old", "尖米", "--new",
                 "pzhang", "-o", str(out), "--dry-run"]) == 0
    err = capsys.readouterr().err
    expected = (REFDATA / "xtuner/assistant_Tuner.jsonl").read_text(encoding="utf-8").count("尖米")
    assert f"{expected} replacements" in err and "  - " in err and "  + " in err and not out.exists()


def test_repeat_and_llava_cli(tmp_path, capsys):
    img = tmp_path / "imgs"
    img.mkdir()
    Image.new("RGB", (12, 7)).save(img / "x.png")
    (tmp_path / "qa.txt").write_text("问：图里有什么？\n答：一块黑色。\n", encoding="utf-8")
    out = tmp_path / "llava.json"
    assert main(["data", "llava", "--images", str(img), "--qa", str(tmp_path / "qa.txt"), "--repeat", "5",
                 "-o", str(out)]) == 0
    assert "12x7" in capsys.readouterr().err
    recs = json.loads(out.read_text(encoding="utf-8"))
    assert len(recs) == 5 and recs[0]["image"] == "imgs/x.png"
    assert recs[0]["conversations"][0]["value"].startswith("<image>\n")
    rep = tmp_path / "rep.json"
    assert main(["data", "repeat", str(out), "-n", "3", "-o", str(rep)]) == 0
    assert len(json.loads(rep.read_text())) == 15


def test_help_lists_actions(capsys):
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    out = capsys.readouterr().out
    for verb in ("identity", "convert", "validate", "replace", "repeat", "llava"):
        assert verb in out


def test_identity_and_llava_refuse_an_existing_output_without_overwrite(tmp_path, capsys):
    out = tmp_path / "id.jsonl"
    args = ["data", "identity", "--name", "N", "--lang", "en", "-o", str(out)]
    assert main(args) == 0
    before = out.read_bytes()
    assert main(args) == 1 and "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main([*args, "--name", "M", "--overwrite"]) == 0 and out.read_bytes() != before
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (4, 4)).save(imgs / "a.png")
    qa = tmp_path / "qa.txt"
    qa.write_text("Q: what?\nA: a square\n", encoding="utf-8")
    assert main(["data", "llava", "--images", str(imgs), "--qa", str(qa), "-o", str(qa), "--overwrite"]) == 1
    assert "the output is the input file" in capsys.readouterr().err and qa.read_text().startswith("Q:")
