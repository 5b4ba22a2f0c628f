"""Fixtures of the browser tests of ``meddl web``: the app on 127.0.0.1, driven by Playwright on the system Chromium
(under Xvfb). A module of its own, not a conftest.py: Testing/Python's conftest is imported by name elsewhere.

Each test gets its own server (fresh scene, model catalog and output folder) and page, opened at the address the
server prints (with its access token). Needs Debian's
``chromium`` and ``xvfb`` (``bash setup.sh test`` installs them); elsewhere the tests are skipped, except in CI
(``CI=true``), where a missing browser is an error.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Python"))
from conftest import runAsync  # noqa: E402,F401 - Testing/Python's helper, used by the web tests

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


# Each test module that takes these fixtures (``browser = webapp.browser``) gets its own instance of them, even at
# session scope; the first made is shared: one Xvfb, and one Playwright (a second sync_playwright() would find the
# first one's event loop running and refuse to start).
_shared: dict = {}


@pytest.fixture(scope="session")
def display():
    """An X display for the app's render windows and the browser: the current one, or a private Xvfb."""
    problem = _missing()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    if "display" in _shared:
        yield _shared["display"]
        return
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
    _shared["display"] = f":{number}"
    yield f":{number}"
    _shared.pop("display")
    xvfb.terminate()
    xvfb.wait(10)


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebServer:
    """A running ``meddl web``: ``url`` is the address it printed (with the token), ``base`` the same without it."""

    def __init__(self, port: int, output: Path, process: subprocess.Popen, log: Path):
        self.port, self.output, self.process, self.log = port, output, process, log
        self.base, self.url, self.token = f"http://127.0.0.1:{port}/", None, None
        self.lastError = None  # of alive(), for the test's message

    def printedUrl(self) -> str | None:
        found = re.search(r"MedDL web: (http\S+)", self.log.read_text())
        if found:
            self.url = found.group(1)
            self.token = dict(re.findall(r"[?&](\w+)=([^&]*)", self.url)).get("token", "")
        return self.url

    def alive(self) -> bool:
        """Whether it answers its address: the page, or the page saying it is in use by another browser."""
        try:
            return urllib.request.urlopen(self.url, timeout=20).status == 200  # a busy 2-core machine: slow, not down
        except urllib.error.HTTPError as error:
            self.lastError = error
            return error.code == 409
        except OSError as error:
            self.lastError = error
            return False

    def waitUntilFree(self, timeout: float = 30) -> None:
        """Wait until no page holds the server (a closed page's websocket closes a moment later)."""
        deadline = time.time() + timeout
        while True:
            try:
                if urllib.request.urlopen(self.url, timeout=20).status == 200:
                    return
            except urllib.error.HTTPError as error:
                assert error.code == 409 and time.time() < deadline, f"still in use after {timeout} s: {error}"
            time.sleep(0.25)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def startServer(display, folder: Path, *options: str, env: dict | None = None) -> WebServer:
    """``meddl web`` on a free port of 127.0.0.1 with ``options``, its own catalog, cache, output and temporary
    folders under ``folder``; returns once it serves the address it printed."""
    port, output, log = _freePort(), folder / "results", folder / "server.log"
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    inherited = {name: value for name, value in os.environ.items() if name != "MEDDL_WEB_TOKEN"}  # a random token
    env = {**inherited, "MEDDL_HOME": str(folder / "home"), "MEDDL_CACHE": str(folder / "cache"),
           "TMPDIR": str(folder / "tmp"), **(env or {})}
    if display:
        env["DISPLAY"] = display
    meddl = Path(sys.executable).parent / "meddl"
    with open(log, "w") as out:
        process = subprocess.Popen([str(meddl), "web", "--port", str(port), "--output", str(output), *options],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    web = WebServer(port, output, process, log)
    web.folder = folder
    deadline = time.time() + 120
    while not (web.printedUrl() and web.alive()):
        if process.poll() is not None or time.time() > deadline:
            web.stop()
            pytest.fail(f"meddl web did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return web


@pytest.fixture
def server(display, tmp_path):
    """``meddl web`` on a free port of 127.0.0.1, with its own catalog and output folder."""
    web = startServer(display, tmp_path)
    yield web
    web.stop()


@pytest.fixture(scope="session")
def browser(display):
    if "browser" in _shared:
        yield _shared["browser"]
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:  # launch() gives the browser a fresh, temporary profile
        env = {**os.environ, **({"DISPLAY": display} if display else {})}
        browser = _shared["browser"] = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                                                  env=env)
        yield browser
        _shared.pop("browser")
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


class WslinkClient:
    """A websocket client of ``meddl web`` that speaks wslink as trame's page does (``wslink/chunking.py``: a
    12-byte header, message id, offset, total size, before each chunk of a msgpack message), so tests can send what
    a crafted page would. ``state`` follows the server's state pushes (``appMessage``...). Use inside a coroutine::

        async with WslinkClient.connect(server) as client:
            await client.trigger("meddl_upload_begin", [...])
    """

    def __init__(self, socket):
        import asyncio

        self.socket, self.count, self.waiting, self.state, self.partial = socket, 0, {}, {}, {}
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    def connect(cls, server: WebServer, query: str | None = None, **options):
        """An async context: the websocket of ``server`` (with its token in the query unless ``query`` says
        otherwise), said hello to."""
        import contextlib

        import aiohttp

        @contextlib.asynccontextmanager
        async def opened():
            url = server.base.replace("http", "ws", 1) + "ws" + (f"?token={server.token}" if query is None else query)
            async with aiohttp.ClientSession() as session, session.ws_connect(url, **options) as socket:
                client = cls(socket)
                hello = await client.call("wslink.hello", [{"secret": "wslink-secret"}], prefix="system")
                assert "result" in hello, hello
                try:
                    yield client
                finally:
                    client.reader.cancel()
        return opened()

    async def _read(self) -> None:
        import struct

        import aiohttp
        import msgpack

        async for message in self.socket:
            if message.type != aiohttp.WSMsgType.BINARY:
                continue
            key, offset, total = struct.unpack("<III", message.data[:12])
            buffer = self.partial.setdefault(key, bytearray(total))
            buffer[offset: offset + len(message.data) - 12] = message.data[12:]
            if offset + len(message.data) - 12 < total:
                continue
            reply = msgpack.unpackb(bytes(self.partial.pop(key)))
            if str(reply.get("id", "")).startswith("publish:trame.state.topic"):
                self.state.update(reply.get("result") or {})
            elif reply.get("id") in self.waiting:
                self.waiting.pop(reply["id"]).set_result(reply)

    async def send(self, message: dict, chunk: int = 1 << 20, total: int | None = None) -> None:
        """Send ``message`` packed, in chunks of ``chunk`` bytes; ``total``: the size the header declares."""
        import secrets
        import struct

        import msgpack

        data, key = msgpack.packb(message), secrets.randbits(32)
        for offset in range(0, len(data), chunk):
            header = struct.pack("<III", key, offset, len(data) if total is None else total)
            await self.socket.send_bytes(header + data[offset: offset + chunk])

    async def call(self, method: str, args: list, prefix: str = "rpc", **sending) -> dict:
        """An RPC; its reply (``result`` or ``error``)."""
        import asyncio

        self.count += 1
        key = f"{prefix}:c0:{self.count}"
        reply = self.waiting[key] = asyncio.get_running_loop().create_future()  # may come before the last chunk left
        await self.send({"wslink": "1.0", "id": key, "method": method, "args": args, "kwargs": {}}, **sending)
        return await asyncio.wait_for(reply, 60)

    async def trigger(self, name: str, *args, **sending):
        """Call trame trigger ``name``; its result."""
        reply = await self.call("trame.trigger", [name, list(args), {}], **sending)
        assert "result" in reply, reply
        return reply["result"]

    async def message(self, contains: str, timeout: float = 30) -> str:
        """Wait until the page's message (``appMessage``) shows ``contains``; the message."""
        import asyncio

        for _ in range(int(timeout * 10)):
            if contains in str(self.state.get("appMessage", "")):
                return self.state["appMessage"]
            await asyncio.sleep(0.1)
        raise AssertionError(f"the page's message never showed {contains!r}: {self.state.get('appMessage')!r}")


