"""Chat templates: the tokenizer's own first, XTuner's named templates as fallbacks.

XTuner ships prompt templates by name (internlm2_chat, qwen_chat, llama3_chat, default); models
without a chat template in their tokenizer (base models, old checkpoints) get one of those, written
here as Jinja so that training, chat, merge checks and the Space app all render prompts the same
way through `tokenizer.apply_chat_template`. Each also renders tools (`tools=`), assistant
`tool_calls` and `tool` results in its family's own form (Qwen2.5's <tool_call>, InternLM2's plugin
actions, Llama 3.1's JSON calls); a conversation without them renders exactly as before.

    python -c "from core.templates import TEMPLATES; print(sorted(TEMPLATES))"
"""

from __future__ import annotations

from core.errors import StudioError

# A call's arguments: Hugging Face passes them as a dict (tojson), a string is already JSON.
_ARGS = "{% if call.arguments is string %}{{ call.arguments }}{% else %}{{ call.arguments | tojson }}{% endif %}"
_CALL = "{% set call = tc.function if tc.function is defined else tc %}"
_TOOL = "{% set fn = tool.function if tool.function is defined else tool %}"

# ChatML, as in Qwen2.5: tools listed in the system turn, each call as <tool_call>{json}</tool_call> after the
# answer, results as <tool_response> in a user turn. Without tools the rendering is plain ChatML.
_CHATML = (
    "{% if tools %}"
    "{{ '<|im_start|>system\n' }}"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% endif %}"
    "{{ '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}"
    "{% for tool in tools %}{{ '\n' }}{{ tool | tojson }}{% endfor %}"
    "{{ '\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}"
    "\n</tool_call><|im_end|>\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if tools and loop.first and message['role'] == 'system' %}"
    "{% elif message['role'] == 'tool' %}"
    "{{ '<|im_start|>user\n<tool_response>\n' + message['content'] + '\n</tool_response><|im_end|>\n' }}"
    "{% elif message['role'] == 'assistant' and message.tool_calls %}"
    "{{ '<|im_start|>assistant\n' + message['content'] }}"
    "{% for tc in message.tool_calls %}" + _CALL +
    "{% if message['content'] or not loop.first %}{{ '\n' }}{% endif %}"
    "{{ '<tool_call>\n{\"name\": \"' + call.name + '\", \"arguments\": ' }}" + _ARGS + "{{ '}\n</tool_call>' }}"
    "{% endfor %}"
    "{{ '<|im_end|>\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# InternLM2's own agent format (InternLM2-chat's plugin protocol): tools in a `system name=<|plugin|>` turn,
