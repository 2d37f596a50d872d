"""Real chat templates on the tiny tokenizer: exactly the answers and tool calls are trained.

The templates are the chat_template strings of real tokenizer_config.json files
(tests/fixtures/real/templates/PROVENANCE.md); the samples are real rows of XTuner's and
LLaMA-Factory's tool/reasoning data. Each test decodes the labelled spans and compares them with
what the model must learn.

    python -m pytest tests/unit/test_train_templates.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from core.errors import DataError
from core.templates import TEMPLATES
from core.train.dataset import IGNORE, SampleError, encode_all, encode_sample

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "templates"
REFDATA = Path(__file__).resolve().parents[2].parent / "shared" / "refdata"


@pytest.fixture(scope="module")
def tiny_tokenizer():
    """Only the tiny tokenizer (core.tiny builds it locally); these tests need no model."""
    from core.tiny import build_tokenizer

    return build_tokenizer()


def _tok(tiny_tokenizer, name: str):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (FIX / name).read_text(encoding="utf-8") if name.endswith(".jinja") else TEMPLATES[name][0]
    if name.startswith("llama3"):
        tok.add_special_tokens({"bos_token": "<|begin_of_text|>"})  # Llama 3's template adds it to a string
    return tok


def _spans(tok, enc) -> tuple[list[str], str]:
    """(the trained spans, decoded one by one; everything not trained, decoded as one text)."""
    spans, cur, ctx = [], [], []
    for t, lab in zip(enc["input_ids"], enc["labels"], strict=True):
        if lab != IGNORE:
            cur.append(t)
        else:
            if cur:
                spans.append(tok.decode(cur))
                cur = []
            ctx.append(t)
    if cur:
        spans.append(tok.decode(cur))
    return spans, tok.decode(ctx)


def _xtuner_rows() -> dict[int, dict]:
    rows = [json.loads(line) for line in (FIX / "xtuner_qwen35_tokenize_data.jsonl").read_text("utf-8").splitlines()]
    return {r["id"]: r for r in rows}


def _full(tok, sample) -> str:
    return tok.apply_chat_template(sample["messages"], tools=sample.get("tools"), tokenize=False)


WEATHER = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "{\"temp\": 21}"},
        {"role": "assistant", "content": "It is 21 degrees in Paris."},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                "parameters": {"type": "object",
                                                               "properties": {"city": {"type": "string"}}}}}],
}


# ---------------------------------------------------------------------------- Qwen2.5-Instruct (tools)

def test_qwen25_trains_the_call_and_the_answer_only(tiny_tokenizer):
    tok = _tok(tiny_tokenizer, "qwen2_5_instruct.jinja")
    enc = encode_sample(tok, WEATHER, 4096)
    spans, ctx = _spans(tok, enc)
    assert spans == ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n',
                     "It is 21 degrees in Paris.<|im_end|>\n"]
    # the tools reach the prompt through tools=, the result and the system prompt are context
    assert "<tools>" in ctx and '"name": "get_weather", "description": "Weather of a city"' in ctx
    assert "<tool_response>\n{\"temp\": 21}\n</tool_response>" in ctx and "You are a weather bot." in ctx
    # nothing else: the pieces are exactly the template's own rendering (arguments as a dict, as HF expects)
    tools_sample = {**WEATHER, "messages": copy.deepcopy(WEATHER["messages"])}
    tools_sample["messages"][2]["tool_calls"][0]["function"]["arguments"] = {"city": "Paris"}
    assert tok.decode(enc["input_ids"]) == _full(tok, tools_sample)


def test_qwen25_loss_false_and_legacy_tool_call(tiny_tokenizer):
    tok = _tok(tiny_tokenizer, "qwen2_5_instruct.jinja")
    sample = copy.deepcopy(WEATHER)
    sample["messages"][4]["loss"] = False
    spans, ctx = _spans(tok, encode_sample(tok, sample, 4096))
    assert len(spans) == 1 and spans[0].startswith("<tool_call>") and "It is 21 degrees" in ctx
    # the old sharegpt function_call conversion: "tool_call": true, content = the call's JSON
    legacy = copy.deepcopy(WEATHER)
    legacy["messages"][2] = {"role": "assistant", "tool_call": True,
                             "content": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"}
    assert _spans(tok, encode_sample(tok, legacy, 4096))[0] == _spans(tok, encode_sample(tok, WEATHER, 4096))[0]


@pytest.mark.skipif(not (REFDATA / "llamafactory" / "glaive_toolcall_en_demo.json").is_file(),
                    reason="needs ../shared/refdata (LLaMA-Factory glaive_toolcall_en_demo.json)")
def test_glaive_toolcall_demo_every_row(tiny_tokenizer):
    """All 300 rows of LLaMA-Factory's tool-call demo (sharegpt function_call/observation + tools), as canonical."""
    tok = _tok(tiny_tokenizer, "qwen2_5_instruct.jinja")
    rows = json.loads((REFDATA / "llamafactory" / "glaive_toolcall_en_demo.json").read_text("utf-8"))
    roles = {"human": "user", "gpt": "assistant", "observation": "tool", "system": "system"}
    for n, row in enumerate(rows):
        messages, answers, results = [], [], []
        for turn in row["conversations"]:
            if turn["from"] == "function_call":
                call = json.loads(turn["value"])
                messages.append({"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": call["name"],
                                                      "arguments": json.dumps(call["arguments"])}}]})
                answers.append(call["name"])
            else:
                messages.append({"role": roles[turn["from"]], "content": turn["value"]})
                if turn["from"] == "gpt":
                    answers.append(turn["value"])
                elif turn["from"] == "observation":
                    results.append(turn["value"])
        sample = {"messages": messages, "tools": row["tools"]}  # a JSON string, as in the file
        enc = encode_sample(tok, sample, 1 << 16)
        spans, ctx = _spans(tok, enc)
        assert len(spans) == len(answers), n
        for span, answer in zip(spans, answers, strict=True):
            assert answer.strip() in span and span.endswith("<|im_end|>\n"), (n, span)
        assert all(r in ctx for r in results) and ("# Tools" in ctx) == (row["tools"] != "[]"), n
        assert tok.decode(enc["input_ids"]) == _full(tok, {"messages": [
            {**m, "tool_calls": [{"function": {"name": c["function"]["name"],
                                               "arguments": json.loads(c["function"]["arguments"])}}
                                 for c in m["tool_calls"]]} if m.get("tool_calls") else m
            for m in messages], "tools": json.loads(row["tools"])}), n


