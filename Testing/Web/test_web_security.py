"""``meddl web`` secure by default (issue 22), against a real server: the access token, one user at a time, and
crafted websocket messages.

One server for the module (``--max-upload-mb 16``, its own temporary folder ``TMPDIR`` so that upload folders can
be watched); each test closes its pages and websockets, so the next finds the server free. The checks of single
functions (names, limits, the gate's rules) are in ``Testing/test_bad_inputs.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

import webapp
from webapp import WslinkClient, runAsync, startServer

browser, display = webapp.browser, webapp.display  # the fixtures

pytestmark = pytest.mark.web


@pytest.fixture(scope="module")
def secured(display, tmp_path_factory):
    """One ``meddl web`` with the default access (a random token, one user) and a 16 MB upload limit."""
    web = startServer(display, tmp_path_factory.mktemp("secured"), "--max-upload-mb", "16")
    yield web
    web.stop()


def status(url: str, **headers) -> tuple[int, bytes]:
    """HTTP status and body of a GET (no cookies kept)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def tinyNrrd(side: int = 4) -> bytes:
    """A ``side``^3 float volume (a bright ball in the middle), data inside the file."""
    import numpy as np

    header = (f"NRRD0004\ntype: float\ndimension: 3\nsizes: {side} {side} {side}\nspace: left-posterior-superior\n"
              "space directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (0,0,0)\nendian: little\nencoding: raw\n\n")
    k, j, i = np.mgrid[:side, :side, :side] - side / 2
    return header.encode() + (100.0 * (k * k + j * j + i * i < (side / 3) ** 2)).astype("<f4").tobytes()


def uploadFolders(server) -> list[Path]:
    return sorted((server.folder / "tmp").glob("meddl-upload-*"))


# --- the token ---------------------------------------------------------------------------------------------------
def test_without_the_token_every_request_gets_403_and_no_data(secured, browser):
    assert secured.token and re.fullmatch(r"[0-9a-f]{48}", secured.token)  # printed: http://127.0.0.1:PORT/?token=
    assert secured.url == f"{secured.base}?token={secured.token}"
    # the page's own files: found in the page served with the token (header form), refused without it
    code, index = status(secured.base + "index.html", Authorization=f"token {secured.token}")
    assert code == 200
    scripts = re.findall(rb'src="([^"]+\.js)"', index)
    assert scripts
    for path in ["", "index.html", "?token=wrong", scripts[0].decode().lstrip("./")]:
        code, body = status(secured.base + path)
        assert code == 403 and b"needs its access token" in body, (path, code)
        assert b"<canvas" not in body and b"<img" not in body and b"trame" not in body.lower()
    assert status(secured.base + scripts[0].decode().lstrip("./"), Cookie=f"meddl-token-{secured.port}=wrong")[0] == 403

    async def websocket(query: str) -> int:
        import aiohttp

        try:
            async with WslinkClient.connect(secured, query=query):
                return 101
        except aiohttp.WSServerHandshakeError as error:
            return error.status

    assert runAsync(websocket("")) == 403
    assert runAsync(websocket("?token=wrong")) == 403
    # in a browser: the refusal page, nothing of the app
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(secured.base)
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("403: Forbidden")
    expect(page.locator(".meddl-refusal")).to_contain_text("Open the address it printed")
    assert page.locator("canvas, img, .tab-segment").count() == 0
    context.close()


# --- one user at a time ------------------------------------------------------------------------------------------
def test_the_printed_address_works_and_a_second_browser_is_told_the_server_is_in_use(secured, browser, tmp_path):
    first = browser.new_context(viewport={"width": 1440, "height": 900})
    page = first.new_page()
    assert page.goto(secured.url).status == 200
    page.locator(".tab-segment").wait_for(timeout=60_000)
    # a 9 MB volume: sent by the page in three 4 MB slices, loaded whole
    volume = tmp_path / "ball.nrrd"
    volume.write_bytes(tinyNrrd(130))
    page.locator(".load-files input[type=file]").set_input_files([str(volume)])
    expect(page.locator(".app-message")).to_contain_text("Loaded ball.", timeout=120_000)
    assert not uploadFolders(secured)
    # a second browser (its own cookies: another user) with the same address
    second = browser.new_context()
    other = second.new_page()
    response = other.goto(secured.url)
    assert response.status == 409
    expect(other.locator("h1")).to_have_text("In use by another user")
    expect(other.locator(".meddl-refusal")).to_contain_text("in use by another user; start another server")
    assert other.locator("canvas, .tab-segment").count() == 0
    # the first page reloaded is still its owner's
    page.reload()
    page.locator(".tab-segment").wait_for(timeout=60_000)
    # once the first closes its page, the second gets in
    first.close()
    secured.waitUntilFree()
    assert other.goto(secured.url).status == 200
    other.locator(".tab-segment").wait_for(timeout=60_000)
    second.close()
    secured.waitUntilFree()  # for the next test


