"""Shared serial ports: one object per port per process, for instruments of both flavors.

A port is opened with ``serial.serial_for_url``, so device paths and pyserial URLs (``sim://``,
``socket://``, ``rfc2217://``, ``loop://``) all work; a USB-serial adapter can also be named by
identity (``usb:VID:PID[:SERIAL]``, hex ids) and is found again under another path after it
re-enumerates. All traffic goes through transactions (see :mod:`.gate` for how they are
serialized); a multi-drop bus is one port, so every device on it shares one lock.

Disconnects: pyserial reports a lost device as ``SerialException``, ``OSError`` or
``termios.error`` depending on the call (an unplugged adapter: ``read`` raises
``SerialException``, ``in_waiting`` a bare ``OSError`` EIO, ``flush`` a ``termios.error``).
Any of them marks the port disconnected and fails the transaction in flight and every queued
one with :class:`PortDisconnectedError`; the reconnect that follows is :mod:`.shared`'s.

Raw queries (:meth:`SharedSerialPort.query`, ``aquery``): a reply given up on may still
come and would answer the next query, anyone's; the port counts the replies it is owed and
the next query waits them out first, unless the device has gone quiet (see ``_catch_up``).
The toolkit's exchanges keep in step themselves.

Ownership: ports are keyed by the device they reach (:func:`.identity.serial_identity`), so a
symlink and its target are one port with one gate. A local device is opened exclusively
(``flock`` through pyserial's ``exclusive=True``, plus ``TIOCEXCL`` so the kernel refuses
any other ``open`` by an unprivileged process, a driver bypassing the manager included), and
the process holds a lock record naming itself (:mod:`.ownership`) from the first open to the
close, across reconnects; a second daqhub process is refused with the holder's pid, command
and since when it holds the port.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import serial

from .errors import (
    PortDisconnectedError,
    PortOpenError,
    ReplyTimeoutError,
    ResourceBusyError,
    ResourceConfigConflictError,
    ResourceError,
)
from .filelock import FileLock
from .gate import DEFAULT_TIMEOUT_S, Gate, dump_gates
from .identity import (
    LINE_DEFAULTS,
    LINE_SETTINGS,
    UsbIdentity,
    is_local_path,
    serial_identity,
)
from .lease import Leasable, Lease
from .network import link_lost, open_kwargs, refused_hint, serial_for_url
from .ordering import DEFAULT_CHECKER, SERIAL_ORDER, LockOrderChecker, default_owner
from .ownership import claim
from .shared import EventSource, ResourceEvent, SharedResource

try:
    import termios

    _TermiosError: type[BaseException] = termios.error
except ImportError:  # pragma: no cover - Windows has no termios

    class _TermiosError(Exception):  # type: ignore[no-redef]
        """Placeholder so the except clauses below read the same everywhere."""


T = TypeVar("T")
log = logging.getLogger(__name__)

_IO_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, _TermiosError)
# Subclasses of the above that do not mean the device is gone.
_NOT_A_DISCONNECT: tuple[type[BaseException], ...] = (
    ResourceError, TimeoutError, serial.SerialTimeoutException)
_OPEN_ERRORS: tuple[type[BaseException], ...] = (*_IO_ERRORS, ValueError, PortOpenError)


PortEvent = ResourceEvent  # the name serial listeners have always used

#: reads of a read timeout each that waiting out a late reply may take before the query fails
#: (a line that sends bytes without the terminator and never pauses: noise, a wrong baud rate)
LATE_REPLY_READS = 4
#: replies given up on that a port (or VISA session) keeps count of; a dead device queried for
#: hours would otherwise grow the count without end (the oldest are forgotten)
OWED_REPLIES_KEPT = 16
#: the most bytes a raw query drops, without waiting, of what has come before it sends
_DROP_BYTES = 1 << 16


@dataclass(frozen=True)
class _GivenUp:
    """A raw query whose reply was given up on: its late reply is the line's next one."""

    sent: bytes
    terminator: bytes
    read_timeout: float | None  # the query's own: how long a pause means nothing more comes
    owner: str


class PortInfo(Protocol):
    """The part of ``serial.tools.list_ports_common.ListPortInfo`` we use."""

    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None


Lister = Callable[[], Iterable[PortInfo]]


