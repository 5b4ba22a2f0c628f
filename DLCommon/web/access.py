"""Who may use a ``meddl web`` server: an access token, one user at a time, and what one message may hold.

- **Token** (as Jupyter's): a random token made at start (or ``--token`` / ``MEDDL_WEB_TOKEN``), printed in the
  address the server shows (``http://127.0.0.1:8080/?token=...``). Every request needs it: the page, every file
  it loads, the websocket. The first request brings it in the query (``?token=``); the answer sets an HttpOnly,
  SameSite=Strict cookie, so the page's own requests carry it. ``Authorization: token ...`` works too. A request
  without it gets 403 and a page that says how to get in, nothing else. ``--token ""`` turns this off, on a
  loopback host only (:func:`checkServeOptions`); then only requests addressed to a loopback name are answered (a
  web page elsewhere cannot reach the server through a DNS name it rebinds to 127.0.0.1).
- **Websocket origin**: a websocket opened by a page of another origin is refused (Origin must match Host), so a
  web site the user visits cannot drive the server with the user's cookie.
- **One user**: each browser gets a session cookie; while one session has the page open (a websocket), another
  gets a page saying the server is in use, unless ``--shared``.
- **Message size**: wslink buffers a websocket message whole before trame sees it, allocating the size its first
  chunk declares (``wslink/chunking.py``, ``UnChunker``: up to 4 GB once a client said hello).
  :func:`limitedUnChunker` refuses, before allocating, a message that declares more than one upload slice may
  hold, and says so in the page.

The gate is an aiohttp middleware added to wslink's application when trame binds it (``on_server_bind``: wslink
``backends/aiohttp/__init__.py``, ``WebAppServer``, before its routes are frozen at start).
"""

from __future__ import annotations

import functools
import hmac
import html
import ipaddress
import logging
import os
import secrets
import socket
import struct
from pathlib import Path
from typing import Callable

from DLCommon.errors import DLError

__all__ = ["TOKEN_ENV", "AccessGate", "addresses", "limitedUnChunker", "checkServeOptions", "installGate", "isLoopback",
           "resolveToken", "startMessage", "tlsAdvice"]

TOKEN_ENV = "MEDDL_WEB_TOKEN"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


