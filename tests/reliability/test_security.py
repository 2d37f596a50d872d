"""Security on a shared dev box, tested on a live server where it matters.

- `python -m studio ui` listens on 127.0.0.1 only (checked on the live sockets, not the argv);
- a wider bind without STUDIO_PASSWORD (or with one shorter than 10 characters) exits 2 before anything
  listens; with it, the server starts and Streamlit's XSRF check still answers 403 to an upload without a token;
- a websocket whose Host or Origin is not the studio's own (DNS rebinding, a foreign page) is refused;
- before sign-in, an upload from a live anonymous session is refused (403), XSRF token or not;
- the password gate compares with hmac.compare_digest and each failure makes the next answer slower;
- upload names cannot leave the workspace (../, absolute paths, symlinks, NUL);
- a planted hub token appears in no file, no output and no process command line after a publish through
  the CLI, nor in any file or on the page after a publish through the Publish page.

    .venv/bin/python -m pytest tests/reliability/test_security.py
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.reliability.conftest import REPO

pytestmark = pytest.mark.e2e
TOKEN = "hf_PLANTEDsecurity0d9e8f7a6b5c"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(ws: Path, port: int, *args: str, env: dict | None = None, wait: bool = True) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if k not in ("STUDIO_PASSWORD", "STUDIO_HOST")}
    full.update(STUDIO_WORKSPACE=str(ws), PYTHONPATH=str(REPO), **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "studio", "ui", "--port", str(port), *args], cwd=REPO, env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    if wait and not health(port, 90):
        stop_ui(proc)
        raise RuntimeError("the studio did not start: " + proc.stderr.read().decode(errors="replace")[-2000:])
    return proc


def health(port: int, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return True
        except OSError:
            time.sleep(0.25)
    return False


def stop_ui(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the CLI and its streamlit child only (own session)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def listening(port: int) -> set[str]:
    import psutil

    return {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def other_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (what a neighbour on the network would dial)."""
    import psutil

    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


# ---------------------------------------------------------------------------- bind address

def test_default_server_listens_on_loopback_only(tmp_path):
    port = free_port()
    proc = start_ui(tmp_path, port)
    try:
        addrs = listening(port)
        assert addrs and addrs <= {"127.0.0.1", "::1"}, addrs
        for ip in other_addresses():
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(2)
                s.connect((ip, port))  # refused: nothing listens there
    finally:
        stop_ui(proc)


def test_wide_bind_without_password_refuses_to_start(tmp_path):
    port = free_port()
    proc = start_ui(tmp_path, port, "--host", "0.0.0.0", wait=False)
    try:
        assert proc.wait(timeout=60) == 2
        err = proc.stderr.read().decode()
        assert "STUDIO_PASSWORD" in err and "0.0.0.0" in err
        assert not listening(port)
    finally:
        stop_ui(proc)


