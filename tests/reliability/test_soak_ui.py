"""Long UI reliability tests (`make soak`): the server restarted 10 times during a run, and four browser
sessions (three on the Train board, one on Chat) for 10 minutes while a run streams.

Both drive `python -m studio ui` in a subprocess and headless Debian Chromium through selenium (the helpers
of tests/browser/test_ui_browser.py). Figures are printed to stderr and written as JSON to
$STUDIO_SOAK_FIGURES (default: the test's tmp folder) so the closing note can quote them.

    .venv/bin/python -m pytest tests/reliability/test_soak_ui.py -m soak -s
    STUDIO_SOAK_SECONDS=120 ...        # a shorter load test while developing (default 600)
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import sys
import time
from pathlib import Path

import pytest

from tests.browser.test_ui_browser import CHROMIUM, DRIVER, _free_port, open_page, start_server, stop_server

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)), reason="needs chromium + chromedriver"),
]
PROGRESS = re.compile(r"(\w+) · step (\d+)/(\d+)")


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1280,1400"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(60)
    return drv


def _board(drv, wait: float = 10.0) -> tuple[str, int] | None:
    """(state, step) from the board's progress line, waiting up to `wait` s for it to be drawn."""
    from selenium.webdriver.common.by import By

    end = time.time() + wait
    while True:
        m = PROGRESS.search(drv.find_element(By.TAG_NAME, "body").text)
        if m or time.time() > end:
            return (m.group(1), int(m.group(2))) if m else None
        time.sleep(0.2)


TITLES = {"home": "Fine-Tune Studio", "train": "Train", "chat": "Chat"}
LINKS = {"home": "Home", "train": "Train", "chat": "Chat A/B"}


def navigate(drv, name: str, timeout: float = 60) -> float:
    """Click the sidebar link to `name` (no reload: one script run over the open websocket) and return the
    seconds until its title is drawn and the script is idle: the render a user waits for in the app."""
    from selenium.webdriver.common.by import By

    from tests.browser.test_ui_browser import _rendered

    link = next(a for a in drv.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
                if a.text.strip().endswith(LINKS[name]))
    t0 = time.time()
    link.click()
    end = t0 + timeout
    from selenium.common.exceptions import StaleElementReferenceException

    while time.time() < end:
        try:  # the page is being redrawn under us: elements come and go
            h1 = drv.find_elements(By.CSS_SELECTOR, "h1")
            if h1 and h1[0].text.strip().startswith(TITLES[name]) and _rendered(drv, None):
                return time.time() - t0
        except StaleElementReferenceException:
            pass
        time.sleep(0.02)
    raise AssertionError(f"{name} did not render in {timeout}s")


def stop_fully(server, port: int, sig: int = signal.SIGTERM) -> None:
    """Stop the server and wait until its port is free: stop_server waits for the `studio ui` CLI only,
    and its Streamlit child may still be shutting down (and answering /_stcore/health) for a moment."""
    import psutil

    stop_server(server, sig)
    end = time.time() + 30
    while time.time() < end and any(c.laddr.port == port and c.status == psutil.CONN_LISTEN
                                    for c in psutil.net_connections("tcp")):
        time.sleep(0.1)


def _streamlit_rss(server) -> int:
    """Resident memory of the Streamlit process the `studio ui` CLI started (bytes)."""
    import psutil

    for p in psutil.Process(server.pid).children(recursive=True):
        if "streamlit" in " ".join(p.cmdline()):
            return p.memory_info().rss
    raise AssertionError("no streamlit process under the studio ui CLI")


def _figures(name: str, data: dict, tmp_path: Path) -> None:
    out = Path(os.environ.get("STUDIO_SOAK_FIGURES") or tmp_path) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(f"\n{name}: {json.dumps(data)}\n(figures in {out})", file=sys.stderr)


@pytest.fixture()
def ws(tmp_path, tiny_model, monkeypatch, general_data):
    ws = tmp_path / "ws"
    (ws / "models").mkdir(parents=True)
    (ws / "models" / "tiny").symlink_to(tiny_model)
    monkeypatch.setenv("STUDIO_WORKSPACE", str(ws))  # runs started here land in this workspace
    return ws


