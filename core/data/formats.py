"""Every data format in, one canonical form out, and back again.

The canonical sample is OpenAI-style messages, one JSON object per line:

    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str, "loss": bool?}, ...],
     "images": [paths]?, "tools": str?}

Plain pretraining text is `{"messages": [{"role": "pretrain", "content": text}]}`. A sharegpt
`function_call` turn becomes an assistant turn with `"tool_call": true` so it can be written back.
In memory, image paths are absolute; on disk, writers store them relative to the output file.

    from core.data import read_samples, write_samples
    n = write_samples(read_samples("alpaca_zh_demo.json"), "out.jsonl")       # -> canonical
    python -m studio data convert alpaca_zh_demo.json -o out.jsonl             # the same, CLI

Files are JSON arrays or JSON lines, told apart by content, not by name; a UTF-8 BOM and CRLF line
ends are accepted. JSON lines stream (constant memory); a JSON array is read whole.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.errors import DataError
from core.fsio import atomic_write_rows

# fmt name -> what it reads. "canonical" is "openai" (our own files).
FORMATS: dict[str, str] = {
    "openai": '{"messages": [{"role", "content"}]} or a bare list of messages per line (also canonical)',
    "canonical": "alias of openai",
    "xtuner": '{"conversation": [{"system", "input", "output"}, ...]} (single/multi-turn; input "" = pretrain)',
    "alpaca": '{"instruction", "input", "output", "system"?, "history"?}; "<nooutput>" rows are dropped',
    "sharegpt": '{"conversations": [{"from": human|gpt|system|function_call|observation, "value"}], "tools"?}',
    "llava": '{"image", "conversations": [{"from": human|gpt, "value"}]} with <image> in the text',
    "llamafactory_mm": '{"messages": [{"role", "content"}], "images": [...]} with <image> in any turn',
    "xtuner_mm": '{"messages": [{"role", "content": [{"type": "image_url"|"text", ...}]}]}',
    "pretrain_text": '{"text": ...} plain text for pretraining',
}
WRITE_FORMATS = ("openai", "xtuner", "llava", "sharegpt", "alpaca", "llamafactory_mm", "xtuner_mm")
ROLES = ("system", "user", "assistant", "tool", "pretrain")
IMAGE_TOKEN = "<image>"
# A JSONL line longer than this is not a sample but a broken file (binary data, a missing newline).
MAX_LINE_BYTES = int(os.environ.get("STUDIO_MAX_LINE_MB", "8")) * 1024 * 1024
# Field names a --map may rename to (ours); values are the file's field names.
MAP_KEYS = ("system", "input", "output", "instruction", "text", "messages", "conversation", "conversations",
            "images", "image", "tools", "history", "role", "content", "from", "value")

_SHAREGPT_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool", "tool": "tool",
                  "function": "tool"}
_IMG_CONTEXT = "<IMG_CONTEXT>"  # XTuner's InternVL-style image token


# ---------------------------------------------------------------------------- raw records


def _decode_line(raw: bytes, path: str, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, line, None, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                        "re-save the file as UTF-8, e.g. iconv -f GBK -t UTF-8 in.json > out.json") from None


def _sniff(path: str) -> str:
    """'jsonl' or 'json' from the first bytes: a first line that is a whole JSON object (or a
    whole list of messages) means JSON lines; anything else is one JSON document."""
    with open(path, "rb") as f:
        first = f.readline(MAX_LINE_BYTES + 1)
    first = first.removeprefix(b"\xef\xbb\xbf").strip()
    if not first:
        return "json"
    if first[:1] == b"{":
        return "jsonl"
    if first[:1] != b"[":
        return "json"
    try:
        val = json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "json"
    is_msgs = isinstance(val, list) and val and all(isinstance(m, dict) and "role" in m for m in val)
    return "jsonl" if is_msgs else "json"


def iter_records(path: str | os.PathLike, stats: dict | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line, record) for each record of a JSON array or JSON-lines file.

    `line` is 1-based: the record's line in the file (for arrays: the line where it starts).
    Bad JSON raises DataError naming the line. With `stats`, JSON lines that do not parse are
    recorded in stats["errors"] and skipped instead (validation wants every problem, not the first).
    """
    path = str(path)
    if not os.path.exists(path):
        raise DataError(path, None, None, "no such file", "check the path")
    if os.path.isdir(path):
        raise DataError(path, None, None, "is a folder, not a data file")
    if _sniff(path) == "jsonl":
        yield from _iter_jsonl(path, stats)
    else:
        yield from _iter_json_array(path)


