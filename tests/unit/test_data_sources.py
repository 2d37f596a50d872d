"""core/data/sources.py: every container in, real rows out, and every refusal names file:line.

The rows are real (tests/fixtures/real/containers, see its PROVENANCE.md: LLaMA-Factory's c4, wiki,
alpaca demos, a JPEG and a whole local Hugging Face dataset folder); CSV, TSV, Parquet, Arrow, gzip,
wrapper and save_to_disk copies are built here from those rows and checked against them.

    .venv/bin/python -m pytest tests/unit/test_data_sources.py
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from core.data import sources
from core.data.formats import _sniff, detect_format, iter_records
from core.data.sources import MAX_DEPTH, detect_container, store_media_bytes
from core.errors import DataError

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "containers"
C4 = REAL / "c4_demo_excerpt.jsonl"
WIKI = REAL / "wiki_demo_excerpt.txt"
ALPACA = REAL / "alpaca_en_demo_excerpt.json"
JPG = REAL / "1.jpg"
HF_FOLDER = REAL / "mllm_example_dataset"
REFDATA = Path(__file__).resolve().parents[2].parent / "shared" / "refdata"


def c4_rows() -> list[dict]:
    return [json.loads(line) for line in C4.read_text(encoding="utf-8").splitlines()]


def alpaca_rows() -> list[dict]:
    return json.loads(ALPACA.read_text(encoding="utf-8"))


def records(path, **kw) -> list:
    return list(iter_records(path, **kw))


def error_of(path, **kw) -> str:
    with pytest.raises(DataError) as e:
        records(path, **kw)
    return str(e.value)


# ---------------------------------------------------------------------------- JSON family


def test_real_jsonl_streams_with_line_numbers():
    got = records(C4)
    assert [n for n, _ in got] == list(range(1, 11))
    assert [r for _, r in got] == c4_rows()
    assert detect_container(C4) == "jsonl" and _sniff(str(C4)) == "jsonl"


def test_real_json_array_knows_where_each_record_starts():
    lines = ALPACA.read_text(encoding="utf-8").splitlines()
    starts = [i + 1 for i, s in enumerate(lines) if s == "  {"]
    got = records(ALPACA)
    assert [r for _, r in got] == alpaca_rows()
    assert [n for n, _ in got] == starts


@pytest.mark.parametrize("key", ["data", "train"])
def test_pretty_printed_wrapper_is_read_and_its_key_named(key, tmp_path):
    rows = alpaca_rows()
    p = tmp_path / "wrapped.json"
    p.write_text(json.dumps({key: rows}, indent=2, ensure_ascii=False), encoding="utf-8")
    st: dict = {}
    got = list(iter_records(p, st))
    assert [r for _, r in got] == rows
    assert got[0][0] == 3 and got[1][0] > got[0][0]  # '{', '  "data": [', '    {' -> line 3
    assert f'"{key}"' in st["container_note"] and st["container"] == "json"
    assert detect_format(p) == "alpaca"


def test_one_line_wrapper_is_not_taken_for_json_lines(tmp_path):
    p = tmp_path / "wrapped.json"
    p.write_text(json.dumps({"data": alpaca_rows()}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert detect_container(p) == "json"
    assert [r for _, r in records(p)] == alpaca_rows()


def test_rows_shaped_like_wrappers_stay_json_lines(tmp_path):
    p = tmp_path / "rows.jsonl"
    rows = [{"dialog": [r]} for r in alpaca_rows()[:3]]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert detect_container(p) == "jsonl" and [r for _, r in records(p)] == rows


def test_pretty_printed_single_object_is_one_record(tmp_path):
    sample = {"messages": [{"role": "user", "content": alpaca_rows()[1]["instruction"]},
                           {"role": "assistant", "content": alpaca_rows()[1]["output"]}]}
    p = tmp_path / "one.json"
    p.write_text(json.dumps(sample, indent=2, ensure_ascii=False), encoding="utf-8")
    st: dict = {}
    assert list(iter_records(p, st)) == [(1, sample)]
    assert "single record" in st["container_note"]
    assert detect_format(p) == "openai"


def test_jsonl_with_a_broken_first_line_stays_json_lines(tmp_path):
    text = C4.read_text(encoding="utf-8").splitlines()
    p = tmp_path / "first_cut.jsonl"
    p.write_text(text[0][:50] + "\n" + "\n".join(text[1:]) + "\n", encoding="utf-8")
    assert detect_container(p) == "jsonl"
    assert "first_cut.jsonl:1: truncated JSON" in error_of(p)
    st: dict = {}
    assert [n for n, _ in iter_records(p, st)] == list(range(2, 11)) and len(st["errors"]) == 1


@pytest.mark.parametrize("src", ["jsonl", "json"])
def test_gzip_of_json_lines_and_arrays(src, tmp_path):
    real = C4 if src == "jsonl" else ALPACA
    p = tmp_path / f"x.{src}.gz"
    p.write_bytes(gzip.compress(real.read_bytes()))
    assert detect_container(p) == src and _sniff(str(p)) == src
    assert records(p) == records(real)


# ---------------------------------------------------------------------------- tables


def _alpaca_table():
    import pyarrow as pa

    return pa.Table.from_pylist(alpaca_rows())


@pytest.mark.parametrize("kind", ["csv", "tsv"])
def test_csv_and_tsv_cells_come_back_as_written(kind, tmp_path):
    import pyarrow.csv as pacsv

    p = tmp_path / f"alpaca.{kind}"
    pacsv.write_csv(_alpaca_table(), p, pacsv.WriteOptions(delimiter="\t" if kind == "tsv" else ","))
    st: dict = {}
    got = list(iter_records(p, st))
    assert [r for _, r in got] == alpaca_rows()  # multi-line outputs, "" inputs stay "" (not null)
    assert [n for n, _ in got] == list(range(1, 21)) and st["container"] == kind
    assert detect_format(p) == "alpaca"


def test_csv_cells_are_text_not_guessed_types(tmp_path):
    p = tmp_path / "ids.csv"
    p.write_bytes(b"\xef\xbb\xbfinstruction,output\r\n007,1e3\r\n\"a, b\",\"\"\r\n")
    assert records(p) == [(1, {"instruction": "007", "output": "1e3"}), (2, {"instruction": "a, b", "output": ""})]


def test_csv_gzip(tmp_path):
    import pyarrow.csv as pacsv

    plain = tmp_path / "a.csv"
    pacsv.write_csv(_alpaca_table(), plain)
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert records(gz) == records(plain)


def test_bad_csv_row_names_its_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("instruction,output\nq1,a1\n\"multi\nline\",a2\nq3,a3,extra\n", encoding="utf-8")
    msg = error_of(p)
    assert "bad.csv:5: bad CSV row: 3 cells where the header has 2" in msg


def test_csv_header_with_a_column_twice_is_refused(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("input,input\na,b\n", encoding="utf-8")
    assert "dup.csv:1: input: the header names this column twice" in error_of(p)


def test_parquet_reads_in_row_groups_with_row_numbers(tmp_path):
    import pyarrow.parquet as pq

    p = tmp_path / "alpaca.parquet"
    pq.write_table(_alpaca_table(), p, row_group_size=7)
    got = records(p)
    assert [r for _, r in got] == alpaca_rows() and [n for n, _ in got] == list(range(1, 21))
    assert detect_container(p) == "parquet" and _sniff(str(p)) == "json"
    assert detect_format(p) == "alpaca"


def test_real_hf_parquet_with_image_column():
    got = records(HF_FOLDER / "data" / "train-0.parquet")
    assert len(got) == 3
    first = got[0][1]
    assert first["messages"][0]["role"] == "user"
    assert first["messages"][0]["content"][0]["text"] == "Who are they?"
    assert first["images"] == [{"bytes": None, "path": "data/images/1.jpg"}]


def test_hf_image_bytes_come_out_and_are_stored_by_content(tmp_path):
    import datasets

    texts = [r["text"] for r in c4_rows()[:2]]
    cells = [{"bytes": JPG.read_bytes(), "path": "1.jpg"}] * 2  # what push_to_hub embeds
    ds = datasets.Dataset.from_dict({"text": texts, "image": cells}, features=datasets.Features(
        {"text": datasets.Value("string"), "image": datasets.Image()}))
    p = tmp_path / "img.parquet"
    ds.to_parquet(str(p))
    got = records(p)
    assert [r["text"] for _, r in got] == texts
    cell = got[0][1]["image"]
    assert set(cell) == {"bytes", "path"} and cell["bytes"] == JPG.read_bytes()
    media = tmp_path / "media"
    out = store_media_bytes(cell, media)
    assert Path(out).read_bytes() == JPG.read_bytes() and out.endswith(".jpg") and Path(out).parent == media
    assert store_media_bytes(got[1][1]["image"], media) == out  # same bytes, same file
    assert [p.name for p in media.iterdir()] == [Path(out).name], "no temp file left"
    assert store_media_bytes({"bytes": None, "path": "data/images/1.jpg"}, media) == "data/images/1.jpg"


def test_store_media_bytes_names_the_kind_from_the_bytes(tmp_path):
    out = store_media_bytes({"bytes": JPG.read_bytes(), "path": None}, tmp_path)
    assert out.endswith(".jpg")


@pytest.mark.parametrize("flavour", ["file", "stream"])
def test_arrow_files_and_streams(flavour, tmp_path):
    import pyarrow as pa

    t = _alpaca_table()
    p = tmp_path / "a.arrow"
    with pa.OSFile(str(p), "wb") as sink:
        w = pa.ipc.new_file(sink, t.schema) if flavour == "file" else pa.ipc.new_stream(sink, t.schema)
        for b in t.to_batches(max_chunksize=6):
            w.write_batch(b)
        w.close()
    assert detect_container(p) == "arrow"
    assert [r for _, r in records(p)] == alpaca_rows()


# ---------------------------------------------------------------------------- plain text


def test_real_text_corpus_one_sample_per_line():
    lines = WIKI.read_text(encoding="utf-8").splitlines()
    st: dict = {}
    got = list(iter_records(WIKI, st))
    assert got == [(i + 1, {"text": s}) for i, s in enumerate(lines)]
    assert "one sample per line" in st["container_note"]
    assert detect_format(WIKI) == "pretrain_text"


def test_text_with_blank_lines_is_read_by_paragraph(tmp_path):
    texts = [r["text"] for r in c4_rows() if "\n\n" not in r["text"]]
    p = tmp_path / "c4.md"
    p.write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    st: dict = {}
    got = list(iter_records(p, st))
    assert [r["text"] for _, r in got] == texts and "paragraph" in st["container_note"]
    assert got[1][0] == texts[0].count("\n") + 3  # the second paragraph starts after the blank line


def test_text_gzip_and_name_decides_text(tmp_path):
    p = tmp_path / "wiki.txt.gz"
    p.write_bytes(gzip.compress(WIKI.read_bytes()))
    assert detect_container(p) == "text" and records(p) == records(WIKI)


# ---------------------------------------------------------------------------- dataset folders


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    rows = alpaca_rows()
    one = tmp_path / "one"
    datasets.Dataset.from_list(rows).save_to_disk(str(one))
    assert detect_container(one) == "hf_disk"
    assert [r for _, r in records(one)] == rows
    dd = tmp_path / "dd"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows[:3]),
                          "train": datasets.Dataset.from_list(rows[3:])}).save_to_disk(str(dd))
    st: dict = {}
    got = list(iter_records(dd, st))
    assert [r for _, r in got] == rows[3:] and got[0][0] == 1
    assert "'train'" in st["container_note"] and "test" in st["container_note"]
    assert detect_format(dd) == "alpaca"
    nt = tmp_path / "no_train"
    datasets.DatasetDict({"a": datasets.Dataset.from_list(rows[:1]),
                          "b": datasets.Dataset.from_list(rows[1:2])}).save_to_disk(str(nt))
    assert "no train split to read (splits: a, b)" in error_of(nt)


def test_save_to_disk_keeps_image_bytes(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"image": [{"bytes": JPG.read_bytes(), "path": None}]},
                                    features=datasets.Features({"image": datasets.Image()}))
    ds.save_to_disk(str(tmp_path / "img"))
    (_, rec), = records(tmp_path / "img")
    assert rec["image"]["bytes"] == JPG.read_bytes()


def test_real_local_hf_dataset_folder_offline_picks_train(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))

    def no_network(*a, **k):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    st: dict = {}
    got = list(iter_records(HF_FOLDER, st))
    assert detect_container(HF_FOLDER) == "hf_folder" and st["container"] == "hf_folder"
    assert [n for n, _ in got] == [1, 2, 3]
    assert [r for _, r in got] == [r for _, r in records(HF_FOLDER / "data" / "train-0.parquet")]
    assert "'train'" in st["container_note"] and "test" in st["container_note"]
    assert "HF_HUB_OFFLINE" not in os.environ, "the offline switch is put back after the call"


def test_folder_without_data_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    assert "is a folder, not a data file" in error_of(tmp_path / "notes")


def test_forced_container_overrides_the_name(tmp_path):
    p = tmp_path / "corpus.data"
    p.write_text("line one\nline two\n", encoding="utf-8")
    msg = error_of(p)
    assert "corpus.data:1: bad JSON" in msg and ".txt name" in msg
    assert records(p, container="text") == [(1, {"text": "line one"}), (2, {"text": "line two"})]


@pytest.mark.skipif(not (REFDATA / "llamafactory" / "alpaca_zh_demo.json").is_file(), reason="no shared refdata")
def test_refdata_array_as_parquet_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = json.loads((REFDATA / "llamafactory" / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    p = tmp_path / "zh.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p, row_group_size=100)
    assert [r for _, r in records(p)] == rows


# ---------------------------------------------------------------------------- refusals


def _in_thread(fn, timeout: float = 20.0):
    """Run fn; a reader that blocks (a FIFO opened for reading) fails the test instead of hanging it."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the reader blocked"
    return box


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_devices_are_refused_before_reading():
    box = _in_thread(lambda: records("/dev/zero"))
    assert isinstance(box.get("error"), DataError)
    assert "/dev/zero: is a character device, not a data file" in str(box["error"])


