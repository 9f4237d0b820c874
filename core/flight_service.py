"""The live data service: a run's data over Apache Arrow Flight (``daqhub run --serve``).

Flight speaks the Arrow record batches the unified stream already carries, over gRPC, so any
Arrow-capable client can read a run; ``daqhub.connect``, ``daqhub tail`` and ``daqhub record``
(:mod:`daqhub.flight_client`) are such clients. One Flight stream is one channel: its schema is
the channel's unified-stream schema, so the declaration (unit, dtype, shape) travels in it.

Tickets are small JSON objects (at most :data:`MAX_TICKET_BYTES`):

``{"live": "INSTRUMENT/CHANNEL", "queue": N, "heartbeat": true}``
    the channel's batches as the run produces them. Each subscriber has its own bounded queue
    (lossy) of ``queue`` batches, at most the lab's ``queue_batches`` (its default): one that
    falls behind loses its *own* oldest batches and slows nobody. The
    :class:`RowCounter` hands each batch to its own channel's subscribers only, so the thread
    publishing a batch does work for the streams of that channel, not for every stream. At most
    ``live_streams`` streams are open at once (``live_streams_per_client`` from one client
    host); more are refused with ``FlightUnavailableError`` naming the limit. Every batch's
    ``app_metadata`` is JSON ``{"first_row": r, "dropped_batches": d}``: ``r`` is the index of
    its first row in the channel since the run started (the same index as in the session
    files), so a client knows exactly which rows it missed; the first message also holds
    ``"since_row"``, the channel's row count when the subscription began (rows dropped before
    the first batch are missed too). With ``heartbeat`` (optional) an idle stream sends a
    heartbeat every :data:`HEARTBEAT_S`: a zero-row batch with ``"heartbeat": true`` and
    ``first_row`` the next row it sends. A client that reads slowly (or not at all) loses
    its own oldest batches, counted, and keeps its place; one whose process froze or whose
    host went away is ended by gRPC's own keepalive. The stream ends when the run stops.
``{"session": ID, "flavor": "v2", "channel": "INSTRUMENT/CHANNEL", "start": ROW}``
    a finished or running session's channel, read from its files (a running session is flushed
    first), in messages of about :data:`MESSAGE_BYTES` (a file's batch is sliced: a client
    waits a limited time for each message).
``{"records": ID, "flavor": "v2", "follow": false}``
    the session's record files (metadata, settings snapshots, points tables; see
    :mod:`daqhub.record_transfer`) as they are on disk, byte for byte; with ``follow`` (the
    running session) again whenever the run rewrites one, the final versions after it stops.
``{"manifest": "current"}``
    one row, column ``manifest``: JSON of what a copy of the session needs (session id, each
    flavor's backend, options, instruments and channel declarations, the lab file, versions).

``list_flights`` lists the live channels and every stored session's channels (criteria: an
fnmatch pattern on ``live/INSTRUMENT/CHANNEL`` or ``session/ID/FLAVOR/INSTRUMENT/CHANNEL``).
A session's flavor whose files cannot be read (a truncated copy) is listed as
``session/ID/FLAVOR``, without endpoints, its schema empty but for the metadata
``daqhub.unreadable``: why (the error naming the file), whenever the criteria could match
its channels.
``do_action`` runs remote commands (``call``: an instrument command, its arguments checked as
the Lab API checks them; ``health``) only when the service was started with ``actions`` and a
token. Nothing else is offered: ``do_put``, ``do_exchange``, ``get_schema`` and
``get_flight_info`` are refused (:class:`OnlyServes`).

Security: bound to loopback by default; any other address needs a bearer token
(:mod:`daqhub.serve_config` refuses to start without one), checked on every call by a server
middleware; TLS when a certificate is configured. Bad requests get a Flight error that says
what was wrong (``ArrowInvalid`` = INVALID_ARGUMENT, unauthenticated, unauthorized) and touch
nothing: the run never sees them.
"""

from __future__ import annotations

import fnmatch
import hmac
import json
import logging
import re
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.flight as flight

from . import record_transfer, session_files
from .command_limits import NoResult, result_within, wait_limit
from .commands import ArgumentsRefused, NotSendable, driver_class, plain_result
from .runtime.broadcast import Subscription, SubscriptionClosed
from .runtime.dual import SERVICE_STOP_MIN_S
from .schema import META_UNREADABLE, channel_schema, describe
from .serve_config import ServeConfig, ServeConfigError
from .specs import Flavor
from .storage import check_id, is_session_id, versions_of

