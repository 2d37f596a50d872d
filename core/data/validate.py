"""Validate a data file before training: every problem as file:line: field: what is wrong.

    python -m studio data validate data.jsonl [--tokenizer MODEL_DIR --max-length 2048] [--json]

The report counts samples, turns, media (images/videos/audios), dropped records with reasons, the
input fields nothing used ({"label": 8}), and with a tokenizer the
token-length percentiles, a histogram against max_length and how many samples would be truncated.
Reading streams, so a file of any size validates in constant memory (token lengths are kept as
one int per sample).
"""

from __future__ import annotations

import os
from typing import Any

from core.data.formats import detect_format, is_url, read_samples
from core.errors import DataError


def _load_tokenizer(tokenizer: Any, trust_remote_code: bool = False) -> Any:
    if tokenizer is None or not isinstance(tokenizer, str | os.PathLike):
        return tokenizer
    if not os.path.isdir(tokenizer):
        raise DataError(str(tokenizer), None, "--tokenizer", "no such folder",
                        "give a model or tokenizer folder (e.g. workspace/models/tiny)")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(tokenizer), trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - any load failure is the user's path or model
        raise DataError(str(tokenizer), None, "--tokenizer", f"cannot load a tokenizer: {e}".split("\n")[0],
                        "give a model folder that has tokenizer files") from None


def sample_text(sample: dict, tok: Any) -> str:
    """The text the trainer would see: the chat template when the tokenizer has one."""
    msgs = sample["messages"]
    if msgs[0]["role"] == "pretrain":
        return msgs[0]["content"]
    if getattr(tok, "chat_template", None):
        try:
            kw = {"tools": sample["tools"]} if sample.get("tools") else {}
            return tok.apply_chat_template([{k: v for k, v in m.items() if k != "loss"} for m in msgs],
                                           tokenize=False, **kw)
        except Exception:  # noqa: BLE001 - templates that reject a role (tool) fall back to plain text
            pass
    parts = []
    for m in msgs:
        extra = "".join(f"\n{c['function']['name']}({c['function']['arguments']})" for c in m.get("tool_calls") or [])
        think = f"{m['reasoning_content']}\n" if m.get("reasoning_content") else ""
        parts.append(f"{m['role']}: {think}{m['content']}{extra}")
    return "\n".join(parts)


def _percentiles(values: list[int], ps=(50, 90, 95, 99)) -> dict[str, int]:
    s = sorted(values)
    out = {f"p{p}": s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] for p in ps}
    out["min"], out["max"], out["mean"] = s[0], s[-1], round(sum(s) / len(s), 1)
    return out


