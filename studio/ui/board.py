"""Helpers of the Train page's live board: ETA text, the chart spec, the evaluation grid and what changed, and
readers of a run dir's metrics.jsonl / samples.jsonl that parse only what the trainer appended since the
last refresh. No streamlit here.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import threading
from array import array
from typing import Any

import numpy as np


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


def spread(n: int, most: int) -> list[int]:
    """Indices of at most `most` evenly spaced items of `n`, the first and the last kept."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


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

    A board reading metrics.jsonl whole every few seconds does work that grows with the run. A file that
    shrank or was replaced is read again from the start; a last line without its newline is still being
    written and is left for the next read. Subclasses choose what they keep of each row (_add).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._ino: int | None = None
        self._offset = 0
        self._clear()

    def _clear(self) -> None:
        self._rows: list[dict] = []

    def _add(self, row: Any) -> None:
        self._rows.append(row)

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is None or st.st_ino != self._ino or st.st_size < self._offset:
            self._ino, self._offset = (st.st_ino if st else None), 0
            self._clear()
        if st is None or st.st_size == self._offset:
            return
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read(st.st_size - self._offset)
        except OSError:  # the run is being deleted while we look
            return
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            if line.strip():
                try:
                    self._add(json.loads(line))
                except (ValueError, RecursionError):  # not JSON, not UTF-8, nested without end: not a row
                    continue
        self._offset += end

    def read(self) -> list[dict]:
        """Every complete row so far (a new list; the rows themselves are shared, do not modify them)."""
        with self._lock:
            self._refresh()
            return list(self._rows)


class MetricsTail(JsonlTail):
    """metrics.jsonl kept as columns: `step` and the given fields as float arrays, NaN where a row lacks
    one (8 bytes a value instead of a dict a row: a 100,000-step run's board holds a few MB).

    A step at or below the last one kept (a run resumed from an earlier checkpoint logs those steps again)
    replaces what was kept from that step on, as the newer rows of the file do."""

    def __init__(self, path: str | os.PathLike, fields: tuple[str, ...]) -> None:
        self.fields = fields
        super().__init__(path)

    def _clear(self) -> None:
        self._cols = {name: array("d") for name in ("step", *self.fields)}

    def _add(self, row: Any) -> None:
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
            return
        steps = self._cols["step"]
        if steps and row["step"] <= steps[-1]:
            cut = bisect.bisect_left(steps, row["step"])
            for col in self._cols.values():
                del col[cut:]
        steps.append(row["step"])
        for name in self.fields:
            v = row.get(name)
            self._cols[name].append(float(v) if isinstance(v, (int, float)) else math.nan)

    def read(self) -> Columns:  # type: ignore[override]
        """What was kept so far, copied (a memory copy of the arrays, no Python object per value)."""
        with self._lock:
            self._refresh()
            return Columns({name: col[:] for name, col in self._cols.items()})


class Columns:
    """A MetricsTail's columns at one moment: the last value of a field and its thinned curve."""

    def __init__(self, cols: dict[str, array]) -> None:
        self.cols = cols

    def __len__(self) -> int:
        return len(self.cols["step"])

    def _have(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        # numpy over the copied arrays: a 100,000-step run is refreshed in a millisecond, not a tenth of a second
        vals = np.frombuffer(self.cols.get(key) or array("d"), dtype=np.float64)
        return vals, np.flatnonzero(~np.isnan(vals))

    def last(self, key: str) -> float | None:
        """The last value of `key` a row had (None when none had it)."""
        vals, have = self._have(key)
        return float(vals[have[-1]]) if len(have) else None

    def curve(self, key: str, most: int) -> tuple[list[int], list[float]]:
        """(steps, values) of the rows that have `key`, at most `most` of them evenly spaced (the first and
        the last kept): a 10,000-step curve draws as fast as a 240-step one and looks the same."""
        vals, have = self._have(key)
        keep = have[spread(len(have), most)]
        steps = np.frombuffer(self.cols["step"], dtype=np.float64)
        return steps[keep].astype(int).tolist(), vals[keep].tolist()
