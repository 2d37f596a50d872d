"""Canonical samples -> token ids with labels, packing, and the collator the Trainer uses.

Loss is put on assistant turns only (unless a turn says `"loss": false`); pretraining samples
(`role: pretrain`) get loss on every token and no chat template. Turns are rendered with the
tokenizer's chat template one prefix at a time, so the loss mask follows whatever template the
model uses. Packed rows carry per-sample position ids and no attention mask: transformers then
builds a block-diagonal causal mask (sdpa/eager), so packed samples never attend to each other.
For a varlen kernel (flash-attn, studio_varlen) the micro-batch is one flat sequence with the
sample boundaries beside it: no padding to the widest row, no mask.

Tools, tool calls and reasoning (the canonical sample of docs/DESIGN.md) go through the template too:
- `tools` (sample level) is handed to the template as `tools=` when the template reads `tools`;
  otherwise it is written into the system turn ("# Tools" and one JSON schema a line), never dropped.
- an assistant turn's `tool_calls` are handed over as they are (arguments as a dict when they parse,
  the form Hugging Face templates expect) when the template reads `tool_calls`; otherwise each call is
  written after the answer as one JSON line {"name": ..., "arguments": ...}. Either way the call is
  what the turn learns, so a turn with only tool calls (empty content) is trained. The legacy
  `"tool_call": true` turn (content = the call's JSON) is read as such a call.
- a template that names `tools` / `tool_calls` but leaves a tool's or a call's name out of the rendering
  gets them written as text as above (checked per sample), so none is dropped silently.
- `tool` turns (the results, with `tool_call_id` / `name`) are context, never trained.
- `reasoning_content`: a template that reads `reasoning_content` (Qwen3 style) gets it as it is and
  decides where it goes; for any other template it is put before the answer as
  "<think>\\n{reasoning}\\n</think>\\n\\n{answer}". It is trained wherever the template keeps it.
- `"loss": false` masks any turn; `"loss": true` is only meaningful on assistant turns, and on any
  other turn the sample is refused with a message (a prompt turn cannot be learned as an answer).
A template that renders an earlier turn differently once later turns follow (Qwen3 drops the
reasoning of turns before the last user question) is followed exactly: the labels are carried over
to the re-rendered text by a character diff, so each token is trained as the turn it came from.

Samples with videos or audios (and images, for a text-only model) are refused when the data is
loaded (`refuse_unusable_media`): no model trained here can see them, and training the
`<video>`/`<audio>` placeholders as text would teach the wrong thing.

The tokenized-data cache (`save_encoded` / `load_encoded`) holds only flat int32 arrays and a JSON
header in an .npz read with allow_pickle=False: a replaced cache file can be wrong, never run code.

    python -m pytest tests/unit/test_train_dataset.py tests/unit/test_train_templates.py
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import os
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

IGNORE = -100

# the tokenized-data cache's layout; a file with another one (or none) is rebuilt
CACHE_FORMAT = "studio-tokenized-v2"


class SampleError(ValueError):
    """A sample the trainer cannot honour: `field` names the part, `hint` says what to do."""

    def __init__(self, field: str, message: str, hint: str | None = None):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.hint = field, message, hint


# ---------------------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=16)
def _features(template: str) -> tuple[bool, bool, bool]:
    """(reads tools, reads tool_calls, reads reasoning_content) for a chat template's source."""
    return (bool(re.search(r"\btools\b", template)), "tool_calls" in template, "reasoning_content" in template)


def template_features(tokenizer) -> dict[str, bool]:
    """What the tokenizer's chat template can render natively: tools, tool_calls, reasoning_content."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # named templates (default, tool_use, ...): any of them counts
        template = "\n".join(str(t) for t in template.values())
    tools, calls, reasoning = _features(str(template))
    return {"tools": tools, "tool_calls": calls, "reasoning_content": reasoning}


def _arguments(value):
    """Hugging Face templates expect arguments as a dict (Qwen2.5 applies tojson to them)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


