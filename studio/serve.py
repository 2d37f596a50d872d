"""Start the Streamlit studio: `python -m studio ui [--host 127.0.0.1] [--port 8501]` (or `make studio`).

Listens on 127.0.0.1 by default and prints the `ssh -CNg -L` line that opens it from a laptop. Any
other address needs STUDIO_PASSWORD (every page then asks for it). Streamlit's XSRF protection stays
on. Training runs are separate processes (core.jobs), so stopping this server never stops a run.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "studio" / "app.py"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ssh_port() -> str:
    """The port this box's sshd answered on (from SSH_CONNECTION), else 22."""
    parts = os.environ.get("SSH_CONNECTION", "").split()
    return parts[3] if len(parts) == 4 else "22"


def ssh_hint(port: int) -> str:
    user = os.environ.get("USER") or getpass.getuser()
    return f"ssh -CNg -L {port}:127.0.0.1:{port} {user}@{socket.gethostname()} -p {ssh_port()}"


def streamlit_argv(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.enableXsrfProtection", "true",
            "--server.fileWatcherType", "none", "--server.maxUploadSize", "2048",
            "--client.toolbarMode", "minimal"]  # no "Deploy" button: this studio runs on your own box


def check_host(host: str) -> str | None:
    """Why `host` may not be used now, or None when it may."""
    if is_loopback(host) or os.environ.get("STUDIO_PASSWORD"):
        return None
    return (f"refusing to listen on {host} without a password: anyone who can reach this machine could "
            f"train, read your data and publish. Set STUDIO_PASSWORD=... and start again, or keep the "
            f"default 127.0.0.1 and open it through SSH: {ssh_hint(8501)}")


def serve(host: str = "127.0.0.1", port: int = 8501, headless: bool = True) -> int:
    problem = check_host(host)
    if problem:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        return 2
    where = "127.0.0.1" if is_loopback(host) else host
    print(f"Fine-Tune Studio on http://{where}:{port}", file=sys.stderr)
    if is_loopback(host):
        print(f"From your laptop, forward the port, then open http://127.0.0.1:{port} :\n    {ssh_hint(port)}",
              file=sys.stderr)
    else:
        print("Every page asks for STUDIO_PASSWORD.", file=sys.stderr)
    print("Stopping this server (Ctrl-C) does not stop training runs.", file=sys.stderr, flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    from core.workspace import workspace_root

    env["STUDIO_WORKSPACE"] = str(workspace_root())  # pinned, so the server and its runs agree on it
    # `kill PID` on this CLI must not orphan Streamlit on the port: as an exception, subprocess.call
    # kills the child before it returns
    try:
        old = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        old = None
    try:
        return subprocess.call(streamlit_argv(host, port), env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _sigterm_to_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
