"""The readers against real files of LLaMA-Factory, XTuner, ms-swift, the OpenAI cookbook, FastChat and
Firefly (excerpts in tests/fixtures/real/messages, provenance in its PROVENANCE.md): rows in = rows out,
and the content survives; every input field is either used or reported; preference and KTO data are
refused unless --take says how to read them.

    .venv/bin/python -m pytest -q tests/unit/test_data_real.py
"""

import json
from pathlib import Path

import pytest

from core.data import read_samples, write_samples
from core.data.formats import WRITE_FORMATS
from core.errors import DataError
from studio.cli import main

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "messages"
REFDATA = Path(__file__).resolve().parents[2].parent / "shared" / "refdata"

# file -> (format detected, records, samples read, take)
CASES = {
    "fastchat/dummy_conversation.json": ("sharegpt", 3, 3, None),
    "firefly/dummy_data.jsonl": ("xtuner", 2, 2, None),
    "firefly/dummy_dpo.jsonl": ("openai", 2, 2, "chosen"),
    "firefly/dummy_pretrain.jsonl": ("pretrain_text", 2, 2, None),
    "llamafactory/c4_demo.jsonl": ("pretrain_text", 4, 4, None),
    "llamafactory/dpo_en_demo.json": ("sharegpt", 3, 3, "chosen"),
    "llamafactory/kto_en_demo.json": ("openai", 5, 3, "desirable"),
    "llamafactory/mllm_audio_demo.json": ("llamafactory_mm", 3, 3, None),
    "llamafactory/mllm_video_audio_demo.json": ("llamafactory_mm", 3, 3, None),
    "llamafactory/mllm_video_demo.json": ("llamafactory_mm", 3, 3, None),
    "llamafactory/reason_tool_use_demo.jsonl": ("xtuner_mm", 3, 3, None),
    "llamafactory/v1_dpo_demo.jsonl": ("xtuner_mm", 2, 2, "chosen"),
    "llamafactory/v1_multimodal_demo.jsonl": ("xtuner_mm", 3, 3, None),
    "llamafactory/v1_sft_demo.jsonl": ("xtuner_mm", 3, 3, None),
    "llamafactory/wiki_demo.txt": ("pretrain_text", 3, 3, None),  # a line per sample (core/data/sources.py)
    "ms-swift/conversations.jsonl": ("sharegpt", 3, 3, None),
    "ms-swift/doc_dpo_rejected_response.jsonl": ("openai", 2, 2, "chosen"),
    "ms-swift/doc_kto.jsonl": ("openai", 2, 1, "desirable"),
    "ms-swift/doc_loss.jsonl": ("openai", 1, 1, None),
    "ms-swift/doc_messages.jsonl": ("openai", 1, 1, None),
    "ms-swift/doc_multimodal.jsonl": ("llamafactory_mm", 4, 4, None),
    "ms-swift/doc_query_response_history.jsonl": ("swift", 1, 1, None),
    "ms-swift/doc_system_conversation.jsonl": ("xtuner", 1, 1, None),
    "ms-swift/doc_tool_call_roles_dpo.jsonl": ("openai", 1, 1, "chosen"),
    "ms-swift/doc_tool_calls_image_url.jsonl": ("xtuner_mm", 2, 2, None),
    "ms-swift/multi_modal_1.jsonl": ("swift", 3, 3, None),
    "ms-swift/multi_modal_2.jsonl": ("swift", 3, 3, None),
    "ms-swift/sharegpt.jsonl": ("xtuner", 3, 3, None),
    "ms-swift/swift_multi.json": ("swift", 3, 3, None),
    "ms-swift/swift_multi.jsonl": ("swift", 3, 3, None),
    "ms-swift/swift_pre.jsonl": ("swift", 3, 3, None),
    "openai-cookbook/drone_training.jsonl": ("openai", 2, 2, None),
    "openai-cookbook/fine_tuning_guide_shapes.jsonl": ("xtuner_mm", 2, 2, None),
    "openai-cookbook/toy_chat_fine_tuning.jsonl": ("openai", 4, 4, None),
    "xtuner/mllm_pretrain_image_example_data_new.jsonl": ("xtuner_mm", 2, 2, None),
    "xtuner/mllm_sft_multi_image_example_data_new.jsonl": ("xtuner_mm", 2, 2, None),
    "xtuner/mllm_sft_single_image_example_data_new.jsonl": ("xtuner_mm", 2, 2, None),
    "xtuner/mllm_sft_video_example_data_new.jsonl": ("xtuner_mm", 2, 2, None),
    "xtuner/mllm_sft_video_hf_example_data_new.jsonl": ("xtuner_mm", 2, 2, None),
    "xtuner/qwen35_tokenize_data.jsonl": ("xtuner_mm", 16, 16, None),
}
# refused as a whole, with what the message must say
REFUSED = {
    "ms-swift/doc_loss_scale.jsonl": r"messages\[2\]\.loss_scale: 2\.0: only 0",
    "ms-swift/doc_anthropic_tool_use.jsonl": r"messages\[0\]\.content\[1\]\.type: unknown content part 'tool_use'",
}


