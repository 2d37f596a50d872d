"""studio.serve: loopback by default, a password of 10+ characters for anything else, the ssh line, XSRF
and CORS protection on, the Host allow-list, a bounded upload size; the password gate compares in
constant time, rate-limits failures for the whole server, and the server keeps the password from its
children and refuses uploads and cache clearing before sign-in."""

from __future__ import annotations

import socket

import pytest

from studio import serve
from studio.ui import auth


def test_non_loopback_needs_a_password(monkeypatch, capsys):
    monkeypatch.delenv("STUDIO_PASSWORD", raising=False)
    called = []
    monkeypatch.setattr(serve.subprocess, "call", lambda *a, **k: called.append(a) or 0)
    assert serve.serve(host="0.0.0.0", port=8600) == 2
    err = capsys.readouterr().err
    assert "STUDIO_PASSWORD" in err and not called
    monkeypatch.setenv("STUDIO_PASSWORD", "s3cret")  # too short for a wide bind
    assert serve.serve(host="0.0.0.0", port=8600) == 2
    err = capsys.readouterr().err
    assert "at least 10" in err and "6 characters" in err and not called
    monkeypatch.setenv("STUDIO_PASSWORD", "s3cret-long-enough")
    assert serve.serve(host="0.0.0.0", port=8600) == 0
    argv = called[0][0]
    assert argv[argv.index("--server.address") + 1] == "0.0.0.0"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_password(monkeypatch, host):
    monkeypatch.delenv("STUDIO_PASSWORD", raising=False)
    assert serve.check_host(host) is None


def test_ssh_line_and_streamlit_flags(monkeypatch, capsys):
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.9 50000 10.0.0.1 44022")
    assert serve.ssh_hint(8501) == f"ssh -CNg -L 8501:127.0.0.1:8501 alice@{socket.gethostname()} -p 44022"
    monkeypatch.delenv("SSH_CONNECTION")
    assert serve.ssh_hint(8502).endswith("-p 22") and "-L 8502:127.0.0.1:8502" in serve.ssh_hint(8502)
    argv = serve.streamlit_argv("127.0.0.1", 8501)
    flags = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.enableXsrfProtection"] == "true"
    assert argv[4].endswith("studio/app.py")
    monkeypatch.setattr(serve.subprocess, "call", lambda *a, **k: 0)
    serve.serve(port=8501)
    assert "ssh -CNg -L 8501:127.0.0.1:8501" in capsys.readouterr().err


def test_password_compare_and_backoff():
    assert auth.password_ok("abc", "abc")
    assert not auth.password_ok("abd", "abc") and not auth.password_ok("", "abc")
    delays = [auth.failure_delay(n) for n in range(0, 8)]
    assert delays[0] == 0 and delays[1] > 0
    assert all(b >= a for a, b in zip(delays, delays[1:], strict=False)) and delays[-1] == auth.MAX_DELAY_S


def test_password_gate_on_every_page(monkeypatch, tmp_path, tiny_model):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("STUDIO_PASSWORD", "open-sesame")
    monkeypatch.setattr(auth, "failure_delay", lambda n: 0.0)
    page = Path(__file__).resolve().parents[2] / "pages" / "train.py"
    at = AppTest.from_file(str(page)).run()
    assert not at.exception
    assert "sign in" in at.title[0].value and len(at.button) == 1  # only the login form is rendered
    at.text_input[0].set_value("wrong")
    at.button[0].click().run()
    assert at.error and "Wrong password" in at.error[0].value
    at.text_input[0].set_value("open-sesame")
    at.button[0].click().run()
    assert at.title[0].value == "Train"


