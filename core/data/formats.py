"""Every data format in, one canonical form out, and back again; nothing dropped without a word.

The canonical sample (docs/DESIGN.md, "The canonical data sample") is one JSON object per line:

    {"messages": [MESSAGE, ...], "images": [str]?, "videos": [str]?, "audios": [str]?, "tools": [dict]?}
    MESSAGE = {"role": "system"|"user"|"assistant"|"tool"|"pretrain", "content": str,
               "reasoning_content": str?, "tool_calls": [{"id"?, "type": "function",
               "function": {"name", "arguments": JSON str}}]?, "tool_call_id": str?, "name": str?, "loss": bool?}

Media are placeholders in the text (<image>, <video>, <audio>), each matched in order by one entry
of the sample's images/videos/audios list; entries are paths (absolute in memory, relative to the
file on disk) or URLs (http/https/data:, kept verbatim). `loss: false` marks a turn as context
(OpenAI weight 0, XTuner loss false, LLaMA-Factory loss_weight 0). Plain pretraining text is
`{"messages": [{"role": "pretrain", "content": text}]}`. Legacy canonical files with an assistant
turn `"tool_call": true` (content = the call JSON) are read as tool_calls.

Every reader accounts for every field: what it does not use is counted per field in
stats["ignored"] ({"label": 8, "messages[].name": 3}); a field that changes what is learned
(preference pairs, KTO labels, weights it cannot honour) is refused unless `take` says how.

    from core.data import read_samples, write_samples
    n = write_samples(read_samples("alpaca_zh_demo.json"), "out.jsonl")       # -> canonical
    python -m studio data convert alpaca_zh_demo.json -o out.jsonl             # the same, CLI

Records come from core/data/sources.py, which reads every container (JSON lines / arrays / wrappers /
one object, .gz, CSV/TSV, Parquet, Arrow, plain text, save_to_disk and local Hugging Face dataset
folders), told apart by content, not by name; a dataset folder names its media from its own root.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.data import sources
from core.errors import DataError, StudioError
from core.fsio import atomic_write_rows

# fmt name -> what it reads. "canonical" is "openai" (our own files).
FORMATS: dict[str, str] = {
    "openai": '{"messages": [{"role", "content", "tool_calls"?, "weight"?, ...}], "tools"?} or a bare list of '
              "messages per line (also canonical, XTuner's and LLaMA-Factory v1's messages, ms-swift's)",
    "canonical": "alias of openai",
    "xtuner": '{"conversation": [{"system", "input", "output"}, ...]} (input "" = pretrain); also '
              '{"system", "conversation": [{"human", "assistant"}]} (ms-swift, Firefly)',
    "alpaca": '{"instruction", "input", "output", "system"?, "history"?} (Dolly\'s context/response too); '
              '"<nooutput>" rows are dropped',
    "swift": '{"query", "response", "history"?: [[q, a], ...], "system"?} (ms-swift)',
    "sharegpt": '{"conversations": [{"from": human|gpt|system|function_call|observation, "value"}], "tools"?}',
    "llava": '{"image", "conversations": [{"from": human|gpt, "value"}]} with <image> in the text',
    "llamafactory_mm": '{"messages": [{"role", "content"}], "images"/"videos"/"audios": [...]} with placeholders',
    "xtuner_mm": '{"messages": [{"role", "content": [{"type": "image_url"|"image"|"video"|"text", ...}]}]}',
    "prompt_completion": '{"prompt", "completion"} (TRL prompt-completion; strings or message lists)',
    "preference": '{"prompt", "chosen", "rejected"} (DPO pairs; read only with take="chosen")',
    "pretrain_text": '{"text": ...} plain text for pretraining',
}
WRITE_FORMATS = ("openai", "xtuner", "llava", "sharegpt", "alpaca", "llamafactory_mm", "xtuner_mm")
ROLES = ("system", "user", "assistant", "tool", "pretrain")
IMAGE_TOKEN = "<image>"
MEDIA_TOKENS = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}
# take= values: how to read data that is not plain SFT data
TAKE = ("chosen", "desirable")
# A JSONL line longer than this is not a sample but a broken file (binary data, a missing newline).
MAX_LINE_BYTES = int(os.environ.get("STUDIO_MAX_LINE_MB", "8")) * 1024 * 1024
# Field names a --map may rename to (ours); values are the file's field names.
MAP_KEYS = ("system", "input", "output", "instruction", "text", "messages", "conversation", "conversations",
            "images", "image", "videos", "audios", "tools", "history", "role", "content", "from", "value",
            "query", "response", "prompt", "completion", "chosen", "rejected", "label", "kto_tag")

_SHAREGPT_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool", "tool": "tool",
                  "function": "tool"}
_IMG_CONTEXT = "<IMG_CONTEXT>"  # XTuner's InternVL-style image token



# ---------------------------------------------------------------------------- raw records


def _sniff(path: str) -> str:
    """'jsonl' for JSON lines (also gzip-compressed), 'json' for every other container (the JSON
    document, CSV, Parquet, text, dataset folders): what a writer keeping the container needs."""
    return "jsonl" if sources.detect_container(path) == "jsonl" else "json"


def iter_records(path: str | os.PathLike, stats: dict | None = None, *,
                 container: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line-or-row, record) for each record of a data file of any container: JSON lines,
    a JSON array / {"data": [...]} wrapper / single object, CSV, TSV, Parquet, Arrow, plain text,
    gzip of the text ones, a save_to_disk or Hugging Face dataset folder (core/data/sources.py).

    The number is 1-based: the record's line in a text file (for arrays: the line where it starts),
    its row in a table. Bad input raises DataError naming file:line. With `stats`, JSON lines that
    do not parse are recorded in stats["errors"] and skipped instead (validation wants every
    problem, not the first); stats also gets "container" and "container_note".
    """
    return sources.iter_records(path, stats, container=container)


# ---------------------------------------------------------------------------- detection

# Fields that make a record preference data (pairs) or KTO data (labelled single answers).
_PAIR_FIELDS = ("chosen", "rejected", "rejected_response", "chosen_messages", "rejected_messages")
_KTO_FIELDS = ("label", "kto_tag")
_KIND_KEYS = frozenset(_PAIR_FIELDS + _KTO_FIELDS + ("rejected_images", "rejected_videos", "rejected_audios"))
# How many records detection looks at (the union of their keys decides).
DETECT_RECORDS = 64
# How many distinct unused field names are counted one by one; the rest are counted together.
MAX_IGNORED_FIELDS = 200


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
    msgs = rec.get("messages", rec.get("chosen_messages"))
    if msgs is not None:
        if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict):
            if any(isinstance(m, dict) and isinstance(m.get("content"), list) for m in msgs):
                return "xtuner_mm"
            if "from" in msgs[0] and "role" not in msgs[0]:
                return "sharegpt"
            if "input" in msgs[0] or "output" in msgs[0]:
                return "xtuner"
        return "llamafactory_mm" if any(rec.get(k) for k in MEDIA_TOKENS) else "openai"
    if "conversation" in rec:
        return "xtuner"
    if "conversations" in rec:
        return "llava" if "image" in rec else "sharegpt"
    if "query" in rec and "response" in rec:
        return "swift"
    if "instruction" in rec:
        return "alpaca"
    if "prompt" in rec and ("chosen" in rec or "rejected" in rec):
        return "preference"
    if "prompt" in rec and "completion" in rec:
        return "prompt_completion"
    if "text" in rec:
        return "pretrain_text"
    if "input" in rec and "output" in rec:
        return "xtuner"
    if "response" in rec:  # ms-swift pretraining rows
        return "swift"
    return None


