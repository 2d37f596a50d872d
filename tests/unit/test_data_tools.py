"""replace / repeat / LLaVA builder / dataset_info.json. `.venv/bin/python -m pytest tests/unit/test_data_tools.py`"""

import json
from pathlib import Path

import pytest
from PIL import Image

from core.data import (
    build_llava,
    parse_qa_text,
    read_dataset_info,
    read_samples,
    repeat_file,
    repeat_samples,
    replace_in_file,
    write_samples,
)
from core.errors import DataError

REFDATA = Path(__file__).resolve().parents[2].parent / "shared" / "refdata"
needs_refdata = pytest.mark.skipif(not REFDATA.is_dir(), reason="../shared/refdata not present")


def _keys(obj):
    if isinstance(obj, dict):
        return [(k, _keys(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [_keys(v) for v in obj]
    return None


@needs_refdata
def test_replace_assistant_tuner(tmp_path):
    src = REFDATA / "xtuner/assistant_Tuner.jsonl"
    expected = src.read_text(encoding="utf-8").count("尖米")
    dry = replace_in_file(src, "尖米", "pzhang", None, dry_run=True)
    assert dry["replacements"] == expected > 1500 and dry["records"] == 1500
    assert dry["diff"] and "- " in dry["diff"][0] and "pzhang" in dry["diff"][0]
    out = tmp_path / "out.jsonl"
    r = replace_in_file(src, "尖米", "pzhang", out)
    assert r["replacements"] == expected
    text = out.read_text(encoding="utf-8")
    assert "尖米" not in text and text.count("pzhang") == expected
    old_rows = [json.loads(ln) for ln in src.read_text(encoding="utf-8").splitlines()]
    new_rows = [json.loads(ln) for ln in text.splitlines()]
    assert [_keys(r) for r in old_rows] == [_keys(r) for r in new_rows]  # no key changed
    assert len(list(read_samples(out))) == 1500


def test_replace_leaves_keys_and_paths(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"image": "cat/cat.jpg", "cat": "a cat", "conversations": [
        {"from": "human", "value": "cat?"}, {"from": "gpt", "value": "cat cat"}]}]))
    r = replace_in_file(p, "cat", "dog", tmp_path / "o.json")
    rec = json.loads((tmp_path / "o.json").read_text())[0]
    assert r["replacements"] == 4 and rec["image"] == "cat/cat.jpg" and rec["cat"] == "a dog"
    assert rec["conversations"][1]["value"] == "dog dog"


def test_repeat(tmp_path):
    s = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": str(k)}]} for k in range(3)]
    assert [x["messages"][1]["content"] for x in repeat_samples(s, 2)] == ["0", "1", "2", "0", "1", "2"]
    src = tmp_path / "s.jsonl"
    write_samples(s, src)
    r = repeat_file(src, 4, tmp_path / "r.jsonl")
    assert r["written"] == 12 and len(list(read_samples(tmp_path / "r.jsonl"))) == 12


@needs_refdata
def test_repeat_llava_like_the_tutorial(tmp_path):
    out = tmp_path / "repeated_data.json"
    r = repeat_file(REFDATA / "xtuner/llava_data/unique_data.json", 200, out)
    assert r["written"] == 1200 and isinstance(json.loads(out.read_text()), list)


def _img(d: Path, name: str, size=(8, 6)) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(d / name)
    return d / name


def test_qa_text_blocks():
    blocks = parse_qa_text("问：这是什么？\n答：一只猫。\n它在睡觉。\nQ: Color?\nA: Grey.\n---\nQ: Where?\nA: Sofa.\n")
    assert blocks == [{"image": None, "qa": [("这是什么？", "一只猫。\n它在睡觉。"), ("Color?", "Grey.")]},
                      {"image": None, "qa": [("Where?", "Sofa.")]}]
    with pytest.raises(DataError, match="qa:1: a question without an answer"):
        parse_qa_text("Q: lonely\n")