def test_fifo_and_socket_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    box = _in_thread(lambda: records(fifo))
    assert "is a FIFO (named pipe), not a data file" in str(box.get("error"))
    sock_path = tmp_path / "s.jsonl"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(sock_path))
        assert "is a socket, not a data file" in error_of(sock_path)
    finally:
        s.close()


def test_deep_json_names_file_and_line(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    p = tmp_path / "deep.jsonl"
    p.write_text('{"text": "ok"}\n{"text": ' + deep + "}\n", encoding="utf-8")
    assert f"deep.jsonl:2: nested deeper than {MAX_DEPTH} levels" in error_of(p)
    a = tmp_path / "deep.json"
    a.write_text('[\n{"text": "ok"},\n' + deep + "\n]", encoding="utf-8")
    assert f"deep.json:3: nested deeper than {MAX_DEPTH} levels" in error_of(a)
    one = tmp_path / "deep_obj.json"
    one.write_text('{\n"a":\n' + deep + "\n}", encoding="utf-8")
    assert "deep_obj.json:3: nested deeper than" in error_of(one)
    # deeper than the cap but not deep enough to break the parser: still refused
    mid = tmp_path / "mid.jsonl"
    mid.write_text('{"text": ' + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "}\n", encoding="utf-8")
    assert "mid.jsonl:1: nested deeper than" in error_of(mid)


def test_huge_integer_names_file_and_line(tmp_path):
    p = tmp_path / "num.jsonl"
    p.write_text('{"text": "ok"}\n{"text": "x", "id": ' + "9" * 5000 + "}\n", encoding="utf-8")
    assert "num.jsonl:2: a number with 5000 digits" in error_of(p)
    a = tmp_path / "num.json"
    a.write_text('[{"text": "ok"},\n {"id": ' + "9" * 5000 + "}]", encoding="utf-8")
    assert "num.json:2: a number with 5000 digits" in error_of(a)


def test_lone_surrogate_names_file_and_line_but_pairs_pass(tmp_path):
    p = tmp_path / "sur.jsonl"
    p.write_text('{"text": "smile \\ud83d\\ude00"}\n{"text": "bad \\ud800 here"}\n', encoding="utf-8")
    assert "sur.jsonl:2: lone surrogate \\ud800" in error_of(p)
    st: dict = {}
    assert list(iter_records(p, st)) == [(1, {"text": "smile \U0001f600"})] and len(st["errors"]) == 1
    a = tmp_path / "sur.json"
    a.write_text('[\n{"text": "a"},\n{"text": "\\udc01"}\n]', encoding="utf-8")
    assert "sur.json:3: lone surrogate \\udc01" in error_of(a)


def test_not_utf8_gives_line_offset_and_the_right_hint(tmp_path):
    good = '{"text": "ok"}\n'
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes(good.encode() + '{"text": "你好世界"}\n'.encode("gbk"))
    msg = error_of(gbk)
    assert "gbk.jsonl:2: not UTF-8 text" in msg and f"byte offset {len(good) + 10}" in msg and "iconv -f GBK" in msg
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café au lait\n".encode("latin-1"))
    msg = error_of(latin)
    assert "latin.txt:1: not UTF-8" in msg and "byte offset 3" in msg and "iconv -f LATIN1" in msg
    win = tmp_path / "win.csv"
    win.write_bytes("instruction,output\n\u201cquoted\u201d \u2013 dash,ok\n".encode("cp1252"))
    assert "iconv -f CP1252" in error_of(win)
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b'{"text": "a\x81\x7f\x85"}\n')
    msg = error_of(junk)
    assert "junk.jsonl:1: not UTF-8" in msg and "iconv" not in msg
    csv = tmp_path / "gbk.csv"
    csv.write_bytes(b"instruction,output\n" + "问题,答案\n".encode("gbk"))
    assert "gbk.csv:2: not UTF-8" in error_of(csv)
    arr = tmp_path / "gbk.json"
    arr.write_bytes(b'[\n{"text": "ok"},\n' + '{"text": "中文"}'.encode("gbk") + b"\n]")
    msg = error_of(arr)
    assert "gbk.json:3: not UTF-8" in msg and "iconv -f GBK" in msg


