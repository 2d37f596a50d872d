"""The raw record stream of a data file, whatever its container: one small reader per container.

    from core.data.sources import iter_records, detect_container
    for row, rec in iter_records("train.parquet"):   # (1-based line or row, record)
        ...
    python -m core.data.sources FILE [--container NAME]   # prints the container and the first records

Containers (CONTAINERS), told apart by content first (magic bytes, how the JSON parses) and by
name where content cannot tell (.csv / .tsv / .txt / .md):

- jsonl:   JSON lines (streamed in constant memory; a line longer than MAX_LINE_BYTES is refused)
- json:    one JSON document: an array of records, a wrapper `{"data": [...]}` (any single key
           holding a list of records; the key is reported), or one pretty-printed object (one record)
- csv/tsv: pyarrow.csv, every cell read as text (no type guessing: "007" stays "007")
- parquet: pyarrow, one row group batch at a time; Hugging Face Image/Audio cells come out as
           {"bytes": b"...", "path": ...} dicts (store_media_bytes writes them to files)
- arrow:   Arrow IPC files and streams (what `datasets` writes)
- text:    .txt/.md, {"text": ...} per line, or per paragraph when the file has blank lines between text
- hf_disk: a folder written by `datasets.save_to_disk`
- hf_folder: a local Hugging Face dataset folder (`datasets.load_dataset(folder)`, offline)

JSON, JSON lines, CSV and text may be gzip-compressed (.gz). Row numbers are the 1-based line for
text containers (for an array element: the line it starts on) and the 1-based row for tabular ones,
so every error reads file:line or file:row. Bad input is a DataError: special files (devices,
FIFOs) are refused before opening, JSON deeper than MAX_DEPTH, integers past Python's digit limit
and lone surrogates are named with their line, undecodable bytes give the line and byte offset.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import json
import json.scanner
import logging
import os
import re
import stat
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from core.errors import DataError, StudioError
from core.fsio import atomic_write_bytes

log = logging.getLogger(__name__)

CONTAINERS = ("jsonl", "json", "csv", "tsv", "parquet", "arrow", "text", "hf_disk", "hf_folder")
# A JSON line longer than this is not a sample but a broken file (binary data, a missing newline).
MAX_LINE_BYTES = int(os.environ.get("STUDIO_MAX_LINE_MB", "8")) * 1024 * 1024
# Deeper JSON is not a training sample; Python's parser would die with a RecursionError near 1000.
MAX_DEPTH = 100
TEXT_SUFFIXES = (".txt", ".md", ".text", ".markdown")
# Keys a single pretty-printed sample may have as its only key (then it is a record, not a wrapper).
_SAMPLE_KEYS = frozenset({"messages", "conversation", "conversations", "instruction", "text", "contents",
                          "chosen", "rejected", "prompt", "query", "response", "input", "output", "history",
                          "images", "image", "videos", "audios", "tools"})
_CHUNK = 1 << 20  # bytes per read of a JSON-lines file
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # what json.loads calls, minus two regex matches
_BATCH = 1024  # rows per Arrow batch: small enough for flat memory, big enough to amortise the calls

_ARRAY_HINT = "the file was cut off; re-export or re-download it"


# ---------------------------------------------------------------------------- the one call


def iter_records(path: str | os.PathLike, stats: dict | None = None, *,
                 container: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line-or-row, record) for every record of a data file or dataset folder.

    container: one of CONTAINERS to force it (default: detect_container). With `stats`, JSON lines
    that do not parse are recorded in stats["errors"] / stats["dropped"] and skipped instead of
    raising (validation wants every problem); stats also receives "container" and, where there is
    something to say (wrapper key, text mode, split), "container_note".
    """
    path = str(path)
    kind = container or detect_container(path)
    if kind not in CONTAINERS:
        raise DataError(path, None, None, f"unknown container {kind!r}", f"use one of {', '.join(CONTAINERS)}")
    if container:
        _check_path(path, folder_ok=kind in ("hf_disk", "hf_folder"))
    if stats is not None:
        stats["container"] = kind
    reader = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "tsv": _read_csv,
              "parquet": _read_parquet, "arrow": _read_arrow, "text": _read_text,
              "hf_disk": _read_hf_disk, "hf_folder": _read_hf_folder}[kind]
    yield from reader(path, stats, kind) if kind in ("csv", "tsv") else reader(path, stats)


