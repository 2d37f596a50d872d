"""Chat with a base model, adapters, checkpoints or a merged model: streaming, A/B, batch prompts.

One base model is loaded once; every adapter (final adapter, any checkpoint) is attached to it
with PEFT's multi-adapter support and switched per answer, so an A/B comparison never holds two
copies of the model. `"base"` answers with all adapters disabled.

    python -m studio chat tiny --adapter workspace/runs/<id>/adapter          # interactive, like xtuner chat
    python -m studio chat tiny --adapter A --prompts prompts.txt --json       # one JSON line per answer
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import StudioError

BASE = "base"


@dataclass
class ChatModel:
    """A loaded model + tokenizer and the adapters attached to it (name -> folder)."""

    model: object
    tokenizer: object
    adapters: dict[str, str] = field(default_factory=dict)
    stop_ids: list[int] = field(default_factory=list)
    processor: object = None
    base_path: str = ""


def adapter_folder(path: str | Path) -> Path:
    """Accept an adapter folder, a checkpoint folder, or a run folder (its adapter/)."""
    p = Path(path)
    for folder in (p, p / "adapter"):
        if (folder / "adapter_config.json").is_file():
            _check_adapter_config(folder / "adapter_config.json")
            return folder
    raise StudioError(f"no PEFT adapter at {p} (adapter_config.json missing)",
                      hint="give a run's adapter/ folder or a checkpoints/step-N folder")


def _check_adapter_config(path: Path) -> None:
    # PEFT would fail deep inside with a raw JSONDecodeError; name the file instead
    from core.fsio import load_json

    cfg = load_json(path, hint="the adapter is damaged or half-written: use another checkpoint")
    if not isinstance(cfg, dict):
        raise StudioError(f"{path}: an adapter config is a JSON object, this is a {type(cfg).__name__}",
                          hint="the adapter is damaged: use another checkpoint")


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_chat_model(model: str, adapters: dict[str, str] | list[str] | None = None, *, bits: int | None = None,
                    template: str = "auto", hub: str = "auto", trust_remote_code: bool = False) -> ChatModel:
    """Load the base once and attach each adapter under its own name.

    The model folder's own Python code (auto_map) runs only with `trust_remote_code`; without it a
    folder that cannot load otherwise is refused in one line (core.models.check_remote_code).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.models import check_remote_code, model_type_of, resolve_model
    from core.templates import apply_template, stop_token_ids

    path = resolve_model(model, hub)
    if model_type_of(path) == "llava":
        from core.llava import load_llava_chat

        return load_llava_chat(path, adapters, bits=bits)
    check_remote_code(path, trust_remote_code)
    trc = {"trust_remote_code": trust_remote_code}  # explicit: transformers would otherwise ask on a terminal
    tokenizer = AutoTokenizer.from_pretrained(path, **trc)
    apply_template(tokenizer, template)
    kwargs: dict = {}
    if bits:
        if not torch.cuda.is_available():
            raise StudioError(f"--bits {bits} needs a CUDA GPU (bitsandbytes)", hint="leave out --bits on this machine")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16) if bits == 4 else BitsAndBytesConfig(load_in_8bit=True))
        kwargs["device_map"] = {"": 0}
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    m = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **trc, **kwargs)
    if not bits:
        m = m.to(_device())
    m.eval()
    if isinstance(adapters, list):
        adapters = {f"adapter{i}" if i else "adapter": a for i, a in enumerate(adapters)}
    chat = ChatModel(model=m, tokenizer=tokenizer, stop_ids=stop_token_ids(tokenizer, m.generation_config),
                     base_path=str(path))
    for name, folder in (adapters or {}).items():
        attach_adapter(chat, name, folder)
    return chat