def test_qa_json_from_a_chat_model():
    blocks = parse_qa_text('```json\n[{"question": "What?", "answer": "A cat."}, {"q": "Why?", "a": "Tired."}]\n```')
    assert blocks[0]["qa"] == [("What?", "A cat."), ("Why?", "Tired.")]
    blocks = parse_qa_text(json.dumps({"a.png": [{"question": "x", "answer": "y"}], "b.png": [["p", "q"]]}))
    assert [b["image"] for b in blocks] == ["a.png", "b.png"]


def test_build_llava_single_image(tmp_path):
    _img(tmp_path / "imgs", "eye.jpg", (40, 30))
    qa = tmp_path / "qa.txt"
    qa.write_text("Q: Describe this image.\nA: An eye exam.\n\nQ: What tool?\nA: A phoropter.\n", encoding="utf-8")
    samples, rep = build_llava(tmp_path / "imgs", qa, repeat=3)
    assert len(samples) == 3 and rep["images"][0]["width"] == 40 and rep["images"][0]["height"] == 30
    s = samples[0]
    assert s["messages"][0]["content"] == "<image>\nDescribe this image." and "<image>" not in s["messages"][2]["content"]
    out = tmp_path / "out" / "llava.json"
    write_samples(samples, out, to="llava")
    assert len(list(read_samples(out))) == 3


def test_build_llava_several_images_need_names(tmp_path):
    _img(tmp_path / "imgs", "a.png")
    _img(tmp_path / "imgs", "b.png")
    qa = tmp_path / "qa.txt"
    qa.write_text("Q: x\nA: y\n", encoding="utf-8")
    with pytest.raises(DataError, match="2 images"):
        build_llava(tmp_path / "imgs", qa)
    qa.write_text("image: a.png\nQ: x\nA: y\nimage: b.png\nQ: z\nA: w\n", encoding="utf-8")
    samples, rep = build_llava(tmp_path / "imgs", qa)
    assert [Path(s["images"][0]).name for s in samples] == ["a.png", "b.png"]
    qa.write_text("image: c.png\nQ: x\nA: y\n", encoding="utf-8")
    with pytest.raises(DataError, match="c.png is not in"):
        build_llava(tmp_path / "imgs", qa)


def test_build_llava_broken_image(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"not an image")
    qa = tmp_path / "qa.txt"
    qa.write_text("Q: x\nA: y\n", encoding="utf-8")
    with pytest.raises(DataError, match="not a readable image"):
        build_llava(tmp_path / "imgs", qa)


@needs_refdata
def test_dataset_info():
    info = read_dataset_info(REFDATA / "llamafactory/dataset_info.json")
    assert info["glaive_toolcall_zh_demo"]["fmt"] == "sharegpt"
    assert info["mllm_demo"]["fmt"] == "llamafactory_mm"
    assert info["alpaca_zh_demo"]["fmt"] == "alpaca"
    counts = {}
    for name, e in info.items():
        if Path(e["path"]).is_file():
            counts[name] = sum(1 for _ in read_samples(e["path"], e["fmt"], e["mapping"]))
    assert counts == {"identity": 91, "alpaca_en_demo": 999, "alpaca_zh_demo": 1000, "glaive_toolcall_en_demo": 300,
                      "glaive_toolcall_zh_demo": 300, "mllm_demo": 6}


def test_dataset_info_columns_become_mapping(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {
        "file_name": "mine.json", "columns": {"prompt": "ask", "response": "reply", "system": "sys"}}}))
    (tmp_path / "mine.json").write_text(json.dumps([{"ask": "q", "reply": "a", "sys": "s"}]))
    e = read_dataset_info(tmp_path / "dataset_info.json")["mine"]
    assert e["mapping"] == {"instruction": "ask", "output": "reply", "system": "sys"}
    s = next(read_samples(e["path"], e["fmt"], e["mapping"]))
    assert [m["content"] for m in s["messages"]] == ["s", "q", "a"]