def _note(path: str, stats: dict | None, msg: str) -> None:
    """Say how the container was read (wrapper key, text mode, split): logged, and kept in stats."""
    log.info("%s: %s", path, msg)
    if stats is not None:
        stats["container_note"] = msg


# ---------------------------------------------------------------------------- detection


def _check_path(path: str, folder_ok: bool = False) -> os.stat_result:
    """Refuse what must not be opened: missing paths, devices, FIFOs, sockets (before any open())."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(path, None, None, "no such file", "check the path") from None
    except OSError as e:
        raise DataError(path, None, None, f"cannot read: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        if not folder_ok:
            raise DataError(path, None, None, "is a folder, not a data file")
        return st
    if not stat.S_ISREG(st.st_mode):
        what = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise DataError(path, None, None, f"is {what}, not a data file",
                        "give a regular file (a device or pipe never ends or blocks)")
    return st


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _open_bin(path: str) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip (told by its magic bytes, not its name)."""
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _inner_name(path: str) -> str:
    name = Path(path).name.lower()
    return name[:-3] if name.endswith(".gz") else name


def detect_container(path: str | os.PathLike) -> str:
    """Which of CONTAINERS `path` is: by its bytes where they tell (Parquet/Arrow magic, binary,
    how the JSON parses), by its name where they cannot (.csv, .tsv, .txt, .md)."""
    path = str(path)
    st = _check_path(path, folder_ok=True)
    if stat.S_ISDIR(st.st_mode):
        return _folder_kind(path)
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic[:4] == b"PAR1":
        return "parquet"
    if magic[:6] == b"ARROW1" or (magic[:4] == b"\xff\xff\xff\xff" and path.lower().endswith(".arrow")):
        return "arrow"
    name = _inner_name(path)
    try:
        with _open_bin(path) as f:
            head = f.read(1 << 16)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(path, None, None, f"not a readable gzip file: {e}", "re-compress or re-download it") from None
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(path, 1, None, "UTF-16 text, not UTF-8",
                        "re-save it as UTF-8, e.g. iconv -f UTF-16 -t UTF-8 in > out")
    if _looks_binary(head):
        raise DataError(path, None, None, "binary file: not JSON/CSV/Parquet/text",
                        "give a .json/.jsonl/.csv/.tsv/.parquet/.txt file or a dataset folder")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".tsv"):
        return "tsv"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return _json_kind(path)


def _looks_binary(head: bytes) -> bool:
    """NUL bytes, or text that is not UTF-8 and is mostly control bytes (GBK/Latin-1 text is not)."""
    if b"\x00" in head:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return False
    except UnicodeDecodeError:
        pass
    ctrl = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return ctrl > len(head) // 20


def _folder_kind(path: str) -> str:
    p = Path(path)
    if (p / "dataset_dict.json").is_file() or ((p / "state.json").is_file() and (p / "dataset_info.json").is_file()):
        return "hf_disk"
    data = ("*.parquet", "*.arrow", "*.json", "*.jsonl", "*.csv", "*.tsv", "*.txt", "*.json.gz", "*.jsonl.gz")
    if (p / "README.md").is_file() or any(next(p.rglob(g), None) for g in data):
        return "hf_folder"
    raise DataError(path, None, None, "is a folder, not a data file",
                    "give a data file, a folder written by datasets.save_to_disk, or a dataset folder with data files")


