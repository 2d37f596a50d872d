"""Start the Streamlit studio: `python -m studio ui [--host 127.0.0.1] [--port 8501]` (or `make studio`).

Listens on 127.0.0.1 by default and prints the `ssh -CNg -L` line that opens it from a laptop. Any
other address needs STUDIO_PASSWORD, at least 10 characters (every page then asks for it). The server
serves only its own origin: `server.allowedHosts` lists the names that reach it (localhost, 127.0.0.1,
::1, the bound address; for a wide bind this machine's names and addresses; more in
STUDIO_ALLOWED_HOSTS, comma-separated, e.g. a proxy's name), so a web page that DNS-rebinds its name to
127.0.0.1 gets no websocket; cross-origin access stays refused (server.enableCORS=true) and XSRF on.
Uploads are capped at MAX_UPLOAD_MB and refused before login (studio/ui/auth.py); the Streamlit process
is started through this module (`python -m studio.serve run APP ...`) to install those guards first.
Training runs are separate processes (core.jobs), so stopping this server never stops a run.
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


MIN_PASSWORD = 10
# a data file or an image; a bigger corpus is given by its path on this box. Streamlit keeps uploads in
# memory for the session's life, so this bounds what one signed-in client can hold there per file.
MAX_UPLOAD_MB = 256
WIDE = ("0.0.0.0", "::", "")


def _interface_addresses() -> list[str]:
    """This machine's own IPv4 and IPv6 addresses, read from the kernel (no DNS, no network)."""
    found: list[str] = []
    try:
        import fcntl
        import struct

        for _, name in socket.if_nameindex():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:  # SIOCGIFADDR: the interface's IPv4 address
                    packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
                except OSError:
                    continue
                found.append(socket.inet_ntoa(packed[20:24]))
    except (ImportError, OSError):
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.append(str(ipaddress.ip_address(int(raw, 16))))
    except (OSError, ValueError, IndexError):
        pass
    return found


def allowed_hosts(host: str) -> list[str]:
    """The Host names a browser may use to reach this server (Streamlit refuses a websocket for any other)."""
    names = ["localhost", "127.0.0.1", "::1"]
    if host not in WIDE:
        names.append(host)
    elif not is_loopback(host):
        names += [socket.gethostname(), socket.getfqdn(), *_interface_addresses()]
    names += [n.strip() for n in os.environ.get("STUDIO_ALLOWED_HOSTS", "").split(",")]
    return list(dict.fromkeys(n for n in names if n))


def streamlit_argv(host: str, port: int) -> list[str]:
    hosts = [a for name in allowed_hosts(host) for a in ("--server.allowedHosts", name)]
    return [sys.executable, "-m", "studio.serve", "run", str(APP),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.enableXsrfProtection", "true",
            "--server.enableCORS", "true",  # CORS protection on: no cross-origin reads or websockets
            "--server.fileWatcherType", "none", "--server.maxUploadSize", str(MAX_UPLOAD_MB),
            "--client.toolbarMode", "minimal",  # no "Deploy" button: this studio runs on your own box
            *hosts]


def check_host(host: str) -> str | None:
    """Why `host` may not be used now, or None when it may."""
    if is_loopback(host):
        return None
    password = os.environ.get("STUDIO_PASSWORD", "")
    if not password:
        return (f"refusing to listen on {host} without a password: anyone who can reach this machine could "
                f"train, read your data and publish. Set STUDIO_PASSWORD=... ({MIN_PASSWORD}+ characters) and "
                f"start again, or keep the default 127.0.0.1 and open it through SSH: {ssh_hint(8501)}")
    if len(password) < MIN_PASSWORD:
        return (f"refusing to listen on {host}: STUDIO_PASSWORD has {len(password)} characters, it needs at least "
                f"{MIN_PASSWORD} for a server others can reach. Choose a longer one (e.g. four random words), or "
                f"keep the default 127.0.0.1 and open it through SSH: {ssh_hint(8501)}")
    return None


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


def streamlit_main() -> None:
    """The Streamlit server process (`python -m studio.serve run APP ...`): the password taken out of the
    environment and the login guards installed, then Streamlit's own command line."""
    sys.path.insert(0, str(ROOT))
    from streamlit.web.cli import main

    from studio.ui import auth

    auth.take_password_from_env()
    auth.install_server_guards()
    main(prog_name="streamlit")


if __name__ == "__main__":
    streamlit_main()