# --- crafted upload messages --------------------------------------------------------------------------------------
def test_crafted_upload_messages_write_nothing_outside_the_private_folder(secured, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = f"escape-{uuid.uuid4().hex[:8]}.nrrd"
    traversals = [f"../{marker}", f"..\\{marker}", f"../../../{marker}", f"sub/../../{marker}", f"./{marker}",
                  f"{outside}/{marker}", f"/tmp/{marker}", f"C:\\{marker}", "..", ".", f"{marker}\x00.txt",
                  f"{marker}\n", ""]
    literal = f"%2e%2e%2f{marker}"  # not decoded by anyone: a strange but plain name, kept inside the folder
    ok, big = tinyNrrd(), b"x" * 10

    async def crafted() -> None:
        async with WslinkClient.connect(secured) as client:
            files = [{"name": name, "size": 10} for name in traversals]
            files += [{"name": "ok.nrrd", "size": len(ok)}, {"name": literal, "size": 10},
                      {"name": "liar.nrrd", "size": 10}]
            plan = await client.trigger("meddl_upload_begin", files)
            first = len(traversals)
            assert plan["accepted"] == [first, first + 1, first + 2] and plan["part"] == 4 << 20
            [folder] = uploadFolders(secured)
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # private
            # parts for refused names, for no file at all, and with another name than announced
            assert await client.trigger("meddl_upload_part", 0, 0, {"name": traversals[0], "content": big}) is False
            assert await client.trigger("meddl_upload_part", 99, 0, {"name": "ok.nrrd", "content": ok}) is False
            assert await client.trigger("meddl_upload_part", first + 1, 0,
                                        {"name": f"../{marker}", "content": big}) is False
            # more than announced, then a good file in two slices
            assert await client.trigger("meddl_upload_part", first + 2, 0, {"name": "liar.nrrd", "content": big * 3}) \
                is False
            assert await client.trigger("meddl_upload_part", first, 0, {"name": "ok.nrrd", "content": ok[:100]})
            assert await client.trigger("meddl_upload_part", first, 100, {"name": "ok.nrrd", "content": ok[100:]})
            await client.trigger("meddl_upload_end")
            shown = await client.message("Loaded ok.")
            for name in ("../" + marker, "/tmp/" + marker, "C:\\\\" + marker):
                assert f"File '{name}' is a path, not a file name" in shown, name
            assert "has a control character in its name" in shown and "has no file name" in shown
            assert "is larger than the 10 B announced for it" in shown
            assert not uploadFolders(secured)  # removed after loading
            # a file over the limit is refused before it is sent; so is an upload over it in total
            plan = await client.trigger("meddl_upload_begin", [{"name": "large.nrrd", "size": 20 << 20}])
            assert plan["accepted"] == []
            await client.trigger("meddl_upload_end")
            await client.message("is 20.0 MB, more than the upload limit of 16.0 MB")
            plan = await client.trigger("meddl_upload_begin", [{"name": f"part{i}.nrrd", "size": 7 << 20}
                                                               for i in range(3)])
            assert plan["accepted"] == [0, 1]
            await client.trigger("meddl_upload_end")
            await client.message("would bring this upload to 21.0 MB, more than the limit of 16.0 MB")
            # one message larger than a slice: refused from its first chunk's header, before it is held
            huge = {"name": "huge.nrrd", "content": b"\0" * (6 << 20)}
            refused = await client.trigger("meddl_upload_part", 0, 0, huge, chunk=1 << 20)
            assert refused is False
            await client.message("A message of 6.0 MB from the page was refused")
            # a header that points at a file of the server's
            detached = tinyNrrd().replace(b"encoding: raw\n", b"encoding: raw\ndata file: /etc/hostname\n")
            plan = await client.trigger("meddl_upload_begin", [{"name": "detached.nrrd", "size": len(detached)}])
            assert await client.trigger("meddl_upload_part", 0, 0, {"name": "detached.nrrd", "content": detached})
            await client.trigger("meddl_upload_end")
            await client.message("names a data file elsewhere (/etc/hostname)")
            # still answering on this websocket
            assert (await client.call("trame.state.get", []))["result"]["state"]["appMessage"]

    runAsync(crafted())
    escaped = [p for root in (secured.folder, tmp_path) for p in root.rglob(f"*{marker}*")]
    escaped += [p for p in (Path("/tmp") / marker, Path(tempfile.gettempdir()) / marker) if p.exists()]
    assert not escaped, escaped
    assert not uploadFolders(secured) and secured.alive() and secured.process.poll() is None


# --- start-up -----------------------------------------------------------------------------------------------------
def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_public_host_without_a_token_refuses_to_start():
    port = _freePort()
    meddl = Path(sys.executable).parent / "meddl"
    done = subprocess.run([str(meddl), "web", "--host", "0.0.0.0", "--token", "", "--port", str(port)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "would let anyone who reaches 0.0.0.0" in done.stderr and "--ssl" in done.stderr
    assert "reverse proxy" in done.stderr and "ssh -L" in done.stderr  # how to add TLS
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl makes the test certificate")
def test_tls_with_a_certificate(display, tmp_path):
    """``--ssl CERT,KEY`` (wslink's TLS): the address is https and the token is still required."""
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = _freePort()  # started here rather than by startServer: its address is https
    log = tmp_path / "server.log"
    env = {**os.environ, "MEDDL_HOME": str(tmp_path / "home"), "MEDDL_CACHE": str(tmp_path / "cache"),
           **({"DISPLAY": display} if display else {})}
    env.pop("MEDDL_WEB_TOKEN", None)
    with open(log, "w") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "meddl"), "web", "--port", str(port),
                                    "--ssl", f"{cert},{key}"], env=env, stdout=out, stderr=subprocess.STDOUT)
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    try:
        deadline, answered = time.time() + 120, None
        while answered is None:
            assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            printed = re.search(r"MedDL web: (\S+)", log.read_text())
            try:
                if printed:
                    answered = urllib.request.urlopen(printed.group(1), context=context, timeout=5).status
            except urllib.error.HTTPError as error:
                answered = error.code
            except OSError:
                time.sleep(0.5)
        assert printed.group(1).startswith(f"https://127.0.0.1:{port}/?token=") and answered == 200
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=context, timeout=5)
    finally:
        process.terminate()
        process.wait(15)