# When records of one file look like different formats, the one that reads them all wins.
_WIDER = {frozenset({"sharegpt", "llava"}): "llava", frozenset({"openai", "llamafactory_mm"}): "llamafactory_mm",
          frozenset({"openai", "xtuner_mm"}): "xtuner_mm", frozenset({"llamafactory_mm", "xtuner_mm"}): "xtuner_mm",
          frozenset({"openai", "llamafactory_mm", "xtuner_mm"}): "xtuner_mm"}


def detect_format(path: str | os.PathLike, mapping: dict[str, str] | None = None) -> str:
    """The format of a data file (a key of FORMATS), judged from its first DETECT_RECORDS records:
    a file whose first sample is text-only and later ones have images is still read as LLaVA."""
    seen: dict[str, int] = {}
    keys: set[str] = set()
    first_line = None
    skipped: dict = {}  # a broken line later on is the reader's to report, with its line
    for line, rec in iter_records(path, skipped):
        first_line = first_line or line
        rec = _apply_mapping(rec, mapping)
        fmt = _record_format(rec)
        if isinstance(rec, dict):
            keys |= set(rec)
        if fmt is not None:
            seen[fmt] = seen.get(fmt, 0) + 1
        if sum(seen.values()) + (fmt is None) >= DETECT_RECORDS:
            break
    if first_line is None:
        if skipped.get("errors"):
            for _ in iter_records(path):  # raises the first broken line's error
                pass
        raise DataError(str(path), None, None, "no records in the file")
    if not seen:
        fields = ", ".join(sorted(keys)) or "not objects"
        raise DataError(str(path), first_line, None, f"cannot tell the format from the fields ({fields})",
                        "name it with --from, or map fields with --map, e.g. --map input=q output=a "
                        "(or text=body for pretraining text)")
    if len(seen) == 1:
        return next(iter(seen))
    return _WIDER.get(frozenset(seen), max(seen, key=lambda k: seen[k]))


# ---------------------------------------------------------------------------- to canonical


def is_url(p: Any) -> bool:
    """A media entry that is a URL (kept verbatim, never made a path)."""
    return isinstance(p, str) and re.match(r"^(https?|data|s3|gs|oss|ftp):", p, re.I) is not None


class _Ctx:
    """What a converter needs to name a record, resolve its media and account for its fields."""

    def __init__(self, path: str, image_folder: str | None, check_images: bool, media_dir: str | None = None,
                 take: str | None = None, speakers: dict[str, str] | None = None):
        self.path = path
        # A dataset folder (save_to_disk, a Hugging Face dataset) names its media from its own root.
        src = Path(path).resolve()
        self.base = Path(image_folder) if image_folder else src if src.is_dir() else src.parent
        self.check_images = check_images
        self.media_dir = media_dir
        self.take = take
        self.speakers = speakers or {}
        self._seen: dict[str, str | None] = {}
        self.line = 0
        self.by_name: list[str] = []  # paths found only by file name (reported as a warning)
        self.ignored: set[str] = set()  # this record's fields that nothing used
        self.noted: set[str] = set()  # top-level fields already reported with a reason

    def err(self, field: str | None, msg: str, hint: str | None = None) -> DataError:
        return DataError(self.path, self.line, field, msg, hint)

    def rest(self, d: dict, known: Iterable[str], prefix: str = "") -> None:
        """Note every key of `d` not in `known` as ignored (reported with row counts). A null or empty
        value carries nothing, so it is not reported (API exports are full of "refusal": null)."""
        for k, v in d.items():
            if k not in known and not (not prefix and k in self.noted) and v is not None and v != "" \
                    and v != [] and v != {}:
                self.ignored.add(f"{prefix}{k}")

    def media(self, p: Any, field: str, kind: str = "image") -> str:
        if isinstance(p, dict) and ("bytes" in p or "path" in p) and set(p) <= {"bytes", "path"}:
            if p.get("bytes") is not None:  # a Hugging Face Image/Audio cell
                if not self.media_dir:
                    raise self.err(field, f"{kind} stored as bytes but no folder to extract it to",
                                   "convert it with studio data convert (the media go beside the output)")
                try:
                    return sources.store_media_bytes(p, Path(self.media_dir))
                except StudioError as e:
                    raise self.err(field, e.args[0] if e.args else str(e)) from None
            p = p.get("path")
        if is_url(p):
            return p
        if not isinstance(p, str) or not p:
            raise self.err(field, f"{kind} path must be a non-empty string, got {p!r}")
        if p not in self._seen:
            q = Path(p) if os.path.isabs(p) else self.base / p
            found: str | None = os.path.normpath(q) if q.is_file() or q.is_dir() else None
            # Some published files keep a folder in the path that the shipped media lack.
            if found is None and (self.base / Path(p).name).is_file():
                found = os.path.normpath(self.base / Path(p).name)
                self.by_name.append(p)
            self._seen[p] = found
        found = self._seen[p]
        if found is None:
            if self.check_images:
                raise self.err(field, f"{kind} not found: {p} (looked in {self.base})",
                               "fix the path, or give the media folder with --image-folder")
            return os.path.normpath(p if os.path.isabs(p) else self.base / p)
        return found


def _text(v: Any, ctx: _Ctx, field: str, allow_empty: bool = True) -> str:
    if v is None and allow_empty:
        return ""
    if not isinstance(v, str):
        raise ctx.err(field, f"must be text, got {type(v).__name__}")
    return v


def _media_list(v: Any, ctx: _Ctx, field: str, kind: str) -> list[str]:
    if isinstance(v, str | dict):
        return [ctx.media(v, field, kind)]
    if not isinstance(v, list):
        raise ctx.err(field, f"must be a list of {kind} paths or URLs, got {type(v).__name__}")
    out = []
    for k, p in enumerate(v):
        if isinstance(p, list):
            raise ctx.err(f"{field}[{k}]", f"a {kind} given as a list of frames cannot be trained here",
                          "give one video file per <video>")
        out.append(ctx.media(p, f"{field}[{k}]", kind))
    return out


def _tools(v: Any, ctx: _Ctx, field: str = "tools") -> list:
    """Tools as a list of schema dicts; a JSON string is parsed (LLaMA-Factory and ms-swift store strings)."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError as e:
            raise ctx.err(field, f"not JSON: {e.msg}", "tools must be a list of function schemas") from None
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
        raise ctx.err(field, "must be a list of tool (function schema) objects")
    return v


def _generic(field: str) -> str:
    """messages[3].tool_calls[0] -> messages[].tool_calls[] (ignored fields are counted per kind, not per index)."""
    return re.sub(r"\[\d+\]", "[]", field)


def _call(obj: Any, ctx: _Ctx, field: str) -> dict:
    """One tool call in OpenAI shape, from OpenAI's own or {"name", "arguments"} (sharegpt, ms-swift, LF v1)."""
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError:
            raise ctx.err(field, "a tool call must be JSON {\"name\": ..., \"arguments\": ...}") from None
    if not isinstance(obj, dict):
        raise ctx.err(field, f"a tool call must be an object, got {type(obj).__name__}")
    fn = obj.get("function") if isinstance(obj.get("function"), dict) else obj
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ctx.err(f"{field}.name", "a tool call needs the function name")
    args = fn.get("arguments", fn.get("parameters", {}))
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False)
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": args}}
    if isinstance(obj.get("id"), str):
        call = {"id": obj["id"], **call}
    known = {"id", "type", "function"} if fn is not obj else {"id", "type", "name", "arguments", "parameters"}
    pf = _generic(field)
    ctx.rest(obj, known, f"{pf}.")
    if fn is not obj:
        ctx.rest(fn, {"name", "arguments", "parameters"}, f"{pf}.function.")
    return call