def _iter_jsonl(path: str, stats: dict | None) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as f:
        n = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            n += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DataError(path, n, None, f"line is longer than {MAX_LINE_BYTES >> 20} MB",
                                "a sample this long is a broken file: binary data, or records without newlines "
                                "between them; set STUDIO_MAX_LINE_MB if it is really meant")
            if n == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            raw = raw.strip()
            if not raw:
                continue
            try:
                text = _decode_line(raw, path, n)
                try:
                    rec = json.loads(text)
                except json.JSONDecodeError as e:
                    cut = e.pos >= len(text) - 1 or e.msg.startswith("Unterminated")
                    what = "truncated JSON (the line ends inside a record)" if cut else "bad JSON"
                    raise DataError(path, n, None, f"{what}: {e.msg} (column {e.colno})",
                                    "each line must be one complete JSON object") from None
            except DataError as e:
                if stats is None:
                    raise
                stats.setdefault("errors", []).append(str(e).split("\n")[0])
                reason = "not UTF-8" if "UTF-8" in e.args[0] else "bad JSON line"
                dropped = stats.setdefault("dropped", {})
                dropped[reason] = dropped.get(reason, 0) + 1
                continue
            yield n, rec


def _iter_json_array(path: str) -> Iterator[tuple[int, Any]]:
    raw = Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, line, None, f"not UTF-8 text (byte 0x{raw[e.start]:02x})",
                        "re-save the file as UTF-8, e.g. iconv -f GBK -t UTF-8 in.json > out.json") from None
    if not text.strip():
        raise DataError(path, 1, None, "the file is empty")
    dec = json.JSONDecoder()
    i = len(text) - len(text.lstrip())
    if text[i] != "[":
        try:
            val, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, None, f"bad JSON: {e.msg} (column {e.colno})") from None
        if isinstance(val, dict):
            # one object per file: a single sample, or a {"data": [...]} wrapper
            lists = [v for v in val.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
            if len(val) == 1 and lists and not _looks_like_sample(val):
                for k, rec in enumerate(lists[0]):
                    yield k + 1, rec
                return
            yield text.count("\n", 0, i) + 1, val
            return
        raise DataError(path, 1, None, f"expected a JSON array or JSON lines, found {type(val).__name__}")
    # Walk the array element by element so each record knows its line.
    i += 1
    line, pos = 1, 0

    def lineno(at: int) -> int:
        nonlocal line, pos
        line += text.count("\n", pos, at)
        pos = at
        return line

    ws = " \t\r\n"
    while True:
        while i < len(text) and text[i] in ws:
            i += 1
        if i >= len(text):
            raise DataError(path, lineno(i), None, "truncated JSON: the array never closes",
                            "the file was cut off; re-export or re-download it")
        if text[i] == "]":
            return
        try:
            val, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            cut = not text.rstrip().endswith("]") and (e.pos >= len(text.rstrip()) - 1 or e.msg.startswith("Unterminated"))
            what = "truncated JSON (the file ends inside a record)" if cut else "bad JSON"
            raise DataError(path, e.lineno, None, f"{what}: {e.msg} (column {e.colno})",
                            "the file was cut off; re-export or re-download it" if cut else None) from None
        yield lineno(i), val
        i = end
        while i < len(text) and text[i] in ws:
            i += 1
        if i < len(text) and text[i] == ",":
            i += 1
        elif i < len(text) and text[i] == "]":
            return
        elif i >= len(text):
            raise DataError(path, lineno(i), None, "truncated JSON: the array never closes",
                            "the file was cut off; re-export or re-download it")
        else:
            raise DataError(path, lineno(i), None, f"bad JSON: expected ',' or ']' but found {text[i]!r}")


def _looks_like_sample(rec: dict) -> bool:
    return any(k in rec for k in ("messages", "conversation", "conversations", "instruction", "text"))


# ---------------------------------------------------------------------------- detection


def _apply_mapping(rec: Any, mapping: dict[str, str] | None) -> Any:
    """Rename the file's fields to ours (mapping: ours -> theirs), at the top and one list level down."""
    if not mapping or not isinstance(rec, dict):
        return rec
    rev = {theirs: ours for ours, theirs in mapping.items()}

    def ren(d: dict) -> dict:
        return {rev.get(k, k): v for k, v in d.items()}

    out = ren(rec)
    for k, v in out.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out[k] = [ren(x) for x in v]
    return out


def _record_format(rec: Any) -> str | None:
    if isinstance(rec, list):
        return "openai"
    if not isinstance(rec, dict):
        return None
    if "messages" in rec:
        msgs = rec["messages"]
        if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict):
            if any(isinstance(m, dict) and isinstance(m.get("content"), list) for m in msgs):
                return "xtuner_mm"
            if "from" in msgs[0] and "role" not in msgs[0]:
                return "sharegpt"
            if "input" in msgs[0] or "output" in msgs[0]:
                return "xtuner"
        return "llamafactory_mm" if rec.get("images") else "openai"
    if "conversation" in rec:
        return "xtuner"
    if "conversations" in rec:
        return "llava" if "image" in rec else "sharegpt"
    if "instruction" in rec:
        return "alpaca"
    if "text" in rec:
        return "pretrain_text"
    if "input" in rec and "output" in rec:
        return "xtuner"
    return None