def test_binary_files_are_named_as_such(tmp_path):
    p = tmp_path / "weights.bin"
    p.write_bytes(bytes(range(256)) * 40)
    assert "binary file: not JSON/CSV/Parquet/text" in error_of(p)
    z = tmp_path / "model.jsonl"
    z.write_bytes(b"PK\x03\x04" + bytes(1000))
    assert "binary file" in error_of(z)
    u16 = tmp_path / "u16.jsonl"
    u16.write_bytes('{"text": "hi"}\n'.encode("utf-16"))
    assert "UTF-16" in error_of(u16)


def test_broken_parquet_has_no_encoding_hint(tmp_path):
    import pyarrow.parquet as pq

    good = tmp_path / "good.parquet"
    pq.write_table(_alpaca_table(), good)
    bad = tmp_path / "cut.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    msg = error_of(bad)
    assert "cut.parquet" in msg and "Parquet" in msg and "iconv" not in msg and "UTF-8" not in msg


def test_stats_mode_keeps_going_past_every_kind_of_bad_line(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_bytes(b'{"text": "1"}\n{"text": ' + b"[" * 500 + b"]" * 500 + b'}\n{"n": ' + b"1" * 5000
                  + b'}\n{"text": "\\ud800"}\n' + '{"text": "中"}\n'.encode("gbk") + b'{"text": "6"}\n')
    st: dict = {}
    assert [n for n, _ in iter_records(p, st)] == [1, 6]
    assert [e.split(": ", 1)[0].rsplit(":", 1)[1] for e in st["errors"]] == ["2", "3", "4", "5"]


def test_max_line_guard_still_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1000)
    p = tmp_path / "long.jsonl"
    p.write_text('{"text": "a"}\n{"text": "' + "x" * 5000 + '"}\n', encoding="utf-8")
    assert "long.jsonl:2: line is longer than" in error_of(p)


