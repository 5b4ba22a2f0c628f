"""Fixtures of the browser tests of ``meddl web``: the app on 127.0.0.1, driven by Playwright on the system Chromium
(under Xvfb). A module of its own, not a conftest.py: Testing/Python's conftest is imported by name elsewhere.

Each test gets its own server (fresh scene, model catalog and output folder) and page. Needs Debian's
``chromium`` and ``xvfb`` (``bash setup.sh test`` installs them); elsewhere the tests are skipped, except in CI
(``CI=true``), where a missing browser is an error.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MEDDL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "Resources" / "Screenshots"


def _missing() -> str | None:
    try:
        import playwright  # noqa: F401
        import trame_slicer  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed (bash setup.sh test)"
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} is missing (bash setup.sh test installs Debian's chromium)"
    return None


@pytest.fixture(scope="session")
def display():
    """An X display for the app's render windows and the browser: the current one, or a private Xvfb."""
    problem = _missing()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    if os.environ.get("DISPLAY") or not shutil.which("Xvfb"):
        yield os.environ.get("DISPLAY")
        return
    read, write = os.pipe()  # Xvfb picks a free display number and writes it here
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as numbers:
        number = numbers.readline().strip()
    if not number:
        pytest.fail("Xvfb did not start")
    yield f":{number}"
    xvfb.terminate()
    xvfb.wait(10)


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebServer:
    def __init__(self, url: str, output: Path, process: subprocess.Popen, log: Path):
        self.url, self.output, self.process, self.log = url, output, process, log

    def alive(self) -> bool:
        try:
            return urllib.request.urlopen(self.url, timeout=5).status == 200
        except OSError:
            return False


@pytest.fixture
def server(display, tmp_path):
    """``meddl web`` on a free port of 127.0.0.1, with its own catalog and output folder."""
    port, output, log = _freePort(), tmp_path / "results", tmp_path / "server.log"
    env = {**os.environ, "MEDDL_HOME": str(tmp_path / "home"), "MEDDL_CACHE": str(tmp_path / "cache")}
    if display:
        env["DISPLAY"] = display
    meddl = Path(sys.executable).parent / "meddl"
    with open(log, "w") as out:
        process = subprocess.Popen([str(meddl), "web", "--port", str(port), "--output", str(output)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    web = WebServer(f"http://127.0.0.1:{port}/", output, process, log)
    deadline = time.time() + 120
    while not web.alive():
        if process.poll() is not None or time.time() > deadline:
            pytest.fail(f"meddl web did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield web
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def browser(display):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:  # launch() gives the browser a fresh, temporary profile
        env = {**os.environ, **({"DISPLAY": display} if display else {})}
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, env=env)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url)
    page.locator(".tab-segment").wait_for(timeout=60_000)
    yield page
    context.close()
    assert not errors, f"the page raised: {errors}"
