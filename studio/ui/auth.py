"""The password gate: when STUDIO_PASSWORD is set, nothing happens before the right password was given.

- every page (and studio/app.py, before it warms anything up) calls `require_password()`;
- the server process itself refuses, for a session that has not signed in, what Streamlit would do
  before any page runs: storing an uploaded file, clearing the shared caches (`install_server_guards`,
  run by studio/serve.py before Streamlit starts);
- failed attempts are rate-limited for the whole server, not per session: every attempt takes the next
  free slot, and each failure widens the gap (0.5, 1, 2, 4, 8 s), so parallel sessions guess no faster
  than one;
- the server moves the password out of its environment at start (`take_password_from_env`), so no
  child process (trainer, download, merge) inherits it.

The server refuses to listen beyond 127.0.0.1 without a password of at least 10 characters
(studio/serve.py). Tests: tests/unit/test_ui_serve.py, tests/reliability/test_security.py.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time

import streamlit as st

from studio.ui.i18n import t

ENV = "STUDIO_PASSWORD"
MAX_DELAY_S = 8.0
_lock = threading.Lock()
_failures = {"n": 0}  # failed attempts in a row, for the whole server
_next_slot = {"t": 0.0}  # monotonic time before which no attempt is checked, for the whole server
_secret: dict[str, str] = {}  # the password once taken out of os.environ
_signed_in: set[str] = set()  # Streamlit session ids that gave the right password


def take_password_from_env() -> None:
    """Keep the password in this process only: children started later (trainer, downloads) never see it."""
    pw = os.environ.pop(ENV, None)
    if pw is not None:
        _secret["pw"] = pw


def expected_password() -> str:
    return _secret.get("pw") or os.environ.get(ENV, "")


def password_ok(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def failure_delay(n_failures: int) -> float:
    """Seconds between attempts after n failures in a row (0.5, 1, 2, 4, 8, 8...)."""
    return min(MAX_DELAY_S, 0.25 * 2 ** max(0, n_failures)) if n_failures else 0.0


def attempt(given: str, expected: str) -> bool:
    """Check one login attempt, waiting for this server's next free slot first; True when right.

    The slot is taken under a lock before waiting, so N sessions guessing at once are served one
    after the other, failure_delay apart, and a wrong answer comes back only after the delay it earned.
    """
    with _lock:
        now = time.monotonic()
        slot = max(now, _next_slot["t"])
        _next_slot["t"] = slot + failure_delay(_failures["n"])
    if slot > now:
        time.sleep(slot - now)
    if password_ok(given, expected):
        with _lock:
            _failures["n"] = 0
            _next_slot["t"] = 0.0
        return True
    with _lock:
        _failures["n"] += 1
        delay = failure_delay(_failures["n"])
        _next_slot["t"] = max(_next_slot["t"], time.monotonic() + delay)
    time.sleep(delay)
    return False


def _token(expected: str) -> str:
    # the session remembers a digest, never the password itself
    return hashlib.sha256(b"studio-auth:" + expected.encode("utf-8")).hexdigest()


def _session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else None


def session_signed_in(session_id: str) -> bool:
    """May this Streamlit session do what needs a login? (always, when no password is set)"""
    return not expected_password() or session_id in _signed_in


def require_password() -> None:
    """Stop the page here until the right password was given in this browser session."""
    expected = expected_password()
    if not expected or st.session_state.get("_studio_auth") == _token(expected):
        return
    st.title(t("auth.title"))
    with st.form("studio_login"):
        given = st.text_input(t("auth.password"), type="password")
        submitted = st.form_submit_button(t("auth.enter"))
    if submitted:
        if attempt(given, expected):
            st.session_state["_studio_auth"] = _token(expected)
            sid = _session_id()
            if sid:
                _signed_in.add(sid)
            st.rerun()
        st.error(t("auth.wrong"))
    st.stop()


def install_server_guards() -> None:
    """In the Streamlit server process, before it serves: refuse uploads and cache clearing to a session
    that has not signed in (Streamlit accepts both from any websocket before a page has run).

    An upload is read (at most server.maxUploadSize) and then refused with 403, so nothing of it stays in
    memory. These are Streamlit internals: if they moved, the server refuses to start rather than run unguarded.
    """
    from starlette.exceptions import HTTPException
    from streamlit.runtime.app_session import AppSession
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager

    add_file = MemoryUploadedFileManager.add_file
    clear_caches = AppSession._handle_clear_cache_request
    if getattr(add_file, "_studio_guard", False):
        return

    def guarded_add_file(self, session_id: str, file) -> None:
        if not session_signed_in(session_id):
            raise HTTPException(status_code=403, detail="sign in first")
        return add_file(self, session_id, file)

    def guarded_clear_caches(self) -> None:
        if session_signed_in(self.id):
            clear_caches(self)

    guarded_add_file._studio_guard = True  # type: ignore[attr-defined]
    MemoryUploadedFileManager.add_file = guarded_add_file
    AppSession._handle_clear_cache_request = guarded_clear_caches