def _calls(v: Any, ctx: _Ctx, field: str) -> list[dict]:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise ctx.err(field, "tool calls must be JSON") from None
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, list):
        raise ctx.err(field, f"must be a list of tool calls, got {type(v).__name__}")
    return [_call(c, ctx, f"{field}[{k}]") for k, c in enumerate(v)]


_MEDIA_KEYS = frozenset({"images", "videos", "audios", "image", "video", "audio"})
_PART_MEDIA = {"image": "images", "image_url": "images", "input_image": "images", "video": "videos",
               "video_url": "videos", "audio": "audios", "audio_url": "audios", "input_audio": "audios"}


def _parts(c: list, ctx: _Ctx, f: str, media: dict[str, list], msg: dict) -> str:
    """A content-part list -> text with media placeholders (and reasoning / tool calls into `msg`)."""
    pieces: list[str] = []
    plain: list[str] = []
    n_media = 0
    pf0 = _generic(f) + ".content[]."
    for j, part in enumerate(c):
        pf = f"{f}.content[{j}]"
        if isinstance(part, str):
            pieces.append(part)
            plain.append(part)
            continue
        if not isinstance(part, dict):
            raise ctx.err(pf, f"a content part must be an object, got {type(part).__name__}")
        kind = part.get("type")
        if kind is None:  # {"text": ...} or {"image": ...} without a type
            kind = next((k for k in ("text", "image", "image_url", "video", "audio") if k in part), None)
        if kind in ("text", "input_text", "output_text"):  # the last two: OpenAI's Responses API
            t = _text(part.get("text", part.get("value")), ctx, f"{pf}.text")
            pieces.append(t)
            plain.append(t)
            ctx.rest(part, {"type", "text", "value"}, pf0)
        elif kind in _PART_MEDIA:
            key = _PART_MEDIA[kind]
            v = part.get(kind, part.get("value", part.get("path", part.get("url", part.get("image_url")))))
            if v is None and kind in ("image", "video", "audio"):
                # Hugging Face / TRL datasets: {"type": "image", "index": 0} only marks where the sample-level
                # images go (LLaMA-Factory's mllm_example_dataset); the media come from the sample's list.
                pieces.append(MEDIA_TOKENS[key])
                ctx.rest(part, {"type", kind, "index", "text", "value", "path", "url", "image_url"}, pf0)
                continue
            extra: Iterable[str] = ()
            if isinstance(v, dict) and not (set(v) <= {"bytes", "path"}):
                extra = [k for k in v if k != "url"]
                for k in extra:
                    ctx.ignored.add(f"{pf0}{kind}.{k}")
                v = v.get("url")
            media[key].append(ctx.media(v, f"{pf}.{kind}", key[:-1]))
            pieces.append(MEDIA_TOKENS[key])
            n_media += 1
            ctx.rest(part, {"type", kind, "value", "path", "url", "image_url"}, pf0)
        elif kind in ("reasoning", "thinking"):
            r = _text(part.get("value", part.get(kind, part.get("text"))), ctx, f"{pf}.value")
            msg["reasoning_content"] = msg.get("reasoning_content", "") + r
            ctx.rest(part, {"type", "value", kind, "text"}, pf0)
        elif kind in ("tool_call", "function_call"):
            msg.setdefault("tool_calls", []).extend(_calls(part.get("value", part.get(kind)), ctx, pf))
            ctx.rest(part, {"type", "value", kind}, pf0)
        else:
            raise ctx.err(f"{pf}.type", f"unknown content part {kind!r}",
                          "parts may be text, image/image_url, video/video_url, audio, reasoning or tool_call")
    text = "".join(plain)
    # XTuner's older files put <IMG_CONTEXT> (or <image>) in the text and list the images as parts.
    n_img = len(media["images"]) - media["_start"]
    if n_media and n_media == n_img and text.count(_IMG_CONTEXT) + text.count(IMAGE_TOKEN) >= n_img:
        return text.replace(_IMG_CONTEXT, IMAGE_TOKEN)
    return "".join(pieces)


def _weight(m: dict, ctx: _Ctx, f: str, role: str) -> bool | None:
    """The turn's loss switch from loss / weight / loss_weight / loss_scale; None = the default."""
    for key in ("loss", "weight", "loss_weight", "loss_scale"):
        if key not in m or m[key] is None:
            continue
        if key == "weight" and role != "assistant":  # OpenAI reads weight on assistant turns only
            ctx.ignored.add(f"{_generic(f)}.weight (only assistant turns have one)")
            continue
        v = m[key]
        if isinstance(v, bool):
            return v
        if isinstance(v, int | float) and v in (0, 1):
            on = bool(v)
            return None if on == (role == "assistant") else on
        raise ctx.err(f"{f}.{key}", f"{v!r}: only 0 / false (not trained) or 1 / true (trained) can be honoured",
                      "round the weight to 0 or 1, or remove it")
    return None


def _message(m: dict, ctx: _Ctx, f: str, media: dict[str, list], role_key: str = "role",
             content_key: str = "content") -> dict:
    """One message of any messages-style format -> a canonical message."""
    who = m.get(role_key)
    if who is None and role_key == "role" and "from" in m:
        role_key, content_key = "from", "value"
        who = m.get("from")
    raw = who
    if isinstance(who, str) and who in ctx.speakers:
        who = ctx.speakers[who]
    alias = {"observation": "tool", "function": "tool", "tool_response": "tool", "function_call": "assistant",
             "tool_call": "assistant", "developer": "system"}  # OpenAI's newer name for the system turn
    if role_key == "from":  # sharegpt speakers; a "role" of human/gpt is a typo, not a format
        alias |= {"human": "user", "gpt": "assistant"}
    role = alias.get(who, who) if isinstance(who, str) else None
    if role not in ROLES:
        raise ctx.err(f"{f}.{role_key}", f"unknown role {raw!r}",
                      f"use one of {', '.join(ROLES)} (or human/gpt/function_call/observation, tool_call/tool_response)")
    msg: dict[str, Any] = {"role": role}
    c = m.get(content_key)
    if isinstance(c, list):
        msg["content"] = _parts(c, ctx, f, media, msg)
    else:
        msg["content"] = _text(c, ctx, f"{f}.{content_key}")
    pf = _generic(f) + "."
    known = {role_key, content_key, "loss", "weight", "loss_weight", "loss_scale", "tool_call"}
    if who in ("function_call", "tool_call") or (m.get("tool_call") is True and role == "assistant"):
        # sharegpt function_call / ms-swift tool_call / our legacy files: the content is the call JSON
        msg["tool_calls"] = _calls(msg.pop("content"), ctx, f"{f}.{content_key}")
        msg["content"] = ""
    if m.get("tool_calls"):
        if role != "assistant":
            raise ctx.err(f"{f}.tool_calls", f"only assistant turns make tool calls, this is {role}")
        msg["tool_calls"] = msg.get("tool_calls", []) + _calls(m["tool_calls"], ctx, f"{f}.tool_calls")
        known.add("tool_calls")
    if m.get("function_call") and role == "assistant":  # OpenAI's older single call
        msg["tool_calls"] = msg.get("tool_calls", []) + [_call(m["function_call"], ctx, f"{f}.function_call")]
        known.add("function_call")
    for key in ("reasoning_content", "reasoning", "thinking"):
        if m.get(key) is not None and role == "assistant":
            msg["reasoning_content"] = msg.get("reasoning_content", "") + _text(m[key], ctx, f"{f}.{key}")
            known.add(key)
    for key in ("tool_call_id", "name"):
        if isinstance(m.get(key), str) and (role == "tool" or key == "name"):
            msg[key] = m[key]
            known.add(key)
    loss = _weight(m, ctx, f, role)
    if loss is not None:
        msg["loss"] = loss
    ctx.rest(m, known, pf)
    return msg


