"""Train: start / stop / resume runs and watch one live. The board reads only the run dir (status.json,
metrics.jsonl, samples.jsonl, train.log), so closing the tab, restarting Streamlit or dropping the SSH
tunnel never touches a run, and reopening this page shows it again."""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from core import jobs, rundir
from core.errors import StudioError
from studio.ui import state
from studio.ui.board import JsonlTail, MetricsTail, eval_grid, fmt_seconds, line_spec, progress
from studio.ui.common import page_setup, show_error
from studio.ui.i18n import t
from studio.ui.steps import config_files

lang = page_setup()
st.title(t("train.title"))
st.caption(t("train.intro"))

STATE_ICON = {"queued": "⏳", "running": "🏃", "stopping": "✋", "stopped": "⏹️", "finished": "✅", "failed": "❌",
              "unreadable": "⚠️"}


def _stop_beside_the_page(run_id: str) -> None:
    try:
        jobs.stop_run(run_id, 120.0)
    except StudioError as e:  # no page to show it on: the server log keeps it
        print(f"stop {run_id}: {e}", flush=True)


def _select(run_id: str) -> None:
    st.query_params["run"] = run_id
    state.update(run=run_id)


# ---------------------------------------------------------------------------- start a run
with st.expander(t("train.start_title"), expanded=not jobs.list_runs()):
    configs = [str(p) for p in config_files()]
    cur = state.load().get("config")
    if not configs:
        st.info(t("train.no_config"))
    else:
        cfg_path = st.selectbox(t("train.config"), configs, index=configs.index(cur) if cur in configs else 0,
                                format_func=lambda p: Path(p).name)
        st.code(f"python -m studio train {cfg_path} --detach", language="bash")
        if st.button(t("train.start"), type="primary", key="start_run"):
            try:
                run = jobs.start_run(cfg_path)
                _select(run.name)
                st.success(t("train.started", run=run.name))
            except StudioError as e:
                show_error(e)

# ---------------------------------------------------------------------------- run list
runs = jobs.list_runs()
if not runs:
    st.info(t("train.no_runs"))
    st.stop()
ids = [r["run_id"] for r in runs]
chosen = st.query_params.get("run") or state.load().get("run")
if chosen not in ids:
    chosen = ids[0]
st.subheader(t("train.runs"))
st.table([{t("train.col_run"): r["run_id"], t("train.col_state"): f"{STATE_ICON.get(r.get('state'), '')} "
               f"{t('state.' + r.get('state', 'queued'))}", t("train.col_step"): f"{r.get('step') or 0}/"
               f"{r.get('max_steps') or '?'}", t("train.col_error"): r.get("error") or ""} for r in runs],
             )  # a static table: the interactive grid costs the browser ~0.5 s to load for a few rows
run_id = st.selectbox(t("train.watch"), ids, index=ids.index(chosen))
if run_id != st.query_params.get("run"):
    _select(run_id)
run_dir = Path(next(r["run_dir"] for r in runs if r["run_id"] == run_id))

# ---------------------------------------------------------------------------- stop / resume
status = jobs.run_state(run_dir)
c1, c2, c3 = st.columns([1, 1, 4])
live = status.get("state") in ("queued", "running", "stopping")
if c1.button(t("train.stop"), key="stop_run", disabled=not live or status.get("state") == "stopping"):
    # stop_run waits for the checkpoint; the page must not, so it runs beside the page
    # (a run of another host gets stop.request only; what went wrong then shows on its board, not here)
    threading.Thread(target=_stop_beside_the_page, args=(run_id,), daemon=True).start()
    st.toast(t("train.stopping"))
can_resume = status.get("state") in ("stopped", "failed") and bool(status.get("latest_checkpoint"))
if c2.button(t("train.resume"), key="resume_run", disabled=not can_resume,
             help=t("train.resume_help", ckpt=status.get("latest_checkpoint") or "-")):
    try:
        jobs.start_run(run_dir / rundir.CONFIG, work_dir=str(run_dir), resume="latest")
        st.toast(t("train.resumed"))
    except StudioError as e:
        show_error(e)
