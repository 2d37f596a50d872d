"""The tokenized-data cache holds data only: a replaced cache file is ignored and rebuilt, never executed.

    python -m pytest tests/unit/test_train_cache.py
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from core.config.schema import RunConfig
from core.errors import DataError
from core.train.dataset import load_encoded, save_encoded
from core.train.entry import _data_cache_key, load_data


class _Payload:
    """Unpickling this creates `marker`: what a planted cache file could do in the trainer."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _data(ws, rows=3):
    path = ws / "data" / "chat.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"question {i}?"},
                                             {"role": "assistant", "content": f"answer {i}."}]}) + "\n")
    return path


def _cfg(tiny_model, path, **kw):
    return RunConfig(pretrained_model_name_or_path=str(tiny_model), data_path=str(path), **{"max_length": 128, **kw})


def test_round_trip(tmp_path):
    encoded = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [], "labels": []},
               {"input_ids": [2**31 - 1, 0], "labels": [0, -100]}]
    stats = {"samples": 4, "dropped_no_loss": 1, "truncated": 0, "tokens": 5}
    save_encoded(tmp_path / "c.npz", encoded, stats)
    assert load_encoded(tmp_path / "c.npz") == (encoded, stats)
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temp file + rename


def test_a_planted_pickle_is_never_loaded(ws, tiny_model, tiny_tokenizer, capsys):
    path = _data(ws)
    cfg = _cfg(tiny_model, path)
    marker = ws / "pwned"
    payload = pickle.dumps(_Payload(str(marker)))
    # what the old cache did with such a file (pickle.load of workspace/cache/tokenized/<key>.pkl): run it
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()

    key = _data_cache_key(cfg, tiny_tokenizer, path)
    cache_dir = ws / "cache" / "tokenized"
    cache_dir.mkdir(parents=True)
    for name in (f"{key}.npz", f"{key}.pkl"):  # the cache file now, and where the pickle used to be
        (cache_dir / name).write_bytes(payload)
    dataset, stats = load_data(cfg, tiny_tokenizer, ws)
    assert not marker.exists()
    assert stats["samples"] == 3 and len(dataset) >= 1
    assert "ignoring the cache file" in capsys.readouterr().out
    # rebuilt in the safe format, and used from then on
    encoded, cached_stats = load_encoded(cache_dir / f"{key}.npz")
    assert len(encoded) == 3 and cached_stats["samples"] == 3
    load_data(cfg, tiny_tokenizer, ws)
    assert "tokenized samples from the cache" in capsys.readouterr().out


@pytest.mark.parametrize("content", [
    b"",                                   # empty
    b"PK\x03\x04 truncated zip",           # a broken archive
    b"\x93NUMPY not really",               # a broken .npy
])
def test_corrupt_cache_is_rebuilt(ws, tiny_model, tiny_tokenizer, content):
    path = _data(ws, rows=2)
    cfg = _cfg(tiny_model, path)
    cache = ws / "cache" / "tokenized" / f"{_data_cache_key(cfg, tiny_tokenizer, path)}.npz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(content)
    _, stats = load_data(cfg, tiny_tokenizer, ws)
    assert stats["samples"] == 2 and load_encoded(cache)[1]["samples"] == 2


def test_foreign_npz_is_refused(tmp_path):
    # arrays of objects need pickle: refused; a well-formed npz that is not ours: refused
    np.savez(tmp_path / "obj.npz", input_ids=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        load_encoded(tmp_path / "obj.npz")
    np.savez(tmp_path / "other.npz", input_ids=np.zeros(3, np.int32), labels=np.zeros(3, np.int32),
             offsets=np.array([0, 5], np.int64), header=np.frombuffer(b"{}", np.uint8))
    with pytest.raises(ValueError, match="offsets"):
        load_encoded(tmp_path / "other.npz")


def test_cache_key_follows_the_settings(ws, tiny_model, tiny_tokenizer):
    path = _data(ws)
    key = _data_cache_key(_cfg(tiny_model, path), tiny_tokenizer, path)
    assert len(key) == 24 and key != _data_cache_key(_cfg(tiny_model, path, max_length=64), tiny_tokenizer, path)


def test_video_data_refused_when_loading(ws, tiny_model, tiny_tokenizer):
    path = ws / "data" / "mllm_video_demo.json"
    (path.parent / "mllm_demo_data").mkdir(parents=True)
    (path.parent / "mllm_demo_data" / "1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "<video>What is she doing?"},
                                             {"role": "assistant", "content": "She is cooking."}],
                                "videos": ["mllm_demo_data/1.mp4"]}) + "\n", encoding="utf-8")
    from core.data import read_samples

    try:
        kept = [s.get("videos") for s in read_samples(path)]
    except DataError as exc:
        pytest.skip(f"the data reader refuses the file itself: {exc}")
    if kept != [["mllm_demo_data/1.mp4"]] and not (kept and kept[0]):
        pytest.skip("the data reader does not keep videos (issue 18's reader change)")
    with pytest.raises(DataError) as err:
        load_data(_cfg(tiny_model, path), tiny_tokenizer, ws)
    assert "1 sample(s) with videos" in str(err.value) and str(path) in str(err.value)
    assert not list((ws / "cache").rglob("*.npz"))  # nothing cached for a refused data set


def test_tool_calls_reach_the_trained_tokens(ws, tiny_model, tiny_tokenizer):
    """Reader -> load_data -> cache -> rows: the call is learned, the result is not, the tools are in the prompt."""
    from core.train.dataset import IGNORE

    path = ws / "data" / "tools.jsonl"
    path.parent.mkdir(parents=True)
    row = {"messages": [{"role": "user", "content": "Weather in Paris?"},
                        {"role": "assistant", "content": "", "tool_calls": [
                            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                        {"role": "tool", "content": "sunny and mild"},
                        {"role": "assistant", "content": "Sunny in Paris."}],
           "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    for _ in range(2):  # built, then from the cache: the same rows
        dataset, _ = load_data(_cfg(tiny_model, path, max_length=1024), tiny_tokenizer, ws)
        (sample,) = dataset[0]
        learned = tiny_tokenizer.decode([t for t, lab in zip(sample["input_ids"], sample["labels"], strict=True)
                                         if lab != IGNORE])
        prompt = tiny_tokenizer.decode([t for t, lab in zip(sample["input_ids"], sample["labels"], strict=True)
                                        if lab == IGNORE])
        assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in learned and "Sunny in Paris." in learned
        assert "sunny and mild" in prompt and "# Tools" in prompt and "sunny and mild" not in learned
