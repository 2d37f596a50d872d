"""The Train board's helpers: ETA text, progress, series and the evaluation grid with what changed."""

from __future__ import annotations

from studio.ui.board import eval_grid, fmt_seconds, latest, progress, series


def test_fmt_seconds_and_progress():
    assert fmt_seconds(None) == "–" and fmt_seconds(65) == "1:05" and fmt_seconds(3725) == "1:02:05"
    assert progress({"step": 5, "max_steps": 20, "state": "running"}) == 0.25
    assert progress({"step": 3, "max_steps": 0}) == 0.0
    assert progress({"state": "finished", "step": 9, "max_steps": 10}) == 1.0


def test_series_skips_missing_values():
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": None}, {"step": 3, "loss": 1.0, "lr": 1e-4}]
    assert series(rows, "loss") == {1: 2.0, 3: 1.0}
    assert latest(rows, "lr") == 1e-4 and latest(rows, "grad_norm") is None


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


def test_thin_keeps_the_ends_and_at_most_n_evenly_spaced_points():
    from studio.ui.board import thin

    curve = {step: float(step) for step in range(1, 10_001)}
    out = thin(curve, 240)
    assert len(out) == 240 and min(out) == 1 and max(out) == 10_000
    gaps = [b - a for a, b in zip(list(out), list(out)[1:], strict=False)]
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    assert all(out[k] == curve[k] for k in out)  # values untouched
    short = {1: 0.5, 2: 0.4}
    assert thin(short, 240) == short


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