def attach_adapter(chat: ChatModel, name: str, folder: str | Path) -> None:
    """Attach one more adapter to the loaded base (no second copy of the model)."""
    from peft import PeftModel

    folder = adapter_folder(folder)
    if name in chat.adapters:
        return
    try:
        if not chat.adapters:
            from core import fastgen

            fastgen.release(chat.model)  # its graphs ran the unwrapped model
            chat.model = PeftModel.from_pretrained(chat.model, str(folder), adapter_name=name)
        else:
            chat.model.load_adapter(str(folder), adapter_name=name)
    except RuntimeError as e:
        if "size mismatch" in str(e):
            raise StudioError(f"adapter {folder} was trained for a different base model than {chat.base_path}",
                              hint="pick the base model named in the adapter's adapter_config.json") from None
        raise
    chat.model.eval()
    chat.adapters[name] = str(folder)


def _adapter_context(chat: ChatModel, which: str | None):
    """Select `which` adapter, or disable all for the base ('base' / None with adapters loaded)."""
    if not chat.adapters:
        if which not in (None, BASE):
            raise StudioError(f"no adapter named {which!r} is loaded")
        return nullcontext()
    if which in (None, BASE):
        return chat.model.disable_adapter()
    if which not in chat.adapters:
        raise StudioError(f"no adapter named {which!r} is loaded", hint="loaded: " + ", ".join(chat.adapters))
    chat.model.set_adapter(which)
    return nullcontext()


def _gen_kwargs(tokenizer, stop_ids, max_new_tokens, temperature, top_p, top_k, repetition_penalty) -> dict:
    kw = {"max_new_tokens": max_new_tokens, "eos_token_id": stop_ids or None,
          "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop_ids or [0])[0],
          "repetition_penalty": repetition_penalty}
    if temperature and temperature > 0:
        kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k or 0)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kw


def _inputs(model, tokenizer, messages, image=None, processor=None):
    if image is not None and processor is not None:
        from core.llava import llava_inputs

        return llava_inputs(processor, messages, image, model.device)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    return {k: v.to(model.device) for k, v in enc.items()}


def generate_text(model, tokenizer, messages: list[dict], *, max_new_tokens: int = 128, temperature: float = 0.0,
                  top_p: float = 1.0, top_k: int = 0, repetition_penalty: float = 1.0, seed: int = 0,
                  stop_ids: list[int] | None = None, image=None, processor=None) -> str:
    """One answer, not streamed (used by training's evaluation and the merge check)."""
    import torch

    from core.templates import stop_token_ids

    stop_ids = stop_ids or stop_token_ids(tokenizer, getattr(model, "generation_config", None))
    inputs = _inputs(model, tokenizer, messages, image, processor)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**inputs, **_gen_kwargs(tokenizer, stop_ids, max_new_tokens, temperature, top_p, top_k,
                                                     repetition_penalty), use_cache=True)
    new = out[0, inputs["input_ids"].shape[1]:]
    # A byte-level token cut off by max_new_tokens decodes to U+FFFD: dropped, never shown.
    return tokenizer.decode(new, skip_special_tokens=True).replace("\ufffd", "").strip()


