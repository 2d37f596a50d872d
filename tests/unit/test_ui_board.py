"""The Train board's helpers: ETA text, progress, the metrics columns and curves, the evaluation grid with what
changed, and the readers that parse only what was appended."""

from __future__ import annotations

import json

from studio.ui.board import MetricsTail, eval_grid, fmt_seconds, progress, spread


def test_fmt_seconds_and_progress():
    assert fmt_seconds(None) == "–" and fmt_seconds(65) == "1:05" and fmt_seconds(3725) == "1:02:05"
    assert progress({"step": 5, "max_steps": 20, "state": "running"}) == 0.25
    assert progress({"step": 3, "max_steps": 0}) == 0.0
    assert progress({"state": "finished", "step": 9, "max_steps": 10}) == 1.0


def _metrics(tmp_path, rows, fields=("loss", "lr", "grad_norm")):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return MetricsTail(path, fields)


def test_columns_skip_missing_values(tmp_path):
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": None}, {"step": 3, "loss": 1.0, "lr": 1e-4}]
    cols = _metrics(tmp_path, rows).read()
    assert len(cols) == 3
    assert cols.curve("loss", 240) == ([1, 3], [2.0, 1.0])
    assert cols.last("lr") == 1e-4 and cols.last("grad_norm") is None and cols.last("loss") == 1.0


def test_a_resumed_run_replaces_the_steps_it_logs_again(tmp_path):
    tail = _metrics(tmp_path, [{"step": s, "loss": 1.0} for s in range(1, 7)])
    assert len(tail.read()) == 6
    with (tmp_path / "metrics.jsonl").open("a", encoding="utf-8") as f:  # resumed from the step-4 checkpoint
        f.write("".join(json.dumps({"step": s, "loss": 2.0}) + "\n" for s in range(5, 9)))
    assert tail.read().curve("loss", 240) == ([1, 2, 3, 4, 5, 6, 7, 8], [1.0] * 4 + [2.0] * 4)


def test_eval_grid_marks_changes_since_previous_evaluation():
    rows = [
        {"step": 0, "answers": [{"prompt": "a", "answer": "x"}, {"prompt": "b", "answer": "y"}]},
        {"step": 5, "answers": [{"prompt": "a", "answer": "x"}, {"prompt": "b", "answer": "z"}]},
        {"step": 10, "answers": [{"prompt": "a", "answer": "w"}, {"prompt": "b", "answer": "z"}]},
    ]
    steps, prompts, answers, changed = eval_grid(rows)
    assert steps == [0, 5, 10] and prompts == ["a", "b"]
    assert answers[1] == ["x", "z"]
    assert changed == [[False, False], [False, True], [True, False]]


def test_curves_keep_the_ends_and_at_most_n_evenly_spaced_points(tmp_path):
    cols = _metrics(tmp_path, [{"step": s, "loss": float(s)} for s in range(1, 10_001)], ("loss",)).read()
    steps, values = cols.curve("loss", 240)
    assert len(steps) == 240 and steps[0] == 1 and steps[-1] == 10_000
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    assert values == [float(s) for s in steps]  # values untouched
    assert spread(2, 240) == [0, 1] and spread(0, 240) == []


def test_jsonl_tail_reads_only_what_was_appended(tmp_path):
    from studio.ui.board import JsonlTail

    path = tmp_path / "metrics.jsonl"
    tail = JsonlTail(path)
    assert tail.read() == []  # no file yet
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3', encoding="utf-8")  # the last line still being written
    assert [r["step"] for r in tail.read()] == [1, 2]
    with path.open("a", encoding="utf-8") as f:
        f.write(', "loss": 1.5}\nnot json\n{"step": 4}\n')
    assert [r["step"] for r in tail.read()] == [1, 2, 3, 4]
    assert tail.read()[2]["loss"] == 1.5
    path.write_text('{"step": 9}\n', encoding="utf-8")  # rewritten shorter: read again from the start
    assert [r["step"] for r in tail.read()] == [9]
    path.unlink()
    assert tail.read() == []


def test_line_spec_draws_the_key_over_step():
    from studio.ui.board import line_spec

    spec = line_spec("grad_norm")
    assert spec["mark"]["type"] == "line"
    assert spec["encoding"]["x"]["field"] == "step" and spec["encoding"]["y"]["field"] == "grad_norm"