def _read(rel, **kw):
    st = {}
    take = CASES[rel][3] if rel in CASES else None
    samples = list(read_samples(REAL / rel, check_images=False, stats=st, take=take, **kw))
    return samples, st


def _msgs(s, role):
    return [m for m in s["messages"] if m["role"] == role]


def _records(path):
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_fixture_is_covered():
    files = {p.relative_to(REAL).as_posix() for p in REAL.rglob("*") if p.is_file()}
    files -= {"PROVENANCE.md", "llamafactory/dataset_info.json"}
    assert files == set(CASES) | set(REFUSED)


@pytest.mark.parametrize("rel", sorted(CASES))
def test_rows_in_rows_out_and_canonical_round_trip(rel, tmp_path):
    fmt, n_records, n_samples, _take = CASES[rel]
    samples, st = _read(rel)
    assert (st["format"], st["records"], len(samples)) == (fmt, n_records, n_samples)
    assert sum(st["dropped"].values()) == n_records - n_samples  # what went is counted, with a reason
    out = tmp_path / "canon.jsonl"
    assert write_samples(samples, out) == n_samples
    again = list(read_samples(out, check_images=False))
    assert again == samples


@pytest.mark.parametrize("rel", sorted(REFUSED))
def test_refused_with_the_field_named(rel):
    with pytest.raises(DataError, match=REFUSED[rel]):
        _read(rel)


# ---------------------------------------------------------------------------- content survives


def test_llamafactory_kto_refused_then_only_desirable_rows():
    with pytest.raises(DataError, match=r"label: KTO rows .*--take desirable"):
        list(read_samples(REAL / "llamafactory/kto_en_demo.json"))
    recs = _records(REAL / "llamafactory/kto_en_demo.json")
    samples, st = _read("llamafactory/kto_en_demo.json")
    kept = [r["messages"][-1]["content"] for r in recs if r["label"]]
    assert [s["messages"][-1]["content"] for s in samples] == kept
    assert st["dropped"] == {"KTO label false (undesirable)": 2}


@pytest.mark.parametrize("rel", ["llamafactory/dpo_en_demo.json", "llamafactory/v1_dpo_demo.jsonl",
                                 "firefly/dummy_dpo.jsonl", "ms-swift/doc_dpo_rejected_response.jsonl"])
def test_preference_pairs_refused_then_chosen(rel):
    with pytest.raises(DataError, match=r"preference pairs \(chosen/rejected\).*--take chosen"):
        list(read_samples(REAL / rel, check_images=False))
    samples, st = _read(rel)
    assert any("rejected" in k for k in st["ignored"])  # the rejected side is named, not silently gone
    recs = _records(REAL / rel)
    for s, r in zip(samples, recs, strict=True):
        answer = _msgs(s, "assistant")[-1]["content"]
        if "chosen" in r and isinstance(r["chosen"], dict):
            assert answer == r["chosen"]["value"]
        elif "chosen_messages" in r:
            assert answer == r["chosen_messages"][-1]["content"][0]["value"]
        elif "chosen" in r:
            assert answer == r["chosen"][-1]["content"]
        else:
            assert answer == r["messages"][-1]["content"] and answer != r["rejected_response"]


