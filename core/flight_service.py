"""The live data service: a run's data over Apache Arrow Flight (``daqhub run --serve``).

Flight speaks the Arrow record batches the unified stream already carries, over gRPC, so any
Arrow-capable client can read a run; ``daqhub.connect``, ``daqhub tail`` and ``daqhub record``
(:mod:`daqhub.flight_client`) are such clients. One Flight stream is one channel: its schema is
the channel's unified-stream schema, so the declaration (unit, dtype, shape) travels in it.

Tickets are small JSON objects (at most :data:`MAX_TICKET_BYTES`):

``{"live": "INSTRUMENT/CHANNEL", "queue": N}``
    the channel's batches as the run produces them. Each subscriber has its own bounded queue
    (a lossy subscription of the unified stream): one that falls behind loses its *own* oldest
    batches and slows nobody. Every batch's ``app_metadata`` is JSON ``{"first_row": r,
    "dropped_batches": d}``: ``r`` is the index of its first row in the channel since the run
    started (the same index as in the session files), so a client knows exactly which rows it
    missed. The stream ends when the run stops.
``{"session": ID, "flavor": "v2", "channel": "INSTRUMENT/CHANNEL", "start": ROW}``
    a finished or running session's channel, read from its files (a running session is flushed
    first).
``{"records": ID, "flavor": "v2", "follow": false}``
    the session's record files (metadata, settings snapshots, points tables; see
    :mod:`daqhub.record_transfer`) as they are on disk, byte for byte; with ``follow`` (the
    running session) again whenever the run rewrites one, the final versions after it stops.
``{"manifest": "current"}``
    one row, column ``manifest``: JSON of what a copy of the session needs (session id, each
    flavor's backend, options, instruments and channel declarations, the lab file, versions).

``list_flights`` lists the live channels and every stored session's channels (criteria: an
fnmatch pattern on ``live/INSTRUMENT/CHANNEL`` or ``session/ID/FLAVOR/INSTRUMENT/CHANNEL``).
``do_action`` runs remote commands (``call``: an instrument command, ``health``) only when the
service was started with ``actions`` and a token.

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.flight as flight

from . import record_transfer, session_files
from .runtime.broadcast import Subscription, SubscriptionClosed
from .schema import channel_schema, describe
from .serve_config import ServeConfig, ServeConfigError
from .specs import Flavor
from .storage import check_id, is_session_id, versions_of

if TYPE_CHECKING:
    from .runtime.dual import DualRuntimeManager

log = logging.getLogger("daqhub.serve")

MAX_TICKET_BYTES = 4096
MAX_ACTION_BYTES = 64 * 1024
MAX_QUEUE_BATCHES = 1_000_000
#: queued batches of one channel are sent as one message up to this size
COALESCE_BYTES = 4 * 1024 * 1024
#: how often a live stream with nothing to send checks whether its client left
IDLE_CHECK_S = 0.2

Key = tuple[str, str]


def _channel_key(batch: pa.RecordBatch) -> Key:
    iid, spec = describe(batch.schema)  # cached on the schema metadata
    return iid, spec.name


class RowCounter(Subscription[pa.RecordBatch]):
    """Counts each channel's rows as the unified stream publishes them, storing nothing.

    Attached before any instrument runs (a runtime tap), and ahead of every live subscriber,
    so when a subscriber is offered a batch the count already includes it: the batch's first
    row index is ``count - num_rows``, the row's index in the session files too.
    """

    def __init__(self) -> None:
        super().__init__("flight-row-counter", lossless=False, capacity=1)
        self.rows: dict[Key, int] = {}

    def offer(self, item: pa.RecordBatch, timeout: float, wake: bool = True) -> bool:
        key = _channel_key(item)
        self.rows[key] = self.rows.get(key, 0) + item.num_rows
        return True


class ChannelFeed(Subscription[Any]):
    """One live subscriber: its channel's batches with their first row index, lossy."""

    def __init__(self, name: str, key: Key, capacity: int, counter: RowCounter) -> None:
        super().__init__(name, lossless=False, capacity=capacity)
        self.key = key
        self.counter = counter

    def offer(self, item: pa.RecordBatch, timeout: float, wake: bool = True) -> bool:
        if _channel_key(item) != self.key:
            return True
        first_row = self.counter.rows.get(self.key, item.num_rows) - item.num_rows
        return super().offer((item, first_row), timeout, wake)