def _flags(argv: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in zip(argv[5::2], argv[6::2], strict=True):
        out.setdefault(k, []).append(v)
    return out


def test_only_its_own_host_names_and_no_cross_origin(monkeypatch):
    monkeypatch.delenv("STUDIO_ALLOWED_HOSTS", raising=False)
    local = _flags(serve.streamlit_argv("127.0.0.1", 8501))
    assert set(local["--server.allowedHosts"]) == {"localhost", "127.0.0.1", "::1"}
    assert local["--server.enableCORS"] == ["true"] and local["--server.enableXsrfProtection"] == ["true"]
    assert 1 <= int(local["--server.maxUploadSize"][0]) <= 512
    bound = _flags(serve.streamlit_argv("10.1.2.3", 8501))["--server.allowedHosts"]
    assert "10.1.2.3" in bound and "evil.example" not in bound
    wide = _flags(serve.streamlit_argv("0.0.0.0", 8501))["--server.allowedHosts"]
    assert socket.gethostname() in wide and "0.0.0.0" not in wide and "*" not in wide
    monkeypatch.setenv("STUDIO_ALLOWED_HOSTS", "studio.example.org, other")
    assert {"studio.example.org", "other"} <= set(_flags(serve.streamlit_argv("127.0.0.1", 8501))["--server.allowedHosts"])


def test_failed_logins_are_rate_limited_for_the_whole_server(monkeypatch):
    """Parallel sessions guessing at once are served one after the other, not each at its own pace."""
    import threading
    import time

    monkeypatch.setitem(auth._failures, "n", 4)  # already 4 failures in a row: 4 s apart normally
    monkeypatch.setitem(auth._next_slot, "t", 0.0)
    monkeypatch.setattr(auth, "failure_delay", lambda n: 0.3 if n else 0.0)
    answered: list[float] = []
    t0 = time.monotonic()

    def guess(i: int) -> None:
        assert not auth.attempt(f"guess{i}", "correct horse battery")
        answered.append(time.monotonic() - t0)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # six guesses at 0.3 s apart take >= 1.5 s in all; each session sleeping on its own would take 0.3 s
    assert max(answered) >= 1.5, answered
    assert auth._failures["n"] == 10
    monkeypatch.setattr(auth, "failure_delay", lambda n: 0.0)
    assert auth.attempt("correct horse battery", "correct horse battery") and auth._failures["n"] == 0


def test_the_server_keeps_the_password_from_its_children(monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("STUDIO_PASSWORD", "correct horse battery")
    monkeypatch.setattr(auth, "_secret", {})
    auth.take_password_from_env()
    try:
        assert auth.expected_password() == "correct horse battery"
        out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('STUDIO_PASSWORD'))"],
                             capture_output=True, text=True).stdout
        assert out.strip() == "None"
    finally:
        monkeypatch.delenv("STUDIO_PASSWORD", raising=False)


def test_uploads_and_cache_clearing_wait_for_sign_in(monkeypatch):
    from starlette.exceptions import HTTPException
    from streamlit.runtime.app_session import AppSession
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    monkeypatch.setattr(MemoryUploadedFileManager, "add_file", MemoryUploadedFileManager.add_file)
    monkeypatch.setattr(AppSession, "_handle_clear_cache_request", AppSession._handle_clear_cache_request)
    monkeypatch.setattr(auth, "_secret", {"pw": "correct horse battery"})
    monkeypatch.setattr(auth, "_signed_in", set())
    auth.install_server_guards()
    mgr = MemoryUploadedFileManager("/_stcore/upload_file")
    rec = UploadedFileRec(file_id="f1", name="x.jsonl", type="application/json", data=b"x" * 1024)
    with pytest.raises(HTTPException) as e:
        mgr.add_file("anon-session", rec)
    assert e.value.status_code == 403 and not mgr.get_files("anon-session", ["f1"])
    cleared = []
    monkeypatch.setattr("streamlit.runtime.caching.cache_resource.clear", lambda: cleared.append(1))
    monkeypatch.setattr("streamlit.runtime.caching.cache_data.clear", lambda: cleared.append(1))

    class Session:
        id = "anon-session"
        _session_state = type("S", (), {"clear": lambda self: None})()

    AppSession._handle_clear_cache_request(Session())
    assert not cleared
    auth._signed_in.add("anon-session")
    mgr.add_file("anon-session", rec)
    assert mgr.get_files("anon-session", ["f1"])
    AppSession._handle_clear_cache_request(Session())
    assert cleared