def _merge_calls(msgs: list[dict]) -> list[dict]:
    """Consecutive call-only assistant turns (ms-swift tool_call rows, parallel calls) become one turn."""
    if not any("tool_calls" in m for m in msgs):
        return msgs
    out: list[dict] = []
    for m in msgs:
        prev = out[-1] if out else None
        if (prev is not None and m["role"] == "assistant" and m.get("tool_calls") and not m["content"]
                and prev["role"] == "assistant" and prev.get("loss") == m.get("loss")
                and not m.get("reasoning_content") and (prev.get("tool_calls") or prev["content"])):
            prev["tool_calls"] = prev.get("tool_calls", []) + m["tool_calls"]
            continue
        out.append(m)
    return out


def _new_media() -> dict[str, list]:
    return {"images": [], "videos": [], "audios": [], "_start": 0}


def _sample_media(rec: dict, ctx: _Ctx, media: dict[str, list], known: set[str]) -> None:
    """Sample-level images/videos/audios (and ms-swift's singular image/video/audio) into `media`."""
    if rec.keys().isdisjoint(_MEDIA_KEYS):
        return
    for key in ("images", "videos", "audios"):
        for k in (key, key[:-1]):
            if k in rec:
                known.add(k)
                if rec[k]:
                    media[key] += _media_list(rec[k], ctx, k, key[:-1])


def _finish(msgs: list[dict], media: dict[str, list], rec: dict | None, ctx: _Ctx, known: set[str]) -> dict:
    sample: dict[str, Any] = {"messages": _merge_calls(msgs)}
    for key in ("images", "videos", "audios"):
        if media[key]:
            sample[key] = media[key]
    if isinstance(rec, dict):
        tools = _tools(rec["tools"], ctx) if rec.get("tools") else None
        if tools:
            sample["tools"] = tools
        known.add("tools")
        ctx.rest(rec, known)
    return sample


def _system_first(rec: dict, msgs: list[dict], ctx: _Ctx, known: set[str]) -> list[dict]:
    """A top-level system field goes first (unless the messages already start with a system turn)."""
    known.add("system")
    system = _text(rec.get("system"), ctx, "system")
    if system and not (msgs and msgs[0]["role"] == "system"):
        return [{"role": "system", "content": system}, *msgs]
    if system and msgs[0]["content"] != system:
        ctx.ignored.add("system (the messages have their own)")
    return msgs


def _from_openai(rec: Any, ctx: _Ctx) -> dict:
    field = "messages" if isinstance(rec, dict) else "[]"
    if isinstance(rec, dict) and "messages" not in rec and "chosen_messages" in rec:
        field = "chosen_messages"  # LLaMA-Factory v1 pairs, read with take="chosen"
    msgs = rec if isinstance(rec, list) else rec.get(field)
    if not isinstance(msgs, list):
        raise ctx.err(field, f"must be a list of messages, got {type(msgs).__name__}")
    media = _new_media()
    known: set[str] = {field}
    if isinstance(rec, dict):
        _sample_media(rec, ctx, media, known)
        media["_start"] = 0
    out = []
    for k, m in enumerate(msgs):
        if type(m) is dict and len(m) == 2 and type(m.get("content")) is str and m.get("role") in ROLES:
            out.append({"role": m["role"], "content": m["content"]})  # the common case, kept fast
            continue
        f = f"{field}[{k}]"
        if not isinstance(m, dict):
            raise ctx.err(f, f"must be an object with role and content, got {type(m).__name__}")
        # media named in content parts follow the sample-level ones in order of appearance
        media["_start"] = len(media["images"])
        out.append(_message(m, ctx, f, media))
    if isinstance(rec, dict):
        out = _system_first(rec, out, ctx, known)
    return _finish(out, media, rec if isinstance(rec, dict) else None, ctx, known)


def _turn_keys(t: dict) -> tuple[str | None, str | None]:
    q = next((k for k in ("input", "human", "user", "query", "prompt") if k in t), None)
    a = next((k for k in ("output", "assistant", "gpt", "response") if k in t), None)
    return q, a


def _from_xtuner(rec: dict, ctx: _Ctx) -> dict:
    key = "conversation" if "conversation" in rec else "messages" if "messages" in rec else None
    turns = rec[key] if key else [rec]
    known = {key} if key else set()
    key = key or "record"
    if not isinstance(turns, list):
        raise ctx.err(key, f"must be a list of turns, got {type(turns).__name__}")
    if (len(turns) == 1 and isinstance(turns[0], dict) and not turns[0].get("input") and not turns[0].get("system")
            and "input" in turns[0] and not rec.get("system")):
        # XTuner's pretrain form: {"conversation": [{"input": "", "output": text}]}
        ctx.rest(turns[0], {"input", "output"}, f"{key}[].")
        if key != "record":
            ctx.rest(rec, known)
        return {"messages": [{"role": "pretrain", "content": _text(turns[0].get("output"), ctx, f"{key}[0].output")}]}
    msgs: list[dict] = []
    for k, t in enumerate(turns):
        if not isinstance(t, dict):
            raise ctx.err(f"{key}[{k}]", f"must be an object with input and output, got {type(t).__name__}")
        qk, ak = ("input", "output") if "input" in t and "output" in t else _turn_keys(t)
        if ak is None:
            raise ctx.err(f"{key}[{k}].output", "missing", "every turn needs an output (the answer to learn)")
        system, q, a_text = t.get("system"), t.get(qk) if qk else None, t.get(ak)
        # the field names of an error are built only when there is one (this loop runs per turn of every row)
        if not (type(q) is str and type(a_text) is str and (system is None or type(system) is str)):
            system = _text(system, ctx, f"{key}[{k}].system")
            q = _text(q, ctx, f"{key}[{k}].{qk or 'input'}")
            a_text = _text(a_text, ctx, f"{key}[{k}].{ak}")
        if system:
            msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": q})
        a: dict[str, Any] = {"role": "assistant", "content": a_text}
        if t.get("output_with_loss") is False:
            a["loss"] = False
        msgs.append(a)
        if len(t) > 2 + ("system" in t):
            ctx.rest(t, {qk, ak, "system", "output_with_loss"}, f"{key}[].")
    if key == "record":
        known = {"input", "output", "system", "output_with_loss"}
        return _finish(msgs, _new_media(), rec, ctx, known)
    msgs = _system_first(rec, msgs, ctx, known)
    media = _new_media()
    _sample_media(rec, ctx, media, known)
    return _finish(msgs, media, rec, ctx, known)


