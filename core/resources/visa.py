"""Shared VISA sessions: one ResourceManager per backend, one session per resource.

VISA lets many sessions talk to one instrument, but SCPI answers in order, so two users
interleaving ``write``/``read`` get each other's replies; pyvisa-sim even tears replies when two
threads share one session (measured: 4 threads on one pyvisa-sim session gave another
thread's reply, torn replies and timeouts; with a lock around ``query`` none). Every
instrument naming a resource therefore gets the same :class:`SharedVisaResource`, and its
I/O runs as transactions under a gate (see :mod:`.gate`). The gate's scope is configurable:

* ``resource`` (default): one lock per resource;
* ``board``: one lock per interface board (all of GPIB0), for bus arbitration;
* ``global``: one lock for all VISA I/O, for a VISA library that is not thread-safe.

The manager is meant to exist once per process (the runtime creates it), which makes its
ResourceManagers one per backend per process.

A session whose transport is lost (a LAN instrument rebooted, a socket reset) is not
reopened by pyvisa: every later call fails. The shared resource notices connection
errors (also in the cause chain of a driver's error), fails calls with
:class:`VisaDisconnectedError` while it is down, and reopens the session from a reconnect
thread with backoff, telling listeners ``disconnected`` and ``reconnected`` like a serial
port (:mod:`.shared`). A reply timeout alone does not count as a lost session.

Ownership: each session (and each reopened one) takes VISA's exclusive lock (``lock_excl``),
so another program's session is refused while this process holds the resource, and a
resource another program has locked is refused here with :class:`ResourceBusyError`. Not
every backend can lock: pyvisa-sim has no locking (``NotImplementedError``) and pyvisa-py
answers "operation not supported" for its session types; there the session is used
unlocked and ``stats()["exclusive"]`` says why. VISA's lock binds only VISA sessions, so it
does not stop a daqhub process opening the line as a serial port: an ``ASRL`` resource on a local
device path (``ASRL/dev/ttyUSB0::INSTR``) therefore also holds that device's ownership record
(:func:`.identity.visa_serial_identity`, :mod:`.ownership`), the one ``port = "/dev/ttyUSB0"``
takes, from the first open to the close, and a second daqhub process is refused naming the
holder whichever way either names the device.

A pyvisa-sim backend (``path/file.yaml@sim``) reads its definitions file only when its
ResourceManager is created, and reports a problem there as its own traceback escaped into
the message, twice over. :func:`sim_file_problem` reads the file with pyvisa-sim's own
loader instead (no session is opened) and says what is wrong in one line: validation reports
it against the lab line, and the manager raises it in place of pyvisa-sim's message.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

import pyvisa
from pyvisa import rname

from .errors import (
    ResourceBusyError,
    ResourceClosedError,
    ResourceConfigConflictError,
    VisaDisconnectedError,
)
from .filelock import FileLock
from .gate import DEFAULT_TIMEOUT_S, Gate, dump_gates
from .identity import normalize_backend, visa_identity, visa_serial_identity
from .lease import Leasable, Lease
from .ordering import DEFAULT_CHECKER, VISA_ORDER, LockOrderChecker, default_owner
from .ownership import claim
from .serial import OWED_REPLIES_KEPT
from .shared import EventSource, SharedResource

T = TypeVar("T")
LockScope = Literal["resource", "board", "global"]


_LOST_CODES = (pyvisa.constants.StatusCode.error_connection_lost,
               pyvisa.constants.StatusCode.error_resource_not_found,
               pyvisa.constants.StatusCode.error_invalid_object)


def _connection_lost(exc: BaseException | None) -> bool:
    """A transport failure (not a mere reply timeout) that leaves the session unusable.

    Drivers wrap pyvisa's errors in their own (``raise DriverError(...) from exc``), so the
    cause chain is searched too.
    """
    for _ in range(5):
        if exc is None:
            return False
        if isinstance(exc, pyvisa.errors.VisaIOError):
            if exc.error_code in _LOST_CODES:
                return True
        elif isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _timed_out(exc: BaseException) -> bool:
    """pyvisa's reply timeout: the reply may still come, late."""
    return (isinstance(exc, pyvisa.errors.VisaIOError)
            and exc.error_code == pyvisa.constants.StatusCode.error_timeout)