def _start_run(ws: Path, general_data: Path, max_steps: int) -> Path:
    from core import jobs
    from core.config import RunConfig, save_config

    cfg = RunConfig(pretrained_model_name_or_path="tiny", data_path=str(general_data), max_length=64, batch_size=2,
                    accumulative_counts=1, max_steps=max_steps, save_steps=max(50, max_steps // 8), save_total_limit=2,
                    evaluation_freq=max(100, max_steps // 4), evaluation_inputs=["hi"], eval_max_new_tokens=8,
                    lr=1e-3, lora_r=4, lora_alpha=8, gradient_checkpointing="false")
    path = save_config(cfg, ws / "configs" / "soak.yaml")
    run = jobs.start_run(path)
    deadline = time.time() + 120
    while time.time() < deadline and (jobs.rundir.read_status(run).get("step") or 0) < 1:
        time.sleep(0.5)
    assert jobs.run_state(run)["state"] == "running", jobs.rundir.log_tail(run)
    return run


def test_server_restarted_10_times_during_a_run(ws, general_data, tmp_path):
    from core import jobs, rundir

    run = _start_run(ws, general_data, max_steps=int(os.environ.get("STUDIO_SOAK_RESTART_STEPS", "600")))
    pid = rundir.read_status(run)["pid"]
    port = _free_port()
    drv = _browser()
    server = start_server(ws, port)
    reattach, steps_seen = [], []
    try:
        open_page(drv, port, "train", wait_text=run.name)  # the first load imports everything
        for i in range(10):
            stop_fully(server, port, signal.SIGKILL if i % 2 else signal.SIGTERM)  # a crash, or Ctrl-C
            assert jobs.pid_alive(pid), f"restart {i + 1}: the run died with the server"
            before = rundir.read_status(run).get("step") or 0
            t0 = time.time()
            server = start_server(ws, port)
            open_page(drv, port, "train", wait_text=run.name, timeout=90)
            # re-attached: the board shows this run live, and its step moves on while we watch
            deadline = time.time() + 90
            board = _board(drv)
            while time.time() < deadline and not (board and board[0] == "running" and board[1] > before):
                time.sleep(0.5)
                board = _board(drv)
            assert board and board[0] == "running" and board[1] > before, (i, board, before)
            reattach.append(round(time.time() - t0, 2))
            steps_seen.append(board[1])
        deadline = time.time() + 1800
        while jobs.run_state(run)["state"] not in jobs.TERMINAL and time.time() < deadline:
            time.sleep(2)
        status = jobs.run_state(run)
        assert status["state"] == "finished", (status, rundir.log_tail(run))
        open_page(drv, port, "train", wait_text="finished")
        steps = [m["step"] for m in rundir.metrics(run)]
        assert steps == list(range(1, status["max_steps"] + 1)), "no step lost or repeated"
        assert (run / rundir.ADAPTER / "adapter_model.safetensors").is_file()
    finally:
        drv.quit()
        stop_server(server)
        if jobs.run_state(run)["state"] not in jobs.TERMINAL:
            jobs.stop_run(str(run), timeout=30)
    _figures("ui_restarts", {"restarts_survived": len(reattach), "reattach_seconds": reattach,
                             "board_steps_seen": steps_seen, "run_max_steps": status["max_steps"]}, tmp_path)


def test_three_boards_and_a_chat_for_ten_minutes(ws, general_data, tmp_path):
    from core import jobs, rundir

    seconds = float(os.environ.get("STUDIO_SOAK_SECONDS", "600"))
    run = _start_run(ws, general_data, max_steps=1_000_000)
    port = _free_port()
    server = start_server(ws, port)
    drivers = []
    renders: dict[str, list[float]] = {"train": [], "chat": []}
    reloads: list[float] = []
    rss: list[tuple[float, int]] = []
    steps: list[int] = []
    try:
        pages = ["train", "train", "train", "chat"]
        for name in pages:
            drivers.append(_browser())
            open_page(drivers[-1], port, name, timeout=120)  # warm-up: first loads import torch etc.
        t_start = time.time()
        while time.time() - t_start < seconds:
            for i, (drv, name) in enumerate(zip(drivers, pages, strict=True)):
                if len(rss) % 10 == i:  # now and then a full reload (new websocket session)
                    reloads.append(round(open_page(drv, port, name, timeout=60), 3))
                navigate(drv, "home")
                renders[name].append(round(navigate(drv, name), 3))
                if name == "train":
                    board = _board(drv)
                    assert board and board[0] == "running", (board, drv.find_element("tag name", "body").text[:800])
                    steps.append(board[1])
            rss.append((round(time.time() - t_start, 1), _streamlit_rss(server)))
            time.sleep(2.0)  # the boards refresh themselves (st.fragment every 3 s) in between
        assert jobs.run_state(run)["state"] == "running"
    finally:
        for d in drivers:
            d.quit()
        stop_server(server)
        jobs.stop_run(str(run), timeout=60)
    all_r = sorted(renders["train"] + renders["chat"])
    p95 = all_r[int(0.95 * (len(all_r) - 1))]
    n = max(1, len(rss) // 5)
    first = statistics.median(v for _, v in rss[:n]) / 2**20
    last = statistics.median(v for _, v in rss[-n:]) / 2**20
    figures = {
        "seconds": seconds, "page_loads": len(all_r), "render_s_median": statistics.median(all_r),
        "render_s_p95": p95, "render_s_max": all_r[-1],
        "full_reload_s_median": statistics.median(reloads) if reloads else None,
        "full_reload_s_max": max(reloads) if reloads else None,
        "train_render_s_median": statistics.median(renders["train"]),
        "chat_render_s_median": statistics.median(renders["chat"]),
        "streamlit_rss_mib_first_fifth": round(first, 1), "streamlit_rss_mib_last_fifth": round(last, 1),
        "streamlit_rss_mib_max": round(max(v for _, v in rss) / 2**20, 1), "rss_samples": len(rss),
        "run_steps_during_test": (steps[0], steps[-1]) if steps else None,
        "metrics_rows": len(rundir.metrics(run)),
    }
    _figures("ui_load", figures, tmp_path)
    assert steps and steps[-1] > steps[0], "the boards showed the run moving"
    assert p95 <= 1.0, figures
    assert last - first <= max(40.0, 0.10 * first), f"Streamlit memory grew: {figures}"
