"""Shared VISA sessions: one ResourceManager per backend, one session per resource.

VISA lets many sessions talk to one instrument, but SCPI answers in order, so two users
interleaving ``write``/``read`` get each other's replies; pyvisa-sim even tears replies when two
threads share one session (library-notes §1). Every instrument naming a resource therefore
gets the same :class:`SharedVisaResource`, and its I/O runs as transactions under a gate
(see :mod:`.gate`). The gate's scope is configurable:

* ``resource`` (default): one lock per resource;
* ``board``: one lock per interface board (all of GPIB0), for bus arbitration;
* ``global``: one lock for all VISA I/O, for a VISA library that is not thread-safe.

The manager is meant to exist once per process (the runtime creates it), which makes its
ResourceManagers one per backend per process.

A session whose transport is lost (a LAN instrument rebooted, a socket reset) is not
reopened by pyvisa: every later call fails. The shared resource notices connection
errors, fails calls with :class:`PortDisconnectedError` while it is down, and reopens the
session (under the gate, so no one else is mid-transaction) with backoff: first try after
0.5 s, doubling up to 5 s. A reply timeout alone does not count as a lost session.

Ownership: each session (and each reopened one) takes VISA's exclusive lock (``lock_excl``),
so another program's session is refused while this process holds the resource, and a
resource another program has locked is refused here with :class:`ResourceBusyError`. Not
every backend can lock: pyvisa-sim has no locking (``NotImplementedError``) and pyvisa-py
answers "operation not supported" for its session types; there the session is used
unlocked and ``stats()["exclusive"]`` says why.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

import pyvisa
from pyvisa import rname

from .errors import (
    PortDisconnectedError,
    ResourceBusyError,
    ResourceClosedError,
    ResourceConfigConflictError,
)
from .gate import DEFAULT_TIMEOUT_S, Gate, dump_gates
from .identity import visa_identity
from .lease import Leasable, Lease
from .ordering import DEFAULT_CHECKER, VISA_ORDER, LockOrderChecker, What, default_owner
from .stats import TransactionStats

T = TypeVar("T")
LockScope = Literal["resource", "board", "global"]
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 5.0


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



def normalize_backend(backend: str) -> str:
    """One spelling per backend: ``@sim`` style names lower-cased, YAML paths made absolute.

    pyvisa-sim keeps its state per YAML path string, so two spellings of one file would be two
    simulated instruments; a bare ``x.yaml`` means ``x.yaml@sim``.
    """
    backend = backend.strip()
    if not backend:
        return ""
    if backend.startswith("@"):
        return backend.lower()
    path, at, library = backend.rpartition("@")
    if not at:
        path, library = backend, ("sim" if backend.endswith((".yaml", ".yml")) else "")
    path = os.path.normpath(os.path.abspath(path))
    return f"{path}@{library}" if library else path


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


def _board_of(name: str) -> str:
    parsed = rname.parse_resource_name(name)
    return f"{parsed.interface_type}{getattr(parsed, 'board', '')}"


class SharedVisaResource:
    """One VISA session shared by every instrument that names the resource."""

    def __init__(self, manager: VisaSessionManager, name: str, backend: str, gate: Gate,
                 session: tuple[Any, str], settings: dict[str, Any]) -> None:
        self.name = name
        self.backend = backend
        self.gate = gate
        self.settings = settings
        self.default_timeout = manager.default_timeout
        self._session, self.exclusive = session
        self._open = lambda: open_exclusive(manager.resource_manager(backend), name, settings)
        self._lost: str = ""          # why the session is down ("" = it is up)
        self._down = False            # lost or closed: one test per transaction instead of two
        self._retry_at = 0.0
        self._backoff = RECONNECT_FIRST_S
        self._stats = TransactionStats()
        self._idn: str | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<SharedVisaResource {self.label} via {self.gate.name}>"

    @property
    def label(self) -> str:
        if not self.backend:
            return self.name
        return f"{self.name}{self.backend}" if self.backend.startswith("@") else \
            f"{self.name} ({self.backend})"

    def _run(self, fn: Callable[[Any], T]) -> T:
        """Executed by whoever holds the gate (which also counts and times it)."""
        if self._down:
            self._unusable()
        try:
            return fn(self._session)
        except BaseException as exc:
            self._failed(exc)
            raise

    def _query(self, command: str) -> str:
        """``_run`` for the commonest transaction, without a function object per query."""
        if self._down:
            self._unusable()
        try:
            return self._session.query(command)  # type: ignore[no-any-return]
        except BaseException as exc:
            self._failed(exc)
            raise

    def _unusable(self) -> None:
        if self._closed:
            raise ResourceClosedError(f"VISA resource {self.label} is closed")
        self._reopen()

    def _failed(self, exc: BaseException) -> None:
        """A transaction raised: if the connection is gone, say so and plan the reopen."""
        if _connection_lost(exc):
            self._mark_lost(f"{type(exc).__name__}: {exc}")
            raise PortDisconnectedError(
                f"VISA resource {self.label}: connection lost during a transaction "
                f"({type(exc).__name__}: {exc}); reopening in {self._backoff:.1f} s",
                port=self.label) from exc

    def _mark_lost(self, why: str) -> None:
        if not self._lost:
            self._stats.disconnects += 1
            self._backoff = RECONNECT_FIRST_S
        self._lost = why
        self._down = True
        self._retry_at = time.monotonic() + self._backoff

    def _reopen(self) -> None:
        """Called under the gate: reopen a lost session once its backoff has passed."""
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise PortDisconnectedError(
                f"VISA resource {self.label} is disconnected ({self._lost}); next reopen "
                f"attempt in {wait:.1f} s", port=self.label)
        try:
            self._session.close()
        except Exception:  # the old session is dead; closing it is a courtesy
            pass
        try:
            self._session, self.exclusive = self._open()
        except Exception as exc:
            self._backoff = min(self._backoff * 2, RECONNECT_MAX_S)
            self._retry_at = time.monotonic() + self._backoff
            raise PortDisconnectedError(
                f"VISA resource {self.label}: reopening failed ({type(exc).__name__}: {exc}); "
                f"next attempt in {self._backoff:.1f} s", port=self.label) from exc
        self._lost = ""
        self._down = self._closed
        self._stats.reconnects += 1

    @property
    def is_connected(self) -> bool:
        return not self._down

    def transaction(self, fn: Callable[[Any], T], *, owner: str | None = None,
                    timeout: float | None = None, urgent: bool = False,
                    what: What = "transaction") -> T:
        """Run ``fn(session)`` (a pyvisa resource) with exclusive use of the resource's gate."""
        return self.gate.run(self._run, fn, owner or default_owner(), what,
                             timeout, urgent, self._stats)

    async def atransaction(self, fn: Callable[[Any], T], *, owner: str | None = None,
                           timeout: float | None = None, urgent: bool = False,
                           what: What = "transaction") -> T:
        """Same for coroutines: ``fn`` runs on the gate's worker thread."""
        return await self.gate.arun(self._run, fn, owner or default_owner(), what,
                                    timeout, urgent, self._stats)

    def query(self, command: str, *, owner: str | None = None, timeout: float | None = None,
              urgent: bool = False) -> str:
        return self.gate.run(self._query, command, owner or default_owner(),
                             ("query", command), timeout, urgent, self._stats)

    async def aquery(self, command: str, *, owner: str | None = None,
                     timeout: float | None = None, urgent: bool = False) -> str:
        return await self.gate.arun(self._query, command, owner or default_owner(),
                                    ("query", command), timeout, urgent,
                                    self._stats)

    def write(self, command: str, *, owner: str | None = None, timeout: float | None = None,
              urgent: bool = False) -> None:
        self.transaction(lambda s: s.write(command), owner=owner, timeout=timeout,
                         urgent=urgent, what=("write", command))

    async def awrite(self, command: str, *, owner: str | None = None,
                     timeout: float | None = None, urgent: bool = False) -> None:
        await self.atransaction(lambda s: s.write(command), owner=owner, timeout=timeout,
                                urgent=urgent, what=("write", command))

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

    def lease(self, *, owner: str | None = None, timeout: float | None = None,
              urgent: bool = False) -> Lease:
        return Lease([self], owner=owner,
                     timeout=self.default_timeout if timeout is None else timeout, urgent=urgent)

    def stats(self) -> dict[str, Any]:
        snap = self._stats.snapshot()
        snap.update(name=self.name, backend=self.backend, gate=self.gate.name,
                    connected=self.is_connected, lost=self._lost, exclusive=self.exclusive,
                    queue_depth=self.gate.queue_depth,
                    max_queue_depth=self.gate.max_queue_depth,
                    holder=self.gate.holder_description())
        return snap