def test_llamafactory_video_audio_kept_in_order():
    s, _ = _read("llamafactory/mllm_video_audio_demo.json")
    assert s[0]["videos"][0].endswith("mllm_demo_data/4.mp4") and s[0]["audios"][0].endswith("mllm_demo_data/4.mp3")
    assert s[0]["messages"][0]["content"].startswith("<video><audio>")
    a, _ = _read("llamafactory/mllm_audio_demo.json")
    assert [Path(x["audios"][0]).name for x in a] == ["1.mp3", "2.wav", "3.flac"]


def test_llamafactory_v1_parts_reasoning_and_tool_calls():
    s, st = _read("llamafactory/reason_tool_use_demo.jsonl")
    recs = _records(REAL / "llamafactory/reason_tool_use_demo.jsonl")
    first = _msgs(s[0], "assistant")[0]
    parts = recs[0]["messages"][2]["content"]
    assert first["reasoning_content"] == next(p["value"] for p in parts if p["type"] == "reasoning")
    assert first["content"] == next(p["value"] for p in parts if p["type"] == "text")
    assert s[0]["tools"] == json.loads(recs[0]["tools"])
    calls = [c for x in s for m in x["messages"] for c in m.get("tool_calls") or []]
    want = [json.loads(p["value"]) for r in recs for m in r["messages"] for p in m["content"] if p["type"] == "tool_call"]
    assert [c["function"]["name"] for c in calls] == [w["name"] for w in want]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [w["arguments"] for w in want]
    # every call is followed by its result
    for x in s:
        roles = [m["role"] for m in x["messages"]]
        for k, m in enumerate(x["messages"]):
            if m.get("tool_calls"):
                assert roles[k + 1] == "tool"
    assert not st["ignored"]


def test_llamafactory_v1_images_and_loss_weight():
    s, _ = _read("llamafactory/v1_multimodal_demo.jsonl")
    assert s[0]["messages"][0]["content"] == "<image>Who are they?"
    assert s[0]["messages"][2]["content"] == "What are they doing?<image>"
    assert [Path(p).name for p in s[0]["images"]] == ["1.jpg", "1.jpg"]
    v1, _ = _read("llamafactory/v1_sft_demo.jsonl")
    assert v1[0]["messages"] == [{"role": "user", "content": "hi"}, {
        "role": "assistant", "content": "Hello! I am {{name}}, an AI assistant developed by {{author}}. "
                                        "How can I assist you today?"}]


def test_xtuner_reasoning_tool_calls_loss_and_urls():
    s, st = _read("xtuner/qwen35_tokenize_data.jsonl")
    assert s[1]["messages"][2]["reasoning_content"] == "这是 reasoning_content 内容"
    assert s[3]["messages"][2]["loss"] is False
    call = s[6]["messages"][2]
    assert call["content"] == "我需要先调用一些工具才能知道"
    assert call["tool_calls"] == [{"id": "call_123", "type": "function",
                                   "function": {"name": "get_weather", "arguments": '{"location": "Boston"}'}}]
    assert s[6]["messages"][3] == {"role": "tool", "content": "35"}
    assert s[6]["tools"][0]["function"]["name"] == "get_current_temperature"
    assert s[12]["images"] == ["https://qianwen-res.oss-cn-beijing.aliyuncs.com/Qwen-VL/assets/demo.jpeg"] * 3
    assert s[12]["messages"][1]["content"].startswith("<image><image>")
    assert s[13]["videos"] == ["https://example.com/video/demo.mp4"]
    assert st["ignored"]["id"] == 16 and st["ignored"]["messages[].content[].video.origin_fps"] == 1


def test_xtuner_image_and_video_parts(tmp_path):
    s, st = _read("xtuner/mllm_sft_video_hf_example_data_new.jsonl")
    assert s[0]["messages"][0]["content"] == "<video>请描述下视频内容？" and s[0]["videos"][0].endswith("tennis.mp4")
    s, st = _read("xtuner/mllm_sft_single_image_example_data_new.jsonl")
    assert s[0]["images"][0].endswith("resource/mscoco_dog_000000319154.jpg")
    assert st["ignored"] == {"id": 2, "messages[].content[].image.image_wh": 2}