def detect_format(path: str | os.PathLike, mapping: dict[str, str] | None = None) -> str:
    """The format of a data file (a key of FORMATS), judged from its first record."""
    for line, rec in iter_records(path):
        fmt = _record_format(_apply_mapping(rec, mapping))
        if fmt is None:
            fields = ", ".join(sorted(rec)) if isinstance(rec, dict) else type(rec).__name__
            raise DataError(str(path), line, None, f"cannot tell the format from the fields ({fields})",
                            "name it with --from, or map fields with --map, e.g. --map input=q output=a "
                            "(or text=body for pretraining text)")
        return fmt
    raise DataError(str(path), None, None, "no records in the file")


# ---------------------------------------------------------------------------- to canonical


class _Ctx:
    """What a converter needs to name a record and resolve its images."""

    def __init__(self, path: str, image_folder: str | None, check_images: bool):
        self.path = path
        self.base = Path(image_folder) if image_folder else Path(path).resolve().parent
        self.check_images = check_images
        self._seen: dict[str, str | None] = {}
        self.line = 0
        self.by_name: list[str] = []  # paths found only by file name (reported as a warning)

    def err(self, field: str | None, msg: str, hint: str | None = None) -> DataError:
        return DataError(self.path, self.line, field, msg, hint)

    def image(self, p: Any, field: str) -> str:
        if not isinstance(p, str) or not p:
            raise self.err(field, f"image path must be a non-empty string, got {p!r}")
        if p not in self._seen:
            q = Path(p) if os.path.isabs(p) else self.base / p
            found: str | None = os.path.normpath(q) if q.is_file() else None
            # Some published files keep a folder in the path that the shipped images lack.
            if found is None and (self.base / Path(p).name).is_file():
                found = os.path.normpath(self.base / Path(p).name)
                self.by_name.append(p)
            self._seen[p] = found
        found = self._seen[p]
        if found is None:
            if self.check_images:
                raise self.err(field, f"image not found: {p} (looked in {self.base})",
                               "fix the path, or give the images folder with --image-folder")
            return os.path.normpath(p if os.path.isabs(p) else self.base / p)
        return found


def _text(v: Any, ctx: _Ctx, field: str, allow_empty: bool = True) -> str:
    if v is None and allow_empty:
        return ""
    if not isinstance(v, str):
        raise ctx.err(field, f"must be text, got {type(v).__name__}")
    return v