def _calls(msg: dict, where: str) -> list[dict]:
    """The turn's tool calls in OpenAI shape (arguments as a dict where they parse)."""
    raw = msg.get("tool_calls")
    if raw is None and msg.get("tool_call"):
        # legacy canonical: `"tool_call": true` and the call's JSON as the content
        try:
            raw = json.loads(msg.get("content") or "")
        except ValueError:
            raise SampleError(f"{where}.content", "a tool_call turn whose content is not the call's JSON",
                              'write the call as {"name": ..., "arguments": {...}} or use tool_calls') from None
        raw = raw if isinstance(raw, list) else [raw]
    if not raw:
        return []
    if not isinstance(raw, list):
        raise SampleError(f"{where}.tool_calls", f"must be a list of calls, got {type(raw).__name__}")
    out = []
    for k, call in enumerate(raw):
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise SampleError(f"{where}.tool_calls[{k}]", "a call needs a function name",
                              'use {"type": "function", "function": {"name": ..., "arguments": "{...}"}}')
        args = fn.get("arguments", fn.get("parameters", {}))
        one = {"type": "function", "function": {"name": fn["name"], "arguments": _arguments(args)}}
        if isinstance(call, dict) and call.get("id"):
            one["id"] = call["id"]
        out.append(one)
    return out


def _calls_as_text(calls: list[dict]) -> str:
    return "\n".join(json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                                ensure_ascii=False) for c in calls)


def _tools(sample: dict) -> list:
    tools = sample.get("tools")
    if isinstance(tools, str) and tools.strip():
        try:
            tools = json.loads(tools)
        except ValueError:
            raise SampleError("tools", "not valid JSON", "give tools as a list of function schemas") from None
    if not tools:
        return []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise SampleError("tools", "must be a list of tool (function schema) objects")
    return tools


def _tools_as_text(tools: list) -> str:
    return "# Tools\n\n" + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)


def prepare_messages(tokenizer, sample: dict, system: str = "", as_text: bool = False) -> tuple[list[dict], list | None]:
    """The sample's messages as the tokenizer's template wants them, and the `tools=` argument (or None).

    as_text: write tools and tool calls into the text even if the template seems to read them.
    Raises SampleError for what cannot be honoured (a malformed call, `loss: true` on a prompt turn).
    """
    feats = template_features(tokenizer)
    if as_text:
        feats = {**feats, "tools": False, "tool_calls": False}
    tools = _tools(sample)
    out: list[dict] = []
    for i, msg in enumerate(sample["messages"]):
        where = f"messages[{i}]"
        role = msg["role"]
        if msg.get("loss") is True and role != "assistant":
            raise SampleError(f"{where}.loss", f"true on a {role} turn: only assistant turns are learned",
                              "remove the loss field there (or make the turn an assistant answer)")
        m = {"role": role, "content": msg.get("content") or ""}
        if "loss" in msg:
            m["loss"] = msg["loss"]
        if role == "assistant":
            calls = _calls(msg, where)
            if msg.get("tool_call") and not msg.get("tool_calls"):
                m["content"] = ""  # the legacy turn's content was the call itself
            reasoning = msg.get("reasoning_content")
            if reasoning and not feats["reasoning_content"]:
                m["content"] = "<think>\n" + reasoning.strip("\n") + "\n</think>\n\n" + m["content"].lstrip("\n")
            elif reasoning:
                m["reasoning_content"] = reasoning
            if calls and feats["tool_calls"]:
                m["tool_calls"] = calls
            elif calls:
                m["content"] = (m["content"] + "\n" if m["content"] else "") + _calls_as_text(calls)
        elif role == "tool":
            for key in ("tool_call_id", "name"):
                if msg.get(key):
                    m[key] = msg[key]
        out.append(m)
    if system and (not out or out[0]["role"] != "system"):
        out.insert(0, {"role": "system", "content": system})
    if tools and not feats["tools"]:
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": (out[0]["content"] + "\n\n" if out[0]["content"] else "") + _tools_as_text(tools)}
        else:
            out.insert(0, {"role": "system", "content": _tools_as_text(tools)})
        tools = []
    return out, (tools or None)


def _render_segments(tokenizer, messages: list[dict], tools: list | None = None) -> list[tuple[str, bool]]:
    """Split a conversation into (text, has_loss) pieces that concatenate to the full rendering."""
    pieces: list[tuple[str, bool]] = []
    done = ""
    extra = {"tools": tools} if tools else {}
    for i, msg in enumerate(messages):
        nxt = messages[i + 1]["role"] if i + 1 < len(messages) else None
        text = tokenizer.apply_chat_template(
            messages[: i + 1], tokenize=False, add_generation_prompt=(nxt == "assistant"), **extra
        )
        is_answer = msg["role"] == "assistant" and msg.get("loss", True) is not False
        if text.startswith(done):
            new = text[len(done):]
            if new:
                pieces.append((new, is_answer))
        else:
            # the template renders an earlier turn differently now that more follow (Qwen3 drops the
            # reasoning of turns before the last question): carry the labels over to the new text
            pieces = _realign(pieces, done, text, is_answer)
        done = text
    return pieces


