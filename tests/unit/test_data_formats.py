"""Readers and writers of core.data.formats against the real refdata files and small inline cases.

    .venv/bin/python -m pytest tests/unit/test_data_formats.py
"""

import json
from pathlib import Path

import pytest

from core.data import detect_format, read_samples, write_samples
from core.data.formats import family_format
from core.errors import DataError

REFDATA = Path(__file__).resolve().parents[2].parent / "shared" / "refdata"
needs_refdata = pytest.mark.skipif(not REFDATA.is_dir(), reason="../shared/refdata not present")

TOY = {"system": "toy_system", "input": "toy_input", "output": "toy_output"}
# file -> (format, samples, mapping)
REF = {
    "xtuner/assistant_Tuner.jsonl": ("xtuner", 1500, None),
    "xtuner/llava_data/unique_data.json": ("llava", 6, None),
    "xtuner/demo_data/single_turn_data.json": ("xtuner", 2, TOY),
    "xtuner/demo_data/multi_turn_1_data.json": ("xtuner", 2, TOY),
    "xtuner/demo_data/multi_turn_2_data.json": ("openai", 2, None),
    "xtuner/demo_data/pretrain_data.json": ("pretrain_text", 2, {"text": "toy_text"}),
    "xtuner/tests_resource/openai_sft.jsonl": ("openai", 128, None),
    "xtuner/tests_resource/pretrain_example_data.jsonl": ("openai", 3, None),
    "xtuner/tests_resource/mllm_sft_single_image_example_data.jsonl": ("xtuner_mm", 22, None),
    "llamafactory/alpaca_en_demo.json": ("alpaca", 999, None),
    "llamafactory/alpaca_zh_demo.json": ("alpaca", 1000, None),
    "llamafactory/identity.json": ("alpaca", 91, None),
    "llamafactory/glaive_toolcall_en_demo.json": ("sharegpt", 300, None),
    "llamafactory/glaive_toolcall_zh_demo.json": ("sharegpt", 300, None),
    "llamafactory/mllm_demo.json": ("llamafactory_mm", 6, None),
}


@needs_refdata
def test_every_refdata_file_is_covered():
    files = {p.relative_to(REFDATA).as_posix() for p in REFDATA.rglob("*.json*")}
    files -= {f for f in files if f.startswith("xtuner/deepspeed/") or f.endswith("dataset_info.json")}
    assert files == set(REF)


@needs_refdata
@pytest.mark.parametrize("rel", sorted(REF))
def test_refdata_loads_with_count_and_round_trips(rel, tmp_path):
    fmt, count, mapping = REF[rel]
    path = REFDATA / rel
    assert detect_format(path, mapping) == fmt
    samples = list(read_samples(path, mapping=mapping))
    assert len(samples) == count
    for s in samples:
        assert s["messages"] and all(m["role"] in ("system", "user", "assistant", "tool", "pretrain")
                                     for m in s["messages"])
        for img in s.get("images", []):
            assert Path(img).is_file()
    # canonical on disk and back
    out = tmp_path / "canon.jsonl"
    assert write_samples(samples, out) == count
    assert list(read_samples(out)) == samples
    # back to the family's own format, then read again: the same canonical samples
    fam = family_format(fmt)
    back = tmp_path / ("back.json" if fam in ("llava", "alpaca", "sharegpt", "llamafactory_mm") else "back.jsonl")
    assert write_samples(samples, back, to=fam) == count
    assert detect_format(back) == ("openai" if fam == "openai" else fam)
    assert list(read_samples(back)) == samples


@needs_refdata
def test_xtuner_conversation_details():
    s = next(read_samples(REFDATA / "xtuner/assistant_Tuner.jsonl"))
    assert [m["role"] for m in s["messages"]] == ["system", "user", "assistant"]
    assert s["messages"][1]["content"] == "你知道你是人工智能吗?"
    assert "\r" not in s["messages"][2]["content"]


@needs_refdata
def test_multimodal_images_and_placeholders():
    llava = list(read_samples(REFDATA / "xtuner/llava_data/unique_data.json"))
    assert all(s["messages"][0]["content"].startswith("<image>") and len(s["images"]) == 1 for s in llava)
    mm = next(read_samples(REFDATA / "llamafactory/mllm_demo.json"))
    assert len(mm["images"]) == 2 and mm["messages"][2]["content"] == "What are they doing?<image>"
    xm = next(read_samples(REFDATA / "xtuner/tests_resource/mllm_sft_single_image_example_data.jsonl"))
    assert xm["messages"][0]["content"] == "<image>\n图片中的狗是什么颜色？" and len(xm["images"]) == 1