def _from_openai(rec: Any, ctx: _Ctx) -> dict:
    msgs = rec if isinstance(rec, list) else rec.get("messages")
    field = "messages" if isinstance(rec, dict) else "[]"
    if not isinstance(msgs, list):
        raise ctx.err(field, f"must be a list of messages, got {type(msgs).__name__}")
    out = []
    for k, m in enumerate(msgs):
        f = f"{field}[{k}]"
        if not isinstance(m, dict):
            raise ctx.err(f, f"must be an object with role and content, got {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise ctx.err(f"{f}.role", f"unknown role {role!r}", f"use one of {', '.join(ROLES)}")
        msg: dict[str, Any] = {"role": role, "content": _text(m.get("content"), ctx, f"{f}.content")}
        if "loss" in m:
            if not isinstance(m["loss"], bool):
                raise ctx.err(f"{f}.loss", f"must be true or false, got {m['loss']!r}")
            msg["loss"] = m["loss"]
        if m.get("tool_call"):
            msg["tool_call"] = True
        out.append(msg)
    sample: dict[str, Any] = {"messages": out}
    if isinstance(rec, dict):
        if rec.get("images"):
            sample["images"] = _images_list(rec["images"], ctx)
        if rec.get("tools"):
            sample["tools"] = _tools(rec["tools"], ctx)
    return sample


def _images_list(v: Any, ctx: _Ctx, field: str = "images") -> list[str]:
    if isinstance(v, str):
        return [ctx.image(v, field)]
    if not isinstance(v, list):
        raise ctx.err(field, f"must be a list of image paths, got {type(v).__name__}")
    return [ctx.image(p, f"{field}[{k}]") for k, p in enumerate(v)]


def _tools(v: Any, ctx: _Ctx) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list | dict):
        return json.dumps(v, ensure_ascii=False)
    raise ctx.err("tools", f"must be a JSON string or list, got {type(v).__name__}")


def _from_xtuner(rec: dict, ctx: _Ctx) -> dict:
    key = "conversation" if "conversation" in rec else "messages" if "messages" in rec else None
    turns = rec[key] if key else [rec]
    key = key or "record"
    if not isinstance(turns, list):
        raise ctx.err(key, f"must be a list of turns, got {type(turns).__name__}")
    if len(turns) == 1 and isinstance(turns[0], dict) and not turns[0].get("input") and not turns[0].get("system"):
        # XTuner's pretrain form: {"conversation": [{"input": "", "output": text}]}
        return {"messages": [{"role": "pretrain", "content": _text(turns[0].get("output"), ctx, f"{key}[0].output")}]}
    msgs: list[dict] = []
    for k, t in enumerate(turns):
        f = f"{key}[{k}]"
        if not isinstance(t, dict):
            raise ctx.err(f, f"must be an object with input and output, got {type(t).__name__}")
        if "output" not in t:
            raise ctx.err(f"{f}.output", "missing", "every turn needs an output (the answer to learn)")
        system = _text(t.get("system"), ctx, f"{f}.system")
        if system:
            msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": _text(t.get("input"), ctx, f"{f}.input")})
        a = {"role": "assistant", "content": _text(t.get("output"), ctx, f"{f}.output")}
        if t.get("output_with_loss") is False:
            a["loss"] = False
        msgs.append(a)
    return {"messages": msgs}


def _from_alpaca(rec: dict, ctx: _Ctx) -> dict | None:
    instr = _text(rec.get("instruction"), ctx, "instruction")
    inp = _text(rec.get("input"), ctx, "input")
    if "output" not in rec:
        raise ctx.err("output", "missing", "alpaca rows need instruction, input and output")
    out = rec.get("output")
    if isinstance(out, list):  # LLaMA-Factory ranking rows: [chosen, rejected]
        out = out[0] if out else ""
    out = _text(out, ctx, "output")
    if out.strip() == "<nooutput>":
        return None
    msgs: list[dict] = []
    system = _text(rec.get("system"), ctx, "system")
    if system:
        msgs.append({"role": "system", "content": system})
    hist = rec.get("history") or []
    if not isinstance(hist, list):
        raise ctx.err("history", f"must be a list of [question, answer] pairs, got {type(hist).__name__}")
    for k, pair in enumerate(hist):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ctx.err(f"history[{k}]", "must be a [question, answer] pair of strings")
        msgs += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    msgs.append({"role": "user", "content": f"{instr}\n{inp}" if inp else instr})
    msgs.append({"role": "assistant", "content": out})
    return {"messages": msgs}


