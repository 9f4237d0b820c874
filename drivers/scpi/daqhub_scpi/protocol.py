"""The SCPI protocol, written once as transaction functions both flavors run.

Each public ``*_fn`` method returns a plain blocking function ``fn(session)`` that
the core runs with exclusive use of the shared VISA session (``session`` is the
pyvisa resource). A function writes its command, reads the reply, and, unless
``check_errors`` is off, drains ``SYST:ERR?`` before it returns, so an error in
the instrument's queue is reported against the command that caused it and never
against the next instrument that happens to use the same resource.

Why the I/O is done by hand (``write_raw``/``read_raw``) instead of
``session.query``: the session is shared, so this instrument's terminations and
timeout are set when they differ from the session's (:func:`_configure`); and pyvisa only
*warns* when a reply lacks its terminator (a read can end early on GPIB END or
a quiet serial line), which would let a truncated ``+1.00`` pass as a reading.
(On a TCP socket pyvisa-py reports such a reply as a timeout instead.)

Keeping replies in step: SCPI pairs replies with queries only by order. After
a timeout, a truncated or a garbled reply, a late reply may still be on its way
and would be taken as the answer to the next query, possibly another
instrument's. The session is then marked *out of step* (state kept per session,
shared by every SCPI instrument on it) and resynchronised: pending input is
drained, then ``*IDN?`` is asked and replies are read until the known
identification comes back. Until that succeeds no other command is sent.
Identifications look alike, so the session also counts the ``*IDN?`` queries whose reply
was not read (a timed-out ``*IDN?`` of a script or of a connect, earlier resynchronisations):
resynchronising waits for as many identifications as are owed, and only a reply later than
:data:`LOST_AFTER_TIMEOUTS` timeouts is given up as lost.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from pyvisa import constants as visa_constants
from pyvisa.errors import VisaIOError

from daqhub.driver import DriverError, DriverReplyError, DriverTimeoutError
from daqhub.instrument import now_ns

from .parsing import ReplyParseError, Value, parse_error_entry, parse_int

T = TypeVar("T")
Session = Any  # a pyvisa MessageBasedResource; typed loosely so tests can pass fakes

ERROR_QUERY = "SYST:ERR?"
IDN_QUERY = "*IDN?"
#: ``SYST:ERR?`` reads before giving up on emptying the queue (instruments hold 10 to ~100
#: entries; the bound only matters for one that never answers ``0``).
MAX_ERROR_READS = 128
#: Replies read while resynchronising before giving up (stale replies plus ours).
MAX_SYNC_READS = 8
#: Timeout of each read that drains stale input after a failure.
DRAIN_TIMEOUT_MS = 50
MAX_DRAIN_READS = 8
#: An ``*IDN?`` unanswered for this many of the instrument's timeouts is taken as lost (its
#: reply never comes), so resynchronising stops waiting for it.
LOST_AFTER_TIMEOUTS = 10
#: Seconds a transaction may wait for the shared resource before it runs.
LOCK_WAIT_S = 2.0
_ENCODING = "latin-1"  # every byte decodes, so garbage becomes a parse error, not a crash


#: No (complete) reply within the instrument's ``timeout_ms``: the core's timeout error.
ScpiTimeoutError = DriverTimeoutError


class ScpiDeviceError(DriverReplyError):
    """The instrument's error queue reported one or more errors after a command.

    ``code`` is the first SCPI error code (e.g. -113), ``errors`` all entries read.
    """

    def __init__(self, instrument_id: str, command: str, errors: Sequence[tuple[int, str]],
                 note: str = "") -> None:
        self.errors = list(errors)
        text = "; ".join(f"{code},\"{message}\"" for code, message in self.errors)
        first = self.errors[0][0] if self.errors else None
        super().__init__(instrument_id, command, f"SCPI error {text}{note}", first)


#: When ``SYST:ERR?`` is read (the lab file's ``check_errors``; the README says what each
#: costs and when an error is reported). ``true``/``false`` are ``"always"``/``"never"``.
CHECK_ERRORS = ("always", "commands", "never")


def check_errors_mode(value: Any) -> str:
    """The lab file's ``check_errors`` as one of :data:`CHECK_ERRORS`; ValueError if not one."""
    if isinstance(value, bool):
        return "always" if value else "never"
    if value not in CHECK_ERRORS:
        raise ValueError(f"check_errors must be one of {', '.join(map(repr, CHECK_ERRORS))} "
                         f"(or true/false), got {value!r}")
    return str(value)


