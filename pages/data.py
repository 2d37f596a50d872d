"""Data: pick or upload a file, see its format, a preview and the validation report; build identity and
LLaVA data; replace a word; repeat a set. Everything is saved under workspace/data."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.errors import StudioError
from core.workspace import sub
from studio.ui import state
from studio.ui.common import page_setup, show_error
from studio.ui.files import out_name, save_bytes
from studio.ui.i18n import t
from studio.ui.steps import data_files

lang = page_setup()
st.title(t("data.title"))
st.caption(t("data.intro"))
DATA = sub("data")


@st.cache_resource(max_entries=2, show_spinner=False)
def _tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def _how(path: str) -> dict:
    """How to read the file: what a LLaMA-Factory dataset_info.json beside it says, else detection."""
    from core.data import dataset_info_for

    e = dataset_info_for(path) or {}
    return {"fmt": e.get("fmt"), "mapping": e.get("mapping"), "speakers": e.get("speakers")}


@st.cache_data(max_entries=8, show_spinner=False)
def _validate(path: str, mtime: float, model: str, max_length: int) -> dict:
    from core.data import validate_file

    how = _how(path)
    return validate_file(path, how["fmt"], how["mapping"], tokenizer=_tokenizer(model), max_length=max_length,
                         max_errors=200, speakers=how["speakers"])


def _kinds(counts: dict) -> str:
    """{"images": 2, "videos": 1} -> "2 images, 1 videos" in the page's language."""
    return ", ".join(t(f"data.kind_{k}", n=n) for k, n in counts.items() if n)


@st.cache_data(max_entries=8, show_spinner=False)
def _preview(path: str, mtime: float, lang: str, n: int = 50) -> list[dict]:
    from core.data import read_samples

    rows = []
    st_: dict = {}
    before: dict = {}
    for s in read_samples(path, strict=False, stats=st_, **_how(path)):
        msgs = s["messages"]

        def first(role, msgs=msgs):
            return next((m["content"] for m in msgs if m["role"] == role), "")

        # this row's unused fields: the counts that grew with it
        seen = [k for k, v in st_["ignored"].items() if v > before.get(k, 0)]
        before = dict(st_["ignored"])
        rows.append({"system": first("system"), "user": first("user") or first("pretrain"),
                     "assistant": first("assistant"), "turns": sum(m["role"] == "user" for m in msgs),
                     t("data.col_media"): ", ".join(Path(p).name if "://" not in p else p
                                                    for k in ("images", "videos", "audios") for p in s.get(k) or []),
                     t("data.col_tools"): ", ".join(c["function"]["name"] for m in msgs
                                                    for c in m.get("tool_calls") or []),
                     t("data.col_ignored"): ", ".join(sorted(seen))})
        if len(rows) >= n:
            break
    return rows


def _use(path: Path) -> None:
    state.update(data=str(path))
    st.toast(t("data.now_current", name=path.name))


# One tool drawn at a time (tabs would draw all five, uploaders included, on every visit)
TOOLS = {"file": "data.tab_file", "identity": "data.tab_identity", "replace": "data.tab_replace",
         "repeat": "data.tab_repeat", "llava": "data.tab_llava"}
tool = st.radio(t("data.tool"), list(TOOLS), format_func=lambda k: t(TOOLS[k]), horizontal=True, key="data_tool",
                label_visibility="collapsed")