def _from_sharegpt(rec: dict, ctx: _Ctx, key: str | None = None) -> dict:
    key = key or ("conversations" if "conversations" in rec else "messages")
    conv = rec.get(key)
    if not isinstance(conv, list):
        raise ctx.err(key, f"must be a list of turns, got {type(conv).__name__}")
    msgs: list[dict] = []
    system = _text(rec.get("system"), ctx, "system")
    if system:
        msgs.append({"role": "system", "content": system})
    for k, t in enumerate(conv):
        f = f"{key}[{k}]"
        if not isinstance(t, dict):
            raise ctx.err(f, f"must be an object with from and value, got {type(t).__name__}")
        who = t.get("from", t.get("role"))
        role = _SHAREGPT_ROLE.get(who) if isinstance(who, str) else None
        if role is None:
            raise ctx.err(f"{f}.from", f"unknown speaker {who!r}",
                          "use human, gpt, system, function_call or observation")
        m: dict[str, Any] = {"role": role, "content": _text(t.get("value", t.get("content")), ctx, f"{f}.value")}
        if who == "function_call":
            m["tool_call"] = True
        msgs.append(m)
    sample: dict[str, Any] = {"messages": msgs}
    if rec.get("tools"):
        sample["tools"] = _tools(rec["tools"], ctx)
    if rec.get("images"):
        sample["images"] = _images_list(rec["images"], ctx)
    return sample


def _from_llava(rec: dict, ctx: _Ctx) -> dict:
    sample = _from_sharegpt(rec, ctx, "conversations")
    img = rec.get("image")
    if img:
        sample["images"] = _images_list(img, ctx, "image")
        _ensure_image_token(sample)
    return sample


def _ensure_image_token(sample: dict) -> None:
    """LLaVA convention: an image with no <image> in any text goes before the first user turn."""
    msgs = sample["messages"]
    if sample.get("images") and not any(IMAGE_TOKEN in m["content"] for m in msgs):
        for m in msgs:
            if m["role"] == "user":
                m["content"] = f"{IMAGE_TOKEN}\n{m['content']}"
                break


def _from_llamafactory_mm(rec: dict, ctx: _Ctx) -> dict:
    msgs = rec.get("messages")
    if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) and "from" in msgs[0]:
        return _from_sharegpt(rec, ctx, "messages")
    sample = _from_openai(rec, ctx)
    return sample


def _from_xtuner_mm(rec: dict, ctx: _Ctx) -> dict:
    msgs = rec.get("messages")
    if not isinstance(msgs, list):
        raise ctx.err("messages", f"must be a list of messages, got {type(msgs).__name__}")
    out, images = [], []
    for k, m in enumerate(msgs):
        f = f"messages[{k}]"
        if not isinstance(m, dict):
            raise ctx.err(f, f"must be an object with role and content, got {type(m).__name__}")
        c = m.get("content")
        if isinstance(c, list):
            texts, n_img = [], 0
            for j, part in enumerate(c):
                pf = f"{f}.content[{j}]"
                if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                    raise ctx.err(pf, "must be {'type': 'text', 'text': ...} or {'type': 'image_url', ...}")
                if part["type"] == "text":
                    texts.append(_text(part.get("text"), ctx, f"{pf}.text"))
                else:
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    images.append(ctx.image(url, f"{pf}.image_url.url"))
                    n_img += 1
            text = "".join(texts).replace(_IMG_CONTEXT, IMAGE_TOKEN)
            missing = n_img - text.count(IMAGE_TOKEN)
            if missing > 0:
                text = (IMAGE_TOKEN + "\n") * missing + text
            c = text
        m2 = dict(m, content=c)
        out.append(m2)
    sample = _from_openai({"messages": out}, ctx)
    if images:
        sample["images"] = images
    return sample