class VisaSessionManager:
    """Owns the process's VISA ResourceManagers, sessions and their gates."""

    def __init__(self, lock_scope: LockScope = "resource", *,
                 default_timeout: float = DEFAULT_TIMEOUT_S,
                 checker: LockOrderChecker | None = DEFAULT_CHECKER,
                 rm_factory: Callable[[str], Any] = pyvisa.ResourceManager) -> None:
        if lock_scope not in ("resource", "board", "global"):
            raise ValueError(f"lock_scope must be 'resource', 'board' or 'global', "
                             f"not {lock_scope!r}")
        self.lock_scope = lock_scope
        self.default_timeout = default_timeout
        self.checker = checker
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
            rm = self._rm_factory(key)
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
                session = open_exclusive(rm, name.strip(), settings)
                gate = self._gate_locked(canonical, key_backend)
                res = SharedVisaResource(self, canonical, key_backend, gate, session, settings)
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
        with self._lock:
            resources = list(self._resources.values())
            gates = list(self._gates.values())
            rms = list(self._rms.items())
            self._resources.clear()
            self._gates.clear()
            self._rms.clear()
        failed: list[str] = []
        busy: set[str] = set()
        for gate in gates:
            if not gate.close(max(0.0, deadline - time.monotonic())):
                busy.add(gate.name)
        for res in resources:
            res._closed = res._down = True
            if res.gate.name in busy:
                failed.append(res.label)
                continue
            try:
                res._session.close()
            except Exception as exc:
                failed.append(f"{res.label} ({exc!r})")
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