def generate_ids(chat: ChatModel, messages: list[dict], which: str | None = None, max_new_tokens: int = 64) -> list[int]:
    """Greedy token ids of an answer (for token-for-token comparisons)."""
    import torch

    inputs = _inputs(chat.model, chat.tokenizer, messages)
    with _adapter_context(chat, which), torch.no_grad():
        out = chat.model.generate(**inputs, **_gen_kwargs(chat.tokenizer, chat.stop_ids, max_new_tokens, 0, 1, 0, 1.0),
                                  use_cache=True)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def stream_answer(chat: ChatModel, messages: list[dict], which: str | None = None, *, max_new_tokens: int = 256,
                  temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, repetition_penalty: float = 1.0,
                  seed: int = 0, image=None) -> Iterator[str]:
    """Yield the answer's text piece by piece as it is generated; stops at the template's stop tokens."""
    import torch
    from transformers import TextIteratorStreamer

    inputs = _inputs(chat.model, chat.tokenizer, messages, image, chat.processor)
    streamer = TextIteratorStreamer(chat.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    kw = _gen_kwargs(chat.tokenizer, chat.stop_ids, max_new_tokens, temperature, top_p, top_k, repetition_penalty)
    error: list[BaseException] = []

    def work():
        from core import fastgen

        try:
            torch.manual_seed(seed)
            with _adapter_context(chat, which), torch.no_grad():
                if fastgen.enabled(chat.model, image):
                    _graph_generate(chat, inputs["input_ids"], streamer, which or BASE, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_p=top_p, top_k=top_k,
                                    repetition_penalty=repetition_penalty)
                else:
                    chat.model.generate(**inputs, **kw, streamer=streamer, use_cache=True)
        except BaseException as e:  # surfaced to the caller below
            error.append(e)
            streamer.end()

    lock = _model_lock(chat)
    with lock:
        t = threading.Thread(target=work, daemon=True)
        t.start()
        for piece in streamer:  # the streamer holds back split UTF-8; only a cut-off tail can be U+FFFD
            yield piece.replace("\ufffd", "")
        t.join()
    if error:
        raise error[0]


def _graph_generate(chat: ChatModel, input_ids, streamer, key: str, *, max_new_tokens: int, **sampling) -> None:
    """generate()'s job for stream_answer, through core.fastgen's captured one-token forward."""
    import torch

    from core import fastgen

    dec = fastgen.Decoder.for_model(chat.model, input_ids.shape[1] + max_new_tokens)
    streamer.put(input_ids.cpu())  # the streamer skips the first put: the prompt
    for tid in dec.generate(input_ids, max_new_tokens=max_new_tokens, stop_ids=chat.stop_ids, key=key, **sampling):
        streamer.put(torch.tensor([tid]))
    streamer.end()


_LOCKS: dict[int, threading.Lock] = {}


def _model_lock(chat: ChatModel) -> threading.Lock:
    # adapters are switched on the shared model, so two answers at once must take turns
    return _LOCKS.setdefault(id(chat.model), threading.Lock())


def answer(chat: ChatModel, messages: list[dict], which: str | None = None, **gen) -> str:
    return "".join(stream_answer(chat, messages, which, **gen)).strip()


# ---------------------------------------------------------------------------- CLI

def _read_prompts(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise StudioError(f"--prompts: no file at {p}")
    prompts = []
    for i, line in enumerate(p.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                prompts.append(json.loads(line)["prompt"])
            except (ValueError, KeyError):
                raise StudioError(f"{p}:{i}: expected a JSON object with a 'prompt' field") from None
        else:
            prompts.append(line)
    return prompts


def cli_chat(args, out=None) -> int:
    out = out or sys.stdout
    chat = load_chat_model(args.model, args.adapter, bits=args.bits, template=args.prompt_template,
                           trust_remote_code=getattr(args, "trust_remote_code", False))
    which = next(iter(chat.adapters), None)
    gen = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
           "top_k": args.top_k, "repetition_penalty": args.repetition_penalty, "seed": args.seed}
    image = None
    if args.image:
        from core.images import open_image

        image = open_image(args.image).convert("RGB")  # pixel limit; a bomb is a one-line DataError
    system = [{"role": "system", "content": args.system}] if args.system else []
    if args.prompts:
        for prompt in _read_prompts(args.prompts):
            text = answer(chat, [*system, {"role": "user", "content": prompt}], which, image=image, **gen)
            if args.json:
                print(json.dumps({"prompt": prompt, "answer": text}, ensure_ascii=False), file=out, flush=True)
            else:
                print(f"Q: {prompt}\nA: {text}\n", file=out, flush=True)
        return 0
    history: list[dict] = []
    print("Chat: type EXIT to quit, RESET to start a new conversation.", file=sys.stderr)
    while True:
        try:
            print("\n>>> ", end="", file=out, flush=True)
            prompt = input()
        except EOFError:
            return 0
        if prompt.strip() == "EXIT":
            return 0
        if prompt.strip() == "RESET":
            history = []
            print("(conversation reset)", file=sys.stderr)
            continue
        history.append({"role": "user", "content": prompt})
        pieces = []
        # the image stays part of the conversation: every turn re-sends it with the whole history
        for piece in stream_answer(chat, [*system, *history], which, image=image, **gen):
            pieces.append(piece)
            print(piece, end="", file=out, flush=True)
        print(file=out)
        history.append({"role": "assistant", "content": "".join(pieces).strip()})