def _answer(out: Any, ctx: _Ctx, field: str) -> str:
    """An answer field; a [chosen, rejected] list (LLaMA-Factory ranking rows) only with take='chosen'."""
    if isinstance(out, list):
        _refuse_pairs(ctx, field)
        if len(out) > 1:
            ctx.ignored.add(f"{field}[1:] (rejected answers)")
        out = out[0] if out else ""
    return _text(out, ctx, field)


def _from_alpaca(rec: dict, ctx: _Ctx) -> dict | None:
    instr = _text(rec.get("instruction"), ctx, "instruction")
    if "output" not in rec and "response" in rec:  # Dolly's names: instruction / context / response
        rec = {("output" if k == "response" else "input" if k == "context" and "input" not in rec else k): v
               for k, v in rec.items()}
    inp = _text(rec.get("input"), ctx, "input")
    known = {"instruction", "input", "output", "system", "history"}
    if "output" not in rec and "chosen" in rec:  # LLaMA-Factory ranking columns
        _refuse_pairs(ctx, "chosen")
        out = _answer(rec["chosen"], ctx, "chosen")
        known |= {"chosen"}
    elif "output" not in rec:
        raise ctx.err("output", "missing", "alpaca rows need instruction, input and output")
    else:
        out = _answer(rec.get("output"), ctx, "output")
    if out.strip() == "<nooutput>":
        return None
    msgs: list[dict] = []
    system = _text(rec.get("system"), ctx, "system")
    if system:
        msgs.append({"role": "system", "content": system})
    msgs += _history(rec.get("history"), ctx)
    msgs.append({"role": "user", "content": f"{instr}\n{inp}" if inp else instr})
    msgs.append({"role": "assistant", "content": out})
    media = _new_media()
    _sample_media(rec, ctx, media, known)
    return _finish(msgs, media, rec, ctx, known)


def _history(hist: Any, ctx: _Ctx) -> list[dict]:
    hist = hist or []
    if not isinstance(hist, list):
        raise ctx.err("history", f"must be a list of [question, answer] pairs, got {type(hist).__name__}")
    msgs = []
    for k, pair in enumerate(hist):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ctx.err(f"history[{k}]", "must be a [question, answer] pair of strings")
        msgs += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return msgs


def _from_swift(rec: dict, ctx: _Ctx) -> dict:
    """ms-swift's query/response/history(/system) rows."""
    known = {"query", "response", "history", "system"}
    if "query" not in rec and "history" not in rec:  # ms-swift pretraining rows: {"response": text}
        media = _new_media()
        _sample_media(rec, ctx, media, known)
        msg = {"role": "pretrain", "content": _text(rec.get("response"), ctx, "response", allow_empty=False)}
        return _finish([msg], media, rec, ctx, known)
    msgs: list[dict] = []
    system = _text(rec.get("system"), ctx, "system")
    if system:
        msgs.append({"role": "system", "content": system})
    msgs += _history(rec.get("history"), ctx)
    msgs.append({"role": "user", "content": _text(rec.get("query"), ctx, "query")})
    if "rejected_response" in rec:
        _refuse_pairs(ctx, "rejected_response")
    msgs.append({"role": "assistant", "content": _answer(rec.get("response"), ctx, "response")})
    media = _new_media()
    _sample_media(rec, ctx, media, known)
    return _finish(msgs, media, rec, ctx, known)


def _from_sharegpt(rec: dict, ctx: _Ctx, key: str | None = None) -> dict:
    key = key or ("conversations" if "conversations" in rec else "messages")
    conv = rec.get(key)
    if not isinstance(conv, list):
        raise ctx.err(key, f"must be a list of turns, got {type(conv).__name__}")
    known = {key}
    media = _new_media()
    _sample_media(rec, ctx, media, known)
    msgs: list[dict] = []
    for k, t in enumerate(conv):
        f = f"{key}[{k}]"
        if not isinstance(t, dict):
            raise ctx.err(f, f"must be an object with from and value, got {type(t).__name__}")
        rk = "from" if "from" in t else "role"
        ck = "value" if "value" in t else "content"
        msgs.append(_message(t, ctx, f, media, rk, ck))
    if "chosen" in rec:  # LLaMA-Factory ranking rows: the chosen answer is a turn of its own
        _refuse_pairs(ctx, "chosen")
        ch = rec["chosen"]
        ch = ch if isinstance(ch, list) else [ch]
        for k, t in enumerate(ch):
            if not isinstance(t, dict):
                raise ctx.err(f"chosen[{k}]", "must be a turn object like the conversation's")
            msgs.append(_message(t, ctx, "chosen", media, "from" if "from" in t else "role",
                                 "value" if "value" in t else "content"))
        known.add("chosen")
    msgs = _system_first(rec, msgs, ctx, known)
    return _finish(msgs, media, rec, ctx, known)


def _from_llava(rec: dict, ctx: _Ctx) -> dict:
    sample = _from_sharegpt(rec, ctx, "conversations")  # "image" is read with the sample's media
    _ensure_image_token(sample)
    return sample


def _ensure_image_token(sample: dict) -> None:
    """LLaVA's (and ms-swift's) convention: media with no placeholder anywhere in the text go,
    in order, before the first user turn (the first turn when there is no user turn)."""
    if len(sample) == 1:  # messages only: nothing to place
        return
    msgs = sample["messages"]
    for key, tok in MEDIA_TOKENS.items():
        n = len(sample.get(key) or [])
        if n and not any(tok in m["content"] for m in msgs):
            m = next((m for m in msgs if m["role"] in ("user", "pretrain")), msgs[0] if msgs else None)
            if m is not None:
                m["content"] = tok * n + ("\n" if key == "images" and n == 1 else "") + m["content"]


def _from_prompt_completion(rec: dict, ctx: _Ctx) -> dict:
    """TRL's prompt/completion rows: strings, or lists of messages (conversational)."""
    media = _new_media()
    known = {"prompt", "completion"}
    _sample_media(rec, ctx, media, known)
    msgs: list[dict] = []
    for key, role in (("prompt", "user"), ("completion", "assistant")):
        v = rec.get(key)
        if isinstance(v, list):
            msgs += [_message(m, ctx, f"{key}[{k}]", media) if isinstance(m, dict) else
                     _bad(ctx, f"{key}[{k}]") for k, m in enumerate(v)]
        else:
            msgs.append({"role": role, "content": _text(v, ctx, key)})
    msgs = _system_first(rec, msgs, ctx, known)
    return _finish(msgs, media, rec, ctx, known)


def _bad(ctx: _Ctx, field: str) -> dict:
    raise ctx.err(field, "must be a message object with role and content")


def _from_preference(rec: dict, ctx: _Ctx) -> dict:
    """DPO rows {"prompt", "chosen", "rejected"} (TRL, Firefly, HF): the chosen side, with take='chosen'."""
    _refuse_pairs(ctx, "chosen")
    media = _new_media()
    known = {"prompt", "chosen"}
    _sample_media(rec, ctx, media, known)
    ch, p = rec.get("chosen"), rec.get("prompt")
    if isinstance(p, list):
        prompt = [_message(m, ctx, f"prompt[{k}]", media) if isinstance(m, dict) else _bad(ctx, f"prompt[{k}]")
                  for k, m in enumerate(p)]
    else:
        prompt = [{"role": "user", "content": _text(p, ctx, "prompt")}]
    if isinstance(ch, list):
        answer = [_message(m, ctx, f"chosen[{k}]", media) if isinstance(m, dict) else _bad(ctx, f"chosen[{k}]")
                  for k, m in enumerate(ch)]
        # HF's binarized sets repeat the prompt inside chosen; TRL's conversational rows do not
        msgs = answer if answer and answer[0]["role"] in ("system", "user") else prompt + answer
    else:
        msgs = [*prompt, {"role": "assistant", "content": _text(ch, ctx, "chosen")}]
    msgs = _system_first(rec, msgs, ctx, known)
    return _finish(msgs, media, rec, ctx, known)