def test_empty_files_say_so(tmp_path):
    for name in ("e.jsonl", "e.csv", "e.txt"):
        (tmp_path / name).write_bytes(b"")
        assert f"{name}:1: the file is empty" in error_of(tmp_path / name)


# ---------------------------------------------------------------------------- speed (make soak)


@pytest.mark.soak
def test_100k_rows_read_fast_and_parquet_no_slower(tmp_path):
    """100,000 chat rows (the alpaca excerpt, repeated) as JSON lines and as Parquet: each read in a few
    CPU seconds (2026-12-03, 2 loaded cores: JSONL 0.5-0.75 s, Parquet 0.25-0.4 s)."""
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq

    src = alpaca_rows()
    rows = [{"messages": [{"role": "user", "content": r["instruction"] + "\n" + r["input"]},
                          {"role": "assistant", "content": r["output"]}]} for r in src] * 5000
    jl = tmp_path / "big.jsonl"
    with open(jl, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    pqf = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pqf, row_group_size=10_000)

    def cpu(p) -> float:
        best = float("inf")
        for _ in range(3):
            t = time.process_time()
            assert sum(1 for _ in iter_records(p)) == 100_000
            best = min(best, time.process_time() - t)
        return best

    t_jsonl, t_parquet = cpu(jl), cpu(pqf)
    assert t_jsonl < 5.0, t_jsonl
    assert t_parquet <= t_jsonl * 1.2, (t_parquet, t_jsonl)


def test_real_hf_folder_converts_with_its_index_image_parts(tmp_path):
    """LLaMA-Factory's mllm_example_dataset marks images as {"type": "image", "index": 0} parts and keeps the
    paths in the sample's images column, relative to the dataset folder; every row converts, none refused."""
    from core.data.formats import read_samples

    with pytest.raises(DataError) as e:  # the folder ships no images: the error looks in the dataset's root
        list(read_samples(HF_FOLDER))
    assert "data/images/1.jpg" in str(e.value) and f"looked in {HF_FOLDER.resolve()}" in str(e.value)
    stats: dict = {}
    samples = list(read_samples(HF_FOLDER, check_images=False, stats=stats, strict=False))
    assert len(samples) == 3 and not stats.get("errors")
    first = samples[0]
    assert first["messages"][0]["content"] == "Who are they?<image>"
    assert first["images"] == [str(HF_FOLDER.resolve() / "data" / "images" / "1.jpg")]
    assert first["messages"][1]["content"] == "They're Kane and Gretzka from Bayern Munich."
    assert not any("index" in k for k in stats.get("ignored", {}))
