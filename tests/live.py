"""Real components for tests: an `mlflow server` on a free localhost port, and the distribution's
headless Chromium driven through Selenium. Each skips, with the reason, where it is absent."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands import BIN
from conftest import ROOT

#: Concurrent jobs, and the points each logs, of the tests that many writers lose nothing.
JOBS, STEPS = 16, 500
#: Where the tests leave their screenshots (under results/, which git ignores).
SCREENSHOTS = ROOT / "results" / "browser"


def log_steps(job: int, steps: int = STEPS) -> tuple[str | None, list[str]]:
    """One job's run of `steps` points to the tracking store of the environment."""
    from shpeft.tracking import tracked_run

    with tracked_run(f"job{job}", {"job": job}, {"job": job}) as tracker:
        for step in range(1, steps + 1):
            tracker.log_metrics({"loss": 1 / step, "job": job}, step=step)
    return tracker.run_id, tracker.missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(folder: Path, timeout: float = 120) -> Iterator[str]:
    """A real MLflow tracking server (SQLite backend, local artifact root) in `folder`; its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'server.db'}",
        "--default-artifact-root",
        (folder / "artifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        url.rsplit(":", 1)[1],
        "--workers",
        "2",
    ]
    log = open(folder / "server.log", "w")  # noqa: SIM115 (closed below, after the server)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/health", timeout=2).read() == b"OK":
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


#: Why the browser tests cannot run here, or None.
NO_BROWSER = (
    None
    if shutil.which("chromium") and shutil.which("chromedriver")
    else "no headless browser: install the distribution's chromium and chromium-driver"
)
#: Each image of a page with whether it loaded.
IMAGES_LOADED = (
    "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])"
)


def chrome():
    """A headless Chromium session (console messages kept), or a skip saying what is missing."""
    if NO_BROWSER:
        pytest.skip(NO_BROWSER)
    from selenium import webdriver

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000"):
        options.add_argument(argument)
    options.add_argument("--disable-dev-shm-usage")
    options.set_capability("goog:loggingOptions", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def wait_for_text(session, text: str, timeout: float = 90) -> str:
    """The page's text once it holds `text` (the MLflow UI renders after its API calls)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    body = lambda s: s.find_element(By.TAG_NAME, "body").text  # noqa: E731
    WebDriverWait(session, timeout).until(lambda s: text in body(s))
    return body(session)


def open_page(page: Path, name: str) -> tuple[dict[str, bool], list[str]]:
    """Open a local HTML page: each image and whether it loaded, and the console's errors; a
    screenshot of the whole page is left as `name`."""
    session = chrome()
    try:
        session.get(page.as_uri())
        loaded = dict(session.execute_script(IMAGES_LOADED))
        errors = [e["message"] for e in session.get_log("browser") if e["level"] == "SEVERE"]
        height = session.execute_script("return document.body.scrollHeight")
        session.set_window_size(1200, min(int(height), 16000))
        screenshot(session, name)
    finally:
        session.quit()
    return loaded, errors


def screenshot(session, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    session.save_screenshot(str(path))
    return path