_BUSY_CODES = (pyvisa.constants.StatusCode.error_resource_locked,
               pyvisa.constants.StatusCode.error_timeout)


def open_exclusive(rm: Any, name: str, settings: dict[str, Any]) -> tuple[Any, str]:
    """Open a session and lock it exclusively where the backend can; returns the session
    and what became of the lock ("locked", or why not)."""
    session = rm.open_resource(name, **settings)
    try:
        session.lock_excl(timeout=0)
    except (NotImplementedError, AttributeError):
        return session, "unlocked: this VISA backend cannot lock"
    except pyvisa.errors.VisaIOError as exc:
        if exc.error_code not in _BUSY_CODES:
            return session, f"unlocked: the backend refused to lock ({exc.abbreviation})"
        try:
            session.close()
        finally:
            raise ResourceBusyError(
                f"VISA resource {name} is locked by another session (another program, or a "
                f"daqhub process on this or another machine): {exc}; close it there first",
                resource=name, holder=None) from exc
    return session, "locked"


#: how pyvisa begins when it found no VISA library, or none that loads (the reasons follow,
#: one a line: none at all when it found none)
NO_LIBRARY = "Could not open VISA library"


def visa_error_text(exc: Exception) -> str:
    """Why a VISA backend did not open, in words: pyvisa says nothing when no library exists.
    ``daqhub ports`` and the start of a run say it alike."""
    text = str(exc).strip()
    if text.rstrip(":") == NO_LIBRARY:
        return ("no VISA library found on this machine (pyvisa looked for NI-VISA, Keysight "
                "IO Libraries and other IVI VISA libraries by their usual names); install one, "
                "or use @py (pyvisa-py, installed with daqhub)")
    if text.startswith(f"{NO_LIBRARY}:"):
        return "a VISA library was found but did not load: " + "; ".join(
            line.strip() for line in text.splitlines()[1:] if line.strip())
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def sim_file_problem(backend: str, resource: str | None = None) -> str:
    """Why pyvisa-sim cannot simulate ``resource`` (or anything) with the definitions file of
    ``backend``, in one line naming the file (and a YAML error's line and column); '' when it
    can, and for a backend that names no file (``@py``, pyvisa-sim's own ``@sim``)."""
    path, at, library = normalize_backend(backend).rpartition("@")
    if not (at and path and library == "sim"):
        return ""
    try:
        stat = os.stat(path)
    except OSError as exc:
        return f"simulation file {path}: {exc.strerror}"
    problem, names = _read_sim_file(path, stat.st_mtime_ns, stat.st_size, stat.st_ino)
    if problem or resource is None:
        return problem
    try:
        wanted = rname.to_canonical_name(resource.strip())  # as pyvisa-sim names the file's
    except rname.InvalidResourceName:
        return ""  # the resource name's own check says what is wrong with it
    if wanted in names:
        return ""
    return (f"simulation file {path} defines no resource {wanted} (it defines "
            f"{', '.join(names) or 'none'})")


@functools.lru_cache(maxsize=16)
def _read_sim_file(path: str, *version: int) -> tuple[str, tuple[str, ...]]:
    """Why pyvisa-sim refuses the file, else the resources it defines.

    Cached while the file is unchanged (``version``: its modification time, size and inode):
    pyvisa-sim takes about 50 ms to read a small file, and a lab's instruments often share one.
    """
    try:
        from pyvisa_sim import parser
    except ImportError:
        return (f"simulation file {path} needs pyvisa-sim, which is not installed: "
                "pip install pyvisa-sim"), ()
    try:
        devices = parser.get_devices(path, False)
    except Exception as exc:  # pyvisa-sim lets whatever its reading of the file raised through
        return f"simulation file {path}{_sim_load_error(exc)}", ()
    return "", tuple(devices.list_resources())


