"""Config: the recipe gallery, a form with every field and its help, a live-validated YAML editor, the
VRAM estimate and the equivalent CLI command. Saved configs go to workspace/configs/."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from core.config import (
    ConfigError,
    RunConfig,
    config_from_dict,
    config_from_yaml,
    config_to_yaml,
    load_config,
)
from core.config.recipes import list_recipes, recipe_header, recipe_path
from core.errors import StudioError
from core.workspace import safe_join, sub
from studio.ui import state
from studio.ui.common import page_setup, show_error
from studio.ui.configform import SECTIONS, adopt, config_form, form_values, section_fields, section_of
from studio.ui.i18n import t
from studio.ui.steps import config_files

lang = page_setup()
st.title(t("config.title"))
st.caption(t("config.intro"))
CONFIGS = sub("configs")

# ---------------------------------------------------------------------------- where the config starts from
saved = [str(p) for p in config_files()]
kind = st.radio(t("config.start_from"), ["recipe", "saved"], horizontal=True,
                index=1 if saved and state.load().get("config") in saved else 0,
                format_func=lambda k: t("config.from_" + k))
if kind == "saved" and not saved:
    st.info(t("config.no_saved"))
    kind = "recipe"

if kind == "recipe":
    flt = st.text_input(t("config.filter"), placeholder="qwen, internlm2, qlora, llava…", key="recipe_filter")
    names = list_recipes(flt or None)
    if not names:
        st.warning(t("config.no_match"))
        st.stop()
    default = "tiny_chat_lora_identity_e3"
    name = st.selectbox(t("config.recipe"), names, index=names.index(default) if default in names else 0)
    st.caption(recipe_header(name).replace("\n", "  \n"))
    source = recipe_path(name)
else:
    cur = state.load().get("config")
    pick = st.selectbox(t("config.saved_pick"), saved, index=saved.index(cur) if cur in saved else 0,
                        format_func=lambda p: Path(p).name)
    source = Path(pick)


@st.cache_data(max_entries=32, show_spinner=False)
def _load(path: str, mtime: float) -> RunConfig:
    return load_config(path)


try:
    base = _load(str(source), source.stat().st_mtime)
except StudioError as e:
    show_error(e)
    st.stop()

notes = []
if kind == "recipe":
    # a recipe's data_path is an example; the file made on the Data page is what the user means
    data = state.load().get("data")
    if data and Path(data).is_file():
        base.data_path = data
        notes.append(t("config.note_data", path=data))
    model = state.load().get("model")
    if base.pretrained_model_name_or_path == "tiny" and model and Path(model).name != "tiny":
        notes.append(t("config.note_model", model=model))
for n in notes:
    st.caption("ℹ️ " + n)

prefix = hashlib.sha1(f"{source}:{source.stat().st_mtime}:{base.data_path}".encode()).hexdigest()[:10]
# a switch, not tabs: tabs draw both sides, and the YAML side's big text box is costly to draw on every visit
views = {"form": t("config.tab_form"), "yaml": t("config.tab_yaml")}
view = st.radio(t("config.view"), list(views), horizontal=True, key="config_view", format_func=views.get,
                label_visibility="collapsed")
titles = {s: t("config.section_" + s) if s in SECTIONS else s for s, names in section_fields().items() if names}
if view == "form":
    section = st.radio(t("config.section"), list(titles), horizontal=True, key="config_section",
                       format_func=titles.get)
    values = config_form(base, lang, prefix, section)
else:
    section = None
    values = form_values(base, prefix)
cfg = None
try:
    cfg = config_from_dict(values, source=t("config.form"))
except ConfigError as e:
    where = section_of(e.field)
    if where and where != section:  # the wrong value is in a section not on screen
        st.error(t("config.invalid_in", field=e.field, message=e.message, section=titles[where]))
    else:
        st.error(t("config.invalid_field", field=e.field, message=e.message))

form_yaml = config_to_yaml(cfg, header=f"Edited in Fine-Tune Studio from {source.name}") if cfg else None
final_cfg, final_text = cfg, form_yaml
if view == "yaml":
    st.caption(t("config.yaml_help"))
    # keyed by the starting point only: the text box keeps what the user typed across reruns. An invalid
    # form shows its values as they are (not the recipe's text, which would drop the user's edits).
    import yaml

    seed = form_yaml or yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
    text = st.text_area("YAML", value=seed, height=520, key="yaml:" + prefix, label_visibility="collapsed")
    yaml_cfg = None
    try:
        yaml_cfg = config_from_yaml(text, source="YAML")
        st.success(t("config.yaml_ok"))
    except ConfigError as e:
        st.error(t("config.invalid_field", field=e.field, message=e.message))
    if text != (form_yaml or ""):
        # the YAML editor wins when the user changed it there (an invalid edit blocks saving rather than
        # silently saving the form); a valid edit also becomes the form's values
        final_cfg, final_text = yaml_cfg, text
        if yaml_cfg is not None:
            adopt(yaml_cfg, prefix)

# ---------------------------------------------------------------------------- VRAM estimate
st.subheader(t("config.vram"))
n_gpus = st.number_input(t("config.n_gpus"), min_value=1, max_value=64, value=1)
if final_cfg is not None:
    from core.config.vram import estimate, format_estimate

    try:
        est = estimate(final_cfg, int(n_gpus))
        c1, c2, c3 = st.columns(3)
        c1.metric(t("config.vram_total"), f"{est['total_gib']:.2f} GiB")
        c2.metric(t("config.vram_smi"), f"~{est['reserved_gib']:.1f} GiB")
        c3.metric(t("config.trainable"), f"{est['trainable_params'] / 1e6:,.2f} M / {est['params'] / 1e6:,.1f} M")
        with st.expander(t("config.vram_detail")):
            st.code(format_estimate(est), language=None)
    except (StudioError, KeyError, ValueError, OSError) as e:
        st.info(t("config.vram_unknown", error=str(e).split("\n")[0]))

# ---------------------------------------------------------------------------- save + command
st.subheader(t("config.save"))
default_name = source.stem if kind == "saved" else source.stem + "_copy"
fname = st.text_input(t("config.file_name"), value=default_name, key=f"config_name:{source}")
try:
    target = safe_join(CONFIGS, fname.strip().removesuffix(".yaml") + ".yaml")
except ValueError as e:
    st.error(str(e))
    st.stop()
from core.config.command import train_command  # noqa: E402

st.write(t("config.command"))
st.code(train_command(target, final_cfg, n_gpus=int(n_gpus), detach=True) if final_cfg else "", language="bash")
if st.button(t("config.save_button"), type="primary", disabled=final_cfg is None, key="save_config"):
    from core.fsio import atomic_write_text

    atomic_write_text(target, final_text)
    state.update(config=str(target))
    st.success(t("config.saved", path=str(target)))