def _realign(pieces: list[tuple[str, bool]], old: str, new: str, label: bool) -> list[tuple[str, bool]]:
    """Pieces for `new`, labelled like the pieces of `old` where the texts match; what only `new` has after the
    end of `old` is the new turn's (`label`), text changed inside earlier turns takes the label around it."""
    k = 0
    while k < min(len(old), len(new)) and old[k] == new[k]:
        k += 1
    labels: list[bool] = []
    for text, lab in pieces:
        labels.extend([lab] * len(text))
    old_tail, new_tail, old_labels = old[k:], new[k:], labels[k:]
    out_labels: list[bool] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old_tail, new_tail, autojunk=False).get_opcodes():
        if tag == "equal":
            out_labels.extend(old_labels[i1:i2])
        elif tag in ("replace", "insert"):
            if i1 >= len(old_tail):
                lab = label
            elif tag == "replace":
                lab = old_labels[i1]
            else:
                lab = old_labels[i1 - 1] if i1 > 0 else (labels[k - 1] if k else old_labels[i1])
            out_labels.extend([lab] * (j2 - j1))
    out = _trim(pieces, k)
    for lab, group in itertools.groupby(zip(new_tail, out_labels, strict=True), key=lambda p: p[1]):
        out.append(("".join(c for c, _ in group), lab))
    return out


def _trim(pieces: list[tuple[str, bool]], keep: int) -> list[tuple[str, bool]]:
    out, n = [], 0
    for text, loss in pieces:
        if n + len(text) <= keep:
            out.append((text, loss))
            n += len(text)
        else:
            if keep - n > 0:
                out.append((text[: keep - n], loss))
            break
    return out


def _render_checked(tokenizer, messages: list[dict], tools: list | None) -> list[tuple[str, bool]]:
    try:
        return _render_segments(tokenizer, messages, tools)
    except Exception as exc:  # jinja's TemplateError, or a template's own raise_exception
        if type(exc).__module__.split(".")[0] not in ("jinja2", "transformers"):
            raise
        raise SampleError("messages", f"the chat template refused it: {exc}",
                          "a template that only takes alternating user/assistant turns cannot render tool turns: "
                          "choose prompt_template (e.g. qwen_chat) or drop those turns") from None


def _all_there(pieces: list[tuple[str, bool]], messages: list[dict], tools: list | None) -> bool:
    """Every tool and every call's function name made it into the rendering (none silently dropped)."""
    names = [(t.get("function") or t).get("name") for t in tools or []]
    names += [c["function"]["name"] for m in messages for c in m.get("tool_calls") or []]
    if not names:
        return True
    text = "".join(p for p, _ in pieces)
    return all(n in text for n in names if isinstance(n, str))


def encode_sample(tokenizer, sample: dict, max_length: int, system: str = "") -> dict | None:
    """One canonical sample -> {input_ids, labels}; None when nothing in it carries loss.

    Raises SampleError for a sample that cannot be honoured (see the module docstring).
    """
    messages = sample["messages"]
    if messages and all(m["role"] == "pretrain" for m in messages):
        text = "".join(m["content"] for m in messages)
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        ids = ids[:max_length]
        return {"input_ids": ids, "labels": list(ids)} if len(ids) > 1 else None
    messages, tools = prepare_messages(tokenizer, sample, system)
    pieces = _render_checked(tokenizer, messages, tools)
    if not _all_there(pieces, messages, tools):
        # the template names tools / tool_calls but did not render them (a check, a comment): write them as text
        messages, tools = prepare_messages(tokenizer, sample, system, as_text=True)
        pieces = _render_checked(tokenizer, messages, tools)
    input_ids: list[int] = []
    labels: list[int] = []
    for text, has_loss in pieces:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids.extend(ids)
        labels.extend(ids if has_loss else [IGNORE] * len(ids))
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    if all(x == IGNORE for x in labels):
        return None
    return {"input_ids": input_ids, "labels": labels}


# ---------------------------------------------------------------------------- loading

MEDIA_KINDS = ("images", "videos", "audios")