def coalesce(items: list[tuple[pa.RecordBatch, int]]) -> list[tuple[pa.RecordBatch, int]]:
    """Consecutive queued batches of a channel as one (up to :data:`COALESCE_BYTES`).

    A subscriber that is behind then gets fewer, larger messages: each message costs a
    crossing into Python on both ends, more than copying its rows (measured by
    bench/flight_stream.py: ~2x the rows/s). One that keeps up gets each batch as it came.
    """
    out: list[tuple[pa.RecordBatch, int]] = []
    run: list[pa.RecordBatch] = []
    first = size = 0
    for batch, first_row in items:
        contiguous = bool(run) and first_row == first + sum(b.num_rows for b in run)
        if run and (not contiguous or size >= COALESCE_BYTES):
            out.append((run[0] if len(run) == 1 else pa.concat_batches(run), first))
            run = []
        if not run:
            first, size = first_row, 0
        run.append(batch)
        size += batch.nbytes
    if run:
        out.append((run[0] if len(run) == 1 else pa.concat_batches(run), first))
    return out


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

    def __init__(self, rt: DualRuntimeManager, config: ServeConfig, counter: RowCounter
                 ) -> None:
        tls = []
        if config.tls_cert is not None and config.tls_key is not None:
            tls = [flight.CertKeyPair(config.tls_cert.read_bytes(), config.tls_key.read_bytes())]
        middleware = {"token": TokenCheck(config.token)} if config.token else {}
        location = f"{config.scheme}://{config.host}:{config.port}"
        super().__init__(location, tls_certificates=tls, middleware=middleware)
        self.rt = rt
        self.config = config
        self.counter = counter
        self.host = config.host
        self._stop = threading.Event()
        self._feeds = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.config.scheme}://{host}:{self.port}"

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
                for c in session_files.channels(flavor, d):  # type: ignore[arg-type]
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
        capacity = req.get("queue", self.config.queue_batches)
        if not isinstance(capacity, int) or not 1 <= capacity <= MAX_QUEUE_BATCHES:
            raise _invalid(f"queue {capacity!r}: a whole number of batches, 1 to "
                           f"{MAX_QUEUE_BATCHES}")
        if self.rt.bridge is None:
            raise flight.FlightServerError("the run has not started")
        with self._lock:
            self._feeds += 1
            name = f"flight-live-{self._feeds}:{key[0]}/{key[1]}"
        feed = ChannelFeed(name, key, capacity, self.counter)
        unified = self.rt.bridge.unified
        unified.attach(feed)
        schema = channel_schema(key[0], spec, unified=True)
        return flight.GeneratorStream(schema, self._follow(context, feed, unified.detach))

    def _follow(self, context: Any, feed: ChannelFeed,
                detach: Callable[[Subscription[Any]], None]) -> Iterator[Any]:
        try:
            while True:
                try:
                    items = feed.get_many(IDLE_CHECK_S, 64)
                except SubscriptionClosed:
                    return
                for batch, first_row in coalesce(items):
                    meta = json.dumps({"first_row": first_row, "dropped_batches": feed.dropped})
                    yield batch, pa.py_buffer(meta.encode())
                if not items and (self._stop.is_set() or context.is_cancelled()):
                    return
        finally:
            detach(feed)
            feed.close()

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
        return flight.GeneratorStream(schema, session_files.read(found[0], start))

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
        try:
            result = self.rt.call(iid, method, *args, **kwargs)
        except KeyError as exc:
            raise _invalid(str(exc.args[0] if exc.args else exc)) from None
        except Exception as exc:
            raise flight.FlightServerError(f"{iid}.{method} failed: {exc}") from None
        return iter([json.dumps({"result": result}, default=str).encode()])

    # --- stopping ----------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> bool:
        """End live streams once they have sent what is queued, then stop serving.

        False when the server did not stop in ``timeout`` (a client that stopped reading
        holds its stream); it is then left to the process exit.
        """
        self._stop.set()
        done = threading.Event()

        def shut() -> None:
            self.shutdown()
            done.set()

        threading.Thread(target=shut, name="daqhub-serve-shutdown", daemon=True).start()
        return done.wait(timeout)


def start_service(rt: DualRuntimeManager, config: ServeConfig) -> FlightService:
    """Listen now, for ``rt`` (not started yet: the row counter must see its first batch)."""
    if rt.started:
        raise RuntimeError("start the data service before the run, so it sees every row")
    counter = RowCounter()
    try:
        service = FlightService(rt, config, counter)
    except pa.ArrowException as exc:  # gRPC logs the reason itself; say what to change
        raise ServeConfigError(f"cannot listen on {config.host}:{config.port} (in use, or not "
                               f"an address of this machine): {exc}") from exc
    rt.taps.append(counter)
    return service
