"""The dashboard's web server: aiohttp on its own asyncio loop in its own thread.

Why aiohttp and plotly.js: aiohttp is one well-kept package that is both an asyncio HTTP
server and (for tests and tools) a client, and runs happily on a private loop in a
daemon thread; the page polls a small JSON state at a few Hz and draws it with
plotly.js, which the ``plotly`` wheel ships (its offline bundle), so the page loads
nothing from the internet. A Bokeh server would do the diffing of every plot in this
process, under the GIL the instrument threads need; here the process only thins samples
and writes JSON, and the browser does the drawing.

Who may do what is decided in :func:`check_access`, one place for the rule of
:mod:`daqhub.web.settings`.

What a client can cost the run is bounded before any of that: at most
:data:`MAX_CONNECTIONS` connections are open at once, and a connection whose request headers
have not all come within :data:`REQUEST_WAIT_S` (after it opened, or after its last
response) is closed. 1,100 idle connections used to hold all of the run's 1,024 file
descriptors: the token holder's page timed out, and a thread of the run died opening a file.
When every place is taken, a newcomer takes the place of a connection whose client
pipelines (sends a request before the answer to its last one went out, which no browser
does), else of the connection that has waited longest for its next request (at least
:data:`YIELD_AFTER_S`; one whose request is being answered is never taken), and is answered
503 only when there is none: a client that holds all the places with idle or trickling
connections, re-opened before each deadline, no longer locks the page out, since a page's
own connections finish a request every poll; nor does one that pipelines a megabyte of
requests on each and never reads the answers (always being answered, 64 such connections,
even with a wrong token, were a 503 for everyone for minutes). A connection whose client has
taken nothing of what it was sent for :data:`WRITE_WAIT_S` is closed, newcomers or not.

Errors of the server's loop (such as a failing ``accept``) and aiohttp's own (a malformed
request) are logged once per kind and counted, not once per occurrence (43,000 lines of
tracebacks, with the file descriptors gone; a traceback on the run's terminal for each bad
request, from anyone, token or not); a bug of a handler here keeps its traceback, the first
time (:class:`Noted`).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import math
import re
import secrets
import socket
import struct
import termios
import threading
import traceback
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from plotly.offline import get_plotlyjs  # at load: missing, it is said before a run starts

from ..commands import ArgumentsRefused, NotSendable, plain_result
from .model import DashboardModel
from .settings import HANDLER_GRACE_S, LAST_WORD_S, LOOPBACK_NAMES, WebSettings
from .source import DashboardSource

log = logging.getLogger("daqhub.web")
COOKIE = "daqhub_token"
METHOD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
STATIC = ("index.html", "app.js", "style.css")
# Nothing but this server: the page works offline, and a test that passes proves it does.
# plotly.js sets inline styles and draws some marks as data: images.
CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "frame-ancestors 'none'")
TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}
#: connections open at once; a page holds one to three (the browser's keep-alive pool)
MAX_CONNECTIONS = 64
#: a request's headers must all come within this long (also how long an idle keep-alive
#: connection stays open): longer than the slowest page refresh (rate_hz 0.2: 5 s)
REQUEST_WAIT_S = 10.0
#: a connection waiting this long for its next request gives its place to a newcomer
#: when all are taken: longer than a page's gap between two requests on one connection
YIELD_AFTER_S = 1.0
#: a connection whose client takes none of what it is sent for this long is closed (a page
#: reads its answers as they come; a reader paused for a moment resumes well within it)
WRITE_WAIT_S = 10.0
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        b"Content-Length: 49\r\n\r\nthe dashboard has too many connections; try again\n")


def bind(settings: WebSettings) -> socket.socket:
    """The listening socket, taken before the lab starts so a busy port fails fast."""
    try:
        return socket.create_server((settings.host, settings.port),
                                    family=socket.AF_INET6 if ":" in settings.host
                                    else socket.AF_INET, reuse_port=False)
    except OSError as exc:
        raise OSError(f"the dashboard cannot listen on {settings.host}:{settings.port}: "
                      f"{exc.strerror or exc}") from None


def presented_token(request: web.Request) -> str:
    return (request.headers.get("X-Daqhub-Token") or request.query.get("token")
            or request.cookies.get(COOKIE) or "")


def token_matches(given: str, token: str) -> bool:
    """Whether ``given`` is the token (constant time). A header byte that is not UTF-8 reaches
    us as a lone surrogate, which ``str.encode()`` refuses: "t\\xf6ken" was a 500 and a
    traceback per request, where it is simply a wrong token."""
    return secrets.compare_digest(given.encode("utf-8", "surrogatepass"),
                                  token.encode("utf-8", "surrogatepass"))


def check_access(settings: WebSettings, request: web.Request, command: bool) -> None:
    """Raise the HTTP error a request deserves, or return when it may go on.

    Reads need the token when the dashboard listens beyond loopback; commands need the
    lab's permission and the token in a header (a cookie alone would let another web
    site's form send one), wherever it listens.
    """
    if command and not settings.commands:
        raise web.HTTPForbidden(text="this dashboard is read-only: the lab does not allow "
                                     "commands ([daqhub.web] commands = true)")
    given = request.headers.get("X-Daqhub-Token", "") if command else presented_token(request)
    if command or settings.token_required:
        if not given:
            raise web.HTTPUnauthorized(text="this dashboard needs its token: open the URL "
                                            "that daqhub printed (it ends in ?token=...)")
        if not token_matches(given, settings.token):
            raise web.HTTPForbidden(text="wrong token")
    elif request.host.rsplit(":", 1)[0].strip("[]") not in {*LOOPBACK_NAMES, settings.host}:
        # a loopback page answers only to loopback names (no DNS rebinding)
        raise web.HTTPForbidden(text=f"unexpected Host header {request.host!r}")


class Condensed:
    """Logs the first problem of each kind and counts the rest (:meth:`summary` says how many).

    For what can happen thousands of times a second when a client floods the server."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def note(self, kind: str, message: str, exc: BaseException | None = None) -> None:
        """``exc``: a fault of the dashboard's own, whose first occurrence is logged with its
        traceback (where to fix it); what clients cause is said in one line."""
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        if n == 1:
            log.log(logging.WARNING if exc is None else logging.ERROR,
                    "dashboard: %s (again: counted, not shown)", message, exc_info=exc)

    def summary(self) -> None:
        for kind, n in self.counts.items():
            if n > 1:
                log.warning("dashboard: %s happened %d times", kind, n)

    def logger(self) -> logging.Logger:
        """A logger of its own for aiohttp (which takes one per server), noting what it logs
        here: its ``aiohttp.server`` logger wrote a traceback for each malformed request to
        the run's terminal, 300 requests 3,100 lines, burying the run's status and alarms."""
        out = logging.Logger("daqhub.web.aiohttp", logging.WARNING)  # outside logging's tree:
        out.addHandler(Noted(self))  # its records reach no other handler
        return out