try:
    command = (run_dir / rundir.COMMAND).read_text(encoding="utf-8", errors="replace").strip()
except OSError:  # none, or the run is being deleted
    command = ""
c3.code(command or "-", language="bash")


# ---------------------------------------------------------------------------- the live board
CURVES = ("loss", "lr", "grad_norm")


# one reader per file for the whole server: every board watching a run shares what was parsed
@st.cache_resource(max_entries=16, show_spinner=False)
def _metrics(path: str) -> MetricsTail:
    return MetricsTail(path, (*CURVES, "tokens_per_s", "gpu_peak_gib", "epoch"))


@st.cache_resource(max_entries=16, show_spinner=False)
def _samples(path: str) -> JsonlTail:
    return JsonlTail(path)


# a run that is over does not change: its board is drawn once, not every 3 s
@st.fragment(run_every=3 if live else None)
def board(run_dir: Path) -> None:
    import pandas as pd

    status = jobs.run_state(run_dir)
    stt = status.get("state", "queued")
    if live and stt in jobs.TERMINAL:
        st.rerun()  # the whole page: buttons, run list, and this board without its timer
    cols = _metrics(str(run_dir / rundir.METRICS)).read()
    frac = progress(status)
    eta = status.get("eta_s") if stt == "running" else None
    st.progress(frac, text=t("train.progress", state=f"{STATE_ICON.get(stt, '')} {t('state.' + stt)}",
                             step=status.get("step") or 0, total=status.get("max_steps") or "?",
                             eta=fmt_seconds(eta)))
    if status.get("error"):
        st.error(status["error"] + (f"\n\n{t('common.hint')}: {status['hint']}" if status.get("hint") else ""))
    if status.get("loss_nonfinite_step"):
        st.warning(t("train.loss_nonfinite", step=status["loss_nonfinite_step"]))
    m1, m2, m3, m4 = st.columns(4)
    loss = cols.last("loss")
    m1.metric(t("train.loss"), f"{loss:.4f}" if loss is not None else "–")
    tps = cols.last("tokens_per_s")
    m2.metric(t("train.tps"), f"{tps:,.0f}" if tps is not None else "–")
    mem = cols.last("gpu_peak_gib")
    m3.metric(t("train.gpu_mem"), f"{mem:.2f} GiB" if mem is not None else t("train.cpu"))
    m4.metric(t("train.epoch"), f"{cols.last('epoch') or 0:.2f}")
    if len(cols):
        charts = st.columns(3)
        for col, key in zip(charts, CURVES, strict=True):
            steps, values = cols.curve(key, 240)  # at most 240 points: three boards redraw every 3 s
            col.caption(t("train." + key))
            if steps:
                col.vega_lite_chart(pd.DataFrame({"step": steps, key: values}), line_spec(key), width="stretch",
                                    height=200)
    # evaluation answers: step x prompt, what changed since the previous evaluation marked
    steps, prompts, answers, changed = eval_grid(_samples(str(run_dir / rundir.SAMPLES)).read())
    st.markdown(f"**{t('train.evals')}**")
    if steps:
        table = pd.DataFrame(answers, index=pd.Index(steps, name="step"), columns=prompts)
        flags = pd.DataFrame(changed, index=table.index, columns=prompts)
        styled = table.style.apply(lambda _: flags.map(lambda v: "background-color: #fde68a" if v else ""), axis=None)
        st.table(styled)
        st.caption(t("train.changed_note", n=int(flags.iloc[-1].sum()), total=len(prompts)))
    else:
        st.caption(t("train.no_evals"))
    with st.expander(t("train.log"), expanded=stt == "failed"):
        st.code(rundir.log_tail(run_dir, 40) or "-", language=None)
    ckpts = rundir.checkpoints(run_dir)
    if ckpts or (run_dir / rundir.ADAPTER).is_dir():
        st.caption(t("train.outputs", ckpts=", ".join(p.name for p in ckpts) or "-",
                     adapter=str(run_dir / rundir.ADAPTER) if (run_dir / rundir.ADAPTER).is_dir() else "-"))


board(run_dir)