@needs_refdata
def test_sharegpt_tool_roles():
    s = next(read_samples(REFDATA / "llamafactory/glaive_toolcall_en_demo.json"))
    roles = [m["role"] for m in s["messages"]]
    assert "tool" in roles
    call = next(m for m in s["messages"] if m.get("tool_calls"))
    assert call["role"] == "assistant" and call["content"] == ""
    assert call["tool_calls"][0]["function"]["name"] and json.loads(call["tool_calls"][0]["function"]["arguments"])
    assert s["tools"][0]["name"]  # a JSON string in the file, a list of schemas in the sample


@needs_refdata
def test_xtuner_writer_and_pretrain_form(tmp_path):
    out = tmp_path / "x.jsonl"
    write_samples(read_samples(REFDATA / "xtuner/demo_data/pretrain_data.json", mapping={"text": "toy_text"}), out,
                  to="xtuner")
    rec = json.loads(out.read_text().splitlines()[0])
    assert rec["conversation"][0]["input"] == "" and rec["conversation"][0]["output"].startswith("I am an")


def _w(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_alpaca_nooutput_dropped_and_history(tmp_path):
    p = _w(tmp_path, "a.json", json.dumps([
        {"instruction": "q1", "input": "ctx", "output": "a1", "history": [["h", "hh"]], "system": "s"},
        {"instruction": "q2", "input": "", "output": "<nooutput>"}]))
    st = {}
    samples = list(read_samples(p, stats=st))
    assert len(samples) == 1 and st["dropped"] == {"alpaca <nooutput>": 1}
    assert [m["content"] for m in samples[0]["messages"]] == ["s", "h", "hh", "q1\nctx", "a1"]


def test_bare_message_list_json_array_file(tmp_path):
    # a one-line .json holding a list of message lists is still read as records
    p = _w(tmp_path, "m.json", json.dumps([[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]]))
    assert len(list(read_samples(p))) == 1


def test_loss_flag_kept_and_checked(tmp_path):
    rec = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "loss": False},
                        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]}
    p = _w(tmp_path, "l.jsonl", json.dumps(rec) + "\n")
    assert next(read_samples(p))["messages"][1]["loss"] is False
    rec["messages"][1]["loss"] = "no"
    p = _w(tmp_path, "l2.jsonl", json.dumps(rec) + "\n")
    with pytest.raises(DataError, match=r"l2.jsonl:1: messages\[1\].loss"):
        list(read_samples(p))


def test_placeholder_count_must_match_images(tmp_path):
    img = tmp_path / "i.png"
    from PIL import Image

    Image.new("RGB", (2, 2)).save(img)
    rec = {"messages": [{"role": "user", "content": "<image><image>q"}, {"role": "assistant", "content": "a"}],
           "images": ["i.png"]}
    p = _w(tmp_path, "mm.jsonl", json.dumps(rec) + "\n")
    with pytest.raises(DataError, match="1 image.*2 <image>"):
        list(read_samples(p))


def test_failed_conversion_writes_nothing(tmp_path):
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    p = _w(tmp_path, "bad.jsonl", good + "\n" + good + "\n{broken\n")
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match=r"bad.jsonl:3"):
        write_samples(read_samples(p), out)
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*"))


def test_writer_refuses_what_format_cannot_hold(tmp_path):
    s = {"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "{}"},
                      {"role": "assistant", "content": "a"}]}
    with pytest.raises(DataError, match="tool turns cannot be written as xtuner"):
        write_samples([s], tmp_path / "x.jsonl", to="xtuner")
    assert not (tmp_path / "x.jsonl").exists()