# ---------------------------------------------------------------------------- Qwen3 (reasoning + tools)

def test_qwen3_reasoning_where_the_template_puts_it(tiny_tokenizer):
    tok = _tok(tiny_tokenizer, "qwen3.jinja")
    rows = _xtuner_rows()
    spans, ctx = _spans(tok, encode_sample(tok, rows[2], 4096))
    assert spans == ["<think>\n这是 reasoning_content 内容\n</think>\n\n我需要先调用一些工具才能知道<|im_end|>\n"]
    assert "这是单轮有think例子" in ctx

    # multi-turn: Qwen3 keeps reasoning only after the last question; each answer is still trained as rendered
    enc = encode_sample(tok, rows[6], 4096)
    spans, _ = _spans(tok, enc)
    assert spans == ["我需要先调用一些工具才能知道<|im_end|>\n", "好的，我知道这是第二个问题<|im_end|>\n",
                     "<think>\n这是 reasoning_content 内容 2\n</think>\n\n好的，我知道这是第三个问题<|im_end|>\n"]
    assert tok.decode(enc["input_ids"]) == _full(tok, rows[6])


def test_qwen3_agent_turns_keep_every_reasoning_and_call(tiny_tokenizer):
    tok = _tok(tiny_tokenizer, "qwen3.jinja")
    rows = _xtuner_rows()
    enc = encode_sample(tok, rows[11], 8192)
    spans, ctx = _spans(tok, enc)
    assert spans == [
        "<think>\n这是 reasoning_content 内容\n</think>\n\n我需要先调用一些工具才能知道\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Boston"}}\n</tool_call><|im_end|>\n',
        "<think>\n这是 reasoning_content 内容 2\n</think>\n\n我现在知道北京的天气了，我需要继续知道上海的天气\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"location": "shanghai"}}\n</tool_call><|im_end|>\n',
        "<think>\n\n</think>\n\n基于我的观察，今天北京的天气是35度，上海的天气是25度。<|im_end|>\n",
    ]
    assert "<tool_response>\n35\n</tool_response>" in ctx and "get_current_wind_speed" in ctx
    assert tok.decode(enc["input_ids"]) == _full(tok, rows[11])

    # a second real question: the first round's reasoning is gone from the rendering, its answers still trained
    enc = encode_sample(tok, rows[12], 8192)
    spans, ctx = _spans(tok, enc)
    assert tok.decode(enc["input_ids"]) == _full(tok, rows[12])
    assert "内容 1" not in "".join(spans) + ctx and len(spans) == 4
    assert spans[0].startswith("我需要先调用一些工具才能知道\n<tool_call>") and "35" not in spans[0]
    assert spans[2].startswith("<think>\n这是 reasoning_content 内容 2\n</think>")