# ---------------------------------------------------------------------------- a file: pick, upload, inspect
if tool == "file":
    up = st.file_uploader(t("data.upload"), type=["json", "jsonl", "gz", "csv", "parquet", "txt"])
    if up is not None:
        try:
            saved = save_bytes(DATA, up.name, up.getvalue())
            if state.load().get("data") != str(saved):
                _use(saved)
        except ValueError as e:
            st.error(str(e))
    files = [str(p) for p in data_files()]
    current = state.load().get("data")
    # a current file that is not a regular file (a device, a FIFO) is still listed, so its error is shown
    if current and current not in files and Path(current).exists():
        files.insert(0, current)
    if not files:
        st.info(t("data.none"))
    else:
        pick = st.selectbox(t("data.pick"), files, index=files.index(current) if current in files else 0,
                            format_func=lambda p: str(Path(p).relative_to(DATA)) if p.startswith(str(DATA)) else p)
        if pick != current:
            state.update(data=pick)
        path = Path(pick)
        mtime = path.stat().st_mtime
        model = state.current_model()
        max_length = st.number_input(t("data.max_length"), min_value=16, max_value=131072, value=2048, step=256,
                                     help=t("data.max_length_help"))
        try:
            with st.spinner(t("data.validating")):
                report = _validate(str(path), mtime, model, int(max_length))
        except StudioError as e:
            show_error(e)
            report = None
        if report:
            c1, c2, c3, c4 = st.columns(4)
            c1.metric(t("data.format"), report["format"])
            c2.metric(t("data.samples"), report["samples"])
            c3.metric(t("data.turns"), report["turns"])
            c4.metric(t("data.images"), report["images"])
            media = report.get("media") or {}
            if any(media.get(k) for k in ("videos", "audios")):
                st.write(t("data.media", kinds=_kinds(media)))
            if report.get("ignored"):
                st.warning(t("data.ignored", fields=", ".join(
                    f"{k} ({t('data.rows', n=v)})" for k, v in sorted(report["ignored"].items()))))
            for w in report.get("warnings", []):
                st.warning(w)
            if report["errors"]:
                st.error(t("data.errors", n=report["errors_total"]))
                st.code("\n".join(report["errors"][:50]), language=None)
            else:
                st.success(t("data.valid"))
            tok = report.get("tokens")
            if tok:
                import pandas as pd

                p = tok["percentiles"]
                st.write(t("data.tokens_line", p50=p["p50"], p95=p["p95"], max=p["max"], trunc=tok["truncated"],
                           n=report["samples"], max_length=int(max_length)))
                hist = pd.DataFrame([{"tokens": f"{h['from']}–{h['to']}",
                                      t("data.within"): 0 if h["over_max_length"] else h["count"],
                                      t("data.over"): h["count"] if h["over_max_length"] else 0}
                                     for h in tok["histogram"]]).set_index("tokens")
                st.bar_chart(hist, color=["#3b82f6", "#ef4444"], sort=False)
            try:
                st.dataframe(_preview(str(path), mtime, lang), width="stretch", hide_index=True)
            except StudioError:  # a file that cannot be parsed at all: the error above names file:line
                pass

# ---------------------------------------------------------------------------- identity builder
if tool == "identity":
    with st.form("identity"):
        c1, c2 = st.columns(2)
        name = c1.text_input(t("data.id_name"), value="小天", key="id_name")
        author = c2.text_input(t("data.id_author"), value="Fine-Tune Studio", key="id_author")
        lg = c1.selectbox(t("data.id_lang"), ["both", "zh", "en"], format_func=lambda k: t("data.lang_" + k))
        repeat = c2.number_input(t("data.id_repeat"), min_value=1, max_value=10000, value=2, help=t("data.id_repeat_help"),
                                 key="id_repeat")
        ratio = c1.slider(t("data.id_mix"), 0.0, 0.9, 0.5, 0.05, help=t("data.id_mix_help"), key="id_mix")
        system = c2.text_input(t("data.id_system"), value="")
        out = st.text_input(t("data.out_name"), value="identity.jsonl", key="id_out")
        go = st.form_submit_button(t("data.id_build"), type="primary", key="id_build")
    if go:
        try:
            from core.data import build_identity, write_samples
            from core.demo import general_samples
            from core.workspace import safe_join

            mix = general_samples(2000) if ratio > 0 else None
            samples = build_identity(name, author, lang=lg, repeat=int(repeat), system=system, mix=mix, ratio=ratio)
            from core.data import question_bank
            from core.demo import identity_dominance

            n_q = sum(len(question_bank(x)) for x in (["zh", "en"] if lg == "both" else [lg]))
            if dom := identity_dominance(n_q, int(repeat), ratio, len(mix or [])):  # XTuner's repeat, guarded
                st.warning(t("data.id_repeat_warn", share=f"{dom['share']:.0%}", n_id=dom["n_identity"],
                             n_gen=dom["n_general"]))
            target = safe_join(DATA, out_name(out))
            n = write_samples(samples, target, overwrite=True)  # the builder's own file, rebuilt on purpose
            _use(target)
            st.success(t("data.written", n=n, path=str(target)))
            st.code(f"python -m studio data identity --name {name} --author '{author}' --repeat {int(repeat)} "
                    f"-o {target}", language="bash")
        except (StudioError, ValueError) as e:
            show_error(e)