def _from_llamafactory_mm(rec: Any, ctx: _Ctx) -> dict:
    """LLaMA-Factory's sharegpt with role/content tags: from/value or role/content turns, ranking rows too."""
    if isinstance(rec, dict) and isinstance(rec.get("messages"), list):
        return _from_sharegpt(rec, ctx, "messages")
    return _from_openai(rec, ctx)


def _from_pretrain_text(rec: dict, ctx: _Ctx) -> dict:
    if "text" not in rec:
        raise ctx.err("text", "missing", "pretraining rows need a text field (map yours with --map text=FIELD)")
    media = _new_media()
    known = {"text"}
    _sample_media(rec, ctx, media, known)
    msgs = [{"role": "pretrain", "content": _text(rec["text"], ctx, "text", allow_empty=False)}]
    return _finish(msgs, media, rec, ctx, known)


_READERS = {
    "openai": _from_openai, "canonical": _from_openai, "xtuner": _from_xtuner, "alpaca": _from_alpaca,
    "swift": _from_swift, "sharegpt": _from_sharegpt, "llava": _from_llava,
    "llamafactory_mm": _from_llamafactory_mm, "xtuner_mm": _from_openai, "pretrain_text": _from_pretrain_text,
    "prompt_completion": _from_prompt_completion, "preference": _from_preference,
}

PAIRS_MSG = ("preference pairs (chosen/rejected): not supervised fine-tuning data; "
             "use --take chosen to train on the chosen answers")
KTO_MSG = ("KTO rows (label true/false): the false answers are examples of what not to say; "
           "use --take desirable to train only on the rows labelled true")


def _refuse_pairs(ctx: _Ctx, field: str) -> None:
    if ctx.take != "chosen":
        raise _FileRefused(ctx.path, None, field, PAIRS_MSG, "or train it with a preference trainer (DPO/ORPO)")


class _FileRefused(DataError):
    """The whole file is of a kind the studio does not train on: one error, not one per record."""


def _kind_check(rec: Any, ctx: _Ctx, st: dict) -> bool:
    """Preference / KTO fields in a record: refuse, or honour `take`. False = skip this record."""
    if not isinstance(rec, dict) or rec.keys().isdisjoint(_KIND_KEYS):
        return True
    pairs = [k for k in _PAIR_FIELDS if k in rec]
    if pairs:
        _refuse_pairs(ctx, pairs[0])
        for k in (*pairs, "rejected_images", "rejected_videos", "rejected_audios"):
            if k.startswith("rejected") and k in rec:
                ctx.ignored.add(f"{k} (rejected answers, --take chosen)")
                ctx.noted.add(k)
    kto = next((k for k in _KTO_FIELDS if k in rec), None)
    if kto is not None:
        v = rec[kto]
        if not isinstance(v, bool):
            raise _FileRefused(ctx.path, ctx.line, kto, f"{v!r}: a classification label, not supervised fine-tuning "
                               "data", "remove the label field if the answers are meant to be learned")
        if ctx.take != "desirable":
            raise _FileRefused(ctx.path, None, kto, KTO_MSG, "or train it with a KTO trainer")
        ctx.noted.add(kto)  # honoured: it decided whether the row is kept
        if v is False:
            st["dropped"]["KTO label false (undesirable)"] = st["dropped"].get("KTO label false (undesirable)", 0) + 1
            return False
    return True


def check_sample(sample: dict, ctx_path: str = "", line: int | None = None) -> None:
    """Raise DataError if a canonical sample cannot be trained on (empty, nothing to learn, media off)."""
    msgs = sample.get("messages")
    if not msgs:
        raise DataError(ctx_path, line, "messages", "empty conversation", "drop the record or fill it in")
    roles = [m["role"] for m in msgs]
    if "pretrain" in roles:
        if len(msgs) != 1:
            raise DataError(ctx_path, line, "messages", "a pretrain text must be the only message")
        if not msgs[0]["content"].strip():
            raise DataError(ctx_path, line, "messages[0].content", "empty text")
    else:
        if "assistant" not in roles:
            raise DataError(ctx_path, line, "messages", "no assistant turn: nothing to learn",
                            "each sample needs at least one answer")
        if all(not m["content"].strip() and not m.get("tool_calls") and not m.get("reasoning_content")
               for m in msgs if m["role"] == "assistant"):
            raise DataError(ctx_path, line, "messages", "every assistant answer is empty")
    text = "".join(m["content"] for m in msgs) if len(msgs) > 1 else msgs[0]["content"]
    if len(sample) == 1 and "<" not in text:  # no media and no placeholder: nothing to match
        return
    for key, tok in MEDIA_TOKENS.items():
        n = len(sample.get(key) or [])
        if not n and tok not in text:
            continue
        n_tok = text.count(tok)
        if n and n_tok != n:
            raise DataError(ctx_path, line, key, f"{n} {key[:-1]}(s) but {n_tok} {tok} placeholder(s)",
                            f"put one {tok} in the text for each {key[:-1]}")
        if n_tok and not n:
            raise DataError(ctx_path, line, key, f"{n_tok} {tok} placeholder(s) but no {key[:-1]}",
                            f"add the {key[:-1]} path, or remove the placeholder")