# --- start-up ---------------------------------------------------------------------------------------------------
def isLoopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only: ``localhost``, 127.x.x.x or ::1."""
    host = str(host).strip().strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolveToken(token: str | None) -> str:
    """The access token: ``token`` if given (``""``: none), else ``$MEDDL_WEB_TOKEN`` if set and not empty (an
    empty variable is more likely a mistake than a choice), else a new random one (48 hex digits)."""
    if token is not None:
        return token
    return os.environ.get(TOKEN_ENV) or secrets.token_hex(24)


def tlsAdvice(port: int) -> str:
    return (f"to encrypt the traffic (the token and the images), either keep the default --host 127.0.0.1 and reach "
            f"it through an SSH tunnel (ssh -L {port}:127.0.0.1:{port} SERVER), or give meddl web "
            "--ssl CERT.pem,KEY.pem (trame / wslink's TLS), or put an HTTPS reverse proxy (nginx, Caddy) in front that "
            "passes the Host header and websockets through")


def checkServeOptions(host: str, token: str, port: int, maxUploadMb: float, ssl: str | None) -> None:
    """Refuse, before anything is built, what would expose the server: no token on a host other than loopback;
    an upload limit that is not a positive number; TLS files that do not load."""
    if not token and not isLoopback(host):
        raise DLError(f"would let anyone who reaches {host}:{port} see and change the scene: --token \"\" turns the "
                      "access token off, which only --host 127.0.0.1 (this machine) allows",
                      node="This meddl web server",
                      fix=f"leave out --token (a random one is made) or give one; and {tlsAdvice(port)}")
    if token and (len(token) < 8 or any(c.isspace() or not c.isprintable() for c in token)):
        raise DLError("needs a token of at least 8 printable characters without spaces", node="meddl web --token",
                      fix="leave out --token: a random one is made and printed")
    if not isinstance(maxUploadMb, (int, float)) or not maxUploadMb > 0:
        raise DLError(f"is {maxUploadMb!r}; it must be a positive number of megabytes", node="--max-upload-mb",
                      fix="give e.g. --max-upload-mb 2048 (the default)")
    if ssl:
        parts = [Path(p).expanduser() for p in str(ssl).split(",")]
        if len(parts) != 2:
            raise DLError(f"is {ssl!r}; it must be the certificate and key files, comma-separated", node="--ssl",
                          fix="give --ssl cert.pem,key.pem")
        import ssl as _ssl

        try:
            _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(parts[0]), str(parts[1]))
        except (OSError, _ssl.SSLError) as error:
            raise DLError(f"could not be loaded as a certificate and its key ({error})", file=ssl,
                          fix="give the PEM certificate and key files: --ssl cert.pem,key.pem") from None


def addresses(host: str, port: int, token: str, ssl: bool) -> list[str]:
    """The addresses to open, with the token: on a wildcard host (0.0.0.0), this machine's name, then 127.0.0.1."""
    scheme, query = "https" if ssl else "http", f"?token={token}" if token else ""
    if host in ("0.0.0.0", "::", ""):
        return [f"{scheme}://{socket.gethostname()}:{port}/{query}", f"{scheme}://127.0.0.1:{port}/{query}"]
    return [f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/{query}"]


def startMessage(host: str, port: int, token: str, ssl: bool) -> list[str]:
    """The lines ``meddl web`` prints: the address to open (with the token), and what to know about it."""
    first, *others = addresses(host, port, token, ssl)
    lines = [f"MedDL web: {first}"] + [f"  or, on this machine: {url}" for url in others]
    lines.append("  Open this address (it holds the access token); one browser at a time unless --shared.")
    if not token:
        lines.append("  No access token (--token \"\"): every user of this machine can open the page.")
    if not isLoopback(host) and not ssl:
        lines.append(f"  Not encrypted: {tlsAdvice(port)}.")
    return lines


# --- the gate ---------------------------------------------------------------------------------------------------
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MedDL Web: {title}</title>
<style>body {{ font-family: sans-serif; background: #1e1e1e; color: #eee; max-width: 44em; margin: 4em auto; }}
code {{ background: #333; padding: 0 .3em; }}</style></head>
<body><h1>{title}</h1><p class="meddl-refusal">{text}</p></body></html>
"""


def _page(status: int, title: str, text: str):
    from aiohttp import web

    body = _PAGE.format(title=html.escape(title), text=text)
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


class AccessGate:
    """The aiohttp middleware of ``meddl web`` (see the module docstring).

    Args:
        token: the access token; ``""`` for none (loopback only, checked by :func:`checkServeOptions`).
        port: the server's port: the cookies are named after it (a browser sends a host's cookies to all its
            ports, and two servers must not take each other's).
        shared: let several browsers use the page (and the scene) at once.
        secure: the server speaks TLS: the cookies are sent over https only.
    """

    def __init__(self, token: str, port: int, shared: bool = False, secure: bool = False):
        self.token, self.shared, self.secure = token, shared, secure
        self.tokenCookie, self.sessionCookie = f"meddl-token-{port}", f"meddl-session-{port}"
        self.open: dict[str, int] = {}  # session -> its open websockets

    @property
    def owner(self) -> str | None:
        """The session that has the page open now, if any."""
        return next((session for session, count in self.open.items() if count > 0), None)

    def _tokenOf(self, request) -> tuple[bool, bool]:
        """(the request has the token, it came in the query)."""
        if not self.token:
            return True, False
        given = request.query.get("token", "")
        if given and hmac.compare_digest(given.encode(), self.token.encode()):
            return True, True
        header = request.headers.get("Authorization", "")
        fromHeader = header[6:] if header[:6].lower() == "token " else ""
        for candidate in (request.cookies.get(self.tokenCookie, ""), fromHeader):
            if candidate and hmac.compare_digest(candidate.strip().encode(), self.token.encode()):
                return True, False
        return False, False

    def _refusal(self, request) -> tuple[int, str, str] | None:
        """Why ``request`` is refused (status, title, text), or None."""
        if not self.token:  # no token: only requests addressed to this machine by name (no DNS rebinding)
            if not isLoopback(_hostName(request.host)):
                return 403, "403: Forbidden", ("This MedDL Web server runs without an access token and only answers "
                                               "addresses of this machine (127.0.0.1, localhost).")
        elif not self._tokenOf(request)[0]:
            return 403, "403: Forbidden", (
                "This MedDL Web server needs its access token. Open the address it printed when it started "
                "(<code>http://&hellip;/?token=&hellip;</code>), or ask the person who started it.")
        if _isWebsocket(request):
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1].rstrip("/").lower() != request.host.lower():
                return 403, "403: Forbidden", "A page of another origin may not open this server's websocket."
        return None

    def _inUse(self, session: str) -> bool:
        owner = self.owner
        return not self.shared and owner is not None and owner != session

    async def middleware(self, request, handler):
        """Refuse (403: no token; 409: in use), else serve; set the token and session cookies; count websockets."""
        from aiohttp import web

        refusal = self._refusal(request)
        if refusal:
            return _page(*refusal)
        session = request.cookies.get(self.sessionCookie) or secrets.token_hex(16)
        if self._inUse(session):
            return _page(409, "In use by another user", (
                "This MedDL Web server is in use by another user; start another server "
                "(<code>meddl web --port 8081</code>) or ask the owner to close their page. One browser at a time "
                "works on a server's scene; whoever starts it with <code>--shared</code> lets several share it."))
        if _isWebsocket(request):
            self.open[session] = self.open.get(session, 0) + 1
            try:  # wslink's handler returns when the websocket closes
                return await handler(request)
            finally:
                self.open[session] -= 1
                if not self.open[session]:
                    del self.open[session]
        try:
            response = await handler(request)
        except web.HTTPException as response:  # e.g. wslink's redirect of / to index.html: cookies too
            self._decorate(request, response, session)
            raise
        self._decorate(request, response, session)
        return response

    middleware.__middleware_version__ = 1  # aiohttp's new-style middleware (web_middlewares.py, @middleware)

    def _decorate(self, request, response, session: str) -> None:
        cookie = {"httponly": True, "samesite": "Strict", "secure": self.secure or None, "path": "/"}
        if request.cookies.get(self.sessionCookie) != session:
            response.set_cookie(self.sessionCookie, session, **cookie)
        if self.token and request.cookies.get(self.tokenCookie) != self.token and self._tokenOf(request)[1]:
            response.set_cookie(self.tokenCookie, self.token, **cookie)
        response.headers.setdefault("Referrer-Policy", "no-referrer")  # the token is in the page's address
        response.headers.setdefault("X-Frame-Options", "DENY")


def _hostName(host: str) -> str:
    """The name or address of a Host header, without its port: ``[::1]:8080`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _isWebsocket(request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


# --- what one websocket message may hold ------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _unChunkerClass():
    from wslink.chunking import UnChunker

    class LimitedUnChunker(UnChunker):
        """wslink's UnChunker (``wslink/chunking.py``) with a ceiling, per connection, on the messages it buffers
        once the client is authenticated (wslink raises it to 4 GB then; before, 512 bytes, kept).

        A message whose first chunk declares more than the ceiling (with those already pending) is not
        allocated: its chunks are skipped, ``refused(size)`` is called (the page says why), and the RPC it
        carried is answered by the ``meddl_refused`` trigger (false) when its id can be read, so the page's
        script does not wait for it.
        """

        def __init__(self, ceiling: int, refused: Callable[[int], None]):
            super().__init__()
            self.ceiling, self.refused = int(ceiling), refused
            self.authenticated = False
            self.skipping: dict[int, int] = {}  # refused message id -> bytes still to come

        def set_max_message_size(self, size):
            self.authenticated = True
            super().set_max_message_size(min(size, self.ceiling))

        def process_chunk(self, chunk: bytes):
            if len(chunk) < 12:
                return super().process_chunk(chunk)
            messageId, _offset, total = struct.unpack("<III", chunk[:12])  # wslink's chunk header
            content = len(chunk) - 12
            if messageId in self.skipping:
                self.skipping[messageId] -= content
                if self.skipping[messageId] <= 0:
                    del self.skipping[messageId]
                return None
            pending = self.pending_messages
            if self.authenticated and messageId not in pending:
                held = sum(len(message["content"]) for message in pending.values())
                if total + held > self.ceiling:
                    if total > content:
                        self.skipping[messageId] = total - content
                    self.refused(total)
                    rpcId = _rpcId(chunk[12:])
                    return None if rpcId is None else {"wslink": "1.0", "id": rpcId, "method": "trame.trigger",
                                                       "args": ["meddl_refused", [], {}]}
            return super().process_chunk(chunk)

    return LimitedUnChunker


def limitedUnChunker(ceiling: int, refused: Callable[[int], None]):
    """A ``LimitedUnChunker`` (the class is made on first use: wslink is imported only when a server is)."""
    return _unChunkerClass()(ceiling, refused)


def _rpcId(content: bytes) -> str | None:
    """The ``id`` of the wslink RPC whose packed message starts with ``content``, if it comes before its
    arguments (wslink's JavaScript client packs wslink, id, method, args in that order)."""
    import msgpack

    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 16)
    unpacker.feed(content[:4096])
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key == "id":
                value = unpacker.unpack()
                return value if isinstance(value, str) and len(value) < 200 else None
            if key not in ("wslink", "method"):
                return None
            unpacker.skip()
    except Exception:  # noqa: BLE001 - any malformed start: no id, the message is still refused
        return None
    return None


class _UnChunkers(dict):
    """wslink's per-connection UnChunkers (``WslinkHandler.unchunkers``, set in ``onConnect``): each new one made
    a ``LimitedUnChunker`` (:func:`limitedUnChunker`)."""

    def __init__(self, make: Callable[[], object]):
        super().__init__()
        self.make = make

    def __setitem__(self, clientId, unchunker) -> None:
        from wslink.chunking import UnChunker

        super().__setitem__(clientId, self.make() if type(unchunker) is UnChunker else unchunker)


def installGate(wsServer, gate: AccessGate, ceiling: int, refused: Callable[[int], None]) -> None:
    """Put ``gate`` in front of every route of wslink's aiohttp application and cap its websocket messages.

    Called by trame's ``on_server_bind`` with wslink's ``WebAppServer``, before ``start()`` freezes the
    application (``wslink/backends/aiohttp/__init__.py``)."""
    wsServer.app.middlewares.insert(0, gate.middleware)  # the outermost: nothing is served before it
    handlers = getattr(wsServer, "_ws_handlers", None)
    if not handlers:
        logging.getLogger(__name__).warning("meddl web: wslink's websocket handlers were not found; websocket "
                                            "messages are limited by trame's 10 MB per message only")
        return
    for handler in handlers:
        handler.unchunkers = _UnChunkers(lambda: limitedUnChunker(ceiling, refused))