#: what aiohttp logs that a client caused (a malformed request, a connection it reset):
#: anyone can send thousands, and a traceback says nothing a fix needs
CLIENT_FAULTS = (BadHttpMessage, ConnectionError)


class Noted(logging.Handler):
    """Log records as :class:`Condensed` problems: a client's fault one kind per exception
    type, in a line; any other (a handler's bug) one kind per exception type and the place
    it was raised, with its traceback: condensed alike, the first bug lost its traceback and
    a second one of the same type went unsaid."""

    def __init__(self, problems: Condensed) -> None:
        super().__init__(logging.WARNING)
        self.problems = problems

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        message = f"aiohttp: {record.getMessage()}"
        if exc is None:
            self.problems.note(f"aiohttp: {record.levelname.lower()}", message)
        elif isinstance(exc, CLIENT_FAULTS):
            self.problems.note(f"aiohttp: {type(exc).__name__}", f"{message}: {exc!r}")
        else:
            where = traceback.extract_tb(exc.__traceback__)[-1:]
            at = f" at {where[0].filename}:{where[0].lineno}" if where else ""
            self.problems.note(f"aiohttp: {type(exc).__name__}{at}", message, exc)


class ConnectionGate:
    """The dashboard's protocol factory: aiohttp's, behind a limit on open connections."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], limit: int,
                 problems: Condensed, yield_after_s: float = YIELD_AFTER_S,
                 write_wait_s: float = WRITE_WAIT_S) -> None:
        self.factory = factory
        self.limit = limit
        self.problems = problems
        self.yield_after_s = yield_after_s
        self.write_wait_s = write_wait_s
        #: the admitted connections, by transport (a request finds its own through it)
        self.members: dict[asyncio.BaseTransport, GatedConnection] = {}

    @property
    def open(self) -> int:
        return len(self.members)

    def __call__(self) -> asyncio.Protocol:
        return GatedConnection(self)

    def make_room(self, now: float) -> bool:
        """Drop a connection whose client pipelines, else the one waiting longest for a
        request if one has waited long enough."""
        piped = [c for c in self.members.values() if c.pipelined]
        idle = [c for c in self.members.values()
                if c.answering == 0 and now - c.waiting_since >= self.yield_after_s]
        if not piped and not idle:
            return False
        self.problems.note("connection dropped for a newcomer",
                           f"{self.limit} connections are open, the limit; one whose client "
                           "pipelines requests, or the one waiting longest for a request, is "
                           "closed to let a new one in")
        (piped[0] if piped else min(idle, key=lambda c: c.waiting_since)).leave()
        return True

    def answering(self, transport: asyncio.BaseTransport | None) -> GatedConnection | None:
        """The connection a request came on (None: it has gone)."""
        return self.members.get(transport) if transport is not None else None


class GatedConnection(asyncio.Protocol):
    """One connection: handed to aiohttp's protocol if there is room, else answered 503."""

    def __init__(self, gate: ConnectionGate) -> None:
        self.gate = gate
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        #: requests on this connection being answered now, and since when it has waited
        #: for its next one (the loop's clock: opened, or its last request answered)
        self.answering = 0
        self.waiting_since = 0.0
        #: when its client's bytes last came, and whether a request came before the answer to
        #: the one before it went out (then the client does not wait to read its answers)
        self.data_at = 0.0
        self.pipelined = False
        #: the next look at whether its client took anything (:meth:`pause_writing`)
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gate = self.gate
        now = asyncio.get_running_loop().time()
        assert isinstance(transport, asyncio.Transport)  # a stream server's, always
        if gate.open >= gate.limit and not gate.make_room(now):
            gate.problems.note("connection refused: too many open",
                               f"{gate.limit} connections are open, the limit, each busy or "
                               "new; further ones are answered 503 and closed")
            transport.write(BUSY)
            transport.close()
            return
        self.transport = transport
        self.waiting_since = now
        gate.members[transport] = self
        self.inner = gate.factory()
        self.inner.connection_made(transport)

    def request_begins(self) -> None:
        """A request of this connection is being answered (see :meth:`request_ends`)."""
        # its bytes all came before the answer to the last one was sent (right after the
        # handler's end): the client sent it without waiting for that answer
        self.pipelined = self.pipelined or self.data_at < self.waiting_since
        self.answering += 1

    def request_ends(self) -> None:
        self.answering -= 1
        self.waiting_since = asyncio.get_running_loop().time()

    def leave(self) -> None:
        """Give up this connection's place at once (its bytes unsent are dropped)."""
        if self.transport is not None and self.gate.members.pop(self.transport, None) is self:
            self.transport.abort()  # close() would wait for a reader that may never read

    def look_again(self, unsent: int) -> None:
        """Close the connection if its client took nothing of the ``unsent`` bytes (see
        :func:`unsent_bytes`) in the :data:`WRITE_WAIT_S` since the last look, else look
        again that much later."""
        assert self.transport is not None
        now = unsent_bytes(self.transport)
        if now < unsent:
            self.deadline = asyncio.get_running_loop().call_later(
                self.gate.write_wait_s, self.look_again, now)
            return
        self.gate.problems.note("connection closed: its client does not read",
                                f"a client took nothing of its answer for "
                                f"{self.gate.write_wait_s:g} s; its connection is closed")
        self.leave()

    def data_received(self, data: bytes) -> None:
        self.data_at = asyncio.get_running_loop().time()
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        """Its client reads slower than the answer is written: closed if it takes nothing
        for :data:`WRITE_WAIT_S`, however slowly it reads. The deadline ran until writing
        resumed, which takes the client reading some 48 KiB, after the kernel's buffers (MB
        on loopback) are emptied that far: a page reading 16 KiB/s was closed."""
        assert self.transport is not None
        self.deadline = asyncio.get_running_loop().call_later(
            self.gate.write_wait_s, self.look_again, unsent_bytes(self.transport))
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        if self.transport is not None:
            self.gate.members.pop(self.transport, None)
        if self.inner is not None:
            self.inner.connection_lost(exc)
            self.inner = None