def test_qwen3_thinking_template_opens_think_in_the_prompt(tiny_tokenizer):
    tok = _tok(tiny_tokenizer, "qwen3_thinking_2507.jinja")
    enc = encode_sample(tok, _xtuner_rows()[8], 8192)
    spans, ctx = _spans(tok, enc)
    # the generation prompt ends in "<think>\n": the model learns from the reasoning on
    assert spans[-1] == "这是 reasoning_content 内容\n</think>\n\n基于我的观察，今天北京的天气是35度。<|im_end|>\n"
    assert ctx.endswith("<|im_start|>assistant\n<think>\n")
    # the call turn has no reasoning and is no longer last: this template renders it without a think block
    assert spans[0].startswith("我需要先调用一些工具才能知道\n<tool_call>") and len(spans) == 2
    assert tok.decode(enc["input_ids"]) == _full(tok, _xtuner_rows()[8])


# ---------------------------------------------------------------------------- templates without tool support

def test_internlm2_template_gets_tools_and_calls_as_text(tiny_tokenizer):
    tok = _tok(tiny_tokenizer, "internlm2_chat.jinja")
    sample = _xtuner_rows()[8]
    enc = encode_sample(tok, sample, 8192)
    spans, ctx = _spans(tok, enc)
    assert spans == ['我需要先调用一些工具才能知道\n{"name": "get_weather", "arguments": {"location": "Boston"}}'
                     "<|im_end|>\n",
                     "<think>\n这是 reasoning_content 内容\n</think>\n\n基于我的观察，今天北京的天气是35度。<|im_end|>\n"]
    # the tools are not dropped: the system turn lists them; the result is context
    assert ctx.startswith("<|im_start|>system\n这是单轮有think+toolcall例子\n\n# Tools\n\n{\"type\": \"function\"")
    assert "get_current_wind_speed" in ctx and "<|im_start|>tool\n35<|im_end|>" in ctx


def test_llama3_template_without_tools(tiny_tokenizer):
    tok = _tok(tiny_tokenizer, "llama3_instruct.jinja")
    spans, ctx = _spans(tok, encode_sample(tok, WEATHER, 4096))
    assert spans == ['{"name": "get_weather", "arguments": {"city": "Paris"}}<|eot_id|>',
                     "It is 21 degrees in Paris.<|eot_id|>"]
    assert "# Tools" in ctx and "<|start_header_id|>tool<|end_header_id|>\n\n{\"temp\": 21}<|eot_id|>" in ctx


# ---------------------------------------------------------------------------- the XTuner fallbacks