def refuse_unusable_media(samples: Iterable[dict], source: str, usable: tuple[str, ...] = (),
                          model: str = "a text-only model") -> Iterator[dict]:
    """Pass samples through; at the end, refuse the data set if any carried media the model cannot use.

    Counts every such sample first (the message says how many, and which is first), so a user fixes
    the file once. Nothing is trained as text in their place.
    """
    from core.errors import DataError

    bad: dict[str, int] = {}
    first: int | None = None
    for n, sample in enumerate(samples, 1):
        kinds = [k for k in MEDIA_KINDS if k not in usable and sample.get(k)]
        if kinds:
            for k in kinds:
                bad[k] = bad.get(k, 0) + 1
            first = first or n
            continue
        yield sample
    if bad:
        what = ", ".join(f"{count} sample(s) with {kind}" for kind, count in bad.items())
        if set(bad) <= {"images"}:
            hint = ("train an image-text model (model_type: llava, a llava recipe), "
                    f"or remove the images from {os.path.basename(source)}")
        else:
            hint = ("the studio trains no video or audio model: remove those samples (or their media) "
                    f"from {os.path.basename(source)}, e.g. keep the text-only rows")
        raise DataError(source, None, None, f"{what} (first: sample {first}); {model} cannot use them", hint)


def encode_all(tokenizer, samples: Iterable[dict], max_length: int, system: str = "", *,
               source: str = "data") -> tuple[list[dict], dict]:
    """Encode every sample; returns (encoded, stats) with how many were dropped or truncated.

    Refuses (DataError naming `source`) a sample that cannot be honoured and any with videos, audios or
    images: this is the text-only path (LLaVA data goes through core.llava).
    """
    from core.errors import DataError

    out: list[dict] = []
    stats = {"samples": 0, "dropped_no_loss": 0, "truncated": 0, "tokens": 0}
    for sample in refuse_unusable_media(samples, source):
        stats["samples"] += 1
        try:
            enc = encode_sample(tokenizer, sample, max_length, system)
        except SampleError as exc:
            raise DataError(source, None, f"sample {stats['samples']}: {exc.field}", exc.message, exc.hint) from None
        if enc is None:
            stats["dropped_no_loss"] += 1
            continue
        if len(enc["input_ids"]) >= max_length:
            stats["truncated"] += 1
        stats["tokens"] += len(enc["input_ids"])
        out.append(enc)
    return out, stats


def save_encoded(path: str | os.PathLike, encoded: list[dict], stats: dict) -> None:
    """Write tokenized samples as flat int32 arrays + offsets (+ a JSON header) in an .npz, atomically."""
    import numpy as np

    from core.fsio import atomic_open

    lengths = np.fromiter((len(e["input_ids"]) for e in encoded), dtype=np.int64, count=len(encoded))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    ids = np.fromiter(itertools.chain.from_iterable(e["input_ids"] for e in encoded), dtype=np.int32, count=total)
    labels = np.fromiter(itertools.chain.from_iterable(e["labels"] for e in encoded), dtype=np.int32, count=total)
    header = json.dumps({"format": CACHE_FORMAT, "stats": stats}).encode()
    with atomic_open(path, "wb") as f:
        np.savez(f, input_ids=ids, labels=labels, offsets=offsets, header=np.frombuffer(header, dtype=np.uint8))