def test_mapping_unknown_format_hint(tmp_path):
    p = _w(tmp_path, "u.jsonl", '{"q": "hi", "a": "hello"}\n')
    with pytest.raises(DataError, match="cannot tell the format") as e:
        list(read_samples(p))
    assert "--map" in e.value.hint
    s = next(read_samples(p, mapping={"input": "q", "output": "a"}))
    assert s["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


@needs_refdata
def test_image_found_by_name_is_a_warning():
    from core.data import validate_file

    r = validate_file(REFDATA / "xtuner/tests_resource/mllm_sft_single_image_example_data.jsonl")
    assert r["ok"] and r["images"] == 22
    assert len(r["warnings"]) == 1 and "resource/mscoco_dog_000000319154.jpg" in r["warnings"][0]


def test_detection_reads_past_a_text_only_first_record(tmp_path):
    # a LLaVA array whose first sample has no image was read as sharegpt and failed further down
    from PIL import Image

    Image.new("RGB", (2, 2)).save(tmp_path / "a.png")
    text_only = {"id": "0", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}
    with_img = {"id": "1", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nwhat?"},
                                                               {"from": "gpt", "value": "a square"}]}
    p = _w(tmp_path, "llava.json", json.dumps([text_only] * 14 + [with_img]))
    assert detect_format(p) == "llava"
    samples = list(read_samples(p))
    assert len(samples) == 15 and samples[-1]["images"] == [str(tmp_path / "a.png")]
    # --from still forces a format
    assert detect_format(p) != "sharegpt" and len(list(read_samples(p, "sharegpt"))) == 15


def test_tool_call_only_answer_and_legacy_tool_call_turns(tmp_path):
    rec = {"messages": [{"role": "user", "content": "weather?"},
                        {"role": "assistant", "content": None,
                         "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": {"c": "B"}}}]},
                        {"role": "tool", "content": "sunny", "tool_call_id": "1"},
                        {"role": "assistant", "content": "Sunny."}]}
    legacy = {"messages": [{"role": "user", "content": "weather?"},
                           {"role": "assistant", "content": '{"name": "w", "arguments": {"c": "B"}}', "tool_call": True},
                           {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}]}
    p = _w(tmp_path, "t.jsonl", json.dumps(rec) + "\n" + json.dumps(legacy) + "\n")
    a, b = read_samples(p)
    want = [{"type": "function", "function": {"name": "w", "arguments": '{"c": "B"}'}}]
    assert a["messages"][1] == {"role": "assistant", "content": "", "tool_calls": want}
    assert a["messages"][2]["tool_call_id"] == "1"
    assert b["messages"][1] == {"role": "assistant", "content": "", "tool_calls": want}


def test_media_urls_are_never_made_paths(tmp_path):
    url = "https://raw.githubusercontent.com/x/y/main/cat.png"
    rec = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"},
                                                     {"type": "image_url", "image_url": {"url": url}}]},
                        {"role": "assistant", "content": "a cat"}]}
    p = _w(tmp_path, "u.jsonl", json.dumps(rec) + "\n")
    s = next(read_samples(p))  # check_images stays on: a URL is not a file to look for
    assert s["images"] == [url] and s["messages"][0]["content"] == "what?<image>"
    for to in ("openai", "llamafactory_mm", "xtuner_mm", "sharegpt"):
        out = tmp_path / f"o_{to}.jsonl"
        write_samples([s], out, to=to)
        assert url in out.read_text() and "https:/raw" not in out.read_text()


def test_weights_other_than_0_or_1_are_refused_naming_the_field(tmp_path):
    rec = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0.5}]}
    p = _w(tmp_path, "w.jsonl", json.dumps(rec) + "\n")
    with pytest.raises(DataError, match=r"w.jsonl:1: messages\[1\]\.weight: 0\.5"):
        list(read_samples(p))


def test_classification_labels_refused(tmp_path):
    p = _w(tmp_path, "c.jsonl", json.dumps({"messages": [{"role": "user", "content": "nice"}], "label": 1}) + "\n")
    with pytest.raises(DataError, match="label: 1: a classification label"):
        list(read_samples(p))