def canonical_port_name(name: str) -> str:
    """One spelling per port, so two configurations naming it alike share one object.

    Paths are made absolute (symlinks are kept: a stable symlink is how a device that comes
    back under another node is found again). URL schemes are lower-cased; the rest of a URL is
    kept verbatim, since its options are part of what it opens.
    """
    name = name.strip()
    usb = UsbIdentity.parse(name)
    if usb is not None:
        return str(usb)
    if "://" in name:
        scheme, rest = name.split("://", 1)
        return f"{scheme.lower()}://{rest}"
    if os.sep in name or name.startswith("."):
        return os.path.normpath(os.path.abspath(name))
    return name  # COM3 and the like


def _default_lister() -> Iterable[PortInfo]:
    from serial.tools.list_ports import comports

    return comports()  # type: ignore[no-any-return]


class PortIO:
    """What a transaction function receives: the open port, valid only inside the transaction.

    A thin layer over the pyserial object so a transaction cannot close or reconfigure the
    shared port by accident; ``timeout`` may be changed and is restored afterwards.
    """

    __slots__ = ("_serial", "_timeout_changed", "name", "__weakref__")  # weak: driver.lines

    def __init__(self, ser: serial.SerialBase, name: str) -> None:
        self._serial = ser
        self._timeout_changed = False
        self.name = name

    def write(self, data: bytes) -> int | None:
        return self._serial.write(data)

    def read(self, size: int = 1) -> bytes:
        return self._serial.read(size)

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        """pyserial semantics: returns what arrived, with or without ``expected``, on timeout."""
        return self._serial.read_until(expected, size)

    def readline(self) -> bytes:
        return self._serial.readline()

    def flush(self) -> None:
        self._serial.flush()

    def reset_input_buffer(self) -> None:
        self._serial.reset_input_buffer()

    @property
    def in_waiting(self) -> int:
        return int(self._serial.in_waiting)

    @property
    def timeout(self) -> float | None:
        """Read timeout in seconds for this transaction."""
        return self._serial.timeout  # type: ignore[no-any-return]

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout_changed = True
        self._serial.timeout = value

    @property
    def raw(self) -> serial.SerialBase:
        """The pyserial object, for what this class does not wrap (modem lines, break)."""
        return self._serial


#: the ports open in this process, of any manager: a busy device one of them holds is named
#: as another lab's here (a URL has no lock record to name its holder)
_OPEN_HERE: weakref.WeakSet[SharedSerialPort] = weakref.WeakSet()


