"""The studio in a real browser: `python -m studio ui` headless, every page opened in headless Chromium
(Debian's chromium + chromedriver through selenium), screenshots saved, no page shows an exception.
Then the restart test: a run started by clicking in the page survives killing the Streamlit server, and
the restarted server's Train page shows it still running.

    .venv/bin/python -m pytest tests/browser -m e2e
    STUDIO_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/browser -k pages   # refresh README images

Skipped where /usr/bin/chromium, chromedriver or selenium are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PAGES = ["home", "data", "config", "train", "chat", "merge", "publish"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                       reason="needs Debian's chromium and chromium-driver"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ws: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, STUDIO_WORKSPACE=str(ws), PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "studio", "ui", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("the studio did not start: " + proc.stderr.read().decode(errors="replace")[-2000:])


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)  # the CLI and the streamlit process it started, nothing else
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1400,1700", "--hide-scrollbars"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


BUSY = ('[data-testid="stStatusWidgetRunningIcon"], [data-testid="stStatusWidgetRunningManIcon"], '
        '[data-testid="stStatusWidgetNewYearsIcon"], [data-testid="stSpinner"], [data-testid="stSkeleton"]')


def _rendered(drv, wait_text: str | None) -> bool:
    """The page's title is there, the script is not running and nothing is still loading."""
    from selenium.webdriver.common.by import By

    h1 = drv.find_elements(By.CSS_SELECTOR, "h1")
    if not h1 or not h1[0].text.strip() or drv.find_elements(By.CSS_SELECTOR, BUSY):
        return False
    return wait_text is None or wait_text in drv.find_element(By.TAG_NAME, "body").text


def open_page(drv, port: int, name: str, lang: str = "en", wait_text: str | None = None, timeout: float = 60) -> float:
    """Load a page and wait until its title is rendered and the script is idle; returns seconds taken."""
    from selenium.webdriver.common.by import By

    url = f"http://127.0.0.1:{port}/{'' if name == 'home' else name}?lang={lang}"
    t0 = time.time()
    drv.get(url)
    deadline = t0 + timeout
    idle_since = None
    while time.time() < deadline:
        if _rendered(drv, wait_text):
            if idle_since is None:
                idle_since = time.time()
            elif time.time() - idle_since >= 0.5:  # idle twice, half a second apart: the run is over
                return idle_since - t0
        else:
            idle_since = None
        time.sleep(0.1)
    raise AssertionError(f"{url} did not finish rendering in {timeout}s:\n{drv.find_element(By.TAG_NAME, 'body').text[:2000]}")


