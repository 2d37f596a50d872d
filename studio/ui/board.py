"""Pure helpers of the Train page's live board: ETA text, chart frames, the evaluation grid and what changed.

Everything here works on rows read from a run dir (core.rundir.metrics / samples), nothing else.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def progress(status: dict) -> float:
    step, total = status.get("step") or 0, status.get("max_steps") or 0
    if status.get("state") == "finished":
        return 1.0
    return min(1.0, step / total) if total > 0 else 0.0


def series(rows: list[dict], key: str) -> dict[int, float]:
    """step -> value for the rows that have `key` (training logs omit some keys on some steps)."""
    return {r["step"]: r[key] for r in rows if r.get(key) is not None and r.get("step") is not None}


def thin(points: dict[int, float], most: int) -> dict[int, float]:
    """At most `most` points, evenly spaced, first and last kept: a 10,000-step curve draws as fast as a
    240-step one (three boards redraw every few seconds on a 2-core box) and looks the same."""
    if len(points) <= most:
        return points
    keys = list(points)
    idx = sorted({round(i * (len(keys) - 1) / (most - 1)) for i in range(most)})
    return {keys[i]: points[keys[i]] for i in idx}


def eval_grid(sample_rows: list[dict]) -> tuple[list[int], list[str], list[list[str]], list[list[bool]]]:
    """(steps, prompts, answers[step][prompt], changed[step][prompt]).

    changed is True where an answer differs from the previous evaluation's answer to the same prompt
    (the first evaluation, before training, has nothing to differ from).
    """
    prompts: list[str] = []
    for row in sample_rows:
        for a in row.get("answers", []):
            if a["prompt"] not in prompts:
                prompts.append(a["prompt"])
    steps, answers, changed = [], [], []
    previous: dict[str, str] = {}
    for row in sample_rows:
        got = {a["prompt"]: a["answer"] for a in row.get("answers", [])}
        steps.append(row.get("step", 0))
        answers.append([got.get(p, "") for p in prompts])
        changed.append([p in previous and p in got and got[p] != previous[p] for p in prompts])
        previous.update(got)
    return steps, prompts, answers, changed


def latest(rows: list[dict], key: str) -> Any:
    for r in reversed(rows):
        if r.get(key) is not None:
            return r[key]
    return None


def line_spec(key: str) -> dict:
    """A plain Vega-Lite line of `key` over `step` (columns of the frame passed with it), drawn like
    st.line_chart draws it (no axis titles, horizontal grid lines only).

    st.line_chart builds the same picture through altair, whose schema validation and hover layers cost
    ~40 ms of server time per chart; the board draws three charts per session every few seconds."""
    return {
        "mark": {"type": "line", "tooltip": True},
        "encoding": {"x": {"field": "step", "type": "quantitative", "title": None, "axis": {"grid": False}},
                     "y": {"field": key, "type": "quantitative", "title": None}},
    }


class JsonlTail:
    """The rows of an append-only JSON-lines file, parsing only what was appended since the last read.

    metrics.jsonl grows by a line per step; every board reading it whole every few seconds is wasted
    work once a run has thousands of steps. A file that shrank or was replaced is read again from the
    start. A last line without its newline is still being written: it is left for the next read.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, ino: int | None) -> None:
        self._ino, self._offset, self._rows = ino, 0, []

    def read(self) -> list[dict]:
        """Every complete row so far (a new list; the rows themselves are shared, do not modify them)."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._reset(None)
                return []
            if st.st_ino != self._ino or st.st_size < self._offset:
                self._reset(st.st_ino)
            if st.st_size > self._offset:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    chunk = f.read(st.st_size - self._offset)
                end = chunk.rfind(b"\n") + 1
                for line in chunk[:end].splitlines():
                    if line.strip():
                        try:
                            self._rows.append(json.loads(line))
                        except (json.JSONDecodeError, UnicodeDecodeError):
                            continue
                self._offset += end
            return list(self._rows)