class SharedSerialPort(SharedResource[PortIO]):
    """One serial port (or multi-drop bus) shared by every instrument that names it."""

    what = "serial port"
    open_errors = _OPEN_ERRORS

    def __init__(self, manager: SerialPortManager, name: str, settings: dict[str, Any],
                 identity: str = "") -> None:
        super().__init__(name, manager, manager.default_timeout, manager.reconnect_initial_s,
                         manager.reconnect_max_s)
        self.name = name
        self.identity = identity or serial_identity(name)
        self.settings = dict(settings)
        self.gate = Gate(f"serial:{name}", (SERIAL_ORDER, name), checker=manager.checker,
                         default_timeout=manager.default_timeout)
        self.gate.note = self._note
        self._runners = (self._run,)
        self._manager = manager
        self._usb = UsbIdentity.parse(name)
        self._shared: dict[str, Any] = {}
        self._shared_lock = threading.RLock()
        #: the raw queries given up on, oldest first, until their late replies are dropped;
        #: and whether a wait for one heard nothing (the device has gone quiet). Read and
        #: written only under the gate; kept across reconnects, as the device may still answer
        self._owed: deque[_GivenUp] = deque(maxlen=OWED_REPLIES_KEPT)
        self._unanswering = False
        self.device = ""
        # The record first: when a daqhub process holds the port, it names the holder. URLs
        # reach devices other processes own (a ser2net server, a simulator in this process).
        self._record: FileLock | None = (claim(self.identity, name)
                                         if "://" not in self.identity else None)
        absent: BaseException | None = None
        try:
            ser = self._open()
        except BaseException as exc:
            if not (manager.open_absent and isinstance(exc, self.open_errors)):
                self._release_record()
                raise
            absent, ser = exc, serial.Serial()  # no port: a close closes nothing until it opens
        self._serial = ser
        self._io = PortIO(ser, name)
        self._connected = absent is None
        _OPEN_HERE.add(self)
        if absent is not None:  # the record is kept, as across a reconnect
            self._begin_absent(absent)

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        return f"<SharedSerialPort {self.name} {state}>"

    # ------------------------------------------------------------------ opening
    def _resolve(self) -> str:
        if self._usb is None:
            return self.name
        present = list(self._manager.lister())
        found = [p for p in present if self._usb.matches(p)]
        if not found:
            seen = ", ".join(f"{p.device} ({_usb_text(p)})" for p in present) or "none"
            raise PortOpenError(f"no USB serial device {self._usb} is present; seen: {seen}",
                                port=self.name)
        if len(found) > 1:
            raise PortOpenError(f"{self._usb} matches several devices "
                                f"({', '.join(p.device for p in found)}); add the serial number",
                                port=self.name)
        return found[0].device

    def _open(self) -> serial.SerialBase:
        target = self._resolve()
        kwargs = open_kwargs(target, self.settings)
        kwargs["timeout"] = kwargs.pop("read_timeout")
        local = is_local_path(target)
        kwargs["exclusive"] = True  # handlers that cannot lock (socket://) ignore it
        where = f" (found at {target})" if target != self.name else ""
        try:
            ser = serial_for_url(target, **kwargs)
            ser.open()
        except PortOpenError:
            raise
        except _OPEN_ERRORS as exc:
            if _is_busy(exc):
                here = any(p.identity == self.identity and p is not self for p in _OPEN_HERE)
                who = ("another lab (another serial manager) in this process" if here else
                       "another program (not a daqhub process: none holds its lock record)"
                       if local else "a handle opened without the manager (a driver or tool "
                       "calling serial_for_url itself?)")
                raise ResourceBusyError(
                    f"serial port {self.name}{where} is in use by {who}: {exc}; close that "
                    f"first", resource=self.name, holder=None) from exc
            raise PortOpenError(f"cannot open serial port {self.name}{where}: {exc}"
                                f"{refused_hint(target, exc)}", port=self.name) from exc
        if local:
            _exclusive_mode(ser, True)
        self.device = target
        return ser

    def _open_handle(self) -> serial.SerialBase:
        return self._open()

    def _install(self, handle: serial.SerialBase) -> None:
        self._serial = handle
        self._io._serial = handle

    def _close_handle(self, handle: serial.SerialBase) -> None:
        _close(handle)

    def _current_handle(self) -> serial.SerialBase:
        return self._serial

    def _reopened_detail(self) -> str:
        return f"reopened at {self.device}"

    # ------------------------------------------------------------------ state
    def _note(self) -> str:
        if self._closed:
            return "closed"
        if self._connected:
            return f"connected at {self.device}"
        return (f"DISCONNECTED for {time.monotonic() - self._disconnected_at:.1f} s: "
                f"{self._last_error}")

    def _release_record(self) -> None:
        record, self._record = self._record, None
        if record is not None:
            record.release()

    def _disconnected_error(self) -> PortDisconnectedError:
        if self._closed:
            return PortDisconnectedError(f"serial port {self.name} is closed", port=self.name)
        return PortDisconnectedError(
            f"serial port {self.name} is disconnected ({self._down_for()}); "
            f"reconnecting in the background", port=self.name)

    def _queued_error(self, owner: str, cause: BaseException) -> PortDisconnectedError:
        return PortDisconnectedError(
            f"serial port {self.name} disconnected ({cause!r}) while {owner!r} was "
            f"queued; the transaction was not sent", port=self.name)

    def _stats_extra(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device}

    # ------------------------------------------------------------------ transactions
    def _run(self, fn: Callable[[PortIO], T]) -> T:
        """Executed by whoever holds the gate (which also counts and times it): the I/O and
        disconnect handling."""
        if not self._connected:
            raise self._disconnected_error()
        io = self._io
        try:
            return fn(io)
        except _NOT_A_DISCONNECT as exc:
            gone = link_lost(io._serial)  # a network link that dropped looks like a timeout
            if gone is None:
                raise
            self._lost(exc)
            raise PortDisconnectedError(f"serial port {self.name} disconnected: {gone}; "
                                        f"{exc}", port=self.name) from exc
        except _IO_ERRORS as exc:
            self._lost(exc)
            raise PortDisconnectedError(
                f"serial port {self.name} disconnected during a transaction: {exc!r}; the "
                f"reply (if any) is lost, queued transactions were not sent",
                port=self.name) from exc
        finally:
            if io._timeout_changed:
                io._timeout_changed = False
                try:
                    io._serial.timeout = self.settings["read_timeout"]
                except _IO_ERRORS:
                    pass  # the next transaction will see the port's state for itself

    def _query_fn(self, data: bytes, terminator: bytes, read_timeout: float | None,
                  clear_input: bool, owner: str) -> Callable[[PortIO], bytes]:
        """The transaction of :meth:`query` and :meth:`aquery`, and so the one place that
        keeps raw queries in step (see ``_catch_up``)."""
        name = self.name

        def query(io: PortIO) -> bytes:
            self._catch_up(io, data)
            if read_timeout is not None:
                io.timeout = read_timeout
            if clear_input:
                io.reset_input_buffer()
            io.write(data)
            reply = io.read_until(terminator)
            if not reply.endswith(terminator):
                self._owed.append(_GivenUp(data, terminator, io.timeout, owner))
                then = ("drops it if it has come by then, without waiting: the device has "
                        "gone quiet" if self._unanswering else "waits for it to end first")
                raise ReplyTimeoutError(
                    f"no complete reply to {data!r} on {name} within {io.timeout} s "
                    f"(expected it to end with {terminator!r}); got {reply!r} (the "
                    f"next query {then})", port=name, sent=data, partial=reply)
            self._unanswering = False  # it answers: a reply given up on is waited for again
            return reply[:-len(terminator)]

        return query

    def _waits_out(self) -> bool:
        """Whether the next raw query may wait for late replies before it sends (a read
        timeout or more): replies are owed and the device has not gone quiet."""
        return bool(self._owed) and not self._unanswering

    def _catch_up(self, io: PortIO, data: bytes) -> None:
        """Before a raw query sends ``data``: drop the late replies of the queries given up
        on, so none answers it.

        The device answers in order, so the replies owed are the line's next lines, one each;
        left there, each would answer the next query, whoever asks (another instrument on the
        bus). They are waited for (``_wait_out``) until a wait hears nothing for the read
        timeout of the query given up on: then every reply owed is taken as lost and the
        device as quiet, and until a query is answered, queries drop only what has come and
        send at once, so a silent device costs each query one read timeout, not two. The
        limit: a reply that comes later than that is still read as the next query's answer
        (once: the replies still owed stay counted, so the query after drops them and is
        back in step); and a driver on the port that expects lines nobody asked for (a
        move's end) may lose one that comes meanwhile: such a port should not use raw
        queries after a timeout.
        """
        if not (self._owed or self._unanswering):
            return
        if self._waits_out():
            self._wait_out(io, data)
        self._drop_buffered(io)

    def _wait_out(self, io: PortIO, data: bytes) -> None:
        """Read (and drop) a line per reply owed, in order, each until it has ended or the
        line has been quiet for that query's read timeout (then all are lost), before
        ``data`` is sent."""
        before = io.timeout
        try:
            while self._owed:
                late = self._owed[0]
                io.timeout = late.read_timeout
                heard = b""
                for _ in range(LATE_REPLY_READS):
                    heard = io.read_until(late.terminator)
                    if not heard:
                        self._owed.clear()
                        self._unanswering = True
                        return
                    if heard.endswith(late.terminator):
                        self._owed.popleft()
                        break
                else:
                    raise ReplyTimeoutError(
                        f"{self.name} is out of step: the reply to {late.sent!r} that "
                        f"{late.owner!r} gave up on had not ended with {late.terminator!r} "
                        f"after {LATE_REPLY_READS} reads of {late.read_timeout} s, and the "
                        f"line did not pause for that long; last heard {heard!r}; {data!r} "
                        f"was not sent", port=self.name, sent=late.sent, partial=heard)
        finally:
            io.timeout = before

    def _drop_buffered(self, io: PortIO) -> None:
        """Drop what the line has sent so far, without waiting; each complete line in it
        settles a reply owed, in order."""
        before = io.timeout
        io.timeout = 0  # pyserial's non-blocking read: what has come, nothing more
        try:
            heard = io.read(_DROP_BYTES)
        finally:
            io.timeout = before
        while self._owed and self._owed[0].terminator in heard:
            heard = heard.partition(self._owed.popleft().terminator)[2]

    def query(self, data: bytes, *, terminator: bytes = b"\r\n", owner: str | None = None,
              timeout: float | None = None, urgent: bool = False,
              read_timeout: float | None = None, clear_input: bool = False) -> bytes:
        """Write ``data`` and return the reply without ``terminator``.

        Raises :class:`ReplyTimeoutError` when the reply does not end with ``terminator``;
        the next query on the port (anyone's) then drops that reply first (see
        ``_catch_up`` for how long it waits for it).
        """
        if not self._connected:
            raise self._disconnected_error()
        owner = owner or default_owner()
        return self.gate.run(self._run, self._query_fn(data, terminator, read_timeout,
                                                       clear_input, owner),
                             owner, ("query", data), timeout, urgent, self._stats)

    async def aquery(self, data: bytes, *, terminator: bytes = b"\r\n", owner: str | None = None,
                     timeout: float | None = None, urgent: bool = False,
                     read_timeout: float | None = None, clear_input: bool = False) -> bytes:
        """:meth:`query` for coroutines."""
        owner = owner or default_owner()
        fn = self._query_fn(data, terminator, read_timeout, clear_input, owner)
        if self._waits_out():
            # waiting late replies out takes a read timeout or more: on the worker, not in
            # the loop's thread (a timeout landing after this test costs the loop one wait)
            return await self.gate.arun(self._run, fn, owner, ("query", data), timeout,
                                        urgent, self._stats)
        return await self.atransaction(fn, owner=owner, timeout=timeout, urgent=urgent,
                                       what=("query", data))

    # ------------------------------------------------------------------ sharing
    def shared(self, key: str, factory: Callable[[], T]) -> T:
        """One object per port and key, created once by ``factory()``.

        Lets protocol helpers of both flavors on one bus share state, e.g. the Elliptec driver's
        router that hands each reply to the device address it came from.
        """
        with self._shared_lock:
            try:
                return self._shared[key]  # type: ignore[no-any-return]
            except KeyError:
                obj = factory()
                self._shared[key] = obj
                return obj

    # ------------------------------------------------------------------ shutdown
    def close(self, timeout: float = 2.0) -> bool:
        """Stop reconnecting, fail what is queued, close the port. False if it could not."""
        deadline = time.monotonic() + timeout
        stopped = self.stop_reconnecting(timeout)
        idle = self.gate.close(max(0.0, deadline - time.monotonic()))
        with self._state_lock:
            self._connected = False
            ser = self._serial
        if idle:
            try:
                _close(ser)
            except Exception as exc:
                log.debug("closing %s: %r", self.name, exc)
            self._release_record()
            _OPEN_HERE.discard(self)
        return idle and stopped