@dataclass(frozen=True)
class ScpiSettings:
    """The per-instrument link settings of the lab file (keys of the same names)."""

    read_termination: str = "\n"
    write_termination: str = "\n"
    timeout_ms: int = 2000
    check_errors: str = "always"

    @property
    def checks_commands(self) -> bool:
        return self.check_errors != "never"

    @property
    def checks_readings(self) -> bool:
        return self.check_errors == "always"

    def problems(self) -> list[str]:
        """What the schema cannot see (its limits are checked before a session is built)."""
        term = self.read_termination
        if term and term[-1] in term[:-1]:
            return [f"read_termination {term!r} repeats its last character, so a read would "
                    f"stop early"]
        return []


@dataclass
class _SessionState:
    """What every SCPI instrument on one session must agree on."""

    idn: str | None = None
    out_of_step: bool = False
    why: str = ""
    #: why the last resynchronisation failed; chained to the refusal so the core can tell
    #: a lost connection (which it then reopens) from a merely slow instrument
    resync_error: BaseException | None = None
    #: (timeout ms, read termination) last applied to the session by an SCPI instrument
    applied: tuple[float, str] | None = None
    #: when each ``*IDN?`` whose reply was not read yet was sent (monotonic s), oldest first
    idn_owed: deque[float] = field(default_factory=deque)


