"""Publish: a merged model or an adapter to Hugging Face or ModelScope, with a model card and optionally a
chat Space, through core.publish. The token is typed into a password box and never stored; a dry run
writes what would be pushed into the workspace instead."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import rundir
from core.errors import StudioError
from core.jobs import list_runs
from core.workspace import sub
from studio.ui.common import page_setup, show_error
from studio.ui.i18n import t
from studio.ui.steps import merged_models

lang = page_setup()
st.title(t("publish.title"))
st.caption(t("publish.intro"))

sources = [(f"merged · {p.name}", str(p), None) for p in merged_models()]
for r in list_runs():
    run = Path(r["run_dir"])
    if (run / rundir.ADAPTER / "adapter_config.json").is_file():
        sources.append((f"adapter · {run.name}", str(run / rundir.ADAPTER), str(run)))
if not sources:
    st.info(t("publish.none"))
    st.stop()

label = st.selectbox(t("publish.source"), [s[0] for s in sources])
_, source, run_dir = next(s for s in sources if s[0] == label)
if run_dir is None and (Path(source) / "studio_merge.json").is_file():
    import json

    adapter = json.loads((Path(source) / "studio_merge.json").read_text(encoding="utf-8")).get("adapter", "")
    cand = Path(adapter).parent if Path(adapter).name == rundir.ADAPTER else Path(adapter).parent.parent
    run_dir = str(cand) if (cand / rundir.CONFIG).is_file() else None

c1, c2 = st.columns(2)
hub = c1.radio(t("publish.hub"), ["hf", "modelscope"], horizontal=True,
               format_func=lambda h: "Hugging Face" if h == "hf" else "ModelScope")
repo = c2.text_input(t("publish.repo"), placeholder="alice/my-assistant", key="repo")
c1, c2, c3 = st.columns(3)
private = c1.checkbox(t("publish.private"))
space = c2.checkbox(t("publish.space"), help=t("publish.space_help"))
sdk = c3.selectbox("SDK", ["gradio", "streamlit"], disabled=not space)
base_model = st.text_input(t("publish.base_model"), help=t("publish.base_model_help"))
system_prompt = st.text_input(t("publish.system"), value="")
token = st.text_input(t("publish.token"), type="password", help=t("publish.token_help"), key="token")

card_text = None
if repo.strip():
    from core.publish import model_card

    try:
        card_text = model_card(source, repo_id=repo.strip(), base_model=base_model.strip() or None, run_dir=run_dir)
    except (StudioError, ValueError) as e:
        show_error(e)
card = st.text_area(t("publish.card"), value=card_text or "", height=260, key=f"card:{source}:{repo}:{base_model}",
                    disabled=card_text is None)

dry = st.toggle(t("publish.dry"), value=not token, help=t("publish.dry_help"))
cmd = f"python -m studio publish {hub} {source} --repo {repo or 'OWNER/NAME'}" + (" --space" if space else "")
st.code(cmd + (f" --dry-run {sub('publish') / 'dry-run'}" if dry else ""), language="bash")
if st.button(t("publish.go"), type="primary", disabled=not repo.strip(), key="publish_go"):
    from core.publish import push, resolve_token

    events = st.empty()
    log: list[str] = []

    def progress(ev: dict) -> None:
        log.append(" · ".join(f"{k}={v}" for k, v in ev.items()))
        events.code("\n".join(log[-12:]), language=None)

    try:
        dry_dir = sub("publish") / f"dry-run-{hub}-{repo.strip().replace('/', '__')}" if dry else None
        # dry_dir is the page's own folder under workspace/publish: rebuilt each time (core.fsio still never
        # lets it replace a run, the source or another command's output)
        result = push(hub, source, repo.strip(), token=None if dry else resolve_token(hub, token or None),
                      private=private, space=space, sdk=sdk, dry_run_dir=dry_dir, progress=progress,
                      base_model=base_model.strip() or None, run_dir=run_dir, card=card or None,
                      system_prompt=system_prompt, overwrite=True)
        if result.get("dry_run"):
            st.success(t("publish.dry_done", path=str(dry_dir), n=len(result["model_files"])))
        else:
            st.success(t("publish.done", url=result.get("model_url") or repo))
        st.json({k: v for k, v in result.items() if k != "calls"}, expanded=False)
    except StudioError as e:
        show_error(e)