def _is_busy(exc: BaseException) -> bool:
    """pyserial's refusal of a device someone else holds (flock or TIOCEXCL)."""
    return (getattr(exc, "errno", None) in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK)
            or "exclusively lock" in str(exc))


def _exclusive_mode(ser: serial.SerialBase, on: bool) -> None:
    """TIOCEXCL: the kernel refuses further opens of the tty (except by a privileged
    process), so a program that does not flock (minicom, a driver calling
    ``serial_for_url`` itself) is refused too. Cleared before each close, so the tty is
    left as found (a pty's flag would outlive the close)."""
    request = getattr(termios, "TIOCEXCL" if on else "TIOCNXCL", None)
    if request is None or not is_local_path(str(ser.port)):
        return
    try:
        fcntl.ioctl(ser.fileno(), request)
    except (OSError, AttributeError, NotImplementedError, serial.SerialException) as exc:
        log.debug("TIOC%sXCL on %s: %r", "E" if on else "N", ser.port, exc)


def _close(ser: serial.SerialBase) -> None:
    _exclusive_mode(ser, False)
    ser.close()


def _usb_text(info: PortInfo) -> str:
    if info.vid is None or info.pid is None:
        return "not USB"
    return f"usb:{info.vid:04x}:{info.pid:04x}:{info.serial_number or ''}"