def _from_pretrain_text(rec: dict, ctx: _Ctx) -> dict:
    if "text" not in rec:
        raise ctx.err("text", "missing", "pretraining rows need a text field (map yours with --map text=FIELD)")
    return {"messages": [{"role": "pretrain", "content": _text(rec["text"], ctx, "text", allow_empty=False)}]}


_READERS = {
    "openai": _from_openai, "canonical": _from_openai, "xtuner": _from_xtuner, "alpaca": _from_alpaca,
    "sharegpt": _from_sharegpt, "llava": _from_llava, "llamafactory_mm": _from_llamafactory_mm,
    "xtuner_mm": _from_xtuner_mm, "pretrain_text": _from_pretrain_text,
}


def check_sample(sample: dict, ctx_path: str = "", line: int | None = None) -> None:
    """Raise DataError if a canonical sample cannot be trained on (empty, nothing to learn, images off)."""
    msgs = sample.get("messages")
    if not msgs:
        raise DataError(ctx_path, line, "messages", "empty conversation", "drop the record or fill it in")
    roles = [m["role"] for m in msgs]
    if "pretrain" in roles:
        if len(msgs) != 1:
            raise DataError(ctx_path, line, "messages", "a pretrain text must be the only message")
        if not msgs[0]["content"].strip():
            raise DataError(ctx_path, line, "messages[0].content", "empty text")
        return
    if "assistant" not in roles:
        raise DataError(ctx_path, line, "messages", "no assistant turn: nothing to learn",
                        "each sample needs at least one answer")
    if all(not m["content"].strip() for m in msgs if m["role"] == "assistant"):
        raise DataError(ctx_path, line, "messages", "every assistant answer is empty")
    n_tok = sum(m["content"].count(IMAGE_TOKEN) for m in msgs)
    n_img = len(sample.get("images") or [])
    if n_img and n_tok != n_img:
        raise DataError(ctx_path, line, "images", f"{n_img} image(s) but {n_tok} {IMAGE_TOKEN} placeholder(s)",
                        f"put one {IMAGE_TOKEN} in the text for each image")
    if n_tok and not n_img:
        raise DataError(ctx_path, line, "images", f"{n_tok} {IMAGE_TOKEN} placeholder(s) but no image",
                        "add the image path, or remove the placeholder")


