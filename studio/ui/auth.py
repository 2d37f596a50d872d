"""The password gate: when STUDIO_PASSWORD is set, every page asks for it before showing anything.

The server refuses to listen beyond 127.0.0.1 without it (studio/serve.py). The comparison is
constant-time (hmac.compare_digest) and each failed attempt makes the next answer slower, for the
whole server, so guessing over the network is not worth it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time

import streamlit as st

from studio.ui.i18n import t

_lock = threading.Lock()
_failures = {"n": 0}
MAX_DELAY_S = 8.0


def password_ok(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def failure_delay(n_failures: int) -> float:
    """Seconds to wait before answering the n-th failure in a row (0.5, 1, 2, 4, 8, 8...)."""
    return min(MAX_DELAY_S, 0.25 * 2 ** max(0, n_failures)) if n_failures else 0.0


def _token(expected: str) -> str:
    # the session remembers a digest, never the password itself
    return hashlib.sha256(b"studio-auth:" + expected.encode("utf-8")).hexdigest()


def require_password() -> None:
    """Stop the page here until the right password was given in this browser session."""
    expected = os.environ.get("STUDIO_PASSWORD", "")
    if not expected or st.session_state.get("_studio_auth") == _token(expected):
        return
    st.title(t("auth.title"))
    with st.form("studio_login"):
        given = st.text_input(t("auth.password"), type="password")
        submitted = st.form_submit_button(t("auth.enter"))
    if submitted:
        if password_ok(given, expected):
            with _lock:
                _failures["n"] = 0
            st.session_state["_studio_auth"] = _token(expected)
            st.rerun()
        with _lock:
            _failures["n"] += 1
            n = _failures["n"]
        time.sleep(failure_delay(n))
        st.error(t("auth.wrong"))
    st.stop()