def register_url_packages(packages: Iterable[str]) -> None:
    """Let pyserial (``serial_for_url``) and :func:`~.identity.serial_identity` find the URL
    handlers in ``packages`` (a plugin's ``daqhub_serial_url_packages``)."""
    for package in packages:
        if package not in serial.protocol_handler_packages:
            serial.protocol_handler_packages.append(package)


class SerialPortManager(EventSource):
    """Owns every serial port of the process; instruments ask it for ports by name.

    Its listeners hear the disconnect/reconnect events of every port."""

    def __init__(self, url_packages: Iterable[str] = (), *,
                 default_timeout: float = DEFAULT_TIMEOUT_S,
                 checker: LockOrderChecker | None = DEFAULT_CHECKER,
                 lister: Lister | None = None,
                 reconnect_initial_s: float = 0.5, reconnect_max_s: float = 5.0) -> None:
        super().__init__()
        register_url_packages(url_packages)
        self.default_timeout = default_timeout
        self.checker = checker
        self.lister: Lister = lister or _default_lister
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        #: a port that cannot be opened is made disconnected and reopened in the background
        #: (:mod:`.shared`), not refused: a restarted worker process's, whose ports were open
        self.open_absent = False
        self._ports: dict[str, SharedSerialPort] = {}
        self._lock = threading.Lock()

    def port(self, name: str, *, baudrate: int = LINE_DEFAULTS["baudrate"],
             bytesize: int = LINE_DEFAULTS["bytesize"], parity: str = LINE_DEFAULTS["parity"],
             stopbits: float = LINE_DEFAULTS["stopbits"], rtscts: bool = LINE_DEFAULTS["rtscts"],
             xonxoff: bool = LINE_DEFAULTS["xonxoff"], dsrdtr: bool = LINE_DEFAULTS["dsrdtr"],
             read_timeout: float = 0.5,
             write_timeout: float | None = 2.0, **extra: Any) -> SharedSerialPort:
        """The shared port for ``name`` (same object for the same canonical name), opened now.

        The line settings (baud, framing, flow control) must agree between users of one port,
        else :class:`ResourceConfigConflictError`. Read/write timeouts are the first user's;
        a transaction can change ``io.timeout`` for itself.
        """
        canonical = canonical_port_name(name)
        identity = serial_identity(canonical)
        settings: dict[str, Any] = dict(
            baudrate=baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits,
            rtscts=rtscts, xonxoff=xonxoff, dsrdtr=dsrdtr, read_timeout=read_timeout,
            write_timeout=write_timeout, **extra)
        with self._lock:
            port = self._ports.get(identity)
            if port is None:
                port = SharedSerialPort(self, canonical, settings, identity)
                self._ports[identity] = port
                return port
        keys = (*LINE_SETTINGS, *extra)
        clash = {k: (port.settings.get(k), settings[k]) for k in keys
                 if port.settings.get(k) != settings[k]}
        if clash:
            text = ", ".join(f"{k}={old!r} (open) vs {new!r} (asked)"
                             for k, (old, new) in clash.items())
            also = f" (as {port.name}; both reach {identity})" if port.name != canonical else ""
            raise ResourceConfigConflictError(f"serial port {canonical} is already open{also} "
                                              f"with other settings: {text}")
        return port

    def get(self, name: str) -> SharedSerialPort | None:
        return self._ports.get(serial_identity(canonical_port_name(name)))

    def ports(self) -> list[SharedSerialPort]:
        with self._lock:
            return list(self._ports.values())

    def lease(self, resources: Iterable[Leasable], *, owner: str | None = None,
              timeout: float | None = None, urgent: bool = False) -> Lease:
        """Several resources (any mix of serial and VISA) in the global order."""
        return Lease(resources, owner=owner,
                     timeout=self.default_timeout if timeout is None else timeout, urgent=urgent)

    def dump(self) -> str:
        return dump_gates([p.gate for p in self.ports()])

    def close_all(self, timeout: float = 5.0) -> list[str]:
        """Close every port and stop reconnect threads; returns the ports that would not close."""
        deadline = time.monotonic() + timeout
        with self._lock:
            ports = list(self._ports.values())
            self._ports.clear()
        for port in ports:  # stop reconnecting everywhere first, so nothing reopens meanwhile
            port._stop.set()
        failed = []
        for port in ports:
            if not port.close(max(0.0, deadline - time.monotonic())):
                failed.append(port.name)
        return failed

    close = close_all

    def __enter__(self) -> SerialPortManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()