def _sim_load_error(exc: BaseException) -> str:
    """pyvisa-sim's complaint about a file: ``, line L, column C: problem`` or ``: message``.

    A YAML error is in the context chain: pyvisa-sim re-raises it with the traceback as its
    text (a decoding error it fails to re-raise: a TypeError). Its other errors are its first
    line, and the root cause when pyvisa-sim appended that (as a repr or a traceback).
    """
    import yaml  # pyvisa-sim's own dependency

    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for e in reversed(chain):
        if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
            at, context = e.problem_mark, e.context or ""
            if context and e.context_mark is not None:
                context += f" at line {e.context_mark.line + 1}, column {e.context_mark.column + 1}"
            return (f", line {at.line + 1}, column {at.column + 1}: {e.problem or e.context}"
                    + (f" ({context})" if context and e.problem else ""))
        if isinstance(e, UnicodeDecodeError):
            return f": not UTF-8 text ({e.reason})"
        if isinstance(e, yaml.YAMLError):
            return f": {str(e).strip().splitlines()[0]}"
    outer, root = chain[0], chain[-1]
    if isinstance(outer, KeyError) and outer.args and "\n" not in str(outer.args[0]):
        return f": missing key {outer.args[0]!r}"
    text = str(outer.args[0]) if isinstance(outer, KeyError) and outer.args else str(outer)
    first, _, rest = text.strip().partition("\n")
    if rest and root is not outer:
        first += f" ({type(root).__name__}: {root})"
    return f": {first or type(outer).__name__}"


def _board_of(name: str) -> str:
    parsed = rname.parse_resource_name(name)
    return f"{parsed.interface_type}{getattr(parsed, 'board', '')}"


class NotOpen:
    """The session of a resource that could not be opened yet (the manager's
    ``open_absent``): closing it closes nothing."""

    def close(self) -> None:
        """Nothing is open."""


