"""Chat templates: the tokenizer's own first, XTuner's named templates as fallbacks.

XTuner ships prompt templates by name (internlm2_chat, qwen_chat, llama3_chat, default); models
without a chat template in their tokenizer (base models, old checkpoints) get one of those, written
here as Jinja so that training, chat, merge checks and the Space app all render prompts the same
way through `tokenizer.apply_chat_template`.

    python -c "from core.templates import TEMPLATES; print(sorted(TEMPLATES))"
"""

from __future__ import annotations

from core.errors import StudioError

_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_LLAMA3 = (
    "{{ '<|begin_of_text|>' }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# XTuner's `default` template: plain role tags, usable with any tokenizer.
_DEFAULT = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|System|>:' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|User|>:' + message['content'] + '\n' }}"
    "{% else %}{{ '<|Bot|>:' + message['content'] + eos_token + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|Bot|>:' }}{% endif %}"
)

# name -> (jinja template, stop words)
TEMPLATES: dict[str, tuple[str, list[str]]] = {
    "internlm2_chat": (_CHATML, ["<|im_end|>"]),
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