# ---------------------------------------------------------------------------- replace / repeat
if tool == "replace":
    src = state.load().get("data")
    if not src:
        st.info(t("data.none"))
    else:
        st.write(t("data.on_file", name=Path(src).name))
        c1, c2 = st.columns(2)
        old = c1.text_input(t("data.old"), value="", key="rep_old")
        new = c2.text_input(t("data.new"), value="", key="rep_new")
        out = st.text_input(t("data.out_name"), value=Path(src).stem + "_replaced" + Path(src).suffix, key="rep_out")
        b1, b2 = st.columns(2)
        preview = b1.button(t("data.preview"), key="rep_preview")
        apply = b2.button(t("data.apply"), type="primary", key="rep_apply")
        if (preview or apply) and old:
            from core.data import check_output, replace_in_file
            from core.workspace import safe_join

            try:
                target = safe_join(DATA, out_name(out, Path(src).suffix))
                check_output(target, [src], overwrite=True)  # never the file being read
                rep = replace_in_file(src, old, new, target, dry_run=preview)
                st.write(t("data.replaced", n=rep["replacements"], records=rep["records_changed"]))
                if rep["diff"]:
                    st.code("\n".join(rep["diff"]), language="diff")
                if apply:
                    _use(target)
                    st.success(t("data.saved", path=str(target)))
            except (StudioError, ValueError) as e:
                show_error(e)
        elif preview or apply:
            st.warning(t("data.old_needed"))

if tool == "repeat":
    src = state.load().get("data")
    if not src:
        st.info(t("data.none"))
    else:
        st.write(t("data.on_file", name=Path(src).name))
        n = st.number_input(t("data.repeat_n"), min_value=1, max_value=100000, value=2, key="rpt_n")
        out = st.text_input(t("data.out_name"), value=f"{Path(src).stem}_x{int(n)}{Path(src).suffix}", key="rpt_out")
        if st.button(t("data.repeat_go"), type="primary", key="rpt_go"):
            from core.data import check_output, repeat_file
            from core.workspace import safe_join

            try:
                target = safe_join(DATA, out_name(out, Path(src).suffix))
                check_output(target, [src], overwrite=True)  # never the file being read
                rep = repeat_file(src, int(n), target)
                _use(target)
                st.success(t("data.written", n=rep["written"], path=str(target)))
            except (StudioError, ValueError) as e:
                show_error(e)

# ---------------------------------------------------------------------------- LLaVA builder
if tool == "llava":
    st.caption(t("data.llava_intro"))
    images = st.file_uploader(t("data.llava_images"), type=["png", "jpg", "jpeg", "webp", "bmp"],
                              accept_multiple_files=True)
    folder_name = st.text_input(t("data.llava_folder"), value="llava_images", key="llava_folder")
    qa = st.text_area(t("data.llava_qa"), height=160, key="llava_qa",
                      placeholder="image: eye.jpg\nQ: What is in the picture?\nA: A doctor examining an eye.")
    c1, c2 = st.columns(2)
    rep_n = c1.number_input(t("data.id_repeat"), min_value=1, max_value=10000, value=1, key="llava_rep")
    out = c2.text_input(t("data.out_name"), value="llava.json", key="llava_out")
    if st.button(t("data.llava_build"), type="primary", key="llava_build"):
        from core.data import build_llava, write_samples
        from core.fsio import atomic_write_text
        from core.workspace import safe_join

        try:
            from core.workspace import output_name  # a plain folder name: not ".", "..", a path (issue 19)

            img_dir = output_name(DATA, folder_name.strip() or "llava_images")
            for f in images or []:
                save_bytes(img_dir, f.name, f.getvalue())
            qa_file = atomic_write_text(img_dir.parent / f".{img_dir.name}.qa.txt", qa)
            samples, rep = build_llava(img_dir, qa_file, repeat=int(rep_n))
            target = safe_join(DATA, out_name(out, ".json"))
            n = write_samples(samples, target, to="llava", overwrite=True)
            _use(target)
            st.success(t("data.written", n=n, path=str(target)))
            cols = st.columns(min(4, max(1, len(rep["images"]))))
            for i, im in enumerate(rep["images"]):
                cols[i % len(cols)].image(im["path"], caption=f"{Path(im['path']).name} {im['width']}×{im['height']}",
                                          width=160)
        except (StudioError, ValueError) as e:
            show_error(e)