class SharedVisaResource(SharedResource[Any]):
    """One VISA session shared by every instrument that names the resource."""

    what = "VISA resource"

    def __init__(self, manager: VisaSessionManager, name: str, backend: str, gate: Gate,
                 session: tuple[Any, str], settings: dict[str, Any],
                 record: FileLock | None = None, absent: BaseException | None = None) -> None:
        label = name if not backend else (
            f"{name}{backend}" if backend.startswith("@") else f"{name} ({backend})")
        super().__init__(label, manager, manager.default_timeout, manager.reconnect_initial_s,
                         manager.reconnect_max_s)
        self.name = name
        self.backend = backend
        self.gate = gate
        self.settings = settings
        self._runners = (self._run, self._query)
        self._session, self.exclusive = session
        self._manager = manager
        self._idn: str | None = None
        #: raw queries whose replies were given up on (they may still come), and whether a
        #: wait for one heard nothing (the instrument has gone quiet); under the gate only
        self._owed = 0
        self._unanswering = False
        self._connected = True
        #: the device's ownership record (an ASRL resource on a local device), kept across
        #: reopens until the session is closed
        self._record = record
        if absent is not None:  # it could not be opened (the manager's open_absent)
            self._begin_absent(absent)

    def __repr__(self) -> str:
        return f"<SharedVisaResource {self.label} via {self.gate.name}>"

    def _run(self, fn: Callable[[Any], T]) -> T:
        """Executed by whoever holds the gate (which also counts and times it)."""
        if not self._connected:
            raise self._disconnected_error()
        try:
            return fn(self._session)
        except BaseException as exc:
            self._failed(exc)
            raise

    def _query(self, command: str) -> str:
        """``_run`` for the commonest transaction, without a function object per query; the
        one place that keeps raw queries in step: the replies given up on (timeouts) are
        dropped before the next query is sent, whoever sends it, as a serial port's are
        (:mod:`.serial` says how long that waits, and its limits)."""
        if not self._connected:
            raise self._disconnected_error()
        try:
            if self._owed or self._unanswering:
                self._catch_up()
            try:
                reply: str = self._session.query(command)
            except pyvisa.errors.VisaIOError as exc:
                if _timed_out(exc):
                    self._owed = min(self._owed + 1, OWED_REPLIES_KEPT)
                raise
        except BaseException as exc:
            self._failed(exc)
            raise
        self._unanswering = False  # it answers: a reply given up on is waited for again
        return reply

    def _catch_up(self) -> None:
        """Read (and drop) a message per reply owed, each within the session's timeout,
        unless the instrument has gone quiet (then only what has come is dropped): it answers
        in order, so left there, they would answer the next queries. A wait that hears
        nothing takes them all as lost and the instrument as quiet."""
        if not self._unanswering:
            while self._owed:
                if not self._read_message():
                    self._owed, self._unanswering = 0, True
                    break
                self._owed -= 1
        self._drop_arrived()

    def _drop_arrived(self) -> None:
        """Drop what has come, without waiting; each message in it settles a reply owed.

        A serial session says what it holds (``bytes_in_buffer``): pyvisa-py's immediate
        read of a serial line returns after one byte. Others read a message at a time with
        VISA's immediate timeout."""
        session = self._session
        if isinstance(session, pyvisa.resources.SerialInstrument):
            waiting = session.bytes_in_buffer
            heard = session.read_bytes(waiting) if waiting else b""
            end = (session.read_termination or "").encode(session.encoding)
            self._owed = max(self._owed - (heard.count(end) if end else 0), 0)
            return
        before = session.timeout
        session.timeout = 0  # VI_TMO_IMMEDIATE: what has come, nothing more
        try:
            for _ in range(OWED_REPLIES_KEPT):
                if not self._read_message():
                    break
                self._owed = max(self._owed - 1, 0)
        finally:
            session.timeout = before

    def _read_message(self) -> bool:
        """Read and drop one message; False if none came within the session's timeout."""
        try:
            self._session.read_raw()
        except pyvisa.errors.VisaIOError as exc:
            if not _timed_out(exc):
                raise
            return False
        return True

    def _failed(self, exc: BaseException) -> None:
        """A transaction raised: if the connection is gone, say so and start reconnecting."""
        if _connection_lost(exc):
            self._lost(exc)
            raise VisaDisconnectedError(
                f"VISA resource {self.label}: connection lost during a transaction "
                f"({type(exc).__name__}: {exc}); reopening in the background, queued "
                f"transactions were not sent", resource=self.label) from exc

    def _disconnected_error(self) -> Exception:
        if self._closed:
            return ResourceClosedError(f"VISA resource {self.label} is closed")
        return VisaDisconnectedError(
            f"VISA resource {self.label} is disconnected ({self._down_for()}); reopening in "
            f"the background", resource=self.label)

    def _queued_error(self, owner: str, cause: BaseException) -> Exception:
        return VisaDisconnectedError(
            f"VISA resource {self.label} lost its connection ({cause!r}) while {owner!r} was "
            f"queued; the transaction was not sent", resource=self.label)

    def _open_handle(self) -> tuple[Any, str]:
        return open_exclusive(self._manager.resource_manager(self.backend), self.name,
                              self.settings)

    def _install(self, handle: tuple[Any, str]) -> None:
        self._session, self.exclusive = handle

    def _close_handle(self, handle: Any) -> None:
        (handle[0] if isinstance(handle, tuple) else handle).close()

    def _current_handle(self) -> Any:
        return self._session

    def release_record(self) -> None:
        """Let go of the device's ownership record (once the session is closed)."""
        record, self._record = self._record, None
        if record is not None:
            record.release()

    def query(self, command: str, *, owner: str | None = None, timeout: float | None = None,
              urgent: bool = False) -> str:
        return self.gate.run(self._query, command, owner or default_owner(),
                             ("query", command), timeout, urgent, self._stats)

    async def aquery(self, command: str, *, owner: str | None = None,
                     timeout: float | None = None, urgent: bool = False) -> str:
        return await self.gate.arun(self._query, command, owner or default_owner(),
                                    ("query", command), timeout, urgent,
                                    self._stats)

    def idn(self, *, refresh: bool = False, owner: str | None = None,
            timeout: float | None = None) -> str:
        """``*IDN?``, asked once per session: identification does not change while open."""
        if self._idn is None or refresh:
            self._idn = self.query("*IDN?", owner=owner, timeout=timeout)
        return self._idn

    async def aidn(self, *, refresh: bool = False, owner: str | None = None,
                   timeout: float | None = None) -> str:
        if self._idn is None or refresh:
            self._idn = await self.aquery("*IDN?", owner=owner, timeout=timeout)
        return self._idn

    def _stats_extra(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "gate": self.gate.name,
                "lost": "" if self._connected else self._last_error,
                "exclusive": self.exclusive}


