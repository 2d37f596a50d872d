"""The Config page's form: one widget per RunConfig field, its help text in the page's language.

Widgets are chosen from the field's declared type and choices, so a field added to core/config/schema.py
appears here without touching this file. Values come back as a plain dict for config_from_dict, which
does the validation and names the field that is wrong.

One section is drawn at a time (drawing all ~46 widgets cost the browser most of a second on the
page's first visit). What the user typed in the other sections lives in a draft in session_state, so
switching section loses nothing and the values returned always hold every field.
"""

from __future__ import annotations

import typing
from typing import Any

import streamlit as st
import yaml

from core.config import FIELDS, RunConfig, field_help

SECTIONS = ("model", "data", "method", "schedule", "saving", "evaluation", "system")
_HINTS = typing.get_type_hints(RunConfig)
_DRAFT = "config_draft"


def section_fields() -> dict[str, list[str]]:
    """section -> the field names in it, in the schema's order (SECTIONS first, then any section a new
    field brings)."""
    out: dict[str, list[str]] = {s: [] for s in SECTIONS}
    for name, f in FIELDS.items():
        out.setdefault(f.metadata["section"], []).append(name)
    return out


def section_of(name: str) -> str | None:
    f = FIELDS.get(name)
    return f.metadata["section"] if f is not None else None


def _key(prefix: str, name: str) -> str:
    return f"{prefix}:{name}"


def _value(name: str, raw: Any) -> Any:
    """A widget's raw value as config_from_dict takes it (lists one per line, dicts as YAML)."""
    typ = _HINTS[name]
    if FIELDS[name].metadata.get("choices"):
        return raw
    if typ is list and isinstance(raw, str):
        return [ln.strip() for ln in raw.splitlines() if ln.strip()]
    if typ is dict and isinstance(raw, str):
        try:
            return yaml.safe_load(raw) if raw.strip() else {}
        except yaml.YAMLError:
            return raw  # config_from_dict names the field
    return raw


def _widget(name: str, value: Any, lang: str, key: str) -> Any:
    # `value` only seeds a widget that has no state yet (keyed widgets keep what the user typed)
    meta = FIELDS[name].metadata
    helptext = field_help(name, lang)
    typ = _HINTS[name]
    choices = meta.get("choices")
    if choices:
        opts = list(choices)
        return st.selectbox(name, opts, index=opts.index(value) if value in opts else 0, help=helptext, key=key)
    if typ is bool:
        return st.checkbox(name, value=bool(value), help=helptext, key=key)
    if typ is int:
        return st.number_input(name, value=int(value), step=1, help=helptext, key=key)
    if typ is float:
        # text, not a number box: 2e-4 stays readable and the schema parses it (a draft may hold the text)
        return st.text_input(name, value=value if isinstance(value, str) else f"{value:g}", help=helptext, key=key)
    if typ is list:
        return st.text_area(name, value="\n".join(map(str, value)), help=helptext + " (one per line)", key=key,
                            height=90)
    if typ is dict:
        text = value if isinstance(value, str) else (
            yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip() if value else "")
        return st.text_input(name, value=text, help=helptext, key=key)
    return st.text_input(name, value=str(value), help=helptext, key=key)


def _draft(prefix: str) -> dict[str, Any]:
    # one draft per starting point: another recipe or saved config starts clean, as its widgets do
    d = st.session_state.get(_DRAFT)
    if not isinstance(d, dict) or d.get("prefix") != prefix:
        d = {"prefix": prefix, "values": {}}
        st.session_state[_DRAFT] = d
    return d["values"]


def form_values(cfg: RunConfig, prefix: str) -> dict[str, Any]:
    """Every field's value as the user left it, without drawing anything: the draft over `cfg`.

    Widgets of a section the user just switched away from are read here too: a value typed there and
    the click on another section can arrive in the same rerun, before that widget is drawn again."""
    draft = _draft(prefix)
    for name in FIELDS:
        key = _key(prefix, name)
        if key in st.session_state:
            draft[name] = _value(name, st.session_state[key])
    return {name: draft.get(name, getattr(cfg, name)) for name in FIELDS}


def adopt(cfg: RunConfig, prefix: str) -> None:
    """Make `cfg` the draft (a valid YAML edit): the form shows it when it is drawn next."""
    draft = _draft(prefix)
    for name in FIELDS:
        draft[name] = getattr(cfg, name)
        # a widget state left by an interrupted run would otherwise win over the edit in form_values
        st.session_state.pop(_key(prefix, name), None)


def config_form(cfg: RunConfig, lang: str, prefix: str, section: str) -> dict[str, Any]:
    """Draw the fields of `section`; returns {field: value} for every field, as the user left them."""
    values = form_values(cfg, prefix)
    draft = _draft(prefix)
    cols = st.columns(2)
    for i, name in enumerate(section_fields().get(section, [])):
        with cols[i % 2]:
            raw = _widget(name, values[name], lang, _key(prefix, name))
        values[name] = draft[name] = _value(name, raw)
    return values