def unsent_bytes(transport: asyncio.Transport) -> int:
    """The bytes written to ``transport`` that its client has not taken: what asyncio holds,
    and (where the system says, as Linux does) what the socket holds unacknowledged. The
    socket's share falls as soon as the client reads; asyncio's only once the socket has
    room for a good part of it again."""
    sock = transport.get_extra_info("socket")
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (AttributeError, OSError):  # not a socket this system says it of
        in_socket = 0
    else:
        in_socket = struct.unpack("i", raw)[0]
    return transport.get_write_buffer_size() + in_socket


class DashboardServer:
    """Serves one source's dashboard until :meth:`stop`."""

    def __init__(self, source: DashboardSource, settings: WebSettings,
                 sock: socket.socket | None = None, *, max_connections: int = MAX_CONNECTIONS,
                 request_wait_s: float = REQUEST_WAIT_S,
                 yield_after_s: float = YIELD_AFTER_S,
                 write_wait_s: float = WRITE_WAIT_S) -> None:
        self.source = source
        self.settings = settings
        self.max_connections = max_connections
        self.request_wait_s = request_wait_s
        self.yield_after_s = yield_after_s
        self.write_wait_s = write_wait_s
        self.problems = Condensed()
        self.gate: ConnectionGate | None = None
        self.sock = sock or bind(settings)
        self.port: int = self.sock.getsockname()[1]
        self.model: DashboardModel | None = None
        self.error: BaseException | None = None
        #: the loop's time of the last state sent to a page (is a page watching?)
        self.last_read = -math.inf
        self._last_word = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="daqhub-web", daemon=True)

    @property
    def url(self) -> str:
        return self.settings.url(self.port)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the dashboard on port {self.port} did not start within "
                               f"{timeout} s")
        if self.error is not None:
            raise RuntimeError(f"the dashboard could not start: {self.error}") from self.error

    def stop(self, timeout: float = 5.0, last_word: bool = False) -> bool:
        """Stop serving; False when the thread did not end in time.

        ``last_word``: the run has ended; first take one last update (the instruments' final
        states, and the source's word that the run ended) and, if a page is watching, serve
        it for two page refreshes (at most :data:`LAST_WORD_S`). A page otherwise kept the
        states of its last poll, during the shutdown, and never heard that the run ended.
        """
        self._last_word = last_word
        if self._loop is not None and self._stopping is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop already ended
                pass
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.source.close()
        return not self.thread.is_alive()

    # --- the thread ---------------------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start() or shown on the page's absence
            self.error = exc
        finally:
            self._ready.set()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's errors (a failing accept, a lost task): one line per kind, counted."""
        exc = context.get("exception")
        message = str(context.get("message", "error"))
        errno = f" {exc.errno}" if isinstance(exc, OSError) else ""
        kind = f"{message} ({type(exc).__name__}{errno})"
        self.problems.note(kind, f"{message}: {exc!r}" if exc is not None else message)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(self._loop_error)
        self._stopping = asyncio.Event()
        self.model = DashboardModel(self.source, self.settings.history_s)
        self.model.update()
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/vendor/plotly.min.js", self._plotly)
        app.router.add_get("/api/state", self._state)
        app.router.add_post("/api/call", self._call)
        # aiohttp closes a connection that waits for a request this long (none yet, headers
        # in part, or idle after a response)
        runner = web.AppRunner(app, access_log=None, logger=self.problems.logger(),
                               handle_signals=False, shutdown_timeout=HANDLER_GRACE_S,
                               keepalive_timeout=self.request_wait_s)
        await runner.setup()
        assert runner.server is not None
        self.gate = ConnectionGate(runner.server, self.max_connections, self.problems,
                                   self.yield_after_s, self.write_wait_s)
        listening = await self._loop.create_server(self.gate, sock=self.sock)
        ticker = asyncio.create_task(self._tick())
        self._ready.set()
        try:
            await self._stopping.wait()
            if self._last_word:
                await self._say_the_end()
        finally:
            ticker.cancel()
            listening.close()
            await runner.cleanup()
            self.problems.summary()

    async def _tick(self) -> None:
        period = 1.0 / self.settings.rate_hz
        while True:
            await asyncio.sleep(period)
            self._update()

    def _update(self) -> None:
        assert self.model is not None
        try:
            self.model.update()
        except Exception as exc:  # shown on the page; the next tick tries again
            problem = f"the dashboard could not update: {exc!r}"
            if problem != self.model.problem:  # logged once, not at every tick it lasts
                log.exception("dashboard update failed")
            self.model.problem = problem
        else:
            self.model.problem = ""

    async def _say_the_end(self) -> None:
        """The last update, served while the pages that are watching poll it (see stop)."""
        self._update()
        refreshes = 2.0 / self.settings.rate_hz
        if asyncio.get_running_loop().time() - self.last_read <= refreshes:
            await asyncio.sleep(min(LAST_WORD_S, refreshes))

    # --- requests -----------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        conn = self.gate.answering(request.transport) if self.gate is not None else None
        if conn is not None:
            conn.request_begins()
        try:
            check_access(self.settings, request, command=request.path == "/api/call")
            response = await handler(request)
        finally:
            if conn is not None:
                conn.request_ends()
        response.headers["Content-Security-Policy"] = CSP
        token = request.query.get("token")
        if token and self.settings.token and token_matches(token, self.settings.token):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    async def _page(self, request: web.Request) -> web.Response:
        return await self._static_file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return await self._static_file(name)

    async def _static_file(self, name: str) -> web.Response:
        text = (resources.files("daqhub.web") / "static" / name).read_text()
        return web.Response(text=text, content_type=TYPES[name.rsplit(".", 1)[1]],
                            headers={"Cache-Control": "no-cache"})

    async def _plotly(self, request: web.Request) -> web.Response:
        return web.Response(body=plotly_js(), content_type="text/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    async def _state(self, request: web.Request) -> web.Response:
        assert self.model is not None
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="since must be a tick number") from None
        if since > self.model.tick:
            since = 0  # the page saw another run: send it everything
        state = self.model.state(since)
        state.update(title=self.source.title(), rate_hz=self.settings.rate_hz,
                     history_s=self.settings.history_s, commands=self.settings.commands)
        self.last_read = asyncio.get_running_loop().time()
        try:  # NaN is not JSON: one in the state stopped the page's every update, silently
            text = json.dumps(state, separators=(",", ":"), allow_nan=False)
        except ValueError as exc:  # the model sends a gap (null) for each: a bug, said aloud
            self.problems.note("state not JSON", f"the page's state is not JSON: {exc}")
            raise web.HTTPInternalServerError(
                text=f"the dashboard's state is not JSON ({exc}): a dashboard bug; see the "
                     "run's log") from None
        return web.Response(text=text, content_type="application/json")

    async def _call(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            instrument, method = str(body["instrument"]), str(body["method"])
            args = body.get("args", [])
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(text='send JSON {"instrument": ..., "method": ..., '
                                          '"args": [...]}') from None
        except RecursionError:  # [[[...]]] some thousands deep: was a 500 and a traceback
            raise web.HTTPBadRequest(text="not JSON: nested too deeply") from None
        if not METHOD_RE.match(method) or not isinstance(args, list):
            raise web.HTTPBadRequest(text=f"{method!r}: not a public method name, or args is "
                                          "not a list")
        assert self.model is not None
        if instrument not in {i.id for i in self.model.instruments}:
            raise web.HTTPNotFound(text=f"no instrument {instrument!r} in this run")
        try:  # waits as long as the command itself allows (the source's call)
            result = await asyncio.to_thread(self.source.call, instrument, method, args)
        except ArgumentsRefused as exc:  # the Lab API's message; nothing was sent
            raise web.HTTPBadRequest(text=str(exc)) from None
        except Exception as exc:  # the instrument's error (a driver's KeyError too) goes back
            return web.json_response({"ok": False, "error": f"{type(exc).__name__}: {exc}"},
                                     status=502)
        return web.Response(text=result_json(result), content_type="application/json")


def result_json(result: Any) -> str:
    """``{"ok": true, "result": ...}`` that the page can parse.

    The result in the plain values the data service sends (:func:`plain_result`: a batch's
    rows, a sample's fields; the page showed a batch's repr); NaN and infinities are not JSON
    (``json.dumps`` writes them, and the page could not read a NaN result), so they go as the
    strings "NaN", "Infinity", "-Infinity". A result that has no plain form (a dict with tuple
    keys, or with a NaN or infinite key, which JSON cannot hold either: it was a 500) goes as
    its repr, for the person reading the page.
    """
    try:
        return json.dumps({"ok": True, "result": _finite(plain_result(result))},
                          allow_nan=False)
    except (NotSendable, ValueError):
        return json.dumps({"ok": True, "result": repr(result)})


def _finite(value: Any) -> Any:
    """``value`` with each NaN or infinite float (in lists, tuples, dict values) as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_PLOTLY: list[bytes] = []


def plotly_js() -> bytes:
    """plotly.js from the installed ``plotly`` wheel (read once, 4-5 MB)."""
    if not _PLOTLY:
        _PLOTLY.append(get_plotlyjs().encode())
    return _PLOTLY[0]