def test_ms_swift_query_response_history_and_system():
    s, _ = _read("ms-swift/doc_query_response_history.jsonl")
    assert [(m["role"], m["content"]) for m in s[0]["messages"]] == [
        ("system", "<system>"), ("user", "<query1>"), ("assistant", "<response1>"),
        ("user", "<query2>"), ("assistant", "<response2>")]
    s, _ = _read("ms-swift/doc_system_conversation.jsonl")
    assert [m["content"] for m in s[0]["messages"]] == ["<system>", "<query1>", "<response1>", "<query2>",
                                                         "<response2>"]
    s, _ = _read("ms-swift/swift_pre.jsonl")
    assert s[0]["messages"] == [{"role": "pretrain", "content": "11111"}]


def test_ms_swift_image_urls_stay_urls():
    s, _ = _read("ms-swift/multi_modal_2.jsonl")
    url = "https://qianwen-res.oss-cn-beijing.aliyuncs.com/Qwen-VL/assets/demo.jpeg"
    # no placeholder in the text: the images go before the first question, as ms-swift puts them
    assert s[2]["images"] == [url] * 3
    assert [m["content"] for m in s[2]["messages"]] == ["<image><image><image>AAAAA", "BBBBB", "CCCCC", "DDDDD",
                                                        "EEEEE", "FFFFF"]
    q, _ = _read("ms-swift/multi_modal_1.jsonl")  # Qwen-VL's inline <img>URL</img> stays text
    assert q[1]["messages"][2]["content"].startswith("<img>https://") and "images" not in q[1]


def test_ms_swift_tool_call_roles_become_one_turn_with_two_calls():
    s, _ = _read("ms-swift/doc_tool_call_roles_dpo.jsonl")
    msgs = s[0]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [json.loads(c["function"]["arguments"]) for c in msgs[1]["tool_calls"]] == [{"city": "Beijing"},
                                                                                       {"city": "Shanghai"}]
    assert s[0]["tools"][0]["function"]["name"] == "realtime_aqi"


def test_openai_tool_call_only_answer_weight_and_image_url():
    s, st = _read("openai-cookbook/drone_training.jsonl")
    a = s[0]["messages"][-1]
    assert a["content"] == "" and a["tool_calls"][0]["function"] == {"name": "takeoff_drone",
                                                                     "arguments": '{"altitude": 100}'}
    assert st["ignored"] == {"parallel_tool_calls": 2}
    g, _ = _read("openai-cookbook/fine_tuning_guide_shapes.jsonl")
    assert g[0]["messages"][2] == {"role": "assistant", "content": "Paris", "loss": False}
    assert "loss" not in g[0]["messages"][4]
    assert g[1]["images"] == ["https://upload.wikimedia.org/wikipedia/commons/3/36/Danbo_Cheese.jpg"]


def test_firefly_and_fastchat_extra_fields_are_named():
    _, st = _read("firefly/dummy_data.jsonl")
    assert st["ignored"] == {"conversation_id": 2, "category": 2, "dataset": 2}
    _, st = _read("fastchat/dummy_conversation.json")
    assert st["ignored"] == {"id": 3}


# ---------------------------------------------------------------------------- nothing unreported


def _add_extra(obj, depth=0):
    """zz_extra on every record, zz_inner on every object inside its lists (turns, parts)."""
    if isinstance(obj, dict):
        out = {k: _add_extra(v, depth + 1) for k, v in obj.items()}
        out["zz_extra" if depth == 0 else "zz_inner"] = 1
        return out
    if isinstance(obj, list):
        return [_add_extra(v, depth + 1) for v in obj]
    return obj