def _histogram(values: list[int], max_length: int | None, bins: int = 8) -> list[dict]:
    """Equal bins up to max_length (an edge of its own), the same width beyond it (at most `bins`
    more, the last one open-ended); without max_length, `bins` bins up to the longest sample."""
    import bisect

    top = max(values)
    if max_length:
        width = max(1, -(-max_length // bins))
        edges = sorted({min(k * width, max_length) for k in range(bins + 1)})
        while edges[-1] < top and len(edges) < 2 * bins + 1:
            edges.append(edges[-1] + width)
        edges[-1] = max(edges[-1], top)
    else:
        width = max(1, -(-top // bins))
        edges = [width * k for k in range(bins + 1)]
    counts = [0] * (len(edges) - 1)
    for v in values:  # bin k holds edges[k] < v <= edges[k+1] (0 goes in the first)
        counts[min(len(counts) - 1, max(0, bisect.bisect_left(edges, v) - 1))] += 1
    return [{"from": lo, "to": hi, "count": n, "over_max_length": bool(max_length and lo >= max_length)}
            for lo, hi, n in zip(edges, edges[1:], counts, strict=False)]


def validate_file(path: str | os.PathLike, fmt: str | None = None, mapping: dict[str, str] | None = None,
                  tokenizer: Any = None, max_length: int | None = None, *, image_folder: str | None = None,
                  open_images: bool = True, max_errors: int = 1000, take: str | None = None,
                  speakers: dict[str, str] | None = None, trust_remote_code: bool = False) -> dict:
    """Check every record of a data file; returns a report dict (never raises for bad records).

    Keys: file, format, records, samples, turns, images, media ({"images", "videos", "audios"}),
    dropped ({reason: count}), ignored ({field: rows}: input fields nothing used), errors
    (["file:line: field: message", ...], at most max_errors kept, errors_total counts all),
    ok (no errors), and with a tokenizer (a path or a loaded HF tokenizer) "tokens":
    {percentiles, histogram, max_length, truncated}. A file that cannot be read at all (missing,
    not JSON, preference data without `take`) gives one error and zero samples. Media stored as
    bytes are extracted to a temporary folder that is removed afterwards. trust_remote_code: let
    the tokenizer folder run its own code (off unless asked).
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="studio-validate-media-") as media_dir:
        return _validate(path, fmt, mapping, tokenizer, max_length, image_folder, open_images, max_errors, take,
                         speakers, trust_remote_code, media_dir)


def _validate(path: Any, fmt: str | None, mapping: dict | None, tokenizer: Any, max_length: int | None,
              image_folder: str | None, open_images: bool, max_errors: int, take: str | None,
              speakers: dict | None, trust_remote_code: bool, media_dir: str) -> dict:
    path = str(path)
    st: dict[str, Any] = {"file": path}
    turns = n_images = 0
    lengths: list[int] = []
    pending: list[str] = []
    opened: dict[str, str | None] = {}
    tok = _load_tokenizer(tokenizer, trust_remote_code)
    try:
        fmt = fmt or detect_format(path, mapping)
        for s in read_samples(path, fmt, mapping, image_folder=image_folder, strict=False, stats=st, take=take,
                              media_dir=media_dir, speakers=speakers):
            turns += sum(1 for m in s["messages"] if m["role"] in ("user", "assistant", "pretrain"))
            for p in s.get("images") or []:
                n_images += 1
                if open_images and p not in opened and not is_url(p):
                    from core.data.tools import check_image

                    try:
                        check_image(p)
                        opened[p] = None
                    except DataError as e:
                        opened[p] = str(e).split("\n")[0]
                        st["errors"].append(f"{path}:{st['line']}: images: {e.args[0]}")
            if tok is not None:
                pending.append(sample_text(s, tok))
                if len(pending) >= 256:  # batches let a fast tokenizer work in Rust, not per call
                    lengths.extend(len(ids) for ids in tok(pending, add_special_tokens=False)["input_ids"])
                    pending.clear()
    except DataError as e:  # the file as a whole is unreadable
        st.setdefault("errors", []).append(str(e).split("\n")[0])
    if pending:
        lengths.extend(len(ids) for ids in tok(pending, add_special_tokens=False)["input_ids"])
    errors = st.get("errors", [])
    report: dict[str, Any] = {
        "file": path, "format": st.get("format", fmt) or "unknown", "records": st.get("records", 0),
        "samples": st.get("samples", 0), "turns": turns, "images": n_images,
        "media": st.get("media", {"images": 0, "videos": 0, "audios": 0}),
        "dropped": st.get("dropped", {}), "ignored": st.get("ignored", {}),
        "errors": errors[:max_errors], "errors_total": len(errors),
        "ok": not errors, "warnings": [],
    }
    if st.get("images_found_by_name"):
        names = st["images_found_by_name"]
        report["warnings"].append(f"{path}: {len(names)} image path(s) not found as written but by file name in "
                                  f"the data folder, e.g. {names[0]}; fix the paths before sharing the file")
    if tok is not None and lengths:
        report["tokens"] = {
            "percentiles": _percentiles(lengths),
            "histogram": _histogram(lengths, max_length),
            "max_length": max_length,
            "truncated": sum(1 for v in lengths if max_length and v > max_length),
            "total": sum(lengths),
        }
    return report


def format_report(r: dict) -> str:
    """A human summary of validate_file's report."""
    media = r.get("media") or {"images": r["images"]}
    kinds = ", ".join(f"{n} {k}" for k, n in media.items() if n or k == "images")
    lines = [f"{r['file']}: format {r['format']}, {r['samples']} samples from {r['records']} records, "
             f"{r['turns']} turns, {kinds}"]
    lines += [f"  warning: {w}" for w in r.get("warnings", [])]
    for reason, n in r["dropped"].items():
        lines.append(f"  dropped {n}: {reason}")
    for field, n in sorted(r.get("ignored", {}).items()):
        lines.append(f"  ignored: {field} ({n} rows)")
    t = r.get("tokens")
    if t:
        p = t["percentiles"]
        lines.append(f"  tokens: min {p['min']}  p50 {p['p50']}  p90 {p['p90']}  p95 {p['p95']}  p99 {p['p99']}  "
                     f"max {p['max']}  mean {p['mean']}")
        top = max(h["count"] for h in t["histogram"]) or 1
        for h in t["histogram"]:
            bar = "#" * round(30 * h["count"] / top)
            mark = "  > max_length" if h["over_max_length"] else ""
            lines.append(f"  {h['from']:>7}-{h['to']:<7} {h['count']:>7} {bar}{mark}")
        if t["max_length"]:
            lines.append(f"  {t['truncated']} of {r['samples']} samples are longer than max_length {t['max_length']} "
                         "and would be truncated")
    return "\n".join(lines)
