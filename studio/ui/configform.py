"""The Config page's form: one widget per RunConfig field, its help text in the page's language.

Widgets are chosen from the field's declared type and choices, so a field added to core/config/schema.py
appears here without touching this file. Values come back as a plain dict for config_from_dict, which
does the validation and names the field that is wrong.
"""

from __future__ import annotations

import typing
from typing import Any

import streamlit as st
import yaml

from core.config import FIELDS, RunConfig, field_help

SECTIONS = ("model", "data", "method", "schedule", "saving", "evaluation", "system")
OPEN = ("model", "data", "method", "schedule")
_HINTS = typing.get_type_hints(RunConfig)


def _widget(name: str, value: Any, lang: str, key: str) -> Any:
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
        # text, not a number box: 2e-4 stays readable and the schema parses it
        return st.text_input(name, value=f"{value:g}", help=helptext, key=key)
    if typ is list:
        text = st.text_area(name, value="\n".join(map(str, value)), help=helptext + " (one per line)", key=key,
                            height=90)
        return [ln.strip() for ln in text.splitlines() if ln.strip()]
    if typ is dict:
        text = st.text_input(name, value=yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip()
                             if value else "", help=helptext, key=key)
        try:
            return yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError:
            return text  # config_from_dict names the field
    return st.text_input(name, value=str(value), help=helptext, key=key)


def config_form(cfg: RunConfig, lang: str, prefix: str, section_titles: dict[str, str]) -> dict[str, Any]:
    """Render every field of `cfg`; returns {field: value} as the user left them."""
    values: dict[str, Any] = {}
    by_section: dict[str, list[str]] = {s: [] for s in SECTIONS}
    for name, f in FIELDS.items():
        by_section.setdefault(f.metadata["section"], []).append(name)
    for section, names in by_section.items():
        if not names:
            continue
        with st.expander(section_titles.get(section, section), expanded=section in OPEN):
            cols = st.columns(2)
            for i, name in enumerate(names):
                with cols[i % 2]:
                    values[name] = _widget(name, getattr(cfg, name), lang, f"{prefix}:{name}")
    return values