@pytest.mark.parametrize("rel", sorted(CASES))
def test_no_reader_returns_a_sample_while_a_field_went_unreported(rel, tmp_path):
    src = REAL / rel
    if src.suffix == ".txt":
        pytest.skip("plain text lines carry no fields")
    p = tmp_path / (src.stem + ".jsonl")
    p.write_text("".join(json.dumps(_add_extra(r), ensure_ascii=False) + "\n" for r in _records(src)))
    st = {}
    samples = list(read_samples(p, check_images=False, stats=st, take=CASES[rel][3], image_folder=str(src.parent)))
    assert samples and st["ignored"]["zz_extra"] == len(samples)
    nested = {k for k in st["ignored"] if k.endswith(".zz_inner")}
    has_lists = any(isinstance(v, list) and v and isinstance(v[0], dict) for r in _records(src) for v in r.values())
    assert nested or not has_lists, st["ignored"]


# ---------------------------------------------------------------------------- writers


def _core(s):
    """What training sees of a sample, for comparing a write/read round trip."""
    out = []
    for m in s["messages"]:
        calls = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in m.get("tool_calls") or []]
        out.append((m["role"], m["content"], m.get("reasoning_content"), calls,
                    m.get("loss", m["role"] == "assistant")))
    return out, [s.get(k) or [] for k in ("images", "videos", "audios")], s.get("tools") or []


@pytest.mark.parametrize("to", WRITE_FORMATS)
@pytest.mark.parametrize("rel", sorted(CASES))
def test_writers_keep_or_refuse_never_lose(rel, to, tmp_path):
    samples, _ = _read(rel)
    out = tmp_path / f"out_{to}.jsonl"
    try:
        write_samples(samples, out, to=to)
    except DataError as e:
        assert e.args[0] and "cannot be written" in str(e) or "LLaVA records hold one" in str(e) or \
            "no question/answer pair" in str(e) or "two user turns" in str(e)
        assert not out.exists()
        return
    again = list(read_samples(out, to, check_images=False))
    assert len(again) == len(samples)
    for a, b in zip(again, samples, strict=True):
        ca, cb = _core(a), _core(b)
        if to in ("xtuner", "alpaca"):  # several system turns merge into one; nothing else may change
            ca = ([x for x in ca[0] if x[0] != "system"], *ca[1:])
            cb = ([x for x in cb[0] if x[0] != "system"], *cb[1:])
        assert ca == cb


# ---------------------------------------------------------------------------- CLI