if TYPE_CHECKING:
    from .runtime.dual import DualRuntimeManager, ShutdownReport

log = logging.getLogger("daqhub.serve")

MAX_TICKET_BYTES = 4096
MAX_ACTION_BYTES = 64 * 1024
MAX_QUEUE_BATCHES = 1_000_000
#: the size of a stream's message, about: queued live batches of a channel are joined up to
#: it, stored rows sliced to it. A client waits at most its ``silence_limit`` for each whole
#: message (it cannot see one arriving), so a message must arrive well inside that even over a
#: slow link: 4 MiB take 2 s at 16 Mbit/s; an HDF5 read of 65 536 spectra (~105 MB) did not
MESSAGE_BYTES = 4 * 1024 * 1024
#: how often a live stream with nothing to send checks whether its client left (a stopping
#: service closes the feeds, which ends their streams at once)
IDLE_CHECK_S = 1.0
#: an idle live stream that asked for them sends a heartbeat (a zero-row batch) this often, so
#: that its client can tell a quiet channel from a host that stopped answering (its watchdog)
HEARTBEAT_S = 2.0

Key = tuple[str, str]


def _channel_key(batch: pa.RecordBatch) -> Key:
    iid, spec = describe(batch.schema)  # cached on the schema metadata
    return iid, spec.name


class ChannelFeed(Subscription[Any]):
    """One live subscriber: its channel's batches with their first row index, lossy."""

    def __init__(self, name: str, key: Key, capacity: int) -> None:
        super().__init__(name, lossless=False, capacity=capacity)
        self.key = key
        #: the channel's row count when the feed was added: the row its subscriber starts at
        self.since_row = 0


class RowCounter(Subscription[pa.RecordBatch]):
    """Counts each channel's rows as the unified stream publishes them, and hands each batch to
    the live feeds of its channel, storing nothing itself.

    Attached before any instrument runs (a runtime tap), so a feed's first row index is the
    row's index in the session files too. The feeds are not subscribers of the unified stream
    themselves: the publishing thread (an instrument's, or the v4 loop) offered every batch to
    every feed, each of which looked at its channel and threw most away; 200 streams cut a
    200 Hz stage to 75 Hz. Here one dict lookup finds the feeds that want the batch.
    """

    def __init__(self) -> None:
        super().__init__("flight-row-counter", lossless=False, capacity=1)
        self.rows: dict[Key, int] = {}
        #: channel -> its feeds; replaced, never changed in place (the publisher reads it bare)
        self.feeds: dict[Key, tuple[ChannelFeed, ...]] = {}
        self._feeds_lock = threading.Lock()
        #: feeds given a batch with wake=False (by the v4 loop), woken by :meth:`wake`
        self._unwoken: list[ChannelFeed] = []

    def add(self, feed: ChannelFeed) -> None:
        with self._feeds_lock:
            feeds = dict(self.feeds)
            feeds[feed.key] = (*feeds.get(feed.key, ()), feed)
            self.feeds = feeds
        # read once the feed is in: every batch counted later reaches it, so rows between
        # this count and its first batch's were dropped (it fell behind at once)
        feed.since_row = self.rows.get(feed.key, 0)

    def remove(self, feed: ChannelFeed) -> None:
        with self._feeds_lock:
            feeds = dict(self.feeds)
            left = tuple(f for f in feeds.get(feed.key, ()) if f is not feed)
            if left:
                feeds[feed.key] = left
            else:
                feeds.pop(feed.key, None)
            self.feeds = feeds

    def offer(self, item: pa.RecordBatch, timeout: float, wake: bool = True) -> bool:
        key = _channel_key(item)
        count = self.rows.get(key, 0) + item.num_rows
        self.rows[key] = count
        for feed in self.feeds.get(key, ()):
            try:
                feed.offer((item, count - item.num_rows), 0.0, wake)  # lossy: never waits
            except SubscriptionClosed:  # its stream is ending
                continue
            if not wake:
                self._unwoken.append(feed)
        return True

    def wake(self) -> None:
        """The unified stream wakes its consumers once per turn of the v4 loop: wake the feeds
        that were given batches meanwhile."""
        feeds, self._unwoken = self._unwoken, []
        for feed in set(feeds):
            feed.wake()