def click_page(drv, name: str, timeout: float = 60) -> float:
    """Go to `name` through its sidebar link (one script run over the open websocket, as a user moves
    around after the first load); seconds until the new title is drawn and the script is idle."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    link = next(a for a in drv.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
                if (a.get_attribute("href") or "").split("?")[0].rstrip("/").endswith("/" + name))
    before = drv.find_elements(By.CSS_SELECTOR, "h1")[0].text
    t0 = time.time()
    link.click()
    while time.time() - t0 < timeout:
        try:  # the page is redrawn under us: elements come and go
            h1 = drv.find_elements(By.CSS_SELECTOR, "h1")
            if h1 and h1[0].text.strip() and h1[0].text != before and _rendered(drv, None):
                return time.time() - t0
        except StaleElementReferenceException:
            pass
        time.sleep(0.02)
    raise AssertionError(f"{name} did not render in {timeout}s")


def assert_no_exception(drv, name: str) -> None:
    from selenium.webdriver.common.by import By

    assert not drv.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), name
    assert "Traceback" not in drv.page_source, name


def _workspace_with_data(ws: Path, tiny: Path, max_steps: int) -> Path:
    from core.config import RunConfig, save_config
    from core.data import build_identity, write_samples

    (ws / "models").mkdir(parents=True, exist_ok=True)
    if not (ws / "models" / "tiny").exists():
        (ws / "models" / "tiny").symlink_to(tiny)
    data = ws / "data" / "identity.jsonl"
    write_samples(build_identity("小天", "Fine-Tune Studio", repeat=2), data)
    cfg = RunConfig(pretrained_model_name_or_path="tiny", data_path=str(data), max_length=128, batch_size=2,
                    accumulative_counts=1, max_steps=max_steps, save_steps=10, evaluation_freq=20,
                    eval_max_new_tokens=16, lr=1e-3, lora_r=8, lora_alpha=16, gradient_checkpointing="false",
                    evaluation_inputs=["请介绍一下你自己", "Please introduce yourself", "你是谁"])
    return save_config(cfg, ws / "configs" / "identity.yaml")


def test_pages_in_chromium(browser, tiny_model, tmp_path):
    from core import jobs

    ws = tmp_path / "ws"
    cfg = _workspace_with_data(ws, tiny_model, 40)
    old = os.environ.get("STUDIO_WORKSPACE")
    os.environ["STUDIO_WORKSPACE"] = str(ws)
    try:  # a finished run, so the Train, Chat, Merge and Publish pages have something to show
        run = jobs.start_run(cfg)
        deadline = time.time() + 240
        while jobs.run_state(run)["state"] not in jobs.TERMINAL and time.time() < deadline:
            time.sleep(1)
        assert jobs.run_state(run)["state"] == "finished"
    finally:
        if old is None:
            os.environ.pop("STUDIO_WORKSPACE", None)
        else:
            os.environ["STUDIO_WORKSPACE"] = old
    shots = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc = start_server(ws, port)
    try:
        timings, first = {}, {}
        first_load = open_page(browser, port, "home")  # the app's first load imports torch and friends
        for name in PAGES[1:]:  # each page's first render, reached from the sidebar
            first[name] = click_page(browser, name)
            assert_no_exception(browser, name)
        for name in PAGES:  # what a user sees on every later visit
            timings[name] = open_page(browser, port, name)
            assert_no_exception(browser, name)
            time.sleep(1.0)  # let charts and tables paint before the picture
            browser.save_screenshot(str(shots / f"{name}.png"))
            assert (shots / f"{name}.png").stat().st_size > 10_000
        open_page(browser, port, "train", lang="zh", wait_text="训练")
        assert_no_exception(browser, "train zh")
        print(f"page render seconds (browser): first load {first_load:.2f}; first visit from the sidebar",
              {k: round(v, 2) for k, v in first.items()}, "full reload", {k: round(v, 2) for k, v in timings.items()},
              file=sys.stderr)
    finally:
        stop_server(proc)


def test_run_survives_server_restart(browser, tiny_model, tmp_path):
    from selenium.webdriver.common.by import By

    from core import jobs

    ws = tmp_path / "ws"
    _workspace_with_data(ws, tiny_model, 100000)  # long enough to be still going after the restart
    port = _free_port()
    proc = start_server(ws, port)
    run_dir = None
    try:
        open_page(browser, port, "train")
        buttons = [b for b in browser.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == "Start training"]
        assert buttons, browser.find_element(By.TAG_NAME, "body").text[:1500]
        buttons[0].click()
        deadline = time.time() + 30
        while time.time() < deadline and not list((ws / "runs").glob("*/status.json")):
            time.sleep(0.3)
        run_dir = next((ws / "runs").iterdir())
        os.environ["STUDIO_WORKSPACE"], old = str(ws), os.environ.get("STUDIO_WORKSPACE")
        try:
            deadline = time.time() + 120
            while time.time() < deadline and not (jobs.run_state(run_dir).get("step") or 0) > 0:
                time.sleep(0.5)
            assert jobs.run_state(run_dir)["state"] == "running"
            stop_server(proc, signal.SIGKILL)  # the server dies without a chance to clean up
            time.sleep(2)
            status = jobs.run_state(run_dir)
            assert status["state"] == "running" and jobs.pid_alive(status["pid"])
            step_before = status["step"]
            proc = start_server(ws, port)
            open_page(browser, port, "train", wait_text="step")
            assert_no_exception(browser, "train after restart")
            body = browser.find_element(By.TAG_NAME, "body").text
            assert run_dir.name in body and "running" in body
            deadline = time.time() + 60
            while time.time() < deadline and jobs.run_state(run_dir)["step"] <= step_before:
                time.sleep(0.5)
            assert jobs.run_state(run_dir)["step"] > step_before, "the run kept training"
        finally:
            if old is None:
                os.environ.pop("STUDIO_WORKSPACE", None)
            else:
                os.environ["STUDIO_WORKSPACE"] = old
    finally:
        if run_dir is not None:
            jobs.stop_run(str(run_dir), timeout=30)
        stop_server(proc)