def read_samples(path: str | os.PathLike, fmt: str | None = None, mapping: dict[str, str] | None = None, *,
                 image_folder: str | None = None, strict: bool = True, check_images: bool = True,
                 stats: dict | None = None, take: str | None = None, media_dir: str | os.PathLike | None = None,
                 speakers: dict[str, str] | None = None) -> Iterator[dict]:
    """Yield canonical samples from a data file of any supported format (see FORMATS).

    fmt: None detects it from the first records. mapping: our field -> the file's field, e.g.
    {"input": "toy_input", "output": "toy_output"}. image_folder: where relative media paths
    point (default: the data file's folder). strict: a bad record raises DataError naming
    file:line:field; otherwise it is skipped and listed in stats["errors"]. take: "chosen" reads
    preference pairs as their chosen answers, "desirable" keeps only KTO rows labelled true (without
    it such files are refused). media_dir: where media stored as bytes (Parquet image columns) are
    written. speakers: the file's role names -> ours (LLaMA-Factory tags). stats (optional dict)
    receives "records", "samples", "dropped" ({reason: count}), "ignored" ({field: rows}), "media"
    ({"images": n, ...}) and "errors".
    """
    path = str(path)
    if fmt is not None and fmt not in _READERS:
        raise DataError(path, None, None, f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    if take is not None and take not in TAKE:
        raise DataError(path, None, "--take", f"unknown value {take!r}", f"use one of {', '.join(TAKE)}")
    fmt = fmt or detect_format(path, mapping)
    reader = _READERS[fmt]
    ctx = _Ctx(path, image_folder, check_images, str(media_dir) if media_dir else None, take, speakers)
    st = stats if stats is not None else {}
    st["images_found_by_name"] = ctx.by_name
    st.setdefault("format", fmt)
    for k in ("records", "samples"):
        st.setdefault(k, 0)
    for k in ("dropped", "ignored"):
        st.setdefault(k, {})
    st.setdefault("media", {"images": 0, "videos": 0, "audios": 0})
    st.setdefault("errors", [])
    ignored, media = st["ignored"], st["media"]
    for line, rec in iter_records(path, None if strict else st):
        st["records"] += 1
        ctx.line = line
        if ctx.noted:
            ctx.noted = set()
        ctx.ignored.clear()
        try:
            rec = _apply_mapping(rec, mapping)
            if type(rec) is not dict:
                if not isinstance(rec, dict | list):
                    raise ctx.err(None, f"a record must be a JSON object, got {type(rec).__name__}")
                if isinstance(rec, list) and fmt not in ("openai", "canonical", "xtuner_mm", "llamafactory_mm"):
                    raise ctx.err(None, f"a record must be a JSON object for format {fmt}, got a list")
            if not _kind_check(rec, ctx, st):
                continue
            sample = reader(rec, ctx)
            if sample is None:
                st["dropped"]["alpaca <nooutput>"] = st["dropped"].get("alpaca <nooutput>", 0) + 1
                continue
            if len(sample) > 1:
                _ensure_image_token(sample)
            check_sample(sample, path, line)
        except _FileRefused:
            raise
        except DataError as e:
            if strict:
                raise
            st["errors"].append(str(e).split("\n")[0])
            reason = e.args[0].split(": ", 1)[-1] if e.args else "error"
            reason = re.sub(r"^\S+: ", "", reason)[:60]
            st["dropped"][reason] = st["dropped"].get(reason, 0) + 1
            continue
        if ctx.ignored:
            for f in ctx.ignored:
                if f not in ignored and len(ignored) >= MAX_IGNORED_FIELDS:
                    f = "(more fields)"  # keys that differ row by row (ids as keys) must not grow without bound
                ignored[f] = ignored.get(f, 0) + 1
            ctx.ignored = set()
        if len(sample) > 1:
            for k in ("images", "videos", "audios"):
                if k in sample:
                    media[k] += len(sample[k])
        st["samples"] += 1
        st["line"] = line
        yield sample


def summary_line(st: dict) -> str:
    """'dropped: ...; ignored: label (8 rows), ...' for a stats dict (never 'none' when something went)."""
    dropped = ", ".join(f"{v} {k}" for k, v in st.get("dropped", {}).items()) or "none"
    parts = [f"dropped: {dropped}"]
    if st.get("ignored"):
        parts.append("ignored: " + ", ".join(f"{k} ({v} rows)" for k, v in sorted(st["ignored"].items())))
    if st.get("not_written"):
        parts.append("not kept by the output format: " +
                     ", ".join(f"{k} ({v} rows)" for k, v in sorted(st["not_written"].items())))
    return "; ".join(parts)


# ---------------------------------------------------------------------------- from canonical


def _rel(p: str, out_dir: Path) -> str:
    """Relative to the output folder when the file lies under it, else absolute (no ../../ chains); URLs verbatim."""
    if is_url(p):
        return p
    try:
        rel = os.path.relpath(p, out_dir)
    except ValueError:  # another drive on Windows
        return p
    return p if rel.startswith("..") else rel


def _refuse(i: int, field: str, what: str, to: str, instead: str = "openai") -> DataError:
    return DataError(f"sample {i}", None, field, f"{what} cannot be written as {to}", f"write {instead} instead")


def _plain_only(s: dict, i: int, to: str, media: tuple[str, ...] = ()) -> None:
    """Refuse what changes training and `to` cannot hold: tool calls, reasoning, loss switches, media."""
    for k, m in enumerate(s["messages"]):
        if m.get("tool_calls"):
            raise _refuse(i, f"messages[{k}].tool_calls", "tool calls", to, "openai or sharegpt")
        if m.get("reasoning_content"):
            raise _refuse(i, f"messages[{k}].reasoning_content", "reasoning content", to, "openai or xtuner_mm")
        if "loss" in m and m["loss"] != (m["role"] == "assistant"):
            raise _refuse(i, f"messages[{k}].loss", f"a {m['role']} turn with loss {str(m['loss']).lower()}", to,
                          "openai or xtuner_mm")
    for key in ("images", "videos", "audios"):
        if s.get(key) and key not in media:
            raise _refuse(i, key, key, to, "openai or llamafactory_mm")


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
            if pending is None:
                raise DataError(f"sample {idx}", None, "messages", f"an answer with no question before it cannot be "
                                f"written as {to}", "write openai instead")
            pairs.append((pending, m["content"]))
            pending = None
        else:
            raise DataError(f"sample {idx}", None, "messages", f"{r} turns cannot be written as {to}",
                            "write openai or sharegpt instead")
    return system, pairs


def _media_out(s: dict, rec: dict, out_dir: Path) -> None:
    for key in ("images", "videos", "audios"):
        if s.get(key):
            rec[key] = [_rel(p, out_dir) for p in s[key]]


def _to_openai(s: dict, i: int, out_dir: Path, lost: dict) -> dict:
    msgs = [m if "tool_call" not in m else {k: v for k, v in m.items() if k != "tool_call"} for m in s["messages"]]
    rec: dict[str, Any] = {"messages": msgs}
    _media_out(s, rec, out_dir)
    if s.get("tools"):
        rec["tools"] = s["tools"]
    return rec


def _lose(lost: dict, s: dict, keys: tuple[str, ...]) -> None:
    """Count message fields the target format has no place for (names and call ids are not trained)."""
    seen = {k for m in s["messages"] for k in keys if m.get(k)}
    for k in seen:
        lost[f"messages[].{k}"] = lost.get(f"messages[].{k}", 0) + 1


def _to_xtuner(s: dict, i: int, out_dir: Path, lost: dict) -> dict:
    msgs = s["messages"]
    if msgs and msgs[0]["role"] == "pretrain":
        _plain_only(s, i, "xtuner")
        return {"conversation": [{"input": "", "output": msgs[0]["content"]}]}
    # XTuner's conversation turns know output_with_loss, nothing else of the extras
    _plain_only(dict(s, messages=[{k: v for k, v in m.items() if not (k == "loss" and m["role"] == "assistant")}
                                  for m in msgs]), i, "xtuner", ())
    if s.get("tools"):
        raise _refuse(i, "tools", "tools", "xtuner", "openai or sharegpt")
    _lose(lost, s, ("name",))
    system, pairs = _pairs(s, i, "xtuner")
    answers = [m for m in msgs if m["role"] == "assistant"]
    conv = []
    for k, (q, a) in enumerate(pairs):
        t: dict[str, Any] = {"system": system, "input": q, "output": a} if k == 0 and system else {"input": q, "output": a}
        if answers[k].get("loss") is False:
            t["output_with_loss"] = False
        conv.append(t)
    return {"conversation": conv}


_SG_NAMES = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation", "pretrain": "gpt"}


def _call_json(calls: list[dict]) -> str:
    """OpenAI tool_calls -> the {"name", "arguments"} JSON sharegpt's function_call turns hold."""
    out = []
    for c in calls:
        args = c["function"]["arguments"]
        try:
            args = json.loads(args)
        except (json.JSONDecodeError, TypeError):
            pass
        out.append({"name": c["function"]["name"], "arguments": args})
    return json.dumps(out[0] if len(out) == 1 else out, ensure_ascii=False)


def _lf_turns(s: dict, i: int, to: str, role_key: str, content_key: str, names: dict, lost: dict) -> list[dict]:
    """Messages as LLaMA-Factory turns: a call-only answer is a function_call turn, a result an observation."""
    if s["messages"] and s["messages"][0]["role"] == "pretrain":
        raise _refuse(i, "messages[0]", "pretraining text", to, "openai (LLaMA-Factory reads it as {\"text\"})")
    body = dict(s, messages=[dict(m, tool_calls=None) for m in s["messages"]])
    _plain_only(body, i, to, ("images", "videos", "audios"))
    _lose(lost, s, ("tool_call_id", "name"))
    out = []
    for k, m in enumerate(s["messages"]):
        if m.get("tool_calls"):
            if m["content"].strip():
                raise _refuse(i, f"messages[{k}]", "an answer with both text and tool calls", to)
            out.append({role_key: "function_call", content_key: _call_json(m["tool_calls"])})
        else:
            out.append({role_key: names[m["role"]], content_key: m["content"]})
    return out


def _to_sharegpt(s: dict, i: int, out_dir: Path, lost: dict) -> dict:
    msgs = s["messages"]
    rec: dict[str, Any] = {}
    body = dict(s)
    if msgs and msgs[0]["role"] == "system":
        rec["system"] = msgs[0]["content"]
        body = dict(s, messages=msgs[1:])
    rec["conversations"] = _lf_turns(body, i, "sharegpt", "from", "value", _SG_NAMES, lost)
    if s.get("tools"):
        rec["tools"] = json.dumps(s["tools"], ensure_ascii=False)
    _media_out(s, rec, out_dir)
    return rec


def _to_llava(s: dict, i: int, out_dir: Path, lost: dict) -> dict:
    imgs = s.get("images") or []
    if len(imgs) > 1:
        raise DataError(f"sample {i}", None, "images", f"{len(imgs)} images; LLaVA records hold one",
                        "write llamafactory_mm instead")
    _plain_only(s, i, "llava", ("images",))
    if s.get("tools"):
        raise _refuse(i, "tools", "tools", "llava", "openai or sharegpt")
    _lose(lost, s, ("name",))
    conv = [{"from": "human" if m["role"] == "user" else "gpt" if m["role"] == "assistant" else m["role"],
             "value": m["content"]} for m in s["messages"] if m["role"] != "system"]
    if any(m["role"] == "system" for m in s["messages"]):
        conv.insert(0, {"from": "system", "value": "\n".join(m["content"] for m in s["messages"] if m["role"] == "system")})
    rec: dict[str, Any] = {"id": str(i)}
    if imgs:
        rec["image"] = _rel(imgs[0], out_dir)
    rec["conversations"] = conv
    return rec


def _to_alpaca(s: dict, i: int, out_dir: Path, lost: dict) -> dict:
    _plain_only(s, i, "alpaca", ("images", "videos", "audios"))
    _lose(lost, s, ("name",))
    system, pairs = _pairs(s, i, "alpaca")
    if not pairs:
        raise DataError(f"sample {i}", None, "messages", "no question/answer pair for alpaca")
    *hist, (q, a) = pairs
    rec: dict[str, Any] = {"instruction": q, "input": "", "output": a}
    if system:
        rec["system"] = system
    if hist:
        rec["history"] = [list(p) for p in hist]
    if s.get("tools"):
        rec["tools"] = json.dumps(s["tools"], ensure_ascii=False)
    _media_out(s, rec, out_dir)
    return rec


def _to_llamafactory_mm(s: dict, i: int, out_dir: Path, lost: dict) -> dict:
    rec: dict[str, Any] = {"messages": _lf_turns(s, i, "llamafactory_mm", "role", "content",
                                                 {r: r for r in ROLES} | {"tool": "observation"}, lost)}
    rec["images"] = [_rel(p, out_dir) for p in s.get("images") or []]
    for key in ("videos", "audios"):
        if s.get(key):
            rec[key] = [_rel(p, out_dir) for p in s[key]]
    if s.get("tools"):
        rec["tools"] = json.dumps(s["tools"], ensure_ascii=False)
    return rec


def _to_xtuner_mm(s: dict, i: int, out_dir: Path, lost: dict) -> dict:
    """XTuner's messages: image/video parts, and reasoning_content, tool_calls, loss as they are."""
    if s.get("audios"):
        raise _refuse(i, "audios", "audios", "xtuner_mm", "openai or llamafactory_mm")
    imgs = list(s.get("images") or [])
    vids = list(s.get("videos") or [])
    msgs = []
    for m in s["messages"]:
        c: Any = m["content"]
        if IMAGE_TOKEN in c or "<video>" in c:
            parts: list[dict] = []
            for piece in re.split(r"(<image>|<video>)", c):
                if piece == IMAGE_TOKEN and imgs:
                    parts.append({"type": "image_url", "image_url": {"url": _rel(imgs.pop(0), out_dir)}})
                elif piece == "<video>" and vids:
                    parts.append({"type": "video_url", "video_url": {"url": _rel(vids.pop(0), out_dir)}})
                elif piece:
                    parts.append({"type": "text", "text": piece})
            c = parts
        m2 = {k: v for k, v in m.items() if k != "tool_call"}
        m2["content"] = c
        msgs.append(m2)
    rec: dict[str, Any] = {"messages": msgs}
    if s.get("tools"):
        rec["tools"] = s["tools"]
    return rec


_WRITERS = {"openai": _to_openai, "canonical": _to_openai, "xtuner": _to_xtuner, "llava": _to_llava,
            "sharegpt": _to_sharegpt, "alpaca": _to_alpaca, "llamafactory_mm": _to_llamafactory_mm,
            "xtuner_mm": _to_xtuner_mm}
_ARRAY_BY_DEFAULT = ("llava", "sharegpt", "alpaca", "llamafactory_mm")


def write_samples(samples: Iterable[dict], path: str | os.PathLike, to: str = "openai", *,
                  overwrite: bool = True, stats: dict | None = None) -> int:
    """Write canonical samples as `to` (see WRITE_FORMATS); returns the count.

    Atomic and streaming: rows go to a temp file renamed into place at the end, so if reading
    the input fails half-way no output file appears. A .jsonl name writes JSON lines and a .json
    name a JSON array; otherwise the format's usual container (arrays for llava/alpaca/sharegpt).
    What `to` cannot hold and would change training (tool calls, reasoning, loss switches, media)
    is refused naming the sample and field; what it cannot hold and is not trained (a tool
    result's call id) is counted in stats["not_written"]. overwrite=False refuses an existing file.
    """
    if to not in _WRITERS:
        raise DataError(str(path), None, None, f"cannot write format {to!r}", f"use one of {', '.join(WRITE_FORMATS)}")
    path = Path(path)
    if not overwrite and path.exists():
        raise DataError(str(path), None, "-o", "the output file exists", "pass --overwrite to replace it, or pick "
                        "another name")
    conv = _WRITERS[to]
    out_dir = path.resolve().parent
    lost: dict[str, int] = {}
    if stats is not None:
        stats["not_written"] = lost
    as_array = path.suffix == ".json" or (path.suffix != ".jsonl" and to in _ARRAY_BY_DEFAULT)
    return atomic_write_rows(path, (conv(s, i, out_dir, lost) for i, s in enumerate(samples, 1)), as_array=as_array)


def family_format(fmt: str) -> str:
    """The writer that gives a file of format `fmt` back in its own family."""
    return {"canonical": "openai", "pretrain_text": "openai", "swift": "openai", "prompt_completion": "openai",
            "preference": "openai"}.get(fmt, fmt)


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