def _json_kind(path: str) -> str:
    """'jsonl' or 'json', by parsing: a first line that is a whole JSON object (or a whole list of
    messages) means JSON lines, unless it is a lone {"data": [...]} wrapper; a first line that does
    not parse alone is JSON lines only when most of the next lines do (a broken first record)."""
    with _open_bin(path) as f:
        first = f.readline(MAX_LINE_BYTES + 1)
        while first and not first.strip():
            first = f.readline(MAX_LINE_BYTES + 1)
        first = first.removeprefix(b"\xef\xbb\xbf").strip()
        if first[:1] not in (b"{", b"["):
            return "json"
        val = _try_json(first)
        if first[:1] == b"[":
            is_msgs = isinstance(val, list) and val and all(isinstance(m, dict) and "role" in m for m in val)
            return "jsonl" if is_msgs else "json"
        if isinstance(val, dict):
            if not _wrapper_key(val):
                return "jsonl"
            nxt = f.readline(1 << 20)
            while nxt and not nxt.strip():
                nxt = f.readline(1 << 20)
            return "jsonl" if nxt else "json"  # a lone wrapper line is the whole file; more lines are rows
        others = []
        while len(others) < 8:
            raw = f.readline(1 << 20)
            if not raw:
                break
            if raw.strip():
                others.append(raw.strip())
    whole = sum(1 for o in others if o[:1] == b"{" and isinstance(_try_json(o), dict))
    return "jsonl" if others and 2 * whole > len(others) else "json"


def _try_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _wrapper_key(val: dict) -> str | None:
    """The key of a {"key": [records]} wrapper, or None when `val` is a record itself."""
    if len(val) != 1:
        return None
    key, v = next(iter(val.items()))
    if key in _SAMPLE_KEYS or not isinstance(v, list) or not v:
        return None
    return key if all(isinstance(x, dict | list) for x in v) else None


# ---------------------------------------------------------------------------- checks every JSON reader shares


def _encoding_hint(raw: bytes) -> str | None:
    """The iconv hint only when the bytes really read as GBK or Latin-1 text."""
    try:
        s = raw.decode("gb18030")
        if re.search(r"[\u4e00-\u9fff]", s) and not re.search(r"[\x00-\x08\x0e-\x1f\x7f]", s):
            return "it looks like GBK text: re-save it as UTF-8, e.g. iconv -f GBK -t UTF-8 in.json > out.json"
    except UnicodeDecodeError:
        pass
    s = raw.decode("latin-1")
    if not re.search(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]", s):
        return "it looks like Latin-1 text: re-save it as UTF-8, e.g. iconv -f LATIN1 -t UTF-8 in > out"
    try:  # Windows-1252: Latin-1 plus curly quotes and dashes in 0x80-0x9f (Excel's CSVs)
        if not re.search(r"[\x00-\x08\x0e-\x1f\x7f]", raw.decode("cp1252")):
            return "it looks like Windows-1252 text: re-save it as UTF-8, e.g. iconv -f CP1252 -t UTF-8 in > out"
    except UnicodeDecodeError:
        pass
    return "the file holds bytes that are not text; re-export it as UTF-8"


def _not_utf8(path: str, line: int, raw: bytes, at: int, offset: int) -> DataError:
    """`raw` is the line, `at` the bad byte's index in it, `offset` its byte offset in the file."""
    return DataError(path, line, None, f"not UTF-8 text (byte 0x{raw[at]:02x} at column {at + 1}, "
                     f"byte offset {offset})", _encoding_hint(raw))


def _too_deep(s: str) -> int | None:
    """The index in `s` where JSON nesting passes MAX_DEPTH, else None (strings skipped)."""
    depth = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', s):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return m.start()
        elif c in "]}":
            depth -= 1
    return None


def _opens_over(raw: bytes, limit: int) -> bool:
    """More than `limit` opening brackets (so possibly nested deeper than that)? Counted with find,
    which is memchr, so a chat row costs a few steps; bytes.count walks every byte (10x more)."""
    n = 0
    for ch in (b"{", b"["):
        i = raw.find(ch)
        while i >= 0:
            n += 1
            if n > limit:
                return True
            i = raw.find(ch, i + 1)
    return False