@pytest.mark.parametrize("name, call", [
    ("qwen_chat", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
    ("internlm2_chat", '<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": "Paris"}}'
                       "<|action_end|>\n"),
    ("llama3_chat", '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    ("default", '{"name": "get_weather", "arguments": {"city": "Paris"}}'),
])
def test_fallback_templates_render_tools(tiny_tokenizer, name, call):
    tok = _tok(tiny_tokenizer, name)
    sample = copy.deepcopy(WEATHER)
    sample["messages"][4]["reasoning_content"] = "Read the tool result."
    spans, ctx = _spans(tok, encode_sample(tok, sample, 4096))
    assert len(spans) == 2 and spans[0].startswith(call)
    assert spans[1].startswith("<think>\nRead the tool result.\n</think>\n\nIt is 21 degrees in Paris.")
    assert "Weather of a city" in ctx and '{"temp": 21}' in ctx and "You are a weather bot." in ctx
    assert "# Tools\n\n{" not in ctx  # the template lists them in its own form, not the generic text


def test_fallback_templates_render_plain_chats_as_before(tiny_tokenizer):
    conv = [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    expected = {
        "qwen_chat": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n",
        "internlm2_chat": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq<|im_end|>\n"
                          "<|im_start|>assistant\na<|im_end|>\n",
        "llama3_chat": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\na<|eot_id|>",
        "default": "<|System|>:S\n<|User|>:q\n<|Bot|>:a<|im_end|>\n",
    }
    for name, text in expected.items():
        assert _tok(tiny_tokenizer, name).apply_chat_template(conv, tokenize=False) == text, name


# ---------------------------------------------------------------------------- refusals

def test_a_template_that_fails_names_the_sample(tiny_tokenizer):
    tok = _tok(tiny_tokenizer, "qwen_chat")
    tok.chat_template = "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(DataError, match=r"^d\.jsonl: sample 1: messages: the chat template refused it: "
                                        r"Conversation roles must alternate"):
        encode_all(tok, [good], 64, source="d.jsonl")


def test_loss_true_on_a_prompt_turn_is_refused(tiny_tokenizer):
    sample = {"messages": [{"role": "user", "content": "q", "loss": True}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(SampleError, match=r"messages\[0\]\.loss: true on a user turn"):
        encode_sample(tiny_tokenizer, sample, 64)
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(DataError) as err:
        encode_all(tiny_tokenizer, [good, sample], 64, source="data/mine.jsonl")
    assert str(err.value).startswith("data/mine.jsonl: sample 2: messages[0].loss: true on a user turn")
    assert err.value.hint


def test_videos_and_audios_are_refused_at_load(tiny_tokenizer):
    text = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    video = {"messages": [{"role": "user", "content": "<video>What happens?"}, {"role": "assistant", "content": "A"}],
             "videos": ["a.mp4"]}
    audio = {"messages": [{"role": "user", "content": "<audio>Transcribe"}, {"role": "assistant", "content": "B"}],
             "audios": ["a.wav"]}
    with pytest.raises(DataError) as err:
        encode_all(tiny_tokenizer, [text, video, text, audio, video], 64, source="/d/mllm_video_audio_demo.json")
    msg = str(err.value)
    assert msg.startswith("/d/mllm_video_audio_demo.json: ")
    assert "2 sample(s) with videos" in msg and "1 sample(s) with audios" in msg and "first: sample 2" in msg
    assert "mllm_video_audio_demo.json" in err.value.hint and "text-only" in err.value.hint
    image = {"messages": [{"role": "user", "content": "<image>What?"}, {"role": "assistant", "content": "C"}],
             "images": ["x.jpg"]}
    with pytest.raises(DataError, match="1 sample\\(s\\) with images") as err:
        encode_all(tiny_tokenizer, [image], 64, source="d.json")
    assert "llava" in err.value.hint
    assert encode_all(tiny_tokenizer, [text], 64)[1]["samples"] == 1


def test_llava_path_keeps_images_and_refuses_videos():
    from core.train.dataset import refuse_unusable_media

    image = {"messages": [{"role": "user", "content": "<image>What?"}, {"role": "assistant", "content": "C"}],
             "images": ["x.jpg"]}
    assert list(refuse_unusable_media([image], "d.json", usable=("images",), model="a LLaVA model")) == [image]
    video = {**image, "videos": ["v.mp4"]}
    with pytest.raises(DataError, match="1 sample\\(s\\) with videos \\(first: sample 2\\); a LLaVA model"):
        list(refuse_unusable_media([image, video], "d.json", usable=("images",), model="a LLaVA model"))


def test_a_template_that_names_tools_but_drops_them_gets_them_as_text(tiny_tokenizer):
    tok = _tok(tiny_tokenizer, "qwen_chat")
    # mentions tools and tool_calls, renders neither
    tok.chat_template = ("{% set _ = tools %}{% for m in messages %}{% if m.tool_calls is defined %}{% endif %}"
                         "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    spans, ctx = _spans(tok, encode_sample(tok, WEATHER, 4096))
    assert spans[0] == '{"name": "get_weather", "arguments": {"city": "Paris"}}<|im_end|>\n'
    assert "# Tools" in ctx and "Weather of a city" in ctx


def test_the_same_through_the_data_reader(tiny_tokenizer):
    """The studio's reader keeps calls, tools and reasoning (canonical form): training renders them identically."""
    from core.data import read_samples

    tok = _tok(tiny_tokenizer, "qwen3.jinja")
    rows = _xtuner_rows()
    read = list(read_samples(FIX / "xtuner_qwen35_tokenize_data.jsonl"))
    assert len(read) == len(rows)
    for got, row in zip(read, rows.values(), strict=True):
        assert encode_sample(tok, got, 8192) == encode_sample(tok, row, 8192), row["id"]


def test_qwen25_parallel_calls_and_grouped_results(tiny_tokenizer):
    """Two calls in one turn, two results (Qwen2.5 groups them in one user turn, re-rendering the first)."""
    tok = _tok(tiny_tokenizer, "qwen2_5_instruct.jinja")
    calls = [{"type": "function", "function": {"name": "w", "arguments": "{\"c\": \"Paris\"}"}},
             {"type": "function", "function": {"name": "w", "arguments": "{\"c\": \"Rome\"}"}}]
    sample = {"messages": [{"role": "user", "content": "Weather in Paris and Rome?"},
                           {"role": "assistant", "content": "Checking both.", "tool_calls": calls},
                           {"role": "tool", "content": "P=20"}, {"role": "tool", "content": "R=25"},
                           {"role": "assistant", "content": "Paris 20, Rome 25."}]}
    enc = encode_sample(tok, sample, 4096)
    spans, ctx = _spans(tok, enc)
    assert spans == ['Checking both.\n<tool_call>\n{"name": "w", "arguments": {"c": "Paris"}}\n</tool_call>\n'
                     '<tool_call>\n{"name": "w", "arguments": {"c": "Rome"}}\n</tool_call><|im_end|>\n',
                     "Paris 20, Rome 25.<|im_end|>\n"]
    assert "<tool_response>\nP=20\n</tool_response>\n<tool_response>\nR=25\n</tool_response><|im_end|>" in ctx