def load_encoded(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """Read what save_encoded wrote. Anything else (a pickle, a truncated or foreign file) raises ValueError;
    nothing in the file is ever executed (allow_pickle=False)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files") or set(z.files) != {"input_ids", "labels", "offsets", "header"}:
                raise ValueError("not a tokenized-data cache")
            ids, labels, offsets, header = z["input_ids"], z["labels"], z["offsets"], z["header"]
    except ValueError:
        raise
    except Exception as exc:  # zip, OS and format errors alike: the file is not ours
        raise ValueError(f"unreadable ({type(exc).__name__}: {exc})") from None
    if (ids.dtype != np.int32 or labels.dtype != np.int32 or offsets.dtype != np.int64 or header.dtype != np.uint8
            or ids.ndim != 1 or labels.shape != ids.shape or offsets.ndim != 1 or len(offsets) < 1):
        raise ValueError("unexpected array types or shapes")
    if offsets[0] != 0 or offsets[-1] != len(ids) or (len(offsets) > 1 and (np.diff(offsets) < 0).any()):
        raise ValueError("inconsistent offsets")
    try:
        meta = json.loads(header.tobytes().decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"bad header ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT or not isinstance(meta.get("stats"), dict):
        raise ValueError(f"not a {CACHE_FORMAT} cache")
    bounds = offsets.tolist()
    encoded = [{"input_ids": ids[a:b].tolist(), "labels": labels[a:b].tolist()}
               for a, b in itertools.pairwise(bounds)]
    return encoded, meta["stats"]


# ---------------------------------------------------------------------------- packing and batches

def pack(encoded: list[dict], max_length: int, seed: int = 0) -> list[list[dict]]:
    """Greedy first-fit-decreasing packing of samples into rows of at most max_length tokens."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]["input_ids"]))
    rows: list[list[dict]] = []
    room: list[int] = []
    for i in order:
        n = len(encoded[i]["input_ids"])
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(encoded[i])
                room[r] -= n
                break
        else:
            rows.append([encoded[i]])
            room.append(max_length - n)
    random.Random(seed).shuffle(rows)
    return rows


class SFTDataset(torch.utils.data.Dataset):
    """Items are lists of encoded samples: one sample each unpacked, several when packed."""

    def __init__(self, rows: list[list[dict]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> list[dict]:
        return self.rows[i]


def varlen_boundaries(position_ids: torch.Tensor) -> dict:
    """transformers' flash-attention keywords for packed rows: every sample's start in the flattened batch.

    cu_seq_lens_* (int32, starts + the end) and max_length_* (the longest sample, a Python int).
    """
    from core.train.varlen import boundaries

    cu, longest = boundaries(position_ids)
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


# a flat varlen batch is padded to a multiple of this: Triton kernels (Liger's RoPE, RMSNorm) specialise on an
# integer argument's divisibility by 16, so a token count that changed it from one step to the next compiled a new
# kernel variant mid-run (a 0.1-0.2 s stall, at a random step)
FLAT_MULTIPLE = 16


def labelled_rows(labels: torch.Tensor) -> torch.Tensor:
    """Flat indices (over batch x length) of the positions whose next token has a label: the rows a causal LM's
    loss reads from its head. Computed on the CPU, where it costs no host sync."""
    has_next = torch.zeros_like(labels, dtype=torch.bool)
    has_next[..., :-1] = labels[..., 1:] != IGNORE
    return torch.nonzero(has_next.reshape(-1), as_tuple=True)[0]


@dataclass
class Collator:
    """Builds a batch from rows. Packed: rows with position ids (or one flat sequence); unpacked: padded + mask."""

    pad_token_id: int
    packed: bool
    # packed rows for a varlen attention kernel: the micro-batch's rows go in as ONE sequence (no padding up to the
    # widest row: those tokens were computed for nothing), with the sample boundaries computed here on the CPU (from
    # position ids on the GPU they cost a host sync per forward). Only for a varlen kernel: sdpa would build a dense
    # mask over the whole flat sequence.
    varlen: bool = False
    # also hand over which positions carry a label (after the one-token shift), as `studio_head_rows`: the head and
    # its cross-entropy then run on those rows only (prompt tokens need no logits). For the studio's fused head
    # (core/train/fused_ce.py); the engine takes the key out of the batch before the model sees it.
    head_rows: bool = False

    def _flat_rows(self, rows: list[list[dict]]) -> list[tuple[list[int], list[int], list[int]]]:
        flat = []
        for row in rows:
            ids, labels, pos = [], [], []
            for s in row:
                ids += s["input_ids"]
                # the first token of a sample is never predicted from the previous sample
                labels += [IGNORE] + s["labels"][1:]
                pos += list(range(len(s["input_ids"])))
            flat.append((ids, labels, pos))
        if self.varlen:
            flat = [tuple([x for f in flat for x in f[part]] for part in range(3))]
        return flat

    def __call__(self, rows: list[list[dict]]) -> dict[str, torch.Tensor]:
        if self.packed:
            flat = self._flat_rows(rows)
            width = max(len(f[0]) for f in flat)
            if self.varlen:
                width = -(-width // FLAT_MULTIPLE) * FLAT_MULTIPLE
            batch_ids, batch_labels, batch_pos = [], [], []
            for ids, labels, pos in flat:
                pad = width - len(ids)
                batch_ids.append(ids + [self.pad_token_id] * pad)
                batch_labels.append(labels + [IGNORE] * pad)
                batch_pos.append(pos + list(range(pad)))  # padding forms its own "sample"
            batch = {
                "input_ids": torch.tensor(batch_ids),
                "labels": torch.tensor(batch_labels),
                "position_ids": torch.tensor(batch_pos),
            }
            if self.varlen:
                batch.update(varlen_boundaries(batch["position_ids"]))
        else:
            samples = [row[0] for row in rows]
            width = max(len(s["input_ids"]) for s in samples)
            ids, labels, mask = [], [], []
            for s in samples:
                n = len(s["input_ids"])
                ids.append(s["input_ids"] + [self.pad_token_id] * (width - n))
                labels.append(s["labels"] + [IGNORE] * (width - n))
                mask.append([1] * n + [0] * (width - n))
            batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                     "attention_mask": torch.tensor(mask)}
        if self.head_rows:
            batch["studio_head_rows"] = labelled_rows(batch["labels"])
        return batch
