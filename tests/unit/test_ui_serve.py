"""studio.serve: loopback by default, a password for anything else, the ssh line, XSRF kept on; the
password gate compares in constant time and slows down repeated failures."""

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
    monkeypatch.setenv("STUDIO_PASSWORD", "s3cret")
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