# calls as <|action_start|><|plugin|>{"name", "parameters"}<|action_end|>, results from `environment`.
_IL_TOOLS = (
    "{{ '<|im_start|>system name=<|plugin|>\n[' }}"
    "{% for tool in tools %}" + _TOOL + "{{ (', ' if not loop.first else '') + (fn | tojson) }}{% endfor %}"
    "{{ ']<|im_end|>\n' }}"
)
_INTERNLM2 = (
    "{% if tools and messages[0]['role'] != 'system' %}" + _IL_TOOLS + "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}"
    "{{ '<|im_start|>environment name=<|plugin|>\n' + message['content'] + '<|im_end|>\n' }}"
    "{% elif message['role'] == 'assistant' and message.tool_calls %}"
    "{{ '<|im_start|>assistant\n' + message['content'] }}"
    "{% for tc in message.tool_calls %}" + _CALL +
    "{{ '<|action_start|><|plugin|>\n{\"name\": \"' + call.name + '\", \"parameters\": ' }}" + _ARGS +
    "{{ '}<|action_end|>\n' }}"
    "{% endfor %}"
    "{{ '<|im_end|>\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% if loop.first and tools and message['role'] == 'system' %}" + _IL_TOOLS + "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Llama 3.1's JSON tool calling: the functions in the system turn, a call as {"name", "parameters"} in the
# answer, its result from the `ipython` role.
_LLAMA3 = (
    "{{ '<|begin_of_text|>' }}"
    "{% if tools %}"
    "{{ '<|start_header_id|>system<|end_header_id|>\n\n' }}"
    "{% if messages[0]['role'] == 'system' and messages[0]['content'] %}{{ messages[0]['content'] + '\n\n' }}{% endif %}"
    "{{ 'You have access to the following functions. To call a function, respond with JSON for a function call "
    "of the form {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}"
    "{% for tool in tools %}" + _TOOL + "{{ '\n\n' + (fn | tojson) }}{% endfor %}"
    "{{ '<|eot_id|>' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if not (tools and loop.first and message['role'] == 'system') %}"
    "{{ '<|start_header_id|>' + ('ipython' if message['role'] == 'tool' else message['role'])"
    " + '<|end_header_id|>\n\n' + message['content'] }}"
    "{% for tc in message.tool_calls or [] %}" + _CALL +
    "{% if message['content'] or not loop.first %}{{ '\n' }}{% endif %}"
    "{{ '{\"name\": \"' + call.name + '\", \"parameters\": ' }}" + _ARGS + "{{ '}' }}"
    "{% endfor %}"
    "{{ '<|eot_id|>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# XTuner's `default` template: plain role tags, usable with any tokenizer; tools in the system tag, calls as
# JSON lines after the answer, results from <|Environment|>.
_DEFAULT = (
    "{% if tools %}{{ '<|System|>:' }}"
    "{% if messages[0]['role'] == 'system' and messages[0]['content'] %}{{ messages[0]['content'] + '\n' }}{% endif %}"
    "{% for tool in tools %}" + _TOOL + "{{ ('' if loop.first else '\n') + (fn | tojson) }}{% endfor %}"
    "{{ '\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if tools and loop.first and message['role'] == 'system' %}"
    "{% elif message['role'] == 'system' %}{{ '<|System|>:' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|User|>:' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'tool' %}{{ '<|Environment|>:' + message['content'] + '\n' }}"
    "{% else %}{{ '<|Bot|>:' + message['content'] }}"
    "{% for tc in message.tool_calls or [] %}" + _CALL +
    "{% if message['content'] or not loop.first %}{{ '\n' }}{% endif %}"
    "{{ '{\"name\": \"' + call.name + '\", \"arguments\": ' }}" + _ARGS + "{{ '}' }}"
    "{% endfor %}"
    "{{ eos_token + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|Bot|>:' }}{% endif %}"
)

# name -> (jinja template, stop words)
TEMPLATES: dict[str, tuple[str, list[str]]] = {
    "internlm2_chat": (_INTERNLM2, ["<|im_end|>"]),
    "qwen_chat": (_CHATML, ["<|im_end|>", "<|endoftext|>"]),
    "llama3_chat": (_LLAMA3, ["<|eot_id|>", "<|end_of_text|>"]),
    "default": (_DEFAULT, []),
}


def apply_template(tokenizer, name: str = "auto") -> str:
    """Make sure `tokenizer` has a chat template; returns the name of the one in use.

    `auto` keeps the tokenizer's own template, and fails with advice when there is none.
    """
    if name in ("auto", "", None):
        if getattr(tokenizer, "chat_template", None):
            return "tokenizer"
        raise StudioError(
            "this tokenizer has no chat template and prompt_template is 'auto'",
            hint="choose one of " + ", ".join(TEMPLATES) + " (prompt_template in the config, --prompt-template in chat)",
        )
    if name not in TEMPLATES:
        raise StudioError(f"unknown prompt_template {name!r}", hint="one of auto, " + ", ".join(TEMPLATES))
    tokenizer.chat_template = TEMPLATES[name][0]
    return name


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Token ids that end an answer: the model's eos ids plus the template's end-of-turn tokens."""
    ids: list[int] = []
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    for value in (eos, tokenizer.eos_token_id):
        if value is None:
            continue
        ids.extend(value if isinstance(value, (list, tuple)) else [value])
    vocab = tokenizer.get_vocab()
    for _, stops in TEMPLATES.values():
        for word in stops:
            if word in vocab:
                ids.append(vocab[word])
    return sorted(set(int(i) for i in ids))


def render_prompt(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
