"""Data chores from the tutorial, done safely: replace a name, repeat a set, build LLaVA records,
and read LLaMA-Factory's dataset_info.json.

    python -m studio data replace assistant_Tuner.jsonl --old 尖米 --new 小天 -o out.jsonl [--dry-run]
    python -m studio data repeat unique_data.json -n 200 -o repeated_data.json
    python -m studio data llava --images imgs/ --qa qa.txt --repeat 200 -o llava.json
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.data.formats import (
    IMAGE_TOKEN,
    KTO_MSG,
    PAIRS_MSG,
    _sniff,
    detect_format,
    iter_records,
    read_samples,
)
from core.errors import DataError
from core.fsio import atomic_write_rows

# Values under these keys are paths or ids, not text: a rename must not touch them.
_NOT_TEXT = {"image", "images", "image_url", "url", "id", "file_name", "audios", "videos"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


# ---------------------------------------------------------------------------- outputs


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False) -> None:
    """Refuse an output that is one of the inputs (always) or an existing file (unless overwrite)."""
    o = Path(out)
    for p in inputs:
        q = Path(p)
        same = o.resolve() == q.resolve() or (o.exists() and q.exists() and os.path.samefile(o, q))
        if same:
            raise DataError(str(out), None, "-o", "the output is the input file",
                            "write to another file; the input is read while the output is written")
    if o.is_dir():
        raise DataError(str(out), None, "-o", "is a folder", "give a file name")
    if o.exists() and not overwrite:
        raise DataError(str(out), None, "-o", "the output file exists", "pass --overwrite to replace it, or pick "
                        "another name")


# ---------------------------------------------------------------------------- replace


def _replace_in(obj: Any, old: str, new: str, where: str, hits: list) -> Any:
    if isinstance(obj, str):
        n = obj.count(old)
        if n:
            hits.append((where, n, obj))
            return obj.replace(old, new)
        return obj
    if isinstance(obj, list):
        return [_replace_in(v, old, new, f"{where}[{k}]", hits) for k, v in enumerate(obj)]
    if isinstance(obj, dict):
        return {k: (v if k in _NOT_TEXT else _replace_in(v, old, new, f"{where}.{k}" if where else k, hits))
                for k, v in obj.items()}
    return obj


def _snippet(text: str, word: str, width: int = 24) -> str:
    i = text.find(word)
    a, b = max(0, i - width), min(len(text), i + len(word) + width)
    s = text[a:b].replace("\n", "\\n")
    return ("…" if a else "") + s + ("…" if b < len(text) else "")


def replace_in_file(path: str | os.PathLike, old: str, new: str, out: str | os.PathLike | None,
                    dry_run: bool = False, max_diff: int = 10) -> dict:
    """Replace `old` with `new` in the text values of every record (never in keys or paths).

    Keeps the file's container (JSON lines stay lines, an array stays an array) and key order.
    Returns {"replacements", "records", "records_changed", "fields", "diff": [...], "out"}; the
    diff shows the first `max_diff` changes as file:line: field: - before / + after. With
    dry_run nothing is written.
    """
    if not old:
        raise DataError(str(path), None, "--old", "must not be empty")
    path = str(path)
    jsonl = _sniff(path) == "jsonl"
    report: dict[str, Any] = {"file": path, "old": old, "new": new, "replacements": 0, "records": 0,
                              "records_changed": 0, "fields": {}, "diff": [], "out": None if dry_run else str(out)}

    def rows() -> Iterator[Any]:
        for line, rec in iter_records(path):
            hits: list = []
            rec2 = _replace_in(rec, old, new, "", hits)
            report["records"] += 1
            if hits:
                report["records_changed"] += 1
            for where, n, before in hits:
                report["replacements"] += n
                field = re.sub(r"\[\d+\]", "[]", where)
                report["fields"][field] = report["fields"].get(field, 0) + n
                if len(report["diff"]) < max_diff:
                    report["diff"].append(f"{path}:{line}: {where}:\n  - {_snippet(before, old)}\n"
                                          f"  + {_snippet(before.replace(old, new), new)}")
            yield rec2

    if dry_run:
        for _ in rows():
            pass
        return report
    if out is None:
        raise DataError(path, None, "-o", "an output file is needed (or use --dry-run)")
    atomic_write_rows(out, rows(), as_array=not jsonl)
    return report


# ---------------------------------------------------------------------------- repeat


def repeat_samples(samples: Iterable[dict], n: int) -> list[dict]:
    """The set `n` times over, in order (the tutorial's repeat.py)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    items = list(samples)
    return [s for _ in range(n) for s in items]


def repeat_file(path: str | os.PathLike, n: int, out: str | os.PathLike) -> dict:
    """Repeat a data file's records `n` times, keeping its format (checked first: a bad file
    is not multiplied). Returns {"records", "written", "format"}."""
    if n < 1:
        raise DataError(str(path), None, "-n", f"must be >= 1, got {n}")
    fmt = detect_format(path)
    st: dict = {}
    try:
        k = sum(1 for _ in read_samples(path, fmt))
    except DataError as e:
        # preference / KTO files are copied as they are: checked the way a trainer of that kind reads them
        take = "chosen" if PAIRS_MSG in e.args[0] else "desirable" if KTO_MSG in e.args[0] else None
        if take is None:
            raise
        for _ in read_samples(path, fmt, take=take, stats=st):
            pass
        k = st["records"]
    jsonl = _sniff(str(path)) == "jsonl"

    def rows() -> Iterator[Any]:
        for _ in range(n):
            for _line, rec in iter_records(path):
                yield rec

    written = atomic_write_rows(out, rows(), as_array=not jsonl)
    return {"format": fmt, "records": k, "written": written, "out": str(out)}


# ---------------------------------------------------------------------------- LLaVA builder

_Q = re.compile(r"^\s*(?:Q|Question|问题?|提问)\s*\d*\s*[:：]\s*(.*)$", re.I)
_A = re.compile(r"^\s*(?:A|Answer|答案?|回答)\s*\d*\s*[:：]\s*(.*)$", re.I)
_IMG = re.compile(r"^\s*(?:#+\s*)?(?:image|img|图片|图像)\s*[:：]\s*(.+?)\s*$", re.I)
_SEP = re.compile(r"^\s*(?:-{3,}|={3,})\s*$")


def parse_qa_text(text: str, source: str = "qa") -> list[dict]:
    """Parse Q&A written by a chat model into [{"image": name|None, "qa": [(q, a), ...]}, ...].

    Plain text: "Q:/A:" or "问:/答:" blocks (full-width colons too; answers may span lines);
    "image: NAME" (or "图片：NAME") starts a section for that image; a "---" line starts a new
    conversation for the same image. JSON: the list or object a chat model returns, e.g.
    [{"question": .., "answer": ..}], {"image": .., "qa": [...]}, or LLaVA-style records; a
    ```json fence around it is fine.
    """
    stripped = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", text.strip())
    if stripped[:1] in "[{":
        try:
            return _qa_from_json(json.loads(stripped), source)
        except json.JSONDecodeError as e:
            raise DataError(source, e.lineno, None, f"looks like JSON but is not: {e.msg}") from None
    blocks: list[dict] = []
    cur: dict = {"image": None, "qa": []}
    q: list[str] | None = None
    a: list[str] | None = None
    q_line = 0

    def flush_pair(lineno: int) -> None:
        nonlocal q, a
        if q is not None:
            if a is None:
                raise DataError(source, q_line, None, "a question without an answer",
                                "follow each Q: line with an A: line")
            cur["qa"].append(("\n".join(q).strip(), "\n".join(a).strip()))
        q, a = None, None

    def flush_block(lineno: int) -> None:
        nonlocal cur
        flush_pair(lineno)
        if cur["qa"]:
            blocks.append(cur)
        cur = {"image": cur["image"], "qa": []}

    for k, line in enumerate(text.splitlines(), 1):
        if m := _IMG.match(line):
            flush_block(k)
            cur = {"image": m.group(1).strip(), "qa": []}
        elif _SEP.match(line):
            flush_block(k)
        elif m := _Q.match(line):
            flush_pair(k)
            q, q_line = [m.group(1)], k
        elif m := _A.match(line):
            if q is None:
                raise DataError(source, k, None, "an answer without a question", "put a Q: line before it")
            if a is not None:
                raise DataError(source, k, None, "two answers for one question")
            a = [m.group(1)]
        elif a is not None:
            a.append(line)
        elif q is not None:
            q.append(line)
        elif line.strip():
            raise DataError(source, k, None, f"cannot read this line: {line.strip()[:40]!r}",
                            "write Q:/A: (or 问：/答：) blocks, or JSON")
    flush_block(len(text.splitlines()))
    if not blocks:
        raise DataError(source, None, None, "no Q:/A: pairs found")
    return blocks


def _qa_pairs(items: Any, source: str) -> list[tuple[str, str]]:
    pairs = []
    for k, it in enumerate(items):
        if isinstance(it, dict) and ("from" in it or "role" in it):
            continue  # handled by the conversation branch
        if isinstance(it, dict):
            lower = {str(key).lower(): v for key, v in it.items()}
            q = next((lower[x] for x in ("question", "q", "问", "问题", "instruction", "input") if x in lower), None)
            a = next((lower[x] for x in ("answer", "a", "答", "答案", "output", "response") if x in lower), None)
        elif isinstance(it, list | tuple) and len(it) == 2:
            q, a = it
        else:
            q = a = None
        if not isinstance(q, str) or not isinstance(a, str):
            raise DataError(source, k + 1, None, "expected a question/answer pair",
                            'use [{"question": ..., "answer": ...}, ...]')
        pairs.append((q.strip(), a.strip()))
    return pairs


def _qa_from_json(obj: Any, source: str) -> list[dict]:
    if isinstance(obj, dict):
        if "qa" in obj or "conversations" in obj or "questions" in obj:
            obj = [obj]
        elif all(isinstance(v, list) for v in obj.values()):  # {"img.jpg": [...], ...}
            obj = [{"image": k, "qa": v} for k, v in obj.items()]
        else:
            obj = [obj]
    if not isinstance(obj, list):
        raise DataError(source, None, None, "expected a JSON list or object of Q&A")
    if obj and all(isinstance(x, dict) and not ({"qa", "conversations", "questions"} & set(x)) for x in obj):
        return [{"image": None, "qa": _qa_pairs(obj, source)}]
    blocks = []
    for k, rec in enumerate(obj):
        if not isinstance(rec, dict):
            raise DataError(source, k + 1, None, "expected an object")
        img = rec.get("image")
        if "conversations" in rec:
            conv = rec["conversations"]
            qs = [t.get("value", t.get("content", "")) for t in conv if t.get("from", t.get("role")) in ("human", "user")]
            ans = [t.get("value", t.get("content", "")) for t in conv if t.get("from", t.get("role")) in ("gpt", "assistant")]
            pairs = [(q.replace(IMAGE_TOKEN, "").strip(), a) for q, a in zip(qs, ans, strict=False)]
        else:
            pairs = _qa_pairs(rec.get("qa", rec.get("questions", [])), source)
        if pairs:
            blocks.append({"image": img, "qa": pairs})
    return blocks


def check_image(path: str | os.PathLike) -> dict:
    """Open an image with Pillow; {"path", "width", "height", "mode"} or DataError."""
    from core.images import open_image

    # checked under core/images.py's pixel limit: a decompression bomb is a DataError, not a traceback
    with open_image(path, decode=False) as im:
        return {"path": str(path), "width": im.width, "height": im.height, "mode": im.mode}


def build_llava(images_dir: str | os.PathLike, qa_file: str | os.PathLike, repeat: int = 1) -> tuple[list[dict], dict]:
    """A folder of images + GPT-style Q&A -> canonical LLaVA samples (and a report).

    Each Q&A block becomes one conversation about its image, with <image> at the start of the
    first user turn; samples hold absolute image paths (write them with to="llava" to get the
    LLaVA JSON XTuner reads). If the folder has one image, blocks need not name it; otherwise
    each block names its image ("image: NAME"). Every image is opened with Pillow; the report
    lists sizes. repeat: the set repeated (the tutorial repeats 6 records 200 times).
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(str(images_dir), None, None, "not a folder of images")
    if repeat < 1:
        raise DataError(str(qa_file), None, "--repeat", f"must be >= 1, got {repeat}")
    files = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise DataError(str(images_dir), None, None, f"no images ({', '.join(IMAGE_EXTS)}) in the folder")
    raw = Path(qa_file).read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(str(qa_file), raw[: e.start].count(b"\n") + 1, None, "not UTF-8 text") from None
    blocks = parse_qa_text(text, str(qa_file))
    by_name = {p.relative_to(images_dir).as_posix(): p for p in files}
    by_name.update({p.name: p for p in files if p.name not in by_name})
    checked: dict[Path, dict] = {}
    samples = []
    for b in blocks:
        name = b["image"]
        if name is None:
            if len(files) != 1:
                raise DataError(str(qa_file), None, None, f"{len(files)} images in {images_dir} but this block names none",
                                "start each block with a line 'image: NAME'")
            img = files[0]
        else:
            img = by_name.get(name) or by_name.get(Path(name).name)
            if img is None:
                raise DataError(str(qa_file), None, "image", f"{name} is not in {images_dir}")
        if img not in checked:
            checked[img] = check_image(img)
        msgs = []
        for k, (q, a) in enumerate(b["qa"]):
            msgs.append({"role": "user", "content": f"{IMAGE_TOKEN}\n{q}" if k == 0 else q})
            msgs.append({"role": "assistant", "content": a})
        samples.append({"messages": msgs, "images": [str(img.resolve())]})
    unused = [str(p) for p in files if p not in checked]
    report = {"images": list(checked.values()), "unused_images": unused, "conversations": len(samples),
              "qa_pairs": sum(len(b["qa"]) for b in blocks), "repeat": repeat, "records": len(samples) * repeat}
    return [s for _ in range(repeat) for s in samples], report


# ---------------------------------------------------------------------------- LLaMA-Factory


# LLaMA-Factory dataset_info.json columns -> our field names (data/README.md of LLaMA-Factory)
_LF_ALPACA = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
              "history": "history", "images": "images", "videos": "videos", "audios": "audios", "tools": "tools",
              "chosen": "chosen", "rejected": "rejected", "kto_tag": "label"}
_LF_SHAREGPT = {"messages": "conversations", "system": "system", "tools": "tools", "images": "images",
                "videos": "videos", "audios": "audios", "chosen": "chosen", "rejected": "rejected", "kto_tag": "label"}
# tags: the file's speaker names -> ours (defaults are LLaMA-Factory's: human, gpt, observation, function_call, system)
_LF_TAGS = {"user_tag": "user", "assistant_tag": "assistant", "observation_tag": "tool",
            "function_tag": "function_call", "system_tag": "system"}


def read_dataset_info(path: str | os.PathLike) -> dict[str, dict]:
    """LLaMA-Factory's dataset_info.json -> {name: {"path", "fmt", "mapping", "speakers"}} for its local files.

    Every formatting/columns/tags variant of LLaMA-Factory's data/README.md: alpaca and sharegpt
    columns (with images/videos/audios/tools), ranking entries (chosen/rejected: read with
    take="chosen"), KTO (kto_tag: read with take="desirable"), pretraining ({"prompt": "text"}
    alone: pretrain_text) and tags (role/content keys and speaker names). Entries that point at a
    hub (no file_name) are left out. fmt, mapping and speakers go straight to read_samples.
    """
    path = Path(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(str(path), e.lineno, None, f"bad JSON: {e.msg}") from None
    if not isinstance(info, dict):
        raise DataError(str(path), 1, None, "expected an object of data sets")
    out = {}
    for name, d in info.items():
        if not isinstance(d, dict) or "file_name" not in d:
            continue
        formatting = d.get("formatting", "alpaca")
        cols = d.get("columns") or {}
        tags = d.get("tags") or {}
        speakers: dict[str, str] = {}
        if formatting == "sharegpt":
            fmt = "sharegpt"
            mapping = {_LF_SHAREGPT[k]: v for k, v in cols.items() if k in _LF_SHAREGPT}
            mapping.setdefault("conversations", "conversations")
            if tags.get("role_tag") and tags["role_tag"] not in ("from", "role"):
                mapping["from"] = tags["role_tag"]
            if tags.get("content_tag") and tags["content_tag"] not in ("value", "content"):
                mapping["value"] = tags["content_tag"]
            speakers = {v: _LF_TAGS[k] for k, v in tags.items() if k in _LF_TAGS and isinstance(v, str)}
            if tags.get("role_tag") == "role" or any(k in cols for k in ("images", "videos", "audios")):
                fmt = "llamafactory_mm"  # OpenAI-style role/content turns (and media): LLaMA-Factory's mllm files
                mapping["messages"] = mapping.pop("conversations")
        elif (set(cols) <= {"prompt", "system", "images", "videos", "audios"} and "prompt" in cols
              and not _has_field(path.parent / d["file_name"], "output")):
            # LLaMA-Factory's pretraining entries: {"columns": {"prompt": "text"}} over rows with no answer
            # (an alpaca file that keeps the default response column "output" stays alpaca)
            fmt = "pretrain_text"
            mapping = {"text": cols["prompt"]}
            mapping |= {k: v for k, v in cols.items() if k in ("images", "videos", "audios")}
        else:
            fmt = "alpaca"
            mapping = {_LF_ALPACA[k]: v for k, v in cols.items() if k in _LF_ALPACA}
        mapping = {k: v for k, v in mapping.items() if k != v}
        out[name] = {"path": str(path.parent / d["file_name"]), "file_name": d["file_name"], "fmt": fmt,
                     "mapping": mapping or None, "speakers": speakers or None, "ranking": bool(d.get("ranking"))}
    return out


def _has_field(path: Path, field: str) -> bool:
    """Whether the first record of a data file has `field` (False when it cannot be read)."""
    try:
        for _line, rec in iter_records(path):
            return isinstance(rec, dict) and field in rec
    except DataError:
        pass
    return False


def dataset_info_for(path: str | os.PathLike) -> dict | None:
    """The dataset_info.json entry for a data file lying beside one, if any."""
    p = Path(path)
    info = p.resolve().parent / "dataset_info.json"
    if not info.is_file() or p.name == "dataset_info.json":
        return None
    try:
        entries = read_dataset_info(info)
    except DataError:
        return None
    return next((e for e in entries.values() if e["file_name"] == p.name), None)