class VisaSessionManager(EventSource):
    """Owns the process's VISA ResourceManagers, sessions and their gates.

    Its listeners hear the disconnect/reconnect events of every session."""

    def __init__(self, lock_scope: LockScope = "resource", *,
                 default_timeout: float = DEFAULT_TIMEOUT_S,
                 checker: LockOrderChecker | None = DEFAULT_CHECKER,
                 rm_factory: Callable[[str], Any] = pyvisa.ResourceManager,
                 reconnect_initial_s: float = 0.5, reconnect_max_s: float = 5.0) -> None:
        super().__init__()
        if lock_scope not in ("resource", "board", "global"):
            raise ValueError(f"lock_scope must be 'resource', 'board' or 'global', "
                             f"not {lock_scope!r}")
        self.lock_scope = lock_scope
        self.default_timeout = default_timeout
        self.checker = checker
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        #: a session that cannot be opened is made disconnected and reopened in the background
        #: (:mod:`.shared`), not refused: a restarted worker process's, whose sessions were open
        self.open_absent = False
        self._rm_factory = rm_factory
        self._lock = threading.Lock()
        self._rms: dict[str, Any] = {}
        self._resources: dict[tuple[str, str], SharedVisaResource] = {}
        self._gates: dict[str, Gate] = {}

    def resource_manager(self, backend: str = "") -> Any:
        """The one ``pyvisa.ResourceManager`` of this backend, created on first use."""
        key = normalize_backend(backend)
        with self._lock:
            return self._rm_locked(key)

    def _rm_locked(self, key: str) -> Any:
        rm = self._rms.get(key)
        if rm is None:
            try:
                rm = self._rm_factory(key)
            except Exception as exc:
                if problem := sim_file_problem(key):  # not pyvisa-sim's nested traceback
                    raise ValueError(problem) from exc
                if str(exc).startswith(NO_LIBRARY):  # pyvisa's words end where the reason would
                    raise OSError(f"VISA {key or '(pyvisa default backend)'}: "
                                  f"{visa_error_text(exc)}") from exc
                raise
            self._rms[key] = rm
        return rm

    def _gate_locked(self, name: str, backend: str) -> Gate:
        if self.lock_scope == "global":
            gate_name = "visa:*"
        elif self.lock_scope == "board":
            gate_name = f"visa-board:{_board_of(name)}" + (f"@{backend}" if backend else "")
        else:
            gate_name = f"visa:{name}" + (f"@{backend}" if backend else "")
        gate = self._gates.get(gate_name)
        if gate is None:
            gate = Gate(gate_name, (VISA_ORDER, gate_name), checker=self.checker,
                        default_timeout=self.default_timeout)
            self._gates[gate_name] = gate
        return gate

    def resource(self, name: str, *, backend: str = "", read_termination: str | None = None,
                 write_termination: str | None = None, timeout_ms: int | None = 2000,
                 **attributes: Any) -> SharedVisaResource:
        """The shared session for ``name`` on ``backend`` (same object for the same resource).

        Settings given here must agree with those of an already open session (one session has
        one termination), else :class:`ResourceConfigConflictError`; ``None`` means "don't care".
        """
        canonical = visa_identity(name)
        key_backend = normalize_backend(backend)
        settings = {k: v for k, v in dict(read_termination=read_termination,
                                           write_termination=write_termination,
                                           timeout=timeout_ms, **attributes).items()
                    if v is not None}
        with self._lock:
            res = self._resources.get((key_backend, canonical))
            if res is None:
                rm = self._rm_locked(key_backend)
                device = visa_serial_identity(canonical, key_backend)
                # the record first, as for a serial port: a holder is named, not raced
                record = (claim(device, name.strip(), SharedVisaResource.what) if device
                          else None)
                absent: BaseException | None = None
                try:
                    session = open_exclusive(rm, name.strip(), settings)
                except BaseException as exc:
                    if not (self.open_absent
                            and isinstance(exc, SharedVisaResource.open_errors)):
                        if record is not None:
                            record.release()
                        raise
                    absent, session = exc, (NotOpen(), "not open")
                gate = self._gate_locked(canonical, key_backend)
                res = SharedVisaResource(self, canonical, key_backend, gate, session, settings,
                                         record, absent)
                self._resources[(key_backend, canonical)] = res
                return res
        clash = {k: (res.settings.get(k), v) for k, v in settings.items()
                 if k in res.settings and res.settings[k] != v}
        if clash:
            text = ", ".join(f"{k}={old!r} (open) vs {new!r} (asked)"
                             for k, (old, new) in clash.items())
            raise ResourceConfigConflictError(f"VISA resource {res.label} is already open with "
                                              f"other settings: {text}")
        return res

    def resources(self) -> list[SharedVisaResource]:
        with self._lock:
            return list(self._resources.values())

    def lease(self, resources: Iterable[Leasable], *, owner: str | None = None,
              timeout: float | None = None, urgent: bool = False) -> Lease:
        return Lease(resources, owner=owner,
                     timeout=self.default_timeout if timeout is None else timeout, urgent=urgent)

    def dump(self) -> str:
        with self._lock:
            gates = list(self._gates.values())
        return dump_gates(gates)

    def close_all(self, timeout: float = 5.0) -> list[str]:
        """Close every session and ResourceManager; returns what could not be closed."""
        deadline = time.monotonic() + timeout
        failed: list[str] = []
        for res in self.resources():  # first, so no reopen creates a ResourceManager anew
            if not res.stop_reconnecting(max(0.0, deadline - time.monotonic())):
                failed.append(f"{res.label} (still reconnecting)")
        with self._lock:
            resources = list(self._resources.values())
            gates = list(self._gates.values())
            rms = list(self._rms.items())
            self._resources.clear()
            self._gates.clear()
            self._rms.clear()
        busy: set[str] = set()
        for gate in gates:
            if not gate.close(max(0.0, deadline - time.monotonic())):
                busy.add(gate.name)
        for res in resources:
            res.mark_closed()
            if res.gate.name in busy:
                failed.append(res.label)
                continue
            try:
                res._session.close()
            except Exception as exc:
                failed.append(f"{res.label} ({exc!r})")
            res.release_record()
        for key, rm in rms:
            try:
                rm.close()
            except Exception as exc:
                failed.append(f"ResourceManager {key or 'default'} ({exc!r})")
        return failed

    close = close_all

    def __enter__(self) -> VisaSessionManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()