def read_samples(path: str | os.PathLike, fmt: str | None = None, mapping: dict[str, str] | None = None, *,
                 image_folder: str | None = None, strict: bool = True, check_images: bool = True,
                 stats: dict | None = None) -> Iterator[dict]:
    """Yield canonical samples from a data file of any supported format (see FORMATS).

    fmt: None detects it from the first record. mapping: our field -> the file's field, e.g.
    {"input": "toy_input", "output": "toy_output"}. image_folder: where relative image paths
    point (default: the data file's folder). strict: a bad record raises DataError naming
    file:line:field; otherwise it is skipped and listed in stats["errors"]. stats (optional dict)
    receives "records", "samples", "dropped" ({reason: count}) and "errors".
    """
    path = str(path)
    if fmt is not None and fmt not in _READERS:
        raise DataError(path, None, None, f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    fmt = fmt or detect_format(path, mapping)
    reader = _READERS[fmt]
    ctx = _Ctx(path, image_folder, check_images)
    st = stats if stats is not None else {}
    st["images_found_by_name"] = ctx.by_name
    st.setdefault("format", fmt)
    st.setdefault("records", 0)
    st.setdefault("samples", 0)
    st.setdefault("dropped", {})
    st.setdefault("errors", [])
    for line, rec in iter_records(path, None if strict else st):
        st["records"] += 1
        ctx.line = line
        try:
            rec = _apply_mapping(rec, mapping)
            if not isinstance(rec, dict | list):
                raise ctx.err(None, f"a record must be a JSON object, got {type(rec).__name__}")
            if isinstance(rec, list) and fmt not in ("openai", "canonical"):
                raise ctx.err(None, f"a record must be a JSON object for format {fmt}, got a list")
            sample = reader(rec, ctx)
            if sample is None:
                st["dropped"]["alpaca <nooutput>"] = st["dropped"].get("alpaca <nooutput>", 0) + 1
                continue
            if fmt == "llamafactory_mm":
                _ensure_image_token(sample)
            check_sample(sample, path, line)
        except DataError as e:
            if strict:
                raise
            st["errors"].append(str(e).split("\n")[0])
            reason = e.args[0].split(": ", 1)[-1] if e.args else "error"
            reason = re.sub(r"^\S+: ", "", reason)[:60]
            st["dropped"][reason] = st["dropped"].get(reason, 0) + 1
            continue
        st["samples"] += 1
        st["line"] = line
        yield sample


# ---------------------------------------------------------------------------- from canonical


def _rel(p: str, out_dir: Path) -> str:
    """Relative to the output folder when the image lies under it, else absolute (no ../../ chains)."""
    try:
        rel = os.path.relpath(p, out_dir)
    except ValueError:  # another drive on Windows
        return p
    return p if rel.startswith("..") else rel


def _pairs(sample: dict, idx: int, to: str) -> tuple[str, list[tuple[str, str]]]:
    """(system, [(user, assistant), ...]) for formats that only know question/answer turns."""
    system, pairs, pending = "", [], None
    for m in sample["messages"]:
        r = m["role"]
        if r == "system":
            system = f"{system}\n{m['content']}" if system else m["content"]
        elif r == "user":
            if pending is not None:
                raise DataError(f"sample {idx}", None, "messages", f"two user turns in a row cannot be written as {to}",
                                "write openai instead")
            pending = m["content"]
        elif r == "assistant":
            pairs.append((pending or "", m["content"]))
            pending = None
        else:
            raise DataError(f"sample {idx}", None, "messages", f"{r} turns cannot be written as {to}",
                            "write openai or sharegpt instead")
    return system, pairs


def _to_openai(s: dict, i: int, out_dir: Path) -> dict:
    rec: dict[str, Any] = {"messages": s["messages"]}
    if s.get("images"):
        rec["images"] = [_rel(p, out_dir) for p in s["images"]]
    if s.get("tools"):
        rec["tools"] = s["tools"]
    return rec


def _to_xtuner(s: dict, i: int, out_dir: Path) -> dict:
    msgs = s["messages"]
    if msgs and msgs[0]["role"] == "pretrain":
        return {"conversation": [{"input": "", "output": msgs[0]["content"]}]}
    if s.get("images"):
        raise DataError(f"sample {i}", None, "images", "xtuner conversation files hold no images",
                        "write llava (XTuner's LLaVA format) instead")
    system, pairs = _pairs(s, i, "xtuner")
    conv = []
    for k, (q, a) in enumerate(pairs):
        t = {"system": system, "input": q, "output": a} if k == 0 and system else {"input": q, "output": a}
        conv.append(t)
    return {"conversation": conv}


def _to_sharegpt_turns(s: dict, role_key: str, content_key: str, names: dict) -> list[dict]:
    out = []
    for m in s["messages"]:
        who = "function_call" if m.get("tool_call") and names is _SG_NAMES else names[m["role"]]
        out.append({role_key: who, content_key: m["content"]})
    return out


_SG_NAMES = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation", "pretrain": "gpt"}


def _to_sharegpt(s: dict, i: int, out_dir: Path) -> dict:
    msgs = s["messages"]
    rec: dict[str, Any] = {}
    body = dict(s)
    if msgs and msgs[0]["role"] == "system":
        rec["system"] = msgs[0]["content"]
        body = dict(s, messages=msgs[1:])
    rec["conversations"] = _to_sharegpt_turns(body, "from", "value", _SG_NAMES)
    if s.get("tools"):
        rec["tools"] = s["tools"]
    if s.get("images"):
        rec["images"] = [_rel(p, out_dir) for p in s["images"]]
    return rec


def _to_llava(s: dict, i: int, out_dir: Path) -> dict:
    imgs = s.get("images") or []
    if len(imgs) > 1:
        raise DataError(f"sample {i}", None, "images", f"{len(imgs)} images; LLaVA records hold one",
                        "write llamafactory_mm instead")
    conv = [{"from": "human" if m["role"] == "user" else "gpt" if m["role"] == "assistant" else m["role"],
             "value": m["content"]} for m in s["messages"] if m["role"] != "system"]
    if any(m["role"] == "system" for m in s["messages"]):
        conv.insert(0, {"from": "system", "value": "\n".join(m["content"] for m in s["messages"] if m["role"] == "system")})
    rec: dict[str, Any] = {"id": str(i)}
    if imgs:
        rec["image"] = _rel(imgs[0], out_dir)
    rec["conversations"] = conv
    return rec


def _to_alpaca(s: dict, i: int, out_dir: Path) -> dict:
    system, pairs = _pairs(s, i, "alpaca")
    if not pairs:
        raise DataError(f"sample {i}", None, "messages", "no question/answer pair for alpaca")
    *hist, (q, a) = pairs
    rec: dict[str, Any] = {"instruction": q, "input": "", "output": a}
    if system:
        rec["system"] = system
    if hist:
        rec["history"] = [list(p) for p in hist]
    return rec


def _to_llamafactory_mm(s: dict, i: int, out_dir: Path) -> dict:
    rec: dict[str, Any] = {"messages": [{"role": m["role"], "content": m["content"]} for m in s["messages"]]}
    rec["images"] = [_rel(p, out_dir) for p in s.get("images") or []]
    return rec


def _to_xtuner_mm(s: dict, i: int, out_dir: Path) -> dict:
    imgs = list(s.get("images") or [])
    msgs = []
    for m in s["messages"]:
        c = m["content"]
        n = c.count(IMAGE_TOKEN)
        if n and imgs:
            parts = [{"type": "image_url", "image_url": {"url": _rel(imgs.pop(0), out_dir)}} for _ in range(n)]
            parts.append({"type": "text", "text": c.replace(IMAGE_TOKEN, _IMG_CONTEXT)})
            c = parts
        msgs.append({"role": m["role"], "content": c})
    return {"messages": msgs}


_WRITERS = {"openai": _to_openai, "canonical": _to_openai, "xtuner": _to_xtuner, "llava": _to_llava,
            "sharegpt": _to_sharegpt, "alpaca": _to_alpaca, "llamafactory_mm": _to_llamafactory_mm,
            "xtuner_mm": _to_xtuner_mm}
_ARRAY_BY_DEFAULT = ("llava", "sharegpt", "alpaca", "llamafactory_mm")


def write_samples(samples: Iterable[dict], path: str | os.PathLike, to: str = "openai") -> int:
    """Write canonical samples as `to` (see WRITE_FORMATS); returns the count.

    Atomic and streaming: rows go to a temp file renamed into place at the end, so if reading
    the input fails half-way no output file appears. A .jsonl name writes JSON lines and a .json
    name a JSON array; otherwise the format's usual container (arrays for llava/alpaca/sharegpt).
    """
    if to not in _WRITERS:
        raise DataError(str(path), None, None, f"cannot write format {to!r}", f"use one of {', '.join(WRITE_FORMATS)}")
    path = Path(path)
    conv = _WRITERS[to]
    out_dir = path.resolve().parent
    as_array = path.suffix == ".json" or (path.suffix != ".jsonl" and to in _ARRAY_BY_DEFAULT)
    return atomic_write_rows(path, (conv(s, i, out_dir) for i, s in enumerate(samples, 1)), as_array=as_array)


def family_format(fmt: str) -> str:
    """The writer that gives a file of format `fmt` back in its own family."""
    return {"canonical": "openai", "pretrain_text": "openai"}.get(fmt, fmt)


def parse_mapping(items: Iterable[str] | None) -> dict[str, str] | None:
    """['input=toy_input', 'output=toy_output'] -> {'input': 'toy_input', ...} (CLI --map)."""
    if not items:
        return None
    out = {}
    for it in items:
        for part in it.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise DataError("--map", None, None, f"{part!r} is not ours=theirs", "e.g. --map input=toy_input")
            k, v = (x.strip() for x in part.split("=", 1))
            if k not in MAP_KEYS:
                raise DataError("--map", None, None, f"unknown field {k!r}", f"map one of {', '.join(MAP_KEYS)}")
            out[k] = v
    return out