def test_wide_bind_with_password_starts_and_keeps_xsrf_on(tmp_path):
    port = free_port()
    proc = start_ui(tmp_path, port, "--host", "0.0.0.0", env={"STUDIO_PASSWORD": "correct horse battery"})
    try:
        assert listening(port) & {"0.0.0.0", "::"}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/_stcore/upload_file/session/file", method="PUT",
                                     data=b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../a\""
                                          b"\r\n\r\nhello\r\n--x--\r\n",
                                     headers={"Content-Type": "multipart/form-data; boundary=x"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 403 and b"XSRF" in e.value.read()
    finally:
        stop_ui(proc)
    assert not list(tmp_path.rglob("a")), "nothing was written"


# ---------------------------------------------------------------------------- its own origin only

def ws_handshake(port: int, host: str, origin: str | None) -> int:
    """The HTTP status a websocket upgrade to the studio gets with these Host and Origin headers (101: open)."""
    import base64

    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET /_stcore/stream HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: streamlit"]
    if origin:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = s.recv(4096)
    return int(head.split()[1])


def test_a_rebound_host_or_a_foreign_origin_gets_no_websocket(tmp_path):
    """DNS rebinding: a page on evil.example re-points its name at 127.0.0.1; the browser then sends
    Host and Origin evil.example, same-origin to Streamlit unless server.allowedHosts says otherwise."""
    port = free_port()
    proc = start_ui(tmp_path, port)
    try:
        assert ws_handshake(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 101
        assert ws_handshake(port, f"localhost:{port}", f"http://localhost:{port}") == 101
        assert ws_handshake(port, f"evil.example:{port}", f"http://evil.example:{port}") != 101
        assert ws_handshake(port, f"evil.example:{port}", None) != 101
        assert ws_handshake(port, f"127.0.0.1:{port}", "http://evil.example") != 101  # cross-origin
    finally:
        stop_ui(proc)


def test_a_short_password_refuses_a_wide_bind(tmp_path):
    port = free_port()
    proc = start_ui(tmp_path, port, "--host", "0.0.0.0", env={"STUDIO_PASSWORD": "a"}, wait=False)
    try:
        assert proc.wait(timeout=60) == 2
        assert "at least 10" in proc.stderr.read().decode()
        assert not listening(port)
    finally:
        stop_ui(proc)


# ---------------------------------------------------------------------------- the password gate

def _anonymous_session(port: int) -> tuple[object, str]:
    """A websocket session that never signed in, as any client on the network can open one: (socket, id)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    ws = connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"],
                 origin=f"http://127.0.0.1:{port}", open_timeout=30)
    msg = BackMsg()
    msg.rerun_script.query_string = ""
    ws.send(msg.SerializeToString())
    end = time.time() + 60
    while time.time() < end:
        fwd = ForwardMsg()
        fwd.ParseFromString(ws.recv(timeout=60))
        if fwd.WhichOneof("type") == "new_session" and fwd.new_session.initialize.session_id:
            return ws, fwd.new_session.initialize.session_id
    raise AssertionError("no session id from the studio")


def test_uploads_wait_for_sign_in_on_a_live_server(tmp_path):
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    port = free_port()
    proc = start_ui(tmp_path, port, env={"STUDIO_PASSWORD": "correct horse battery"})
    try:
        ws, sid = _anonymous_session(port)
        token = generate_xsrf_token_string()  # the client picks cookie and header both: XSRF alone stops no one
        body = (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\n"
                b"Content-Type: application/json\r\n\r\n" + b"{}\n" * 1000 + b"\r\n--x--\r\n")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/_stcore/upload_file/{sid}/file1", method="PUT",
                                     data=body, headers={"Content-Type": "multipart/form-data; boundary=x",
                                                         "X-Xsrftoken": token,
                                                         "Cookie": f"_streamlit_xsrf={token}"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 403, e.value.read()
        ws.close()
    finally:
        stop_ui(proc)


def test_password_is_compared_in_constant_time(monkeypatch):
    from studio.ui import auth

    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    assert not auth.password_ok("guess", "secret") and auth.password_ok("secret", "secret")
    assert len(calls) == 2 and all(isinstance(a, bytes) for a, _ in calls)


def test_repeated_wrong_passwords_get_slower(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from studio.ui import auth

    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("STUDIO_PASSWORD", "correct horse")
    monkeypatch.setitem(auth._failures, "n", 0)
    monkeypatch.setitem(auth._next_slot, "t", 0.0)
    at = AppTest.from_file(str(REPO / "pages" / "home.py"), default_timeout=60).run()
    took = []
    for guess in ("a", "b", "c"):
        at.text_input[0].set_value(guess)
        t0 = time.perf_counter()
        at.button[0].click().run()
        took.append(time.perf_counter() - t0)
        assert at.error and not at.exception
    assert took[0] >= auth.failure_delay(1) and took[2] >= auth.failure_delay(3) > auth.failure_delay(1)
    assert took[2] - took[0] > 1.0, took
    at.text_input[0].set_value("correct horse")
    at.button[0].click().run()
    assert not at.exception and auth._failures["n"] == 0 and "sign in" not in at.title[0].value


# ---------------------------------------------------------------------------- upload names

HOSTILE = ["../escape.jsonl", "../../etc/cron.d/x", "/etc/passwd", "a/../../escape.jsonl", "sub/../../x.jsonl",
           "link_out/x.jsonl", "planted.jsonl", "nul\x00.jsonl", ""]


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: repr(n))
def test_upload_names_cannot_leave_the_folder(tmp_path, name):
    from studio.ui.files import save_bytes

    data = tmp_path / "ws" / "data"
    data.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (data / "link_out").symlink_to(outside)  # a symlink inside the folder pointing out of it
    (data / "planted.jsonl").symlink_to(outside / "target.jsonl")  # a file symlink planted earlier
    with pytest.raises(ValueError, match="refused file name"):
        save_bytes(data, name, b"{}\n")
    assert not any(outside.iterdir()) and not (tmp_path / "ws" / "escape.jsonl").exists()
    assert not (tmp_path / "escape.jsonl").exists()


def test_plain_upload_names_land_inside(tmp_path):
    from studio.ui.files import save_bytes

    p = save_bytes(tmp_path, "my data (v2).jsonl", b"{}\n")
    assert p.parent == tmp_path.resolve() and p.read_bytes() == b"{}\n"
    p = save_bytes(tmp_path, "images/eye.png", b"png")
    assert p == tmp_path.resolve() / "images" / "eye.png"


def test_every_upload_widget_goes_through_save_bytes():
    """Pages that keep an uploaded file write it only with studio.ui.files.save_bytes (safe_join inside)."""
    for page in (REPO / "pages").glob("*.py"):
        text = page.read_text(encoding="utf-8")
        if "file_uploader" not in text:
            continue
        writes = re.findall(r"(?<![\w.])open\(|\.write_bytes\(|atomic_write_bytes\(|shutil\.copy", text)
        assert not writes, f"{page.name} writes files without save_bytes: {writes}"


# ---------------------------------------------------------------------------- the hub token

def _cmdline_sampler(found: list, stop: threading.Event) -> None:
    while not stop.is_set():
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if TOKEN.encode() in (d / "cmdline").read_bytes():
                        found.append(d.name)
                except OSError:
                    pass
        time.sleep(0.02)


def _files_with_token(*roots: Path) -> list[str]:
    return [str(p) for root in roots if root.exists() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and TOKEN.encode() in p.read_bytes()]


@pytest.fixture()
def publishable(tmp_path, tiny_model) -> Path:
    """A workspace with one finished run whose adapter can be published (made without training)."""
    import json

    ws = tmp_path / "ws"
    run = ws / "runs" / "20260101-000000-demo"
    (run / "adapter").mkdir(parents=True)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                   LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM")).save_pretrained(run / "adapter")
    (run / "status.json").write_text(json.dumps({"state": "finished", "run_id": run.name}))
    (run / "config.yaml").write_text(f"pretrained_model_name_or_path: {tiny_model}\n")
    (ws / "models").mkdir()
    (ws / "models" / "tiny").symlink_to(tiny_model)
    return ws


def test_planted_token_leaks_nowhere_after_cli_publish(publishable, tmp_path):
    from tests.fakehub import FakeHub

    home = tmp_path / "home"
    home.mkdir()
    adapter = next((publishable / "runs").iterdir()) / "adapter"
    found: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=_cmdline_sampler, args=(found, stop), daemon=True)
    with FakeHub(token=TOKEN) as fake:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "MODELSCOPE_API_TOKEN")}
        env.update(HOME=str(home), STUDIO_WORKSPACE=str(publishable), HF_TOKEN=TOKEN, HF_ENDPOINT=fake.url,
                   HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(REPO))
        sampler.start()
        try:
            proc = subprocess.run([sys.executable, "-m", "studio", "publish", "hf", str(adapter), "--repo",
                                   "alice/tiny-lora", "--space", "--base-model", "internlm/internlm2-chat-1_8b"], cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=300)
        finally:
            stop.set()
            sampler.join()
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert fake.files("model", "alice/tiny-lora")
        leaks = fake.where_is(TOKEN)
    assert not found, f"the token was on the command line of processes {found}"
    assert TOKEN not in proc.stdout + proc.stderr
    assert _files_with_token(publishable, home, tmp_path) == []
    assert all(w.lower().endswith(("header authorization", "header cookie")) for w in leaks), leaks


def test_planted_token_leaks_nowhere_after_page_publish(publishable, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.fakehub import FakeHub

    monkeypatch.setenv("STUDIO_WORKSPACE", str(publishable))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    from huggingface_hub import constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)  # read at import; xet cannot be faked
    with FakeHub(token=TOKEN) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        at = AppTest.from_file(str(REPO / "pages" / "publish.py"), default_timeout=180).run()
        at.text_input(key="repo").set_value("alice/tiny-lora")
        at.text_input(key="token").set_value(TOKEN)
        next(w for w in at.text_input if "base" in w.label.lower()).set_value("internlm/internlm2-chat-1_8b")
        at.run()
        at.button(key="publish_go").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.success, [e.value for e in at.error]
        assert fake.files("model", "alice/tiny-lora")
    shown = "\n".join(str(getattr(e, "value", "")) for e in [*at.code, *at.json, *at.success, *at.markdown])
    assert TOKEN not in shown
    assert _files_with_token(publishable, tmp_path) == []
    for p in (hf_constants.HF_TOKEN_PATH, hf_constants.HF_STORED_TOKENS_PATH):
        assert not Path(p).is_file() or TOKEN not in Path(p).read_text(errors="replace")
