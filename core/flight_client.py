"""Reading a daqhub run over Arrow Flight from another process or machine.

``daqhub.connect(url)`` returns a :class:`Connection`; everything it gives is Arrow
(``pyarrow.RecordBatch``/``Table``, pandas on request), with the channel declarations in the
schemas as the service sends them (:mod:`daqhub.flight_service`). The subscribe API is the one
to build live displays on::

    with daqhub.connect("grpc://lab-pc:8815", token=...) as conn:
        for c in conn.channels("stage/*"):            # what the run measures
            print(c.key, c.spec.unit)
        with conn.subscribe("stage/*") as live:       # every matching channel, merged
            for item in live:                         # ends when the run stops
                print(item.key, item.batch.num_rows, item.lost_before)
        tables = conn.read_session()                  # a session's data from its files
        records = conn.read_records()                 # its metadata, settings, points files

A subscriber that falls behind loses its own oldest batches on the server (nobody else
slows down); each :class:`LiveBatch` says how many rows were lost just before it, and
:attr:`Subscription.lost` keeps the totals. A broken link ends the iteration with
:class:`LinkLostError`, a stopped run with ``StopIteration``.

Every call waits at most the connection's ``timeout`` for the service's answer, and says what
it waited for when none came (``TimeoutError``: "the channel list: no answer from URL within
10 s"). A stream (live, a stored channel, record files) has no deadline once open (it runs
until the run stops, or for as long as the transfer takes), but opening it does: the
service's first answer (the stream's schema) must come within ``timeout``. Those waits happen
on a helper thread, so Ctrl-C interrupts them. Once open, each message of a stream must come
within the connection's ``silence_limit`` (:class:`Watchdog`; the service sends a heartbeat
on an idle live stream), else the stream ends with :class:`LinkLostError`: a host that froze
or a network that drops packets does not close the connection, and a read waited for ever.
The limit is per message, which counts once it has arrived whole (gRPC hands over none in
part): the service joins a live backlog, and slices stored rows, to about 4 MiB a message
(:data:`daqhub.flight_service.MESSAGE_BYTES`), so a slow link is not taken for a lost one
(a single live batch larger than that goes whole). A followed records stream
(``record_files(..., follow=True)``) is silent while no file changes: it has no watchdog, and
``stop`` ends it from another thread. A watchdog that finds its own process was paused
(Ctrl-Z, a debugger) restarts the waits rather than calling the link lost.
A refused request raises the Flight error's own type with the service's message only; a
session's flavor the service cannot read is not shown as one without channels
(:class:`UnreadableSessionWarning`, :meth:`Connection.stored`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fnmatch
import json
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from .firstparty import flight_missing

try:
    import pyarrow.flight as flight
except ImportError as exc:  # said as what to install, for daqhub.connect's callers too
    raise ImportError(flight_missing(exc) or str(exc), name=exc.name) from exc

from .command_limits import limit_for
from .measurement import ChannelSpec
from .record_transfer import FileAssembler
from .schema import META_UNREADABLE, describe
from .serve_config import DEFAULT_TOKEN_ENV

Key = tuple[str, str]
T = TypeVar("T")
_END = object()
#: how long an open stream may stay silent (no data, no heartbeat) before its link counts as
#: lost; the service sends a heartbeat on an idle live stream every 2 s
#: (:data:`daqhub.flight_service.HEARTBEAT_S`)
SILENCE_LIMIT_S = 15.0
#: a watchdog that wakes this much later than it planned was not running: its own process was
#: paused (Ctrl-Z then fg, a debugger, a paused VM), and the data may be waiting unread
LATE_WAKE_S = 1.0
#: how often a stream read that may be stopped from another thread looks whether it is
STOP_CHECK_S = 0.2


class LinkLostError(ConnectionError):
    """A live stream broke before the run ended (network, server gone)."""


class UnreadableSessionWarning(UserWarning):
    """The service cannot read one flavor's files of a stored session (a truncated copy): its
    channels are missing from what was listed or read."""


def clear_message(exc: BaseException) -> str:
    """A Flight error's own message, without gRPC's debug context and server traceback."""
    text = str(exc)
    for cut in (". Detail:", ". gRPC client debug context:"):
        if cut in text:
            text = text.split(cut, 1)[0]
    return text


def plain_error(exc: Exception) -> Exception:
    """``exc`` as its own type with :func:`clear_message` for its text, so that callers catch
    what they caught and read only what the service said."""
    text = clear_message(exc)
    if text == str(exc):
        return exc
    args = (text, exc.extra_info) if isinstance(exc, flight.FlightError) else (text,)
    try:
        return type(exc)(*args)
    except TypeError:  # a type that takes other arguments
        return exc


class Watchdog:
    """Ends a stream's read that waits longer than ``limit`` s for its next message.

    A host that froze, or a network that drops packets, does not close the connection: a read
    waited for ever (gRPC keepalive did not end it within 30 s either). An idle live stream
    carries a heartbeat every few seconds and a stored read's messages follow each other, so a
    longer silence is a lost link. Only the wait for a message counts, not the caller's own
    pace between messages. One thread watches the streams of a subscription or of one read;
    ``limit`` None watches nothing (a stream that is silent while nothing changes). A wake
    much later than planned (:data:`LATE_WAKE_S`) means this process itself was paused: the
    waits restart, as the messages that came meanwhile were not read yet.
    """

    def __init__(self, url: str, limit: float | None) -> None:
        self.url = url
        self.limit = limit
        self._waiting: dict[Any, float] = {}  # reader -> when its current read began
        self._silent: set[Any] = set()  # readers cancelled here
        self._lock = threading.Lock()
        self._done = threading.Event()
        if limit is not None:
            threading.Thread(target=self._watch, args=(limit,), daemon=True,
                             name=f"daqhub-watchdog:{url}").start()

    def read(self, reader: Any, what: str) -> Any:
        """The reader's next message (a ``FlightStreamChunk``), None at the stream's end;
        :class:`LinkLostError` naming the service and the limit when none came in time."""
        chunk = None
        with self._lock:
            self._waiting[reader] = time.monotonic()
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            pass
        except Exception:
            if reader not in self._silent:
                raise
        finally:
            with self._lock:
                self._waiting.pop(reader, None)
        if reader in self._silent:
            raise LinkLostError(f"{what}: nothing came from {self.url} for {self.limit:g} s "
                                "(the host or the network stopped answering)")
        return chunk

    def _watch(self, limit: float) -> None:
        pause = limit
        while True:
            planned = time.monotonic() + pause
            if self._done.wait(pause):
                return
            now = time.monotonic()
            with self._lock:
                if now - planned > LATE_WAKE_S:  # this process was paused, not the link: the
                    for reader in self._waiting:  # messages that came meanwhile are unread
                        self._waiting[reader] = now
                waiting = [(r, t) for r, t in self._waiting.items() if r not in self._silent]
                late = [r for r, t in waiting if now - t >= limit]
                self._silent.update(late)
            for reader in late:
                with contextlib.suppress(Exception):  # finished meanwhile
                    reader.cancel()
            pause = min((t + limit - now for r, t in waiting if r not in late), default=limit)

    def close(self) -> None:
        self._done.set()


def _cancel_when_set(stop: threading.Event, ended: threading.Event, reader: Any) -> None:
    """Cancel ``reader`` once ``stop`` is set, unless its stream ``ended`` first (a thread
    waits for one event only, hence a look every :data:`STOP_CHECK_S`)."""
    while not ended.wait(STOP_CHECK_S):
        if stop.is_set():
            with contextlib.suppress(Exception):  # ended meanwhile
                reader.cancel()
            return


@dataclass(frozen=True)
class Channel:
    """One channel the service offers: live (``session`` empty) or stored."""

    instrument: str
    name: str
    spec: ChannelSpec
    schema: pa.Schema
    ticket: bytes
    session: str = ""
    flavor: str = ""
    rows: int = -1

    @property
    def key(self) -> str:
        return f"{self.instrument}/{self.name}"


@dataclass(frozen=True)
class StoredSessions:
    """Stored sessions as the service lists them (:meth:`Connection.stored`)."""

    #: session id -> flavor -> channels, with ``rows`` = rows in the files now
    sessions: dict[str, dict[str, list[Channel]]]
    #: session id -> flavor -> why the service cannot read its files (it lists none of that
    #: flavor's channels; the session is in ``sessions`` all the same)
    unreadable: dict[str, dict[str, str]]


@dataclass(frozen=True)
class LiveBatch:
    """A batch of one channel as the run produced it (unified-stream columns).

    ``first_row`` is the index of its first row in the channel since the run started (the
    same as in the session files); ``lost_before`` is how many rows this subscriber missed
    right before it (it fell behind); ``dropped_batches`` the server's count so far.
    """

    instrument: str
    channel: str
    batch: pa.RecordBatch
    first_row: int
    lost_before: int
    dropped_batches: int

    @property
    def key(self) -> str:
        return f"{self.instrument}/{self.channel}"

    @property
    def spec(self) -> ChannelSpec:
        return describe(self.batch.schema)[1]


class Subscription:
    """Live batches of several channels, merged in arrival order (iterate, or :meth:`get`)."""

    def __init__(self, conn: Connection, channels: list[Channel], queue_batches: int) -> None:
        self.channels = channels
        self.url = conn.url
        self.lost: dict[str, int] = {c.key: 0 for c in channels}
        self._watchdog = Watchdog(conn.url, conn.silence_limit)
        self._items: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_batches))
        self._closed = threading.Event()
        self._readers: list[Any] = []
        self._open = len(channels)
        self._lock = threading.Lock()
        self._threads = []
        try:
            for c in channels:
                ticket = json.loads(c.ticket)
                ticket.update(queue=queue_batches, heartbeat=True)  # for the watchdog
                reader = conn.open_stream(ticket, f"the live stream of {c.key}")
                self._readers.append(reader)
                t = threading.Thread(target=self._pump, args=(c, reader), daemon=True,
                                     name=f"daqhub-subscribe:{c.key}")
                self._threads.append(t)
        except BaseException:  # refused, no answer, Ctrl-C: the streams opened so far end
            self.close()
            raise
        for t in self._threads:
            t.start()

    def _put(self, item: Any) -> bool:
        while not self._closed.is_set():
            try:
                self._items.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self, channel: Channel, reader: Any) -> None:
        expected: int | None = None
        outcome: Any = _END
        try:
            while not self._closed.is_set():
                chunk = self._watchdog.read(reader, f"the live stream of {channel.key}")
                if chunk is None:
                    break
                meta = json.loads(chunk.app_metadata.to_pybytes()) if chunk.app_metadata \
                    else {}
                if expected is None:  # rows dropped before the first batch count as lost
                    expected = meta.get("since_row")
                if not chunk.data.num_rows:  # a heartbeat: the channel is quiet, the link up
                    continue
                first = int(meta.get("first_row", expected or 0))
                lost = first - expected if expected is not None and first > expected else 0
                expected = first + chunk.data.num_rows
                self.lost[channel.key] += lost
                item = LiveBatch(channel.instrument, channel.name, chunk.data, first, lost,
                                 int(meta.get("dropped_batches", 0)))
                if not self._put(item):
                    return
        except LinkLostError as exc:  # the watchdog's
            if not self._closed.is_set():
                outcome = exc
        except Exception as exc:
            if not self._closed.is_set():
                outcome = LinkLostError(f"live stream of {channel.key} from {self.url} broke: "
                                        f"{clear_message(exc)}")
        with self._lock:
            self._open -= 1
            last = self._open == 0
        if last:
            self._watchdog.close()
        if isinstance(outcome, LinkLostError):
            self._put(outcome)
        elif last:
            self._put(_END)

    def get(self, timeout: float | None = None) -> LiveBatch | None:
        """The next batch, or None after ``timeout`` s without one.

        Raises StopIteration when every stream ended (the run stopped) and
        :class:`LinkLostError` when one broke.
        """
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._items.put(_END)  # every later get() ends too
            raise StopIteration
        if isinstance(item, LinkLostError):
            raise item
        return item  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[LiveBatch]:
        while True:
            try:
                item = self.get(timeout=0.5)
            except StopIteration:
                return
            if item is not None:
                yield item

    def close(self) -> None:
        self._closed.set()
        self._watchdog.close()
        for reader in self._readers:
            try:
                reader.cancel()
            except Exception:  # already finished
                pass
        for t in self._threads:
            if t.is_alive():  # not started when opening a stream failed
                t.join(5.0)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Connection:
    """A client of one daqhub data service."""

    def __init__(self, url: str, *, token: str | None = None,
                 tls_root_certs: str | Path | None = None, timeout: float = 10.0,
                 silence_limit: float = SILENCE_LIMIT_S) -> None:
        if "://" not in url:
            url = f"grpc://{url}"
        self.url = url
        self.timeout = timeout
        self.silence_limit = silence_limit
        kwargs: dict[str, Any] = {}
        if tls_root_certs is not None:
            kwargs["tls_root_certs"] = Path(tls_root_certs).read_bytes()
        self.client = flight.FlightClient(url, **kwargs)
        self._headers = [(b"authorization", f"Bearer {token}".encode())] if token else []

    def options(self, *, stream: bool = False) -> flight.FlightCallOptions:
        """Call options: the token, and a deadline except on streams that run on (live ones,
        followed records); :meth:`open_stream` bounds the opening of those."""
        return flight.FlightCallOptions(timeout=None if stream else self.timeout,
                                        headers=self._headers)

    def _no_answer(self, what: str, limit: float | None = None) -> TimeoutError:
        return TimeoutError(f"{what}: no answer from {self.url} within "
                            f"{limit or self.timeout:g} s")

    @contextlib.contextmanager
    def _waiting_for(self, what: str, limit: float | None = None) -> Iterator[None]:
        """The one place a Flight error becomes what a caller of this connection sees.

        A call's deadline passing is a TimeoutError that names the call and the limit (gRPC
        says only "Deadline Exceeded"); any other error keeps its type with the service's own
        message only (:func:`plain_error`): the service's Python traceback, with its source
        paths, and gRPC's debug context reached every client.
        """
        try:
            yield
        except flight.FlightTimedOutError:
            raise self._no_answer(what, limit) from None
        except (flight.FlightError, pa.ArrowException) as exc:
            raise plain_error(exc) from None

    def _bounded(self, what: str, call: Callable[[], T],
                 discard: Callable[[T], None] | None = None) -> T:
        """``call()`` (a blocking Flight call) on a helper thread, waited for at most
        ``timeout`` here, where Ctrl-C interrupts the wait (pyarrow's do_get cannot be).

        ``discard`` gets the result should it come after the wait was given up (a stream
        opened too late is cancelled rather than left open on the service).
        """
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(call())
            except BaseException as exc:  # handed to the waiting caller
                fut.set_exception(exc)

        threading.Thread(target=run, name=f"daqhub-connect:{what}", daemon=True).start()
        try:
            with self._waiting_for(what):
                return fut.result(self.timeout)
        except (concurrent.futures.TimeoutError, KeyboardInterrupt) as exc:
            if discard is not None:
                def late(f: concurrent.futures.Future[T]) -> None:
                    if f.exception() is None:
                        discard(f.result())

                fut.add_done_callback(late)  # runs at once if the result came meanwhile
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise self._no_answer(what) from None

    def open_stream(self, ticket: dict[str, Any], what: str) -> flight.FlightStreamReader:
        """A stream that runs on once open (no deadline), whose opening is bounded: the
        service must answer (send the stream's schema) within ``timeout``."""
        raw = flight.Ticket(json.dumps(ticket).encode())

        def cancel(reader: flight.FlightStreamReader) -> None:
            with contextlib.suppress(Exception):
                reader.cancel()

        return self._bounded(f"opening {what}",
                             lambda: self.client.do_get(raw, self.options(stream=True)),
                             cancel)

    def _batches(self, reader: flight.FlightStreamReader, what: str, *, watched: bool = True,
                 stop: threading.Event | None = None) -> Iterator[pa.RecordBatch]:
        """An open stream's batches (empty ones skipped), each waited for at most
        ``silence_limit`` (:class:`Watchdog`; ``watched`` False: none, for a stream that is
        silent while nothing changes). The stream is cancelled should the caller stop early,
        or once ``stop`` is set (from another thread: the iteration then ends)."""
        watchdog = Watchdog(self.url, self.silence_limit if watched else None)
        ended = threading.Event()
        if stop is not None:
            threading.Thread(target=_cancel_when_set, args=(stop, ended, reader), daemon=True,
                             name=f"daqhub-stop:{what}").start()
        try:
            while stop is None or not stop.is_set():
                try:
                    with self._waiting_for(what):
                        chunk = watchdog.read(reader, what)
                except Exception:
                    if stop is not None and stop.is_set():
                        return  # cancelled by it
                    raise
                if chunk is None:
                    return
                if chunk.data.num_rows:
                    yield chunk.data
        finally:
            ended.set()
            watchdog.close()
            with contextlib.suppress(Exception):  # ended already
                reader.cancel()

    # --- what there is ------------------------------------------------------------------

    def _flights(self, criteria: str) -> tuple[list[Channel], dict[str, dict[str, str]]]:
        """The channels listed, and session -> flavor -> why the service cannot read that
        flavor's files (its channels are not listed)."""
        with self._waiting_for("the channel list"):
            infos = list(self.client.list_flights(criteria.encode(), self.options()))
        out = []
        unreadable: dict[str, dict[str, str]] = {}
        for info in infos:
            path = [p.decode() if isinstance(p, bytes) else p for p in info.descriptor.path]
            why = (info.schema.metadata or {}).get(META_UNREADABLE)
            if why is not None:  # "session", ID, FLAVOR
                unreadable.setdefault(path[1], {})[path[2]] = why.decode()
                continue
            iid, spec = describe(info.schema)
            session, flavor = (path[1], path[2]) if path[0] == "session" else ("", "")
            out.append(Channel(iid, spec.name, spec, info.schema,
                               info.endpoints[0].ticket.ticket, session, flavor,
                               info.total_records))
        return out, unreadable

    def channels(self, pattern: str = "*") -> list[Channel]:
        """Live channels whose ``INSTRUMENT/CHANNEL`` matches ``pattern`` (fnmatch)."""
        return [c for c in self._flights("live/*")[0] if fnmatch.fnmatchcase(c.key, pattern)]

    def stored(self, session: str = "*") -> StoredSessions:
        """Stored sessions (``session``: an id or pattern) as the service lists them, with the
        flavors whose files it cannot read and why."""
        found, unreadable = self._flights(f"session/{session}/*")
        out: dict[str, dict[str, list[Channel]]] = {sid: {} for sid in unreadable}
        for c in found:
            out.setdefault(c.session, {}).setdefault(c.flavor, []).append(c)
        return StoredSessions(out, unreadable)

    def sessions(self, session: str = "*") -> dict[str, dict[str, list[Channel]]]:
        """Stored sessions (``session``: an id or pattern): id -> flavor -> channels, with
        ``rows`` = rows in the files now. A flavor whose files the service cannot read has no
        entry, and an :class:`UnreadableSessionWarning` says which and why (:meth:`stored`
        gives the reasons as values)."""
        found = self.stored(session)
        for sid, flavors in sorted(found.unreadable.items()):
            for flavor, why in sorted(flavors.items()):
                warnings.warn(f"session {sid}: its {flavor} channels are left out, the "
                              f"service cannot read them ({why})", UnreadableSessionWarning,
                              stacklevel=2)
        return found.sessions

    def manifest(self) -> dict[str, Any]:
        """What a copy of the running session needs (see the service's ``manifest`` ticket)."""
        ticket = flight.Ticket(json.dumps({"manifest": "current"}).encode())
        table = self._bounded("the manifest",
                              lambda: self.client.do_get(ticket, self.options()).read_all())
        return json.loads(table.column("manifest")[0].as_py())  # type: ignore[no-any-return]

    # --- data ---------------------------------------------------------------------------

    def subscribe(self, pattern: str = "*", *, queue_batches: int = 1000) -> Subscription:
        """Live batches of every channel matching ``pattern``, from now until the run stops."""
        chans = self.channels(pattern)
        if not chans:
            known = ", ".join(c.key for c in self.channels()) or "none"
            raise LookupError(f"no live channel matches {pattern!r} (live: {known})")
        return Subscription(self, chans, queue_batches)

    def read_channel(self, channel: Channel, start: int = 0) -> Iterator[pa.RecordBatch]:
        """A stored channel's batches from row ``start`` on (what the files hold now)."""
        ticket = json.loads(channel.ticket)
        ticket["start"] = start
        what = f"the stored channel {channel.key}"
        yield from self._batches(self.open_stream(ticket, what), what)

    def read_session(self, session: str | None = None, pattern: str = "*", *,
                     pandas: bool = False) -> dict[str, Any]:
        """``"FLAVOR/INSTRUMENT/CHANNEL"`` -> Table (or DataFrame) of a stored session.

        ``session`` None: the running session (else the newest stored one). A flavor whose
        files the service cannot read is missing, with an :class:`UnreadableSessionWarning`.
        """
        if pandas:
            try:
                import pandas as _  # noqa: F401
            except ImportError:
                raise ImportError("pandas is not installed (pip install pandas); or take "
                                  "the Arrow tables: read_session(..., pandas=False)") from None
        flavors, session = self._pick(session)
        out: dict[str, Any] = {}
        for flavor, chans in sorted(flavors.items()):
            for c in chans:
                if fnmatch.fnmatchcase(c.key, pattern):
                    table = pa.Table.from_batches(list(self.read_channel(c)), schema=c.schema)
                    out[f"{flavor}/{c.key}"] = table.to_pandas() if pandas else table
        return out

    def _pick(self, session: str | None) -> tuple[dict[str, list[Channel]], str]:
        """The channels (flavor -> channels) and id of ``session``; None: the running session,
        else the newest stored one. Only the session asked for is listed: a listing reads the
        files of every session it lists."""
        stored = self.sessions(session or "*")
        if session is None:
            if not stored:
                raise LookupError(f"{self.url} has no stored session")
            running = self.manifest().get("session_id") if self.channels() else ""
            session = running if running in stored else max(stored)
        elif session not in stored:
            there = ", ".join(sorted(self.sessions())) or "none"
            raise LookupError(f"no session {session!r} at {self.url} (there are {there})")
        return stored[session], session

    def record_files(self, session: str, flavor: str, *, follow: bool = False,
                     stop: threading.Event | None = None) -> Iterator[tuple[str, bytes]]:
        """``(name, content)`` of each record file of one flavor of a session, byte for byte.

        With ``follow`` (the running session) a file comes again each time the run rewrites
        it, and the iteration ends after the final versions, once the run has stopped; such
        a stream is silent while no file changes, so it has no :class:`Watchdog`, and a
        thread reading it is ended by setting ``stop`` (its stream is cancelled).
        """
        ticket = {"records": session, "flavor": flavor, "follow": follow}
        what = f"the record files of {session} ({flavor})"
        files = FileAssembler()
        for batch in self._batches(self.open_stream(ticket, what), what, watched=not follow,
                                   stop=stop):
            for name in files.add(batch):
                yield name, files.files[name]

    def read_records(self, session: str | None = None) -> dict[str, bytes]:
        """``"FLAVOR/FILE"`` -> content of a session's record files (its metadata, settings
        snapshots and scan points tables; see :mod:`daqhub.records` for their layout), as
        stored. ``session`` None: as in :meth:`read_session`."""
        flavors, session = self._pick(session)
        return {f"{flavor}/{name}": data for flavor in sorted(flavors)
                for name, data in self.record_files(session, flavor)}

    # --- remote commands (the service must allow them) ------------------------------------

    def _action(self, kind: str, body: dict[str, Any] | None = None, what: str = "",
                wait: float = 0.0) -> Any:
        """An action, answered within the connection's timeout plus ``wait`` (how long the
        service itself may take: a remote command's wait)."""
        action = flight.Action(kind, json.dumps(body or {}).encode())
        options = self.options() if not wait else flight.FlightCallOptions(
            timeout=self.timeout + wait, headers=self._headers)
        with self._waiting_for(what or kind, self.timeout + wait):
            results = list(self.client.do_action(action, options))
        return json.loads(results[0].body.to_pybytes())

    def health(self) -> dict[str, Any]:
        return self._action("health")  # type: ignore[no-any-return]

    def call(self, instrument: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run an instrument command in the remote run and return its (JSON) result.

        The service waits for it as the Lab API does (:mod:`daqhub.command_limits`), so
        this waits that long too, plus the connection's timeout: with the connection's
        timeout alone, ``call("stage", "wait_until_done", timeout=30)`` gave up first. A
        ``timeout`` over a minute is seen here only when passed by keyword."""
        return self._action("call", {"instrument": instrument, "method": method,
                                     "args": list(args), "kwargs": kwargs},
                            f"the command {instrument}.{method}",
                            wait=limit_for(kwargs.get("timeout")))["result"]

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str, *, token: str | None = None, tls_root_certs: str | Path | None = None,
            timeout: float = 10.0, silence_limit: float = SILENCE_LIMIT_S) -> Connection:
    """A client of the daqhub data service at ``url`` (``grpc://host:port``, ``grpc+tls://``).

    ``token`` None: read from ``$DAQHUB_TOKEN`` when set. ``timeout``: the wait for each
    call's answer (or a stream's opening); ``silence_limit``: for each message of an open
    stream (see the module's docstring).
    """
    return Connection(url, token=token if token is not None else os.environ.get(
        DEFAULT_TOKEN_ENV), tls_root_certs=tls_root_certs, timeout=timeout,
        silence_limit=silence_limit)
