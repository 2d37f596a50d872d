"""Home: the pipeline at a glance, the environment check, and the base model (tiny, folder, HF, ModelScope)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.workspace import workspace_root
from studio.ui import state
from studio.ui.common import page_setup, show_error
from studio.ui.i18n import t

lang = page_setup()
st.title(t("home.title"))
st.caption(t("home.intro"))


@st.cache_resource(show_spinner=False)
def _tiny(workspace: str) -> str:
    # keyed by the workspace: the cache lives as long as the server process, the workspace may not
    from core.tiny import ensure_tiny

    return str(ensure_tiny())


@st.cache_data(ttl=30, show_spinner=False)
def _environment() -> dict:
    from studio.ui.env import environment

    return environment()


# ---------------------------------------------------------------------------- pipeline
from studio.ui.steps import STEPS, pipeline  # noqa: E402

with st.spinner(t("home.tiny_building")):
    tiny = _tiny(str(workspace_root()))
done = pipeline()
cols = st.columns(len(STEPS))
for col, step in zip(cols, STEPS, strict=True):
    ok, detail = done[step]
    col.markdown(f"{'✅' if ok else '⬜'} **{t('step.' + step)}**")
    col.caption(detail or t("step.todo"))

# ---------------------------------------------------------------------------- recent runs
# (with the memory bars below, the first page to draw a table and a chart: the browser loads that code
# here, during the first load, and not on the first visit to Data or Train)
from core import jobs  # noqa: E402

runs = jobs.list_runs()[:5]
st.subheader(t("home.recent_runs"))
st.dataframe([{t("train.col_run"): r["run_id"], t("train.col_state"): r.get("state", ""),
               t("home.col_step"): f"{r.get('step') or 0}/{r.get('max_steps') or '?'}",
               t("home.col_loss"): r.get("loss")} for r in runs] or
             [{t("train.col_run"): t("home.no_runs"), t("train.col_state"): "", t("home.col_step"): "",
               t("home.col_loss"): None}], hide_index=True, width="stretch")

# ---------------------------------------------------------------------------- base model
st.subheader(t("home.model"))
current = state.load().get("model") or tiny
st.write(t("home.model_current", path=current))
src = st.radio(t("home.model_source"), ["tiny", "local", "hf", "modelscope"], horizontal=True,
               format_func=lambda k: t("home.src_" + k), key="model_src")
if src == "tiny":
    if st.button(t("home.use_tiny"), key="use_tiny"):
        state.update(model=tiny)
        st.rerun()
elif src == "local":
    from studio.ui.download import local_models

    known = [str(p) for p in local_models()]
    folder = st.selectbox(t("home.local_known"), known, index=None, placeholder=t("home.local_none")) if known else None
    typed = st.text_input(t("home.local_path"), placeholder="/root/models/internlm2-chat-1_8b", key="local_path")
    if st.button(t("home.use_folder"), key="use_folder"):
        chosen = typed.strip() or folder
        if not chosen:
            st.warning(t("home.local_need"))
        elif not (Path(chosen).expanduser() / "config.json").is_file():
            st.error(t("home.not_model", path=chosen))
        else:
            state.update(model=str(Path(chosen).expanduser().resolve()))
            st.rerun()
else:
    from core.models import is_online, looks_like_hub_id
    from studio.ui import download

    example = "internlm/internlm2-chat-1_8b" if src == "hf" else "Shanghai_AI_Laboratory/internlm2-chat-1_8b"
    model_id = st.text_input(t("home.hub_id"), placeholder=example, key="hub_id")
    if src == "hf":
        st.caption(t("home.hf_endpoint", endpoint=download.hub_host("hf")))
    if st.button(t("home.download"), type="primary", key="download"):
        if not looks_like_hub_id(model_id.strip()):
            st.error(t("home.bad_id", example=example))
        elif not is_online(download.hub_host(src)):
            st.error(t("home.offline", host=download.hub_host(src)))
        else:
            try:
                download.start_download(model_id.strip(), src)
                st.toast(t("home.download_started"))
            except OSError as e:
                show_error(e)

    @st.fragment(run_every=2)
    def _downloads() -> None:
        for job in download.downloads():
            mb = job["bytes"] / 1e6
            label = f"{job['hub']}: {job['model_id']} — {mb:,.1f} MB"
            if job["state"] == "running":
                st.info(t("home.dl_running", label=label, last=job["last"]))
            elif job["state"] == "done":
                c1, c2 = st.columns([4, 1])
                c1.success(t("home.dl_done", label=label))
                if c2.button(t("home.use_folder"), key="use-" + job["model_id"] + job["hub"]):
                    state.update(model=job["folder"])
                    st.rerun(scope="app")
            else:
                st.error(t("home.dl_failed", label=label, error=job.get("error", "")))

    _downloads()
    st.caption(t("home.cli_download", cmd=f"python -m studio download {model_id or example} --hub {src}"))

# ---------------------------------------------------------------------------- environment
st.subheader(t("home.env"))
env = _environment()
c1, c2, c3, c4 = st.columns(4)
if env["gpus"]:
    g = env["gpus"][0]
    c1.metric(t("home.gpu"), f"{len(env['gpus'])} × {g['name']}", f"{g['free_gib']}/{g['total_gib']} GiB")
else:
    c1.metric(t("home.gpu"), t("home.no_gpu"))
c2.metric("CUDA", env["cuda_version"] if env["cuda_available"] else "-")
c3.metric(t("home.ram"), f"{env['ram_available_gib']}/{env['ram_total_gib']} GiB")
c4.metric(t("home.disk"), f"{env['disk_free_gib']}/{env['disk_total_gib']} GiB")
if not env["gpus"]:
    st.info(t("home.cpu_note"))
st.caption(t("home.workspace_line", path=env["workspace"], cpus=env["cpus"], python=env["python"]))
usage = {"RAM": (env["ram_total_gib"] - env["ram_available_gib"], env["ram_available_gib"]),
         t("home.disk_short"): (env["disk_total_gib"] - env["disk_free_gib"], env["disk_free_gib"])}
for g in env["gpus"][:4]:
    usage[f"GPU {g.get('index', 0)}"] = (g["total_gib"] - g["free_gib"], g["free_gib"])
import pandas as pd  # noqa: E402

st.bar_chart(pd.DataFrame({t("home.used"): [u for u, _ in usage.values()], t("home.free"): [f for _, f in usage.values()]},
                          index=list(usage)), stack="normalize", height=220, y_label=t("home.share"),
             color=["#ef4444", "#22c55e"], width=120 + 90 * len(usage))
from studio.serve import ssh_hint  # noqa: E402

st.caption(t("home.laptop"))
st.code(ssh_hint(int(st.get_option("server.port") or 8501)), language="bash")
st.table({"package": list(env["versions"]), "version": list(env["versions"].values())})
