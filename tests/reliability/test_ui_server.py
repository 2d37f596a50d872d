"""The `studio ui` process and its Streamlit child live and die together: `kill PID` (SIGTERM to the CLI
alone, as a service manager or a restart script sends it) must not leave an orphan Streamlit server
holding the port, or the next start fails with "address in use"."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.reliability.test_security import free_port, listening, start_ui, stop_ui

pytestmark = pytest.mark.e2e


def test_sigterm_to_the_cli_stops_the_streamlit_child(tmp_path):
    import psutil

    port = free_port()
    proc = start_ui(tmp_path, port)
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "studio ui runs Streamlit as a child"
        os.kill(proc.pid, signal.SIGTERM)  # the CLI only, not its process group
        proc.wait(timeout=30)
        end = time.time() + 15
        while time.time() < end and (listening(port) or any(c.is_running() and c.status() != "zombie"
                                                              for c in children)):
            time.sleep(0.1)
        assert not listening(port), "an orphan Streamlit server still holds the port"
        assert not any(c.is_running() and c.status() != "zombie" for c in children)
    finally:
        stop_ui(proc)
