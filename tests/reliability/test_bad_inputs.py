"""The bad-input corpus: every hand-made mistake a class of 30 can feed in, through the CLI and the pages.

One table (CASES): each row is a file from tests/fixtures/bad_data or tests/fixtures/bad_inputs (or one
made here: the 10 MB line, the folders), the CLI verb it goes through, and the words the one error
must contain: the file, the line and the field where there is one. Every case must exit 1 with a
single `error:` message (plus its hint), no traceback, and leave no output file or run folder behind.
The same files then go through the Data page (data files) and the Train page (configs).

    .venv/bin/python -m pytest tests/reliability/test_bad_inputs.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from studio.cli import main

FIX = Path(__file__).resolve().parents[1] / "fixtures"
BAD_DATA = FIX / "bad_data"
BAD_IN = FIX / "bad_inputs"

# (case id, verb, input, words the error must contain). Inputs: "bad_data/x" and "bad_inputs/x" are
# fixture files, "{...}" are made by the `corpus` fixture. Data cases go through `data convert -o OUT`
# (or `data validate` where marked), configs through `train CFG --work-dir W`.
CASES = [
    # -- data files: JSON, encodings, shapes
    ("truncated_jsonl", "convert", "bad_data/truncated.jsonl", ["truncated.jsonl:3:", "truncated JSON"]),
    ("truncated_array", "convert", "bad_data/truncated_array.json", ["truncated_array.json:3:", "truncated JSON"]),
    ("truncated_no_newline", "convert", "bad_inputs/data/truncated_no_newline.jsonl",
     ["truncated_no_newline.jsonl:2:", "truncated JSON"]),
    ("content_is_number", "convert", "bad_data/wrong_types.jsonl",
     ["wrong_types.jsonl:2:", "messages[0].content: must be text, got int"]),
    ("messages_is_object", "convert", "bad_data/wrong_types_messages.jsonl",
     ["wrong_types_messages.jsonl:1:", "messages: must be a list"]),
    ("instruction_is_number", "convert", "bad_inputs/data/alpaca_wrong_type.json",
     ["alpaca_wrong_type.json:1:", "instruction: must be text, got int"]),
    ("record_is_array", "convert", "bad_inputs/data/array_line.jsonl", ["array_line.jsonl:2:", "must be an object"]),
    ("top_level_scalar", "convert", "bad_inputs/data/scalar.json",
     ["scalar.json:1:", "expected a JSON array or JSON lines"]),
    ("empty_conversation", "convert", "bad_data/empty_conversation.jsonl",
     ["empty_conversation.jsonl:2:", "empty conversation"]),
    ("empty_messages", "convert", "bad_data/empty_messages.jsonl", ["empty_messages.jsonl:2:", "empty conversation"]),
    ("no_assistant", "convert", "bad_data/no_assistant.jsonl", ["no_assistant.jsonl:1:", "no assistant turn"]),
    ("null_answer", "convert", "bad_inputs/data/null_answer.jsonl",
     ["null_answer.jsonl:2:", "every assistant answer is empty"]),
    ("xtuner_turn_without_output", "convert", "bad_inputs/data/xtuner_no_output.json",
     ["xtuner_no_output.json:1:", "conversation[0].output: missing"]),
    ("unknown_role", "convert", "bad_data/bad_role.jsonl", ["bad_role.jsonl:1:", "messages[0].role: unknown role"]),
    ("unknown_fields", "convert", "bad_data/unknown_fields.jsonl", ["unknown_fields.jsonl:1:", "cannot tell the format"]),
    ("missing_image", "convert", "bad_data/missing_image.json", ["missing_image.json:16:", "image: image not found"]),
    ("not_an_image", "validate", "bad_inputs/data/not_an_image.json",
     ["not_an_image.json:", "images:", "not a readable image"]),
    ("non_utf8", "convert", "bad_data/non_utf8.jsonl", ["non_utf8.jsonl:2:", "not UTF-8"]),
    ("zero_byte", "convert", "bad_inputs/data/zero_byte.jsonl", ["zero_byte.jsonl:1:", "the file is empty"]),
    ("whitespace_only", "convert", "bad_inputs/data/whitespace_only.jsonl", ["whitespace_only.jsonl:1:", "empty"]),
    ("ten_mb_line", "convert", "{huge}", ["huge.jsonl:2:", "line is longer than 8 MB"]),
    # -- data files: what must never be opened, or parsed without bounds (core/data/sources.py)
    ("device_file", "convert", "/dev/zero", ["/dev/zero: is a character device, not a data file"]),
    ("fifo", "convert", "{fifo}", ["pipe.jsonl: is a FIFO (named pipe), not a data file"]),
    ("deep_json", "convert", "{deep}", ["deep.json:3:", "nested deeper than 100 levels"]),
    ("huge_integer", "convert", "{bigint}", ["bigint.jsonl:2:", "a number with 5000 digits"]),
    ("lone_surrogate", "convert", "{surrogate}", ["surrogate.jsonl:2:", "lone surrogate \\ud800"]),
    ("binary_file", "convert", "{binary}", ["weights.bin: binary file: not JSON/CSV/Parquet/text"]),
    ("csv_bad_row", "convert", "{bad_csv}", ["bad_row.csv:3:", "bad CSV row: 3 cells where the header has 2"]),
    ("csv_gbk", "convert", "{gbk_csv}", ["gbk.csv:3:", "not UTF-8", "byte offset", "iconv -f GBK"]),
    ("parquet_cut", "convert", "{cut_parquet}", ["cut.parquet:", "Parquet"]),
    # -- run configs
    ("lr_wrong_type", "train", "bad_inputs/configs/lr_wrong_type.yaml", ["lr_wrong_type.yaml", "lr: expected a number"]),
    ("unknown_key", "train", "bad_inputs/configs/unknown_key.yaml", ["unknown_key.yaml", "lerning_rate: unknown setting"]),
    ("negative_lr", "train", "bad_inputs/configs/negative_lr.yaml", ["negative_lr.yaml", "lr: must be > 0"]),
    ("zero_batch", "train", "bad_inputs/configs/zero_batch.yaml", ["zero_batch.yaml", "batch_size: must be > 0"]),
    ("max_length_text", "train", "bad_inputs/configs/max_length_text.yaml",
     ["max_length_text.yaml", "max_length: expected a whole number"]),
    ("lora_r_float", "train", "bad_inputs/configs/lora_r_float.yaml",
     ["lora_r_float.yaml", "lora_r: expected a whole number"]),
    ("unknown_method", "train", "bad_inputs/configs/unknown_method.yaml",
     ["unknown_method.yaml", "method: 'dora' is not one of"]),
    ("unknown_template", "train", "bad_inputs/configs/unknown_template.yaml",
     ["unknown_template.yaml", "prompt_template: 'chatgpt' is not one of"]),
    ("warmup_out_of_range", "train", "bad_inputs/configs/warmup_out_of_range.yaml",
     ["warmup_out_of_range.yaml", "warmup_ratio: must be in [0, 1)"]),
    ("eval_inputs_not_list", "train", "bad_inputs/configs/eval_inputs_not_list.yaml",
     ["eval_inputs_not_list.yaml", "evaluation_inputs: expected a list"]),
    ("yaml_syntax", "train", "bad_inputs/configs/yaml_syntax.yaml", ["yaml_syntax.yaml:4:", "not valid YAML"]),
    ("config_not_a_mapping", "train", "bad_inputs/configs/not_a_mapping.yaml",
     ["not_a_mapping.yaml", "expected a mapping of settings"]),
    ("no_model_given", "train", "bad_inputs/configs/no_model.yaml", ["pretrained_model_name_or_path: no model given"]),
    ("missing_model_folder", "train", "bad_inputs/configs/missing_model.yaml",
     ["pretrained_model_name_or_path: model path /nonexistent/models/internlm2-chat-1_8b does not exist"]),
    ("model_folder_without_config", "train", "bad_inputs/configs/model_without_config.yaml",
     ["pretrained_model_name_or_path:", "has no config.json"]),
    ("missing_data_file", "train", "bad_inputs/configs/missing_data.yaml",
     ["data_path: no data file at /nonexistent/data/identity.jsonl"]),
    ("no_chat_template_no_choice", "train", "bad_inputs/configs/no_chat_template.yaml",
     ["prompt_template: the tokenizer in", "has no chat template"]),
    ("xtuner_py_syntax", "import-xtuner", "bad_inputs/configs/xtuner_syntax.py",
     ["xtuner_syntax.py:5:", "not valid Python"]),
    ("xtuner_py_wrong_type", "import-xtuner", "bad_inputs/configs/xtuner_wrong_type.py",
     ["lr: expected a number", "xtuner_wrong_type.py:4"]),
    # -- models and adapters
    ("chat_missing_model_folder", "chat", "/nonexistent/models/qwen", ["model path /nonexistent/models/qwen does not exist"]),
    ("chat_folder_without_config", "chat", "{empty_dir}", ["has no config.json"]),
    ("chat_no_chat_template", "chat", "{no_template}", ["no chat template", "prompt_template"]),
    ("chat_adapter_for_other_base", "chat-adapter", "{other_adapter}", ["other_adapter", "different base model"]),
    ("chat_not_an_adapter", "chat-adapter", "{empty_dir}", ["no PEFT adapter at", "adapter_config.json missing"]),
    ("merge_adapter_for_other_base", "merge", "{other_adapter}", ["other_adapter", "different base"]),
]
ACCEPTED = {"bom.jsonl": 2, "crlf.jsonl": 2, "bom_crlf_array.json": 2}


@pytest.fixture(scope="module")
def bounded(tmp_path_factory) -> dict[str, Path]:
    """The data files a parser must refuse (made here: a FIFO, 100k-deep JSON, binary), no model needed."""
    return _bounded_parsing_cases(tmp_path_factory.mktemp("bounded"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model, bounded) -> dict[str, Path]:
    """The cases that are made rather than stored: 10 MB line, folders, a foreign adapter, filled configs."""
    root = tmp_path_factory.mktemp("corpus")
    huge = root / "huge.jsonl"
    with open(huge, "w", encoding="utf-8") as f:
        f.write('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
        f.write('{"messages": [{"role": "user", "content": "' + "x" * (10 << 20) + '"}]}\n')
    empty_dir = root / "empty_model"
    empty_dir.mkdir()
    (empty_dir / "README.md").write_text("weights go here\n")
    no_template = root / "no_template"
    shutil.copytree(tiny_model, no_template)
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    tc = json.loads((no_template / "tokenizer_config.json").read_text(encoding="utf-8"))
    tc.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(tc), encoding="utf-8")
    data = root / "ok.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n',
                    encoding="utf-8")
    prompts = root / "prompts.txt"
    prompts.write_text("hi\n", encoding="utf-8")
    made = {**bounded, "huge": huge, "empty_dir": empty_dir, "no_template": no_template, "data": data, "tiny": tiny_model,
            "prompts": prompts, "other_adapter": _other_adapter(root / "other_adapter", tiny_model)}
    configs = root / "configs"
    configs.mkdir()
    for src in (BAD_IN / "configs").glob("*.yaml"):
        text = src.read_text(encoding="utf-8")
        for k, v in made.items():
            text = text.replace("{" + k + "}", str(v))
        (configs / src.name).write_text(text, encoding="utf-8")
    made["configs"] = configs
    return made


def _bounded_parsing_cases(root: Path) -> dict[str, Path]:
    """Files a parser must refuse with file:line instead of a traceback, a hang or gigabytes read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ok = '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}'
    made = {name: root / name for name in ("deep.json", "bigint.jsonl", "surrogate.jsonl", "weights.bin",
                                           "bad_row.csv", "gbk.csv", "cut.parquet", "pipe.jsonl")}
    made["deep.json"].write_text("[\n" + ok + ",\n" + "[" * 100_000 + "]" * 100_000 + "\n]", encoding="utf-8")
    made["bigint.jsonl"].write_text(ok + '\n{"id": ' + "7" * 5000 + "}\n", encoding="utf-8")
    made["surrogate.jsonl"].write_text(ok + '\n' + ok.replace('"q"', '"\\ud800"') + "\n", encoding="utf-8")
    made["weights.bin"].write_bytes(bytes(range(256)) * 64)
    made["bad_row.csv"].write_text("instruction,output\nq,a\nq2,a2,extra\n", encoding="utf-8")
    made["gbk.csv"].write_bytes(b"instruction,output\nq,a\n" + "问题,答案\n".encode("gbk"))
    good = root / "good.parquet"
    pq.write_table(pa.Table.from_pylist([{"instruction": "q", "output": "a"}] * 50), good)
    made["cut.parquet"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    os.mkfifo(made["pipe.jsonl"])
    return {"deep": made["deep.json"], "bigint": made["bigint.jsonl"], "surrogate": made["surrogate.jsonl"],
            "binary": made["weights.bin"], "bad_csv": made["bad_row.csv"], "gbk_csv": made["gbk.csv"],
            "cut_parquet": made["cut.parquet"], "fifo": made["pipe.jsonl"]}


@pytest.mark.parametrize("target", ["/dev/zero", "{fifo}"])
def test_validate_refuses_devices_and_pipes_at_once(target, bounded):
    """`data validate /dev/zero` used to read without end, a FIFO blocked forever: now exit 1 at once."""
    from tests.reliability.conftest import studio

    path = str(_input(target, bounded))
    r = studio("data", "validate", path, timeout=120)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "not a data file" in r.stderr


def _other_adapter(out: Path, tiny_model: Path) -> Path:
    """A LoRA adapter of a model twice as wide as the tiny one (a 7B adapter on a 1.8B base, in small)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    c = json.loads((tiny_model / "config.json").read_text(encoding="utf-8"))
    torch.manual_seed(0)
    wide = LlamaForCausalLM(LlamaConfig(vocab_size=c["vocab_size"], hidden_size=2 * c["hidden_size"],
                                        intermediate_size=c["intermediate_size"], num_hidden_layers=c["num_hidden_layers"],
                                        num_attention_heads=c["num_attention_heads"]))
    get_peft_model(wide, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")).save_pretrained(out)
    return out


def _input(spec: str, corpus: dict) -> Path:
    if spec.startswith("{"):
        return Path(corpus[spec.strip("{}")])
    if spec.startswith("bad_inputs/configs/") and spec.endswith(".yaml"):
        return corpus["configs"] / Path(spec).name
    return FIX / spec if not spec.startswith("/") else Path(spec)


def _argv(verb: str, src: Path, out: Path, corpus: dict) -> list[str]:
    tiny, prompts = str(corpus["tiny"]), str(corpus["prompts"])
    return {
        "convert": ["data", "convert", str(src), "-o", str(out)],
        "validate": ["data", "validate", str(src)],
        "train": ["train", str(src), "--work-dir", str(out)],
        "import-xtuner": ["import-xtuner", str(src), "-o", str(out)],
        "chat": ["chat", str(src), "--prompts", prompts, "--json", "--max-new-tokens", "2"],
        "chat-adapter": ["chat", tiny, "--adapter", str(src), "--prompts", prompts, "--json", "--max-new-tokens", "2"],
        "merge": ["merge", tiny, str(src), str(out)],
    }[verb]


def test_the_corpus_has_at_least_30_distinct_cases():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
    stored = {p.name for p in (BAD_IN / "data").iterdir()} | {p.name for p in (BAD_IN / "configs").iterdir()}
    used = {Path(c[2]).name for c in CASES}
    assert stored - used <= {"not_an_image.png"}, "every stored bad input is in the table"


@pytest.mark.parametrize("case, verb, spec, words", CASES, ids=[c[0] for c in CASES])
def test_cli_gives_one_clear_error_and_no_output(case, verb, spec, words, corpus, tmp_path, capsys):
    src = _input(spec, corpus)
    out = tmp_path / ("out" if verb in ("train", "merge") else "out.jsonl" if verb != "import-xtuner" else "out.yaml")
    code = main(_argv(verb, src, out, corpus))
    cap = capsys.readouterr()
    err = cap.err
    assert code == 1, f"exit {code}\n{err[-2000:]}"
    assert "Traceback" not in err + cap.out
    if verb == "validate":  # the report lists each problem as file:line: field: message
        problems = [ln for ln in err.splitlines() if re.match(r"\S+:\d+: ", ln)]
        assert len(problems) == 1, err
        msg = problems[0]
    else:
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, err
        msg = err[err.index("error:"):]
        assert len(msg.strip().splitlines()) <= 2, f"one message and a hint, not more:\n{msg}"
    for w in words:
        assert w in msg, f"{w!r} not in:\n{msg}"
    assert not out.exists(), "a failed command leaves no output behind"
    assert not list(tmp_path.glob(".*.tmp")), "no temp file left behind"


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_bom_and_crlf_are_read_not_refused(name, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(BAD_DATA / name), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == ACCEPTED[name]
    assert not any("\ufeff" in m["content"] or "\r" in m["content"] for r in rows for m in r["messages"])


# ---------------------------------------------------------------------------- the same inputs on the pages

DATA_CASES = [c for c in CASES if c[1] in ("convert", "validate") and not c[2].startswith("{")]
CONFIG_CASES = [c for c in CASES if c[1] == "train"]


def _page(name: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "pages" / f"{name}.py"), default_timeout=120)
    at.query_params["lang"] = "en"
    return at


def _shown(at) -> str:
    return "\n".join([e.value for e in at.error] + [c.value for c in at.code] + [w.value for w in at.warning])


def test_data_page_names_file_and_line_for_every_bad_data_file(ws):
    """One AppTest session, every data case picked in turn (as a user picking files does)."""
    at = _page("data")
    for case, _verb, spec, words in DATA_CASES:
        src = FIX / spec
        (ws / "studio.json").write_text(json.dumps({"data": str(src), "lang": "en"}), encoding="utf-8")
        at.run()
        assert not at.exception, (case, [e.value for e in at.exception])
        shown = _shown(at)
        for w in words:
            assert w in shown, f"{case}: {w!r} not shown on the Data page:\n{shown}"
    assert not (ws / "data").exists() or not any((ws / "data").iterdir()), "inspecting writes nothing"


def test_train_page_start_names_the_field_for_every_bad_config(ws, corpus):
    """Each bad config saved where the Train page lists configs; Start shows the error, starts no run."""
    cfgs = ws / "configs"
    cfgs.mkdir()
    for case, _verb, spec, words in CONFIG_CASES:
        for p in cfgs.iterdir():
            p.unlink()
        shutil.copy(corpus["configs"] / Path(spec).name, cfgs / Path(spec).name)
        (ws / "studio.json").write_text(json.dumps({"config": str(cfgs / Path(spec).name), "lang": "en"}))
        at = _page("train").run()
        assert not at.exception, (case, [e.value for e in at.exception])
        at.button(key="start_run").click().run()
        assert not at.exception, (case, [e.value for e in at.exception])
        shown = _shown(at)
        for w in words:
            assert w in shown, f"{case}: {w!r} not shown on the Train page:\n{shown}"
        assert not (ws / "runs").exists() or not any((ws / "runs").iterdir()), f"{case}: a run was started"