def test_writer_names_what_it_cannot_keep_and_refuses_what_training_needs(tmp_path):
    s = {"messages": [{"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a", "reasoning_content": "think"}]}
    with pytest.raises(DataError, match=r"messages\[1\]\.reasoning_content: reasoning content cannot be written as "
                                        r"sharegpt"):
        write_samples([s], tmp_path / "x.json", to="sharegpt")
    s = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "loss": False},
                      {"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]}
    with pytest.raises(DataError, match=r"loss false cannot be written as alpaca"):
        write_samples([s], tmp_path / "x.json", to="alpaca")
    write_samples([s], tmp_path / "x.jsonl", to="xtuner")  # XTuner's output_with_loss holds it
    assert next(read_samples(tmp_path / "x.jsonl"))["messages"][1]["loss"] is False
    st = {}
    t = {"messages": [{"role": "user", "content": "q"},
                      {"role": "assistant", "content": "", "tool_calls": [
                          {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                      {"role": "tool", "content": "r", "tool_call_id": "c1"}, {"role": "assistant", "content": "ok"}]}
    write_samples([t], tmp_path / "t.json", to="sharegpt", stats=st)
    assert st["not_written"] == {"messages[].tool_call_id": 1}
    back = next(read_samples(tmp_path / "t.json"))
    assert back["messages"][1]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}


def test_overwrite_false_refuses_an_existing_output(tmp_path):
    out = _w(tmp_path, "o.jsonl", "keep\n")
    s = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(DataError, match="the output file exists"):
        write_samples([s], out, overwrite=False)
    assert out.read_text() == "keep\n"


def test_openai_responses_parts_developer_role_and_user_weight(tmp_path):
    rec = {"messages": [{"role": "developer", "content": "be brief"},
                        {"role": "user", "weight": 1, "content": [{"type": "input_text", "text": "what?"},
                                                                  {"type": "input_image", "image_url": "https://x/y.png"}]},
                        {"role": "assistant", "content": [{"type": "output_text", "text": "a cat"}]}]}
    p = _w(tmp_path, "r.jsonl", json.dumps(rec) + "\n")
    st = {}
    s = next(read_samples(p, stats=st))
    assert s == {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what?<image>"},
                              {"role": "assistant", "content": "a cat"}], "images": ["https://x/y.png"]}
    assert st["ignored"] == {"messages[].weight (only assistant turns have one)": 1}


@pytest.mark.parametrize("rec,want", [
    ({"prompt": "q", "chosen": "good", "rejected": "bad"}, ["q", "good"]),  # TRL standard
    ({"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
      "rejected": [{"role": "assistant", "content": "bad"}]}, ["q", "good"]),  # TRL conversational
    ({"prompt": "q", "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
      "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]}, ["q", "good"]),  # HF
])
def test_preference_rows_take_chosen(tmp_path, rec, want):
    p = _w(tmp_path, "p.jsonl", json.dumps(rec) + "\n")
    with pytest.raises(DataError, match=r"preference pairs \(chosen/rejected\)"):
        list(read_samples(p))
    st = {}
    s = next(read_samples(p, take="chosen", stats=st))
    assert [m["content"] for m in s["messages"]] == want
    assert st["ignored"] == {"rejected (rejected answers, --take chosen)": 1}


def test_unused_field_names_stay_bounded(tmp_path):
    from core.data.formats import MAX_IGNORED_FIELDS

    rows = [{f"id_{k}": 1, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
            for k in range(MAX_IGNORED_FIELDS + 50)]
    p = _w(tmp_path, "many.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    st = {}
    assert len(list(read_samples(p, stats=st))) == len(rows)
    assert len(st["ignored"]) == MAX_IGNORED_FIELDS + 1 and st["ignored"]["(more fields)"] == 50


def test_api_export_nulls_are_not_noise_but_values_are_reported(tmp_path):
    rec = {"messages": [{"role": "user", "content": "q", "tool_calls": []},
                        {"role": "assistant", "content": "a", "refusal": None, "annotations": [], "audio": None,
                         "function_call": None, "tool_calls": None, "mood": "glad"}], "metadata": {}}
    p = _w(tmp_path, "api.jsonl", json.dumps(rec) + "\n")
    st = {}
    s = next(read_samples(p, stats=st))
    assert s["messages"] == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert st["ignored"] == {"messages[].mood": 1}


def test_dolly_names_read_as_alpaca(tmp_path):
    rec = {"instruction": "Who wrote it?", "context": "Hamlet is a play.", "response": "Shakespeare.",
           "category": "closed_qa"}
    p = _w(tmp_path, "dolly.jsonl", json.dumps(rec) + "\n")
    st = {}
    s = next(read_samples(p, stats=st))
    assert [m["content"] for m in s["messages"]] == ["Who wrote it?\nHamlet is a play.", "Shakespeare."]
    assert st["format"] == "alpaca" and st["ignored"] == {"category": 1}