def test_cli_summary_names_ignored_fields_and_take(tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert main(["data", "convert", str(REAL / "firefly/dummy_data.jsonl"), "-o", str(out), "--json"]) == 0
    cap = capsys.readouterr()
    assert "ignored: category (2 rows), conversation_id (2 rows), dataset (2 rows)" in cap.err
    assert json.loads(cap.out)["ignored"] == {"conversation_id": 2, "category": 2, "dataset": 2}
    kto = REAL / "llamafactory/kto_en_demo.json"
    assert main(["data", "convert", str(kto), "-o", str(tmp_path / "k.jsonl")]) == 1
    assert "--take desirable" in capsys.readouterr().err and not (tmp_path / "k.jsonl").exists()
    assert main(["data", "convert", str(kto), "--take", "desirable", "-o", str(tmp_path / "k.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "3 samples" in err and "dropped: 2 KTO label false (undesirable)" in err and "dropped: none" not in err


def test_cli_reads_beside_llamafactory_dataset_info(tmp_path, capsys):
    import shutil

    for name in ("c4_demo.jsonl", "dataset_info.json", "mllm_video_demo.json", "kto_en_demo.json"):
        shutil.copy(REAL / "llamafactory" / name, tmp_path / name)
    out = tmp_path / "c4.jsonl"
    assert main(["data", "convert", str(tmp_path / "c4_demo.jsonl"), "-o", str(out)]) == 0
    assert "format pretrain_text" in capsys.readouterr().err
    assert [s["messages"][0]["role"] for s in read_samples(out)] == ["pretrain"] * 4
    assert main(["data", "convert", str(tmp_path / "mllm_video_demo.json"), "--no-image-check",
                 "-o", str(tmp_path / "v.jsonl")]) == 0
    assert "media: 3 videos" in capsys.readouterr().err
    assert main(["data", "convert", str(tmp_path / "kto_en_demo.json"), "--take", "desirable",
                 "-o", str(tmp_path / "k.jsonl")]) == 0


def test_cli_output_never_an_input_and_not_replaced_without_overwrite(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes((REAL / "ms-swift/swift_multi.jsonl").read_bytes())
    before = src.read_bytes()
    for verb in (["convert", str(src)], ["repeat", str(src), "-n", "2"], ["replace", str(src), "--old", "5",
                                                                           "--new", "6"]):
        assert main(["data", *verb, "-o", str(src), "--overwrite"]) == 1
        assert "the output is the input file" in capsys.readouterr().err
    assert src.read_bytes() == before
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    assert main(["data", "convert", str(src), "-o", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "keep me\n"
    assert main(["data", "convert", str(src), "-o", str(out), "--overwrite"]) == 0
    assert len(list(read_samples(out))) == 3


def test_media_bytes_extracted_beside_the_output(tmp_path):
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("RGB", (2, 2)).save(img)
    rec = {"messages": [{"role": "user", "content": "<image>what?"}, {"role": "assistant", "content": "a"}]}
    rows = [dict(rec, images=[{"bytes": img.read_bytes(), "path": "x.png"}])]
    # a Parquet image column arrives as such a dict; a JSON file cannot hold bytes, so feed the reader directly
    from core.data.formats import _Ctx

    ctx = _Ctx(str(tmp_path / "d.parquet"), None, True, str(tmp_path / "o_media"))
    p = ctx.media(rows[0]["images"][0], "images[0]")
    assert Path(p).parent == tmp_path / "o_media" and Path(p).read_bytes() == img.read_bytes()
    ctx2 = _Ctx(str(tmp_path / "d.parquet"), None, True, None)
    with pytest.raises(DataError, match="stored as bytes"):
        ctx2.media(rows[0]["images"][0], "images[0]")


@pytest.mark.skipif(not REFDATA.is_dir(), reason="../shared/refdata not present")
def test_refdata_glaive_tool_calls_written_back_to_sharegpt(tmp_path):
    src = REFDATA / "llamafactory/glaive_toolcall_en_demo.json"
    samples = list(read_samples(src))
    out = tmp_path / "g.json"
    write_samples(samples, out, to="sharegpt")
    orig, back = json.loads(src.read_text()), json.loads(out.read_text())
    for a, b in zip(orig, back, strict=True):
        assert [t["from"] for t in a["conversations"]] == [t["from"] for t in b["conversations"]]
        for ta, tb in zip(a["conversations"], b["conversations"], strict=True):
            if ta["from"] == "function_call":
                assert json.loads(ta["value"]) == json.loads(tb["value"])
            else:
                assert ta["value"] == tb["value"]
        assert json.loads(a["tools"] or "[]") == json.loads(b.get("tools") or "[]")


def test_cli_parquet_image_bytes_extracted_beside_the_output(tmp_path, capsys):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (3, 3), "red").save(buf, "PNG")
    msgs = [{"role": "user", "content": "<image>what colour?"}, {"role": "assistant", "content": "red"}]
    pq.write_table(pa.Table.from_pylist([{"messages": msgs, "images": [{"bytes": buf.getvalue(), "path": "r.png"}]}]),
                   tmp_path / "mm.parquet")
    out = tmp_path / "o" / "out.jsonl"
    out.parent.mkdir()
    assert main(["data", "convert", str(tmp_path / "mm.parquet"), "-o", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["images"][0].startswith("out_media/") and (out.parent / rec["images"][0]).read_bytes() == buf.getvalue()
    # a run that fails leaves no media folder behind
    bad = [{"messages": msgs, "images": [{"bytes": buf.getvalue(), "path": "r.png"}]},
           {"messages": [{"role": "user", "content": "q"}], "images": [{"bytes": buf.getvalue(), "path": "r.png"}]}]
    pq.write_table(pa.Table.from_pylist(bad), tmp_path / "bad.parquet")
    assert main(["data", "convert", str(tmp_path / "bad.parquet"), "-o", str(tmp_path / "o" / "b.jsonl")]) == 1
    assert not (tmp_path / "o" / "b_media").exists() and not (tmp_path / "o" / "b.jsonl").exists()