def coalesce(items: list[tuple[pa.RecordBatch, int]], limit: int = MESSAGE_BYTES
             ) -> list[tuple[pa.RecordBatch, int]]:
    """Consecutive queued batches of a channel as one (up to ``limit`` bytes).

    A subscriber that is behind then gets fewer, larger messages: each message costs a
    crossing into Python on both ends, more than copying its rows (measured by
    bench/flight_stream.py: ~2x the rows/s). One that keeps up gets each batch as it came.
    """
    out: list[tuple[pa.RecordBatch, int]] = []
    run: list[pa.RecordBatch] = []
    first = size = 0
    for batch, first_row in items:
        contiguous = bool(run) and first_row == first + sum(b.num_rows for b in run)
        if run and (not contiguous or size >= limit):
            out.append((run[0] if len(run) == 1 else pa.concat_batches(run), first))
            run = []
        if not run:
            first, size = first_row, 0
        run.append(batch)
        size += batch.nbytes
    if run:
        out.append((run[0] if len(run) == 1 else pa.concat_batches(run), first))
    return out


def sliced(batches: Iterable[pa.RecordBatch], limit: int = MESSAGE_BYTES
           ) -> Iterator[pa.RecordBatch]:
    """Each batch in slices of about ``limit`` bytes (a row at least), as the messages of a
    stored channel's stream: a file's batch can be far larger (an HDF5 read of
    :data:`~daqhub.session_files.READ_ROWS` rows), and a client's watchdog times whole
    messages. A slice shares its batch's memory; only its rows are sent."""
    for batch in batches:
        if batch.nbytes <= limit:
            yield batch
            continue
        step = max(1, batch.num_rows * limit // batch.nbytes)
        for lo in range(0, batch.num_rows, step):
            yield batch.slice(lo, step)


class TokenCheck(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Every call must carry ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._expected = f"Bearer {token}".encode()

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> None:
        sent = headers.get("authorization") or []
        given = sent[0] if sent else ""
        given_b = given.encode() if isinstance(given, str) else bytes(given)
        if not sent:
            raise flight.FlightUnauthenticatedError(
                "this daqhub service needs a bearer token (daqhub tail/record read it from "
                "$DAQHUB_TOKEN; daqhub.connect(url, token=...))")
        if not hmac.compare_digest(given_b, self._expected):
            raise flight.FlightUnauthenticatedError("wrong token for this daqhub service")
        return None


class OnlyServes(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Refuses the Flight calls this service does not offer (uploads, exchanges, and a
    flight's info or schema alone: ``list_flights`` gives both).

    Here, not in methods of the service: pyarrow answered each with an empty
    NotImplementedError and the server's Python traceback, source paths included, and sends
    whatever ``get_schema`` raises so too; a Flight error raised by middleware goes to the
    client with its message alone.
    """

    NOT_OFFERED = {flight.FlightMethod.DO_PUT: "do_put", flight.FlightMethod.DO_EXCHANGE:
                   "do_exchange", flight.FlightMethod.GET_SCHEMA: "get_schema",
                   flight.FlightMethod.GET_FLIGHT_INFO: "get_flight_info"}

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> None:
        name = self.NOT_OFFERED.get(info.method)
        if name is not None:
            raise flight.FlightServerError(
                f"this daqhub service only serves data: {name} is not offered (list_flights "
                "lists what there is with its schema and ticket; do_get reads it)")
        return None


def client_host(peer: str | bytes) -> str:
    """The client's host from a gRPC peer (``ipv4:10.0.0.7:53412``, ``ipv6:%5B::1%5D:53412``).

    The limit per client counts by host, not by connection: one client may open many. gRPC
    sends an IPv6 peer URL-encoded, and a message named the client ``%5B::1%5D``.
    """
    text = unquote(peer.decode(errors="replace") if isinstance(peer, bytes) else str(peer))
    kind, _, address = text.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in address:
        return address.rsplit(":", 1)[0].strip("[]")
    return text


def _invalid(message: str) -> pa.ArrowInvalid:
    return pa.ArrowInvalid(message)


def _parse_json(raw: bytes, limit: int, what: str) -> dict[str, Any]:
    if len(raw) > limit:
        raise _invalid(f"{what} is {len(raw)} bytes; at most {limit} are accepted")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _invalid(f"{what} is not JSON ({exc}); e.g. {{\"live\": \"stage/position\"}}"
                       ) from None
    except RecursionError:  # [[[...]]] a few thousand deep, well within the size limit
        raise _invalid(f"{what} is not JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise _invalid(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _split_channel(text: Any) -> Key:
    if not isinstance(text, str) or text.count("/") != 1:
        raise _invalid(f"channel {text!r}: expected \"INSTRUMENT/CHANNEL\"")
    iid, ch = text.split("/")
    for value, what in ((iid, "instrument id"), (ch, "channel name")):
        why = check_id(value, what)
        if why:
            raise _invalid(why)
    return iid, ch


class FlightService(flight.FlightServerBase):  # type: ignore[misc]
    """Serves one running lab (its live stream, its sessions' files, optional commands)."""

    #: :data:`HEARTBEAT_S` of this service (a test shortens it)
    heartbeat_s = HEARTBEAT_S
    #: :data:`MESSAGE_BYTES` of this service (a test lowers it)
    message_bytes = MESSAGE_BYTES

    def __init__(self, rt: DualRuntimeManager, config: ServeConfig, counter: RowCounter
                 ) -> None:
        tls = []
        if config.tls_cert is not None and config.tls_key is not None:
            tls = [flight.CertKeyPair(config.tls_cert.read_bytes(), config.tls_key.read_bytes())]
        middleware: dict[str, flight.ServerMiddlewareFactory] = (
            {"token": TokenCheck(config.token)} if config.token else {})
        middleware["offers"] = OnlyServes()  # after the token: a stranger learns nothing
        location = f"{config.scheme}://{config.address()}"
        super().__init__(location, tls_certificates=tls, middleware=middleware)
        self.rt = rt
        self.config = config
        self.counter = counter
        self.host = config.host
        self._stop = threading.Event()
        self._feeds = 0
        self._lock = threading.Lock()
        #: open live streams -> the client host each serves (for the limits)
        self._streams: dict[ChannelFeed, str] = {}

    @property
    def url(self) -> str:
        return f"{self.config.scheme}://{self.config.address(self.port)}"

    # --- what there is -----------------------------------------------------------------

    def _live_channels(self) -> dict[Key, Any]:
        return dict(self.rt.channels) if not self._stop.is_set() else {}

    def _session_dirs(self) -> dict[str, dict[str, Path]]:
        """session id -> flavor -> its directory, for every session under the lab's dirs."""
        out: dict[str, dict[str, Path]] = {}
        for flavor, fc in self.rt.lab.flavors.items():
            base = Path(fc.output_dir)
            if not base.is_dir():
                continue
            for d in base.iterdir():
                if d.is_dir() and is_session_id(d.name):
                    out.setdefault(d.name, {})[flavor] = d
        if self.rt.storage is not None:
            for flavor, d in self.rt.storage.directories.items():
                out.setdefault(self.rt.session_id, {})[flavor] = d
        return out

    def list_flights(self, context: Any, criteria: bytes) -> Iterator[flight.FlightInfo]:
        pattern = criteria.decode("utf-8", errors="replace") if criteria else "*"
        if len(pattern) > MAX_TICKET_BYTES:
            raise _invalid(f"criteria of {len(pattern)} bytes; at most {MAX_TICKET_BYTES}")
        literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]

        def may_match(prefix: str) -> bool:  # skip what cannot match before reading files
            return prefix.startswith(literal) or literal.startswith(prefix)

        for (iid, ch), spec in sorted(self._live_channels().items()):
            path = f"live/{iid}/{ch}"
            if fnmatch.fnmatchcase(path, pattern):
                yield self._info(path, channel_schema(iid, spec, unified=True),
                                 {"live": f"{iid}/{ch}"}, -1)
        for sid, flavors in sorted(self._session_dirs().items()):
            for flavor, d in sorted(flavors.items()):
                if not may_match(f"session/{sid}/{flavor}/"):
                    continue
                try:
                    stored = session_files.channels(flavor, d)  # type: ignore[arg-type]
                except OSError as exc:  # one bad old file failed every listing, and the reads
                    log.warning("session %s (%s) not listed: %s", sid, flavor, exc)
                    yield self._unreadable(sid, flavor, str(exc))
                    continue
                for c in stored:
                    path = f"session/{sid}/{flavor}/{c.instrument_id}/{c.spec.name}"
                    if fnmatch.fnmatchcase(path, pattern):
                        yield self._info(path, channel_schema(c.instrument_id, c.spec,
                                                              unified=True),
                                         {"session": sid, "flavor": flavor,
                                          "channel": f"{c.instrument_id}/{c.spec.name}"},
                                         c.rows)

    def _info(self, path: str, schema: pa.Schema, ticket: dict[str, Any], rows: int
              ) -> flight.FlightInfo:
        descriptor = flight.FlightDescriptor.for_path(*path.split("/"))
        endpoint = flight.FlightEndpoint(json.dumps(ticket).encode(), [])
        return flight.FlightInfo(schema, descriptor, [endpoint], rows, -1)

    @staticmethod
    def _unreadable(sid: str, flavor: str, why: str) -> flight.FlightInfo:
        """The listing's entry for a session's flavor whose files cannot be read: said, so that
        a client is not shown the session as if that flavor had no channels (a copy of an
        ended run was reported complete, its rows missing)."""
        schema = pa.schema([], metadata={META_UNREADABLE: why})
        return flight.FlightInfo(schema, flight.FlightDescriptor.for_path("session", sid, flavor),
                                 [], -1, -1)

    # --- data --------------------------------------------------------------------------

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.FlightDataStream:
        req = _parse_json(ticket.ticket, MAX_TICKET_BYTES, "ticket")
        kinds = [k for k in ("live", "session", "records", "manifest") if k in req]
        if len(kinds) != 1:
            raise _invalid(f"ticket {sorted(req)}: give exactly one of live, session, records, "
                           "manifest")
        if kinds[0] == "live":
            return self._live(context, req)
        if kinds[0] == "session":
            return self._stored(req)
        if kinds[0] == "records":
            return self._records(context, req)
        return self._manifest(req)

    def _live(self, context: Any, req: dict[str, Any]) -> flight.FlightDataStream:
        key = _split_channel(req["live"])
        spec = self._live_channels().get(key)
        if spec is None:
            known = ", ".join(f"{i}/{c}" for i, c in sorted(self._live_channels())) or "none"
            raise flight.FlightServerError(f"no live channel {key[0]}/{key[1]} (live: {known})")
        asked = req.get("queue", self.config.queue_batches)
        if not isinstance(asked, int) or not 1 <= asked <= MAX_QUEUE_BATCHES:
            raise _invalid(f"queue {asked!r}: a whole number of batches, 1 to "
                           f"{MAX_QUEUE_BATCHES}")
        # the lab's queue_batches bounds what a client may ask: a client's own 1,000,000 on
        # 120 streams that read slowly grew the run by 3 MB/s (daqhub's clients ask 1000)
        capacity = min(asked, self.config.queue_batches)
        beats = req.get("heartbeat", False)  # asked for: an older client has no use for them
        if not isinstance(beats, bool):
            raise _invalid(f"heartbeat {beats!r}: true or false")
        if self.rt.bridge is None:
            raise flight.FlightServerError("the run has not started")
        client = client_host(context.peer())
        with self._lock:
            self._check_stream_limits(client)
            self._feeds += 1
            feed = ChannelFeed(f"flight-live-{self._feeds}:{key[0]}/{key[1]}", key, capacity)
            self._streams[feed] = client
        self.counter.add(feed)
        schema = channel_schema(key[0], spec, unified=True)
        heartbeat = pa.RecordBatch.from_pylist([], schema=schema) if beats else None
        follow = self._follow(context, feed, heartbeat)
        # a stream whose client left before it began never runs its generator's finally
        weakref.finalize(follow, self._release, feed)
        return flight.GeneratorStream(schema, follow)

    def _check_stream_limits(self, client: str) -> None:
        """Refuse one more live stream beyond the service's limits (held: ``self._lock``).

        Each open stream holds a server thread that wakes for its channel's batches; a few
        hundred of them slow the instruments' own threads (GIL), so their number is bounded.
        """
        total, per_client = self.config.live_streams, self.config.live_streams_per_client
        if len(self._streams) >= total:
            raise flight.FlightUnavailableError(
                f"this service already serves {total} live streams, its limit (one stream per "
                "channel per client); close some, or raise [daqhub.serve] live_streams")
        mine = sum(1 for c in self._streams.values() if c == client)
        if mine >= per_client:
            raise flight.FlightUnavailableError(
                f"{client} already has {per_client} live streams open here, the limit per "
                "client host (one stream per channel subscribed); close some, or raise "
                "[daqhub.serve] live_streams_per_client")

    def _release(self, feed: ChannelFeed) -> None:
        """The stream of ``feed`` ended (or never began): stop feeding it; free its place.
        Once per stream: a stream that ran is released by its generator's end and again by
        the finalizer kept for one that never ran."""
        with self._lock:
            if self._streams.pop(feed, None) is None:
                return
        self.counter.remove(feed)
        feed.close()

    def live_streams(self) -> int:
        """How many live streams are open now."""
        with self._lock:
            return len(self._streams)

    def _follow(self, context: Any, feed: ChannelFeed, heartbeat: pa.RecordBatch | None
                ) -> Iterator[Any]:
        """The feed's batches, and on an idle stream ``heartbeat`` (when the ticket asked for
        them) every :attr:`heartbeat_s`.

        A heartbeat is a zero-row batch marked ``"heartbeat": true``: a Flight message without
        a batch cannot be sent from pyarrow's GeneratorStream, and a daqhub client handed one
        (``chunk.data`` None) took it for a broken link; an older one passed an empty batch
        on, hence only on request. Its ``first_row`` is the next row the stream sends (a
        client counts no loss from it). The first message also carries ``since_row``
        (:attr:`ChannelFeed.since_row`), from which the client counts rows lost before the
        first batch.
        """
        first: dict[str, Any] = {"since_row": feed.since_row}  # told with the first message
        next_row, quiet = feed.since_row, time.monotonic()
        try:
            while True:
                try:
                    items = feed.get_many(min(IDLE_CHECK_S, self.heartbeat_s), 64)
                except SubscriptionClosed:
                    return
                for batch, first_row in coalesce(items, self.message_bytes):
                    yield self._send(feed, batch, {**first, "first_row": first_row})
                    first, next_row = {}, first_row + batch.num_rows
                if items:
                    quiet = time.monotonic()
                elif self._stop.is_set() or context.is_cancelled():
                    return
                elif heartbeat is not None and time.monotonic() - quiet >= self.heartbeat_s:
                    yield self._send(feed, heartbeat, {**first, "first_row": next_row,
                                                       "heartbeat": True})
                    first, quiet = {}, time.monotonic()
        finally:
            self._release(feed)

    @staticmethod
    def _send(feed: ChannelFeed, batch: pa.RecordBatch, meta: dict[str, Any]
              ) -> tuple[pa.RecordBatch, pa.Buffer]:
        """One message of a live stream, with the batches its client has lost so far."""
        meta["dropped_batches"] = feed.dropped
        return batch, pa.py_buffer(json.dumps(meta).encode())

    def _session_dir(self, sid: Any, flavor: Any) -> tuple[Flavor, Path]:
        """The flavor and directory of a stored session named in a ticket."""
        if not isinstance(sid, str) or (not is_session_id(sid) and check_id(sid) is not None):
            raise _invalid(f"session {sid!r} is not a session id")
        flavors = self._session_dirs().get(sid)
        if not flavors:
            raise flight.FlightServerError(f"no session {sid} here")
        if flavor not in flavors:
            raise _invalid(f"flavor {flavor!r}: session {sid} has {', '.join(sorted(flavors))}")
        return flavor, flavors[flavor]

    def _records(self, context: Any, req: dict[str, Any]) -> flight.FlightDataStream:
        sid, follow = req["records"], req.get("follow", False)
        if not isinstance(follow, bool):
            raise _invalid(f"follow {follow!r}: true or false")
        _, directory = self._session_dir(sid, req.get("flavor"))
        follow = follow and sid == self.rt.session_id and not self._stop.is_set()
        return flight.GeneratorStream(record_transfer.RECORDS_SCHEMA, record_transfer.file_batches(
            directory, follow, self._stop, context.is_cancelled))

    def _stored(self, req: dict[str, Any]) -> flight.FlightDataStream:
        sid, flavor, start = req["session"], req.get("flavor"), req.get("start", 0)
        if not isinstance(start, int) or start < 0:
            raise _invalid(f"start {start!r}: a row index, 0 or more")
        key = _split_channel(req.get("channel"))
        flavor, directory = self._session_dir(sid, flavor)
        if sid == self.rt.session_id and self.rt.storage is not None and not self._stop.is_set():
            try:
                self.rt.storage.flush()  # what the run has stored so far, not a second ago
            except Exception as exc:  # closed meanwhile: the files are complete then
                log.debug("flush before serving %s: %r", sid, exc)
        found = [c for c in session_files.channels(flavor, directory)
                 if (c.instrument_id, c.spec.name) == key]
        if not found:
            raise flight.FlightServerError(f"session {sid} ({flavor}) has no channel "
                                           f"{key[0]}/{key[1]}")
        schema = channel_schema(key[0], found[0].spec, unified=True)
        return flight.GeneratorStream(schema, sliced(session_files.read(found[0], start),
                                                     self.message_bytes))

    def manifest(self) -> dict[str, Any]:
        rt = self.rt
        flavors: dict[str, Any] = {}
        for flavor, plan in rt.storage_plans.items():
            flavors[str(flavor)] = {
                "backend": plan.backend, "options": dict(plan.options),
                "instruments": {i: dict(b) for i, b in plan.instruments.items()},
                "channels": {i: [s.to_dict() for s in specs]
                             for i, specs in plan.channels.items()}}
        return {"session_id": rt.session_id, "running": not self._stop.is_set(),
                "flavors": flavors, "lab_config": rt.lab.text,
                "versions": versions_of(rt.host)}

    def _manifest(self, req: dict[str, Any]) -> flight.FlightDataStream:
        if req["manifest"] not in ("current", self.rt.session_id):
            raise _invalid(f"manifest {req['manifest']!r}: only the current session's "
                           "(\"current\") is served")
        text = json.dumps(self.manifest(), default=str)
        return flight.RecordBatchStream(pa.table({"manifest": [text]}))

    # --- remote commands ---------------------------------------------------------------

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        if not self.config.actions:
            return []
        return [("health", "the run's health (instruments, queues, alarms) as JSON"),
                ("call", "{\"instrument\": ID, \"method\": NAME, \"args\": [...]}: run an "
                         "instrument command, reply JSON {\"result\": ...}")]

    def do_action(self, context: Any, action: flight.Action) -> Iterator[bytes]:
        if not self.config.actions:
            raise flight.FlightUnauthorizedError(
                "remote commands are off on this service (serve with actions = true and a "
                "token)")
        body = action.body.to_pybytes() if action.body is not None else b""
        if action.type == "health":
            return iter([json.dumps(self.rt.health(), default=str).encode()])
        if action.type != "call":
            raise _invalid(f"unknown action {action.type!r}; there are health and call")
        req = _parse_json(body, MAX_ACTION_BYTES, "call")
        iid, method = req.get("instrument"), req.get("method")
        args, kwargs = req.get("args", []), req.get("kwargs", {})
        if not (isinstance(iid, str) and isinstance(method, str) and isinstance(args, list)
                and isinstance(kwargs, dict)) or method.startswith("_"):
            raise _invalid("call needs {\"instrument\": ID, \"method\": NAME, "
                           "\"args\": [...], \"kwargs\": {...}}")
        result = self._call(iid, method, args, kwargs)
        try:
            text = json.dumps({"result": plain_result(result)})
        except NotSendable as exc:
            raise flight.FlightServerError(
                f"{iid}.{method} ran, but its result cannot be sent: it holds {exc}, which has "
                "no JSON form (the command may have had its effect)") from None
        return iter([text.encode()])

    def _call(self, iid: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run a remote command, waiting here for at most what the command itself allows.

        Every keyword goes to the instrument (``rt.call`` took ``timeout`` as its own: the
        driver never saw it, and a client could make this thread wait forever with
        ``"timeout": null``); how long to wait is the server's decision, from the method's
        own ``timeout`` argument (:func:`daqhub.command_limits.wait_limit`).
        """
        itype = self.rt.types.get(iid)
        try:
            fut = self.rt.submit(iid, method, *args, **kwargs)
        except ArgumentsRefused as exc:  # the Lab API's message; nothing was sent
            raise _invalid(str(exc)) from None
        except KeyError as exc:
            raise _invalid(str(exc.args[0] if exc.args else exc)) from None
        except Exception as exc:  # not sent: shutting down, failed actor, full mailbox
            raise flight.FlightServerError(f"{iid}.{method} failed: {exc}") from None
        limit = wait_limit(None if itype is None else driver_class(itype), method,
                           tuple(args), kwargs)
        try:
            result = result_within(fut, limit)
        except NoResult:
            fut.cancel()
            raise flight.FlightServerError(f"{iid}.{method}: no result within {limit:g} s"
                                           ) from None
        except Exception as exc:  # a driver's own TimeoutError is the driver's answer
            raise flight.FlightServerError(f"{iid}.{method} failed: {exc}") from None
        self.rt.command_done(iid, method)
        return result

    # --- stopping ----------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> bool:
        """End live streams once they have sent what is queued, then stop serving.

        False when the server did not stop in ``timeout`` (a client that stopped reading
        holds its stream): it is then :func:`held_open` until it does, and the ``daqhub``
        command ends its process without waiting for it (pyarrow shuts every server down at
        exit and would wait for that client to read again, for ever if it never does).
        """
        self._stop.set()
        with self._lock:
            feeds = list(self._streams)
        for feed in feeds:  # each stream sends what it holds, then ends
            feed.close()
        done = threading.Event()

        def shut() -> None:
            self.shutdown()
            done.set()
            _HELD.discard(self)

        _HELD.add(self)
        threading.Thread(target=shut, name="daqhub-serve-shutdown", daemon=True).start()
        return done.wait(timeout)

    def stop_after(self, report: ShutdownReport) -> str | None:
        """Stop once the run has shut down (``report``), within what its shutdown left of the
        lab's ``shutdown_timeout``, its time in the report's "took"
        (``ShutdownReport.stop_in_budget``). What to tell the user if it did not stop in time
        (who holds it), else None.

        The one rule for ``daqhub run`` and ``Lab.close``: a stop after the runtime's with 5 s
        of its own took a shutdown with a frozen client past its budget (15 s, the report 19 s
        after SIGTERM), and the report's "took" left those seconds out.
        """
        total = self.rt.phases.total_s
        with self._lock:  # a stream whose client stopped reading leaves this list as it
            # ends, yet its call lasts until the client has taken what was sent: named now
            streams: dict[str, list[str]] = {}
            for feed, client in self._streams.items():
                streams.setdefault(client, []).append("/".join(feed.key))
        stopped, limit = report.stop_in_budget(self.stop, total)
        if stopped:
            return None
        held = ("; live streams open as it stopped: " + "; ".join(
            f"to {client}: " + ", ".join(k if keys.count(k) == 1 else f"{k} ({keys.count(k)})"
                                         for k in sorted(set(keys)))
            for client, keys in sorted(streams.items())) if streams else "")
        return (f"the data service did not stop within {limit:.1f} s (the rest of "
                f"shutdown_timeout = {total:g} s, at least {SERVICE_STOP_MIN_S:g} s): a client "
                f"stopped reading{held}")


#: services stopping whose server has not stopped yet (a client that stopped reading)
_HELD: set[FlightService] = set()


def held_open() -> bool:
    """Whether a service of this process was stopped and its server still waits on a client
    that stopped reading: the process's exit would wait for it (see ``daqhub.__main__``)."""
    return bool(_HELD)


def start_service(rt: DualRuntimeManager, config: ServeConfig) -> FlightService:
    """Listen now, for ``rt`` (not started yet: the row counter must see its first batch)."""
    if rt.started:
        raise RuntimeError("start the data service before the run, so it sees every row")
    counter = RowCounter()
    try:
        service = FlightService(rt, config, counter)
    except pa.ArrowException as exc:  # gRPC logs the reason itself; say what to change
        # gRPC's "Server did not start properly" is also what a bad certificate or key gives
        raise ServeConfigError(config.tls_problem() or (
            f"cannot listen on {config.address()} (in use, or not an address of this "
            f"machine): {exc}")) from exc
    rt.taps.append(counter)
    return service
