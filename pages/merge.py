"""Merge: a run's adapter (or any checkpoint) into its base model, saved as sharded safetensors under
workspace/merged/, then reloaded and checked: greedy answers must match base+adapter token for token."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from core.errors import StudioError
from core.workspace import output_name, sub
from studio.ui.chatmodels import run_bases
from studio.ui.common import page_setup, show_error
from studio.ui.i18n import t

lang = page_setup()
st.title(t("merge.title"))
st.caption(t("merge.intro"))

from core import rundir  # noqa: E402

options = []  # (label, base, adapter folder, run name)
for base, runs in run_bases().items():
    for r in runs:
        run = Path(r["run_dir"])
        if (run / rundir.ADAPTER / "adapter_config.json").is_file():
            options.append((f"{run.name} · adapter", base, str(run / rundir.ADAPTER), run.name))
        for ck in reversed(rundir.checkpoints(run)):
            if (ck / "adapter_config.json").is_file():
                options.append((f"{run.name} · {ck.name}", base, str(ck), f"{run.name}-{ck.name}"))
if not options:
    st.info(t("merge.none"))
    st.stop()

label = st.selectbox(t("merge.adapter"), [o[0] for o in options], key="merge_adapter")
_, base, adapter, run_name = next(o for o in options if o[0] == label)
# the run's own config gives the default: it was trained with (or without) the model folder's code
run_cfg = next((c for c in (Path(adapter).parent / rundir.CONFIG, Path(adapter).parents[2] / rundir.CONFIG)
                if c.is_file()), None)
try:
    from core.config import load_config

    run_trusts = bool(run_cfg and load_config(run_cfg).trust_remote_code)
except Exception:  # a broken config only loses the default
    run_trusts = False
base = st.text_input(t("merge.base"), value=base, help=t("merge.base_help"))
c1, c2, c3 = st.columns(3)
out_name = c1.text_input(t("merge.out"), value=re.sub(r"[^A-Za-z0-9_.-]+", "-", run_name))
shard = c2.selectbox(t("merge.shard"), ["2GB", "5GB", "10GB", "500MB"])
device = c3.selectbox(t("merge.device"), ["auto", "cpu", "cuda"])
check = st.checkbox(t("merge.check"), value=True, help=t("merge.check_help"))
trust = st.checkbox(t("common.trust_remote_code"), value=run_trusts, help=t("common.trust_remote_code_help"),
                    key="merge_trust")
if trust:
    st.warning(t("common.trust_remote_code_warn", path=base))
try:
    out_dir = output_name(sub("merged"), out_name)  # ".", ".." or "" would be workspace/merged itself
except ValueError:
    st.error(t("merge.bad_name"))
    st.stop()
st.code(f"python -m studio merge {base} {adapter} {out_dir} --max-shard-size {shard} --device {device}"
        + ("" if check else " --no-check") + (" --trust-remote-code" if trust else ""), language="bash")
if out_dir.exists() and any(out_dir.iterdir()):
    from core.fsio import read_marker

    if (read_marker(out_dir) or {}).get("kind") == "merge":
        st.caption(t("merge.exists", path=str(out_dir)))
    else:
        st.error(t("merge.exists_refused", path=str(out_dir)))
        st.stop()

if st.button(t("merge.go"), type="primary", key="merge_go"):
    from core.merge import merge_adapter

    try:
        with st.spinner(t("merge.running")):
            report = merge_adapter(base, adapter, str(out_dir), max_shard_size=shard, device=device, check=check,
                                   trust_remote_code=trust)
        st.success(t("merge.done", path=report["merged"], s=report.get("seconds", "?")))
        chk = report.get("check")
        if chk:
            if chk.get("identical"):
                st.success(t("merge.check_ok", n=chk.get("compared", 0)))
            else:
                st.error(t("merge.check_bad", n=len(chk.get("mismatches", [])), total=chk.get("compared", 0)))
                st.dataframe(chk.get("mismatches", []), hide_index=True, width="stretch")
        st.json(report, expanded=False)
    except StudioError as e:
        show_error(e)