def test_dataset_info_every_variant(tmp_path):
    """ranking (alpaca and sharegpt), kto_tag, pretraining {"prompt": "text"}, custom role/content tags."""
    info = {
        "rank_alpaca": {"file_name": "ra.json", "ranking": True,
                        "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
        "kto": {"file_name": "k.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
                "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
        "pt": {"file_name": "pt.jsonl", "columns": {"prompt": "text"}},
        "tagged": {"file_name": "tg.json", "formatting": "sharegpt", "columns": {"messages": "dialog", "system": "sys"},
                   "tags": {"role_tag": "speaker", "content_tag": "says", "user_tag": "USER", "assistant_tag": "BOT",
                            "observation_tag": "RESULT", "function_tag": "CALL"}},
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    (tmp_path / "ra.json").write_text(json.dumps([{"instruction": "q", "input": "", "chosen": "good", "rejected": "bad"}]))
    (tmp_path / "k.json").write_text(json.dumps([
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}], "label": True},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}], "label": False}]))
    (tmp_path / "pt.jsonl").write_text('{"text": "plain words"}\n')
    (tmp_path / "tg.json").write_text(json.dumps([{"sys": "S", "dialog": [
        {"speaker": "USER", "says": "weather?"}, {"speaker": "CALL", "says": '{"name": "w", "arguments": {}}'},
        {"speaker": "RESULT", "says": "sunny"}, {"speaker": "BOT", "says": "Sunny."}]}]))
    info["prompt_only"] = {"file_name": "po.json", "columns": {"prompt": "question"}}  # response stays "output"
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    (tmp_path / "po.json").write_text(json.dumps([{"question": "q", "output": "a"}]))
    e = read_dataset_info(tmp_path / "dataset_info.json")
    assert e["rank_alpaca"]["ranking"] and e["pt"]["fmt"] == "pretrain_text" and e["prompt_only"]["fmt"] == "alpaca"
    assert [m["content"] for m in read_samples(e["prompt_only"]["path"], "alpaca", e["prompt_only"]["mapping"])
            .__next__()["messages"]] == ["q", "a"]

    def read(name, **kw):
        x = e[name]
        return list(read_samples(x["path"], x["fmt"], x["mapping"], speakers=x["speakers"], **kw))

    with pytest.raises(DataError, match="--take chosen"):
        read("rank_alpaca")
    assert read("rank_alpaca", take="chosen")[0]["messages"][-1]["content"] == "good"
    with pytest.raises(DataError, match="--take desirable"):
        read("kto")
    assert [s["messages"][-1]["content"] for s in read("kto", take="desirable")] == ["good"]
    assert read("pt")[0]["messages"] == [{"role": "pretrain", "content": "plain words"}]
    tg = read("tagged")[0]["messages"]
    assert [m["role"] for m in tg] == ["system", "user", "assistant", "tool", "assistant"]
    assert tg[2]["tool_calls"][0]["function"]["name"] == "w"


def test_check_output_refuses_inputs_and_existing_files(tmp_path):
    from core.data import check_output

    src = tmp_path / "a.jsonl"
    src.write_text("x\n")
    with pytest.raises(DataError, match="the output is the input file"):
        check_output(tmp_path / "." / "a.jsonl", [src], overwrite=True)
    with pytest.raises(DataError, match="--overwrite"):
        check_output(src, [])
    check_output(src, [], overwrite=True)
    check_output(tmp_path / "new.jsonl", [src])


def test_repeat_copies_preference_and_kto_files_whole(tmp_path):
    real = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "messages" / "llamafactory"
    r = repeat_file(real / "kto_en_demo.json", 2, tmp_path / "k.json")
    rows = json.loads((tmp_path / "k.json").read_text())
    assert r["records"] == 5 and len(rows) == 10 and [x["label"] for x in rows].count(False) == 4
    r = repeat_file(real / "dpo_en_demo.json", 2, tmp_path / "d.json")
    assert r["written"] == 6 and "rejected" in json.loads((tmp_path / "d.json").read_text())[0]