def _deep_error(path: str, line: int, s: str, base: int = 0) -> DataError:
    at = _too_deep(s)
    if at is not None:
        line += s.count("\n", base, at)
    return DataError(path, line, None, f"nested deeper than {MAX_DEPTH} levels",
                     "a training record is a few levels deep; this is not a data file")


def _parse_error(path: str, line: int, e: ValueError) -> DataError:
    """A ValueError from json that is not a syntax error: an integer past Python's digit limit."""
    msg = str(e)
    if "integer string conversion" in msg:
        digits = re.search(r"value has (\d+) digits", msg)
        return DataError(path, line, None, f"a number with {digits.group(1) if digits else 'too many'} digits "
                         "(more than Python reads, 4300)", "store long numbers as strings")
    return DataError(path, line, None, f"bad JSON: {msg}")


# A \\uD800-\\uDFFF escape: the only way JSON text can carry a surrogate (the pair check is done by encoding).
_LONE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_value(path: str, line: int, text: str, val: Any) -> None:
    """Depth and lone surrogates, checked only when the text could hold them (cheap for normal rows)."""
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(text) is not None:
        raise _deep_error(path, line, text)
    if _LONE_ESCAPE.search(text.encode("utf-8", "surrogatepass")):
        try:
            json.dumps(val, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            bad = e.object[e.start]
            raise DataError(path, line, None, f"lone surrogate \\u{ord(bad):04x} in a string (not valid Unicode)",
                            "the file was written by a broken encoder; fix or remove that escape") from None


# ---------------------------------------------------------------------------- JSON lines


def _read_jsonl(path: str, stats: dict | None = None) -> Iterator[tuple[int, Any]]:
    # The hot loop: 1 MB reads split into lines (no readline per row) and the C scanner called
    # directly pay back most of what the bounds cost (a bracket count per line, a surrogate regex per
    # block): 20,000 chat rows take 955M instructions against the old readline + json.loads loop's 818M.
    scan, deep, lone = _SCAN, MAX_DEPTH, _LONE_ESCAPE.search
    n = offset = 0
    rest = b""
    with _open_bin(path) as f:
        while True:
            chunk = f.read(_CHUNK)
            if chunk:
                buf = rest + chunk if rest else chunk
                lines = buf.split(b"\n")
                rest = lines.pop()
            else:
                if not rest:
                    return
                buf, lines, rest = rest, [rest], b""
            # one regex pass per block: most blocks hold no \uD800-\uDFFF escape, so no line needs one
            maybe_lone = lone(buf) is not None
            for line in lines:
                n += 1
                start = offset
                offset += len(line) + 1
                if len(line) > MAX_LINE_BYTES:
                    raise _too_long(path, n)
                if n == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line, start = line[3:], 3
                raw = line.strip()
                if not raw:
                    continue
                try:
                    text = raw.decode("utf-8")
                    try:
                        rec, end = scan(text, 0)
                    except StopIteration as e:
                        raise json.JSONDecodeError("Expecting value", text, e.value) from None
                    if end != len(text):
                        raise json.JSONDecodeError("Extra data", text, end)
                    if _opens_over(raw, deep) or maybe_lone and lone(raw):
                        _check_value(path, n, text, rec)
                except (ValueError, RecursionError, DataError) as e:  # decode and JSON errors are ValueErrors
                    start += len(line) - len(line.lstrip())
                    err = e if isinstance(e, DataError) else _line_error(path, n, raw, start, e)
                    if stats is None:
                        raise err from None
                    stats.setdefault("errors", []).append(str(err).split("\n")[0])
                    reason = "not UTF-8" if isinstance(e, UnicodeDecodeError) else "bad JSON line"
                    dropped = stats.setdefault("dropped", {})
                    dropped[reason] = dropped.get(reason, 0) + 1
                    continue
                yield n, rec
            if len(rest) > MAX_LINE_BYTES:
                raise _too_long(path, n + 1)


def _too_long(path: str, n: int) -> DataError:
    return DataError(path, n, None, f"line is longer than {MAX_LINE_BYTES >> 20} MB",
                     "a sample this long is a broken file: binary data, or records without newlines "
                     "between them; set STUDIO_MAX_LINE_MB if it is really meant")


def _line_error(path: str, n: int, raw: bytes, start: int, e: BaseException) -> DataError:
    """The DataError for a JSON line that failed to decode or parse."""
    if isinstance(e, UnicodeDecodeError):
        return _not_utf8(path, n, raw, e.start, start + e.start)
    text = raw.decode("utf-8")
    if isinstance(e, json.JSONDecodeError):
        cut = e.pos >= len(text) - 1 or e.msg.startswith("Unterminated")
        what = "truncated JSON (the line ends inside a record)" if cut else "bad JSON"
        return DataError(path, n, None, f"{what}: {e.msg} (column {e.colno})",
                         "each line must be one complete JSON object")
    if isinstance(e, RecursionError):
        return _deep_error(path, n, text)
    return _parse_error(path, n, e)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- one JSON document


def _read_text_whole(path: str) -> str:
    with _open_bin(path) as f:
        raw = f.read()
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        ls = raw.rfind(b"\n", 0, e.start) + 1
        le = raw.find(b"\n", e.start)
        raise _not_utf8(path, line, raw[ls: le if le >= 0 else len(raw)], e.start - ls, e.start) from None


def _read_json(path: str, stats: dict | None = None) -> Iterator[tuple[int, Any]]:
    """A JSON array (walked element by element so each record knows its line), a {"key": [...]}
    wrapper, or one object. Read whole: a JSON document has no record boundary to stream on."""
    text = _read_text_whole(path)
    if not text.strip():
        raise DataError(path, 1, None, "the file is empty")
    i = len(text) - len(text.lstrip())
    if text[i] == "[":
        yield from _walk_array(path, text, i, 1)
        return
    dec = json.JSONDecoder()
    line = text.count("\n", 0, i) + 1
    try:
        val, end = dec.raw_decode(text, i)
    except json.JSONDecodeError as e:
        cut = e.msg.startswith("Unterminated") or e.pos >= len(text.rstrip()) - 1
        what = "truncated JSON (the file ends inside a record)" if cut else "bad JSON"
        hint = _ARRAY_HINT if cut else None
        if text[i] != "{":
            hint = "JSON starts with [ or {; CSV, TSV and plain text are told by a .csv / .tsv / .txt name"
        raise DataError(path, e.lineno, None, f"{what}: {e.msg} (column {e.colno})", hint) from None
    except RecursionError:
        raise _deep_error(path, line, text, i) from None
    except ValueError as e:
        raise _parse_error(path, line, e) from None
    if text[end:].strip():
        extra = text.count("\n", 0, end + len(text[end:]) - len(text[end:].lstrip())) + 1
        raise DataError(path, extra, None, "bad JSON: more data after the first JSON value",
                        "a JSON file holds one array or object; JSON lines hold one complete record per line")
    if not isinstance(val, dict):
        raise DataError(path, 1, None, f"expected a JSON array or JSON lines, found {type(val).__name__}")
    key = _wrapper_key(val)
    if key is None:
        _check_value(path, line, text, val)
        _note(path, stats, "one JSON object: read as a single record")
        yield line, val
        return
    _note(path, stats, f'JSON wrapper: records read from its "{key}" list')
    # Find the list's "[" (the key is the object's first and only member) and walk it for line numbers.
    j = text.index("[", dec.raw_decode(text, text.index('"', i))[1])
    yield from _walk_array(path, text, j, line + text.count("\n", i, j))


def _walk_array(path: str, text: str, i: int, line: int) -> Iterator[tuple[int, Any]]:
    """Yield (line, element) of the JSON array whose "[" is at text[i] (on line `line`)."""
    dec = json.JSONDecoder()
    pos = i
    i += 1
    ws = " \t\r\n"

    def lineno(at: int) -> int:
        nonlocal line, pos
        line += text.count("\n", pos, at)
        pos = at
        return line

    while True:
        while i < len(text) and text[i] in ws:
            i += 1
        if i >= len(text):
            raise DataError(path, lineno(i), None, "truncated JSON: the array never closes", _ARRAY_HINT)
        if text[i] == "]":
            return
        try:
            val, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            cut = not text.rstrip().endswith(("]", "}")) and (e.pos >= len(text.rstrip()) - 1
                                                             or e.msg.startswith("Unterminated"))
            what = "truncated JSON (the file ends inside a record)" if cut else "bad JSON"
            raise DataError(path, e.lineno, None, f"{what}: {e.msg} (column {e.colno})",
                            _ARRAY_HINT if cut else None) from None
        except RecursionError:
            raise _deep_error(path, lineno(i), text, i) from None
        except ValueError as e:
            raise _parse_error(path, lineno(i), e) from None
        n = lineno(i)
        _check_value(path, n, text[i:end], val)
        yield n, val
        i = end
        while i < len(text) and text[i] in ws:
            i += 1
        if i < len(text) and text[i] == ",":
            i += 1
        elif i < len(text) and text[i] == "]":
            return
        elif i >= len(text):
            raise DataError(path, lineno(i), None, "truncated JSON: the array never closes", _ARRAY_HINT)
        else:
            raise DataError(path, lineno(i), None, f"bad JSON: expected ',' or ']' but found {text[i]!r}")


# ---------------------------------------------------------------------------- plain text


def _iter_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every line, decoded as UTF-8 with the error naming line and byte offset."""
    offset = 0
    with _open_bin(path) as f:
        n = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            n += 1
            start, offset = offset, offset + len(raw)
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DataError(path, n, None, f"line is longer than {MAX_LINE_BYTES >> 20} MB",
                                "set STUDIO_MAX_LINE_MB if it is really meant")
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw, start = raw[3:], 3
            try:
                yield n, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise _not_utf8(path, n, raw.rstrip(b"\r\n"), e.start, start + e.start) from None


def _read_text(path: str, stats: dict | None = None) -> Iterator[tuple[int, Any]]:
    """One {"text": line} per non-blank line; or, when a blank line stands between text anywhere in
    the file, one {"text": paragraph} per blank-line separated block (its lines joined by "\\n")."""
    seen_text = blank_after_text = paragraphs = False
    for _n, s in _iter_lines(path):
        if s.strip():
            if blank_after_text:
                paragraphs = True
                break
            seen_text = True
        elif seen_text:
            blank_after_text = True
    if not seen_text:
        raise DataError(path, 1, None, "the file is empty")
    if paragraphs:
        _note(path, stats, "plain text: one sample per blank-line separated paragraph (the file has blank lines)")
    else:
        _note(path, stats, "plain text: one sample per line (the file has no blank lines between text)")
    block: list[str] = []
    first = 0
    for n, s in _iter_lines(path):
        if not s.strip():
            if paragraphs and block:
                yield first, {"text": "\n".join(block)}
                block = []
            continue
        if not paragraphs:
            yield n, {"text": s}
            continue
        if not block:
            first = n
        block.append(s)
    if block:
        yield first, {"text": "\n".join(block)}


# ---------------------------------------------------------------------------- CSV / TSV


def _check_utf8(path: str) -> None:
    """pyarrow only says "invalid UTF8"; find the line and byte offset ourselves (streamed)."""
    for _ in _iter_lines(path):
        pass


def _read_csv(path: str, stats: dict | None, kind: str) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    _check_utf8(path)
    with _open_bin(path) as f:
        if not f.read(1 << 16).strip():
            raise DataError(path, 1, None, "the file is empty")
    bad: list = []

    def on_bad_row(row: Any) -> str:  # pyarrow gives the row's text but not its number
        bad.append(row)
        return "error"

    parse = pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ",", newlines_in_values=True,
                               invalid_row_handler=on_bad_row)
    read = pacsv.ReadOptions(block_size=1 << 22)

    def open_reader(convert: Any = None) -> Any:
        src = pa.input_stream(path, compression="gzip" if _is_gzip(path) else None)
        return pacsv.open_csv(src, read_options=read, parse_options=parse, convert_options=convert)

    try:
        names = open_reader().schema.names
        dup = sorted({c for c in names if names.count(c) > 1})
        if dup:
            raise DataError(path, 1, dup[0], "the header names this column twice", "give each column its own name")
        # Every cell as text: type guessing would turn "007" into 7 and "" into null.
        convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in names}, strings_can_be_null=False,
                                       quoted_strings_can_be_null=False)
        row = 0
        for batch in open_reader(convert):
            for rec in batch.to_pylist():
                row += 1
                yield row, rec
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        hint = "every row needs as many cells as the header; quote cells that hold the delimiter"
        if bad:  # name the file line that holds the bad row
            r = bad[0]
            first = (r.text or "").split("\n")[0]
            line = next((n for n, s in _iter_lines(path) if n > 1 and s == first), None)
            raise DataError(path, line, None, f"bad {kind.upper()} row: {r.actual_columns} cells where the header "
                            f"has {r.expected_columns}", hint) from None
        raise DataError(path, None, None, f"bad {kind.upper()}: {str(e).splitlines()[0]}", hint) from None


# ---------------------------------------------------------------------------- Parquet / Arrow


def _read_parquet(path: str, stats: dict | None = None) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)  # one column chunk at a time: flat memory
    except (pa.ArrowException, OSError) as e:
        raise DataError(path, None, None, f"not a readable Parquet file: {e}", "re-export or re-download it") from None
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=_BATCH):
            for rec in batch.to_pylist():
                row += 1
                yield row, rec
    except (pa.ArrowException, OSError) as e:
        raise DataError(path, row + 1, None, f"unreadable Parquet data: {e}", "re-export or re-download it") from None


def _read_arrow(path: str, stats: dict | None = None) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa

    row = 0
    try:
        with pa.memory_map(path) as src:
            try:
                reader = pa.ipc.open_file(src)
                batches: Any = (reader.get_batch(i) for i in range(reader.num_record_batches))
            except pa.ArrowInvalid:
                src.seek(0)
                batches = pa.ipc.open_stream(src)
            for batch in batches:
                for rec in batch.to_pylist():
                    row += 1
                    yield row, rec
    except (pa.ArrowException, OSError) as e:
        raise DataError(path, row + 1 if row else None, None, f"not a readable Arrow file: {e}",
                        "re-export or re-download it") from None


# ---------------------------------------------------------------------------- Hugging Face folders


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """`datasets` may not touch the network here: the env vars and the flags it read at import."""
    keys = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    old_env = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    import datasets.config as dc
    import huggingface_hub.constants as hc

    flags = [(m, k, getattr(m, k)) for m, k in ((dc, "HF_DATASETS_OFFLINE"), (dc, "HF_HUB_OFFLINE"),
                                                (hc, "HF_HUB_OFFLINE")) if hasattr(m, k)]
    for m, k, _ in flags:
        setattr(m, k, True)
    try:
        yield
    finally:
        for m, k, v in flags:
            setattr(m, k, v)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pick_split(path: str, splits: list[str], stats: dict | None, how: str) -> str:
    if "train" in splits:
        split = "train"
    elif len(splits) == 1:
        split = splits[0]
    else:
        raise DataError(path, None, None, f"no train split to read (splits: {', '.join(splits)})",
                        "save the split you want alone, or name one of them train")
    _note(path, stats, f"{how}: split {split!r} read (splits: {', '.join(splits)})")
    return split


def _arrow_rows(ds: Any) -> Iterator[tuple[int, Any]]:
    """Rows as stored (Image/Audio cells stay {"bytes", "path"} dicts; nothing is decoded)."""
    row = 0
    for table in ds.with_format("arrow").iter(batch_size=_BATCH):
        for rec in table.to_pylist():
            row += 1
            yield row, rec


def _read_hf_disk(path: str, stats: dict | None = None) -> Iterator[tuple[int, Any]]:
    with _offline():
        import datasets

        try:
            obj = datasets.load_from_disk(path)
        except (FileNotFoundError, ValueError, OSError) as e:
            raise DataError(path, None, None, f"not a readable save_to_disk folder: {e}") from None
    if isinstance(obj, datasets.DatasetDict):
        obj = obj[_pick_split(path, list(obj), stats, "save_to_disk folder")]
    else:
        _note(path, stats, "save_to_disk folder: one Dataset (no splits)")
    yield from _arrow_rows(obj)


def _read_hf_folder(path: str, stats: dict | None = None) -> Iterator[tuple[int, Any]]:
    if not os.path.isdir(path):  # never a hub id: only a folder on this machine
        raise DataError(path, None, None, "not a local dataset folder")
    with _offline():
        import datasets

        try:
            obj = datasets.load_dataset(os.path.abspath(path), streaming=True)
        except Exception as e:  # datasets raises many kinds here; the message is what the user needs
            raise DataError(path, None, None, f"not a readable dataset folder: {str(e).splitlines()[0]}") from None
    split = _pick_split(path, list(obj), stats, "dataset folder")
    yield from _arrow_rows(obj[split])


# ---------------------------------------------------------------------------- media cells

_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
          (b"fLaC", ".flac"), (b"ID3", ".mp3"), (b"OggS", ".ogg"), (b"\x1aE\xdf\xa3", ".webm"))


def _media_ext(data: bytes, path: Any) -> str:
    if isinstance(path, str) and re.fullmatch(r"\.[A-Za-z0-9]{1,5}", Path(path).suffix):
        return Path(path).suffix.lower()
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF":
        return {b"WEBP": ".webp", b"WAVE": ".wav", b"AVI ": ".avi"}.get(data[8:12], ".bin")
    if data[4:8] == b"ftyp":
        return ".mp4"
    return ".bin"


def store_media_bytes(cell: dict, media_dir: str | os.PathLike) -> str:
    """Write a Hugging Face Image/Audio cell's bytes to media_dir/<sha256>.<ext> (atomically, once)
    and return that path; a cell without bytes returns its own path."""
    data, src = cell.get("bytes"), cell.get("path")
    if data is None:
        if isinstance(src, str) and src:
            return src
        raise StudioError("a media cell has neither bytes nor a path", "the column is empty in this row")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise StudioError(f"a media cell's bytes must be bytes, got {type(data).__name__}")
    data = bytes(data)
    out = Path(media_dir) / (hashlib.sha256(data).hexdigest()[:32] + _media_ext(data, src))
    if not out.is_file() or out.stat().st_size != len(data):
        atomic_write_bytes(out, data)
    return str(out)


# ---------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Print a data file's container and its first records.")
    ap.add_argument("path")
    ap.add_argument("--container", choices=CONTAINERS)
    ap.add_argument("-n", type=int, default=3)
    a = ap.parse_args(argv)
    st: dict = {}
    try:
        for k, (row, rec) in enumerate(iter_records(a.path, st, container=a.container)):
            if k >= a.n:
                break
            print(f"{row}: {json.dumps(rec, ensure_ascii=False, default=repr)[:300]}")
    except StudioError as e:
        print(f"error: {e}")
        return 1
    print(f"container: {st.get('container')}; {st.get('container_note', '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