_STATES: weakref.WeakKeyDictionary[Any, _SessionState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def session_state(session: Session) -> _SessionState:
    with _STATES_LOCK:  # (looked up on a change of session and on faults: a spare is cheap)
        return _STATES.setdefault(session, _SessionState())


class ScpiProtocol:
    """SCPI transaction functions of one instrument.

    ``resource`` is only used in messages, so a technician reading a log line
    knows which cable to check.
    """

    def __init__(self, instrument_id: str, settings: ScpiSettings, resource: str = "") -> None:
        problems = settings.problems()
        if problems:
            raise DriverError(instrument_id, "", "; ".join(problems))
        self.id = instrument_id
        self.settings = settings
        self.resource = resource
        self._rterm = settings.read_termination
        self._wterm = settings.write_termination
        self._last: tuple[Session, _SessionState] | None = None

    # ------------------------------------------------------------------ budgets
    def transaction_timeout(self, reads: int = 1, extra_ms: float = 0.0) -> float:
        """Seconds to give the resource manager for a transaction doing ``reads`` queries.

        Covers waiting for the resource, the reads themselves, an error check per
        read, and one resynchronisation after a failure, so the manager never
        abandons a transaction that is still inside its own I/O timeouts.
        """
        per_read = self.settings.timeout_ms / 1000.0
        error_reads = reads if self.settings.checks_commands else 0
        io_s = per_read * (reads + error_reads + 3) + extra_ms / 1000.0 + 0.5
        return LOCK_WAIT_S + io_s

    # ------------------------------------------------------------------ transaction functions
    def write_fn(self, command: str) -> Callable[[Session], None]:
        """A command without a reply (then the error check)."""
        self._check_command(command)

        def write(session: Session) -> None:
            _configure(session, self._state(session), self.settings)
            self._ensure_in_step(session, command)
            self._send(session, command)
            self._check_errors(session, command)

        return write

    def query_fn(self, command: str, parse: Callable[[str], T] | None = None
                 ) -> Callable[[Session], T | str]:
        """A query; its reply parsed by ``parse`` (the raw text without ``parse``)."""
        self._check_command(command)

        def query(session: Session) -> T | str:
            _configure(session, self._state(session), self.settings)
            self._ensure_in_step(session, command)
            text = self._ask(session, command)
            self._check_errors(session, command)
            return text if parse is None else self._parse(session, command, text, parse)

        return query

    def read_fn(self, readings: Sequence[tuple[str, str, Callable[[str], Value],
                                              Callable[[Value, int], T]]]
                ) -> Callable[[Session], dict[str, T]]:
        """All readings of one poll in one transaction: per reading (name, query, reply
        parser, ``make(value, timestamp_ns)`` building the poll's entry, stamped on reply)."""
        for _, command, _, _ in readings:
            self._check_command(command)

        checks = self.settings.checks_readings
        # planned once: each query's bytes, and the settings the session must have
        planned = [(name, command, self._message(command), parse, make)
                   for name, command, parse, make in readings]
        wanted = (self.settings.timeout_ms, self.settings.read_termination)

        def read(session: Session) -> dict[str, T]:
            out: dict[str, T] = {}
            state = self._state(session)
            if state.applied != wanted:
                _configure(session, state, self.settings)
            for name, command, message, parse, make in planned:
                if state.out_of_step:
                    self._ensure_in_step(session, command)
                text = self._ask(session, command, None, message)
                stamp = now_ns()
                if checks:
                    self._check_errors(session, command)
                try:
                    value = parse(text)
                except (ReplyParseError, ValueError) as exc:
                    self._unparsed(session, command, text, exc)
                out[name] = make(value, stamp)
            return out

        return read

    def sequence_fn(self, commands: Sequence[str]) -> Callable[[Session], list[str | None]]:
        """Commands in order (queries among them return their reply), each error-checked.

        Stops at the first command the instrument refuses: the rest of a setup
        sequence usually depends on it.
        """
        for c in commands:
            self._check_command(c)

        def run(session: Session) -> list[str | None]:
            replies: list[str | None] = []
            _configure(session, self._state(session), self.settings)
            for c in commands:
                self._ensure_in_step(session, c)
                if _is_query(c):
                    replies.append(self._ask(session, c))
                else:
                    self._send(session, c)
                    replies.append(None)
                self._check_errors(session, c)
            return replies

        return run

    def opc_fn(self, timeout_ms: float) -> Callable[[Session], None]:
        """``*OPC?``: returns once the instrument finished every pending operation."""
        command = "*OPC?"

        def opc(session: Session) -> None:
            _configure(session, self._state(session), self.settings, timeout_ms=timeout_ms)
            self._ensure_in_step(session, command)
            text = self._ask(session, command, timeout_ms)
            value = self._parse(session, command, text, parse_int)
            if value != 1:
                self._mark_out_of_step(session, f"{command} answered {text!r}")
                raise DriverError(self.id, command, f"expected 1, got {text!r}")

        return opc

    def errors_fn(self) -> Callable[[Session], list[tuple[int, str]]]:
        """Drain the error queue and return its entries without raising for them."""

        def errors(session: Session) -> list[tuple[int, str]]:
            _configure(session, self._state(session), self.settings)
            self._ensure_in_step(session, ERROR_QUERY)
            return self._drain_errors(session, ERROR_QUERY)

        return errors

    def idn_fn(self) -> Callable[[Session], str]:
        """``*IDN?``, a connection's first question: kept in step like any query (a reply
        that comes late is drained, never taken as the next query's), not followed by an
        error check (errors from before we connected are the setup's to drain, not this
        query's), and remembered per session as the reply resynchronisation looks for."""

        def idn(session: Session) -> str:
            state = self._state(session)
            _configure(session, state, self.settings)
            self._ensure_in_step(session, IDN_QUERY)
            text = self._ask(session, IDN_QUERY, explain=False)
            if text and state.idn is None:
                state.idn = text
            return text

        return idn

    # ------------------------------------------------------------------ I/O steps
    def _check_command(self, command: str) -> None:
        if not command or not command.strip():
            raise DriverError(self.id, command, "empty command")
        for ch in {"\n", "\r", *self._wterm, *self._rterm}:
            if ch in command:
                raise DriverError(self.id, command, f"a command may not contain {ch!r}: it "
                                  "would split into two messages and pair replies wrongly")
        try:
            command.encode(_ENCODING)
        except UnicodeEncodeError as exc:
            raise DriverError(self.id, command, f"not sendable as bytes: {exc}") from None

    def _where(self) -> str:
        return f" on {self.resource}" if self.resource else ""

    def _message(self, command: str) -> bytes:
        return (command + self._wterm).encode(_ENCODING)

    def _send(self, session: Session, command: str, message: bytes | None = None) -> None:
        try:
            session.write_raw(self._message(command) if message is None else message)
        except (VisaIOError, OSError) as exc:
            raise self._link_error(session, command, exc, "sending") from exc

    def _ask(self, session: Session, command: str, timeout_ms: float | None = None,
             message: bytes | None = None, explain: bool = True) -> str:
        """A query's reply (``message``: the query's bytes, planned); a fault goes to
        :meth:`_given_up`, so the usual exchange calls nothing of ours."""
        owed = self._state(session).idn_owed if command == IDN_QUERY else None
        if owed is not None:
            owed.append(time.monotonic())
        try:
            session.write_raw(self._message(command) if message is None else message)
        except (VisaIOError, OSError) as exc:
            raise self._link_error(session, command, exc, "sending") from exc
        try:
            text = session.read_raw().decode(_ENCODING)
        except (VisaIOError, OSError) as exc:
            self._given_up(session, self._link_error(session, command, exc, "reading the reply",
                                                     timeout_ms or self.settings.timeout_ms),
                           explain)
        if owed:
            owed.popleft()
        if not text.endswith(self._rterm):
            self._mark_out_of_step(session, f"truncated reply to {command!r}")
            self._given_up(session, DriverError(
                self.id, command, f"truncated reply {text!r}{self._where()}: it does not end "
                f"with {self._rterm!r} (link lost mid-reply, or read_termination does not match "
                f"the instrument)"), explain)
        return text[: -len(self._rterm)]

    def _given_up(self, session: Session, exc: DriverError, explain: bool) -> NoReturn:
        """A reply failed (marked out of step): back in step, then raise; a timeout is
        explained by the error queue if ``explain`` and it can."""
        self._resync(session, exc.command)
        if (explain and isinstance(exc, ScpiTimeoutError) and self.settings.checks_commands
                and not session_state(session).out_of_step):
            try:
                errors = self._drain_errors(session, exc.command)
            except DriverError:
                raise exc from None
            if errors:
                raise ScpiDeviceError(self.id, exc.command, errors, f" (and no reply within "
                                      f"{self.settings.timeout_ms} ms)") from exc
        raise exc

    def _link_error(self, session: Session, command: str, exc: Exception, doing: str,
                    timeout_ms: float | None = None) -> DriverError:
        """A fault of the link while ``doing`` (sending, reading the reply): what comes next
        is out of step; a read that timed out (``timeout_ms`` given) is the core's timeout."""
        self._mark_out_of_step(session, f"{doing} for {command!r} failed")
        if not isinstance(exc, VisaIOError):
            err = DriverError(self.id, command, f"connection lost{self._where()} while {doing}: "
                              f"{exc!r}")
        elif timeout_ms and exc.error_code == visa_constants.StatusCode.error_timeout:
            held = self.resource or "the resource"
            err = ScpiTimeoutError(self.id, command, f"no complete reply within {timeout_ms:g} "
                                   f"ms (timeout_ms) while {self.id} held {held}")
        else:
            err = DriverError(self.id, command, f"{doing} failed{self._where()}: {exc}",
                              exc.error_code)
        err.__cause__ = exc
        return err

    def _parse(self, session: Session, command: str, text: str,
               parse: Callable[[str], T]) -> T:
        try:
            return parse(text)
        except (ReplyParseError, ValueError) as exc:
            self._unparsed(session, command, text, exc)

    def _unparsed(self, session: Session, command: str, text: str, exc: Exception) -> NoReturn:
        # a reply of the wrong form may be someone else's: get back in step first
        self._mark_out_of_step(session, f"unexpected reply {text!r} to {command!r}")
        self._resync(session, command)
        raise DriverError(self.id, command, f"unexpected reply {text!r}: {exc}") from None

    def _drain_errors(self, session: Session, command: str) -> list[tuple[int, str]]:
        errors: list[tuple[int, str]] = []
        for _ in range(MAX_ERROR_READS):
            try:
                text = self._ask(session, ERROR_QUERY, explain=False)
            except DriverError as exc:
                kind = ScpiTimeoutError if isinstance(exc, ScpiTimeoutError) else DriverError
                raise kind(self.id, command, f"checking the error queue after it: "
                           f"{exc.message}", exc.code) from exc
            try:
                code, message = parse_error_entry(text)
            except ReplyParseError:
                self._mark_out_of_step(session, f"unexpected reply {text!r} to {ERROR_QUERY}")
                self._resync(session, command)
                raise DriverError(self.id, command, f"checking the error queue after it: "
                                  f"unexpected reply {text!r} to {ERROR_QUERY}") from None
            if code == 0:
                return errors
            errors.append((code, message))
        errors.append((0, f"more errors left after {MAX_ERROR_READS} reads of {ERROR_QUERY}"))
        return errors

    def _check_errors(self, session: Session, command: str) -> None:
        errors = self._drain_errors(session, command) if self.settings.checks_commands else []
        if errors:
            raise ScpiDeviceError(self.id, command, errors)

    # ------------------------------------------------------------------ staying in step
    def _mark_out_of_step(self, session: Session, why: str) -> None:
        state = session_state(session)
        state.out_of_step = True
        state.why = f"{self.id}: {why}"

    def _state(self, session: Session) -> _SessionState:
        """:func:`session_state`, remembered for the session last used (a lookup takes a
        lock and a weak reference; a transaction needs the state twice)."""
        last = self._last
        if last is not None and last[0] is session:
            return last[1]
        state = session_state(session)
        self._last = (session, state)
        return state

    def _ensure_in_step(self, session: Session, command: str) -> None:
        state = self._state(session)
        if not state.out_of_step:
            return
        self._resync(session, command)
        if state.out_of_step:
            raise DriverError(self.id, command, f"not sent: the replies{self._where()} are out "
                              f"of step since {state.why} and resynchronising failed"
                              ) from state.resync_error

    def _resync(self, session: Session, command: str) -> None:
        """Drain stale input, then read until the identifications owed (ours among them)
        have come back; bounded throughout."""
        state = session_state(session)
        if not state.out_of_step:
            return
        self._drain_input(session, state)
        if state.idn is None:
            # nothing to recognise: draining is the best available
            state.out_of_step = False
            return
        owed = state.idn_owed
        lost_before = time.monotonic() - LOST_AFTER_TIMEOUTS * self.settings.timeout_ms / 1e3
        while owed and owed[0] < lost_before:
            owed.popleft()
        state.resync_error = None
        try:
            self._send(session, IDN_QUERY)
        except DriverError as exc:
            state.resync_error = exc
            return
        owed.append(time.monotonic())
        deadline = time.monotonic() + self.settings.timeout_ms / 1000.0
        for _ in range(MAX_SYNC_READS + len(owed)):
            try:
                raw = session.read_raw()
            except (VisaIOError, OSError) as exc:
                state.resync_error = exc
                return
            if self._is_idn(raw, state) and not owed:  # the last one owed: ours
                state.out_of_step = False
                return
            if time.monotonic() > deadline:
                return

    def _drain_input(self, session: Session, state: _SessionState) -> None:
        saved = session.timeout
        try:
            session.timeout = DRAIN_TIMEOUT_MS
            for _ in range(MAX_DRAIN_READS):
                try:
                    self._is_idn(session.read_raw(), state)
                except (VisaIOError, OSError):
                    return
        finally:
            session.timeout = saved

    def _is_idn(self, raw: bytes, state: _SessionState) -> bool:
        """Whether a stale reply is an identification; one is then no longer owed."""
        if bytes(raw).decode(_ENCODING).removesuffix(self._rterm) != state.idn:
            return False
        if state.idn_owed:
            state.idn_owed.popleft()
        return True


def _configure(session: Session, state: _SessionState, settings: ScpiSettings,
               timeout_ms: float | None = None) -> None:
    """This instrument's timeout and read termination on the shared session.

    What is in force is remembered with the session (:class:`_SessionState`), so an exchange
    whose settings are already applied reads and writes no VISA attribute (each is a call
    into the VISA library); they stay applied afterwards, and the next SCPI user of the
    session changes only what differs for it. A reopened session is a new object with
    nothing remembered, so its attributes are read afresh.
    """
    timeout = settings.timeout_ms if timeout_ms is None else timeout_ms
    term = settings.read_termination
    applied = state.applied
    if applied is not None and applied == (timeout, term):
        return
    state.applied = None  # unknown until both are set
    if (applied[0] if applied else session.timeout) != timeout:
        session.timeout = timeout
    if (applied[1] if applied else session.read_termination) != term:
        session.read_termination = term
    state.applied = (timeout, term)


def _is_query(command: str) -> bool:
    """SCPI: a query's header ends with ``?`` (parameters may follow, e.g. ``MEAS:VOLT? 10``)."""
    header = command.strip().split(None, 1)[0]
    return header.endswith("?")
