"""What every page calls first: `lang = page_setup()` (language switch, password gate).

Pages also run standalone (AppTest.from_file("pages/home.py")), so nothing here depends on
studio/app.py having run. The language lives in the URL (?lang=zh), so a refresh keeps it, and in
workspace/studio.json, so a new tab opens in the last language chosen.
"""

from __future__ import annotations

import streamlit as st

from studio.ui import state
from studio.ui.i18n import LANGS, t


def current_lang() -> str:
    q = st.query_params.get("lang")
    if q in LANGS:
        st.session_state["lang"] = q
        return q
    lang = st.session_state.get("lang") or state.load().get("lang") or "en"
    lang = lang if lang in LANGS else "en"
    st.session_state["lang"] = lang
    st.query_params["lang"] = lang
    return lang


def language_switch() -> str:
    lang = current_lang()
    choice = st.sidebar.radio("Language / 语言", list(LANGS), index=list(LANGS).index(lang),
                              format_func=LANGS.get, horizontal=True)
    if choice != lang:
        st.session_state["lang"] = choice
        st.query_params["lang"] = choice
        state.update(lang=choice)
        st.rerun()
    return lang


def page_setup() -> str:
    """Language switch and password gate; returns the language ("en" or "zh")."""
    from studio.ui.auth import require_password

    current_lang()  # the sign-in page speaks the chosen language; nothing is written before sign-in
    require_password()
    lang = language_switch()
    st.sidebar.caption(t("common.workspace", path=str(state.path().parent)))
    return lang


def show_error(e: BaseException) -> None:
    """A StudioError (or DataError / ConfigError) as one message with its hint."""
    hint = getattr(e, "hint", None)
    msg = str(e).split("\n")[0]
    st.error(msg + (f"\n\n{t('common.hint')}: {hint}" if hint and hint not in msg else ""))
