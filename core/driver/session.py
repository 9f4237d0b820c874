"""The one class a driver author writes: a :class:`Session` holds the protocol of one
instrument, and both flavors are made from it (:mod:`daqhub.driver.flavors`).

What the class says:

* the type (``type_name``, ``channels``, ``capabilities`` ...), read by
  :func:`~daqhub.driver.flavors.instrument_types`;
* the line framing (``command_end``, ``reply_end``, ``read_timeout``), or an own
  :meth:`exchange` for anything else;
* the protocol table (:mod:`daqhub.driver.declare`) and the lifecycle plans :meth:`connect`,
  :meth:`poll` and :meth:`close`.

Running a step is the flavor-specific part: :meth:`run_step` (v2, blocking) and
:meth:`arun_step` (v4, awaited). A driver with steps of its own (the Elliptec bus router's
"collect a deferred reply") overrides both and hands everything else to ``super()``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from types import GeneratorType
from typing import Any, ClassVar, NamedTuple, NoReturn, TypeVar

from ..instrument import DriverError
from ..measurement import ChannelSpec
from ..resources.errors import ResourceError
from ..specs import ChannelsFor, InstrumentContext, Transport
from . import lines
from .declare import check_templates, parameters
from .options import options
from .transaction import (
    Pause,
    Plan,
    Transaction,
    checked_read_timeout,
    driver_error,
    parse_reply,
)

T = TypeVar("T")


class Sample(NamedTuple):
    """A polled value with metadata stored next to it (``{"moving": True}``), and when its
    reply arrived (ns since the epoch; None: when the poll ended).

    A named tuple, not a frozen dataclass: one is made per reading per poll, and the
    dataclass's ``__init__`` cost a microsecond of a ~30 us poll.
    """

    value: Any
    meta: Mapping[str, Any] | None = None
    timestamp_ns: int | None = None


#: ``Sample`` from one ``(value, meta, timestamp_ns)`` tuple, without the named tuple's
#: Python-level ``__new__``: half the cost, for a poll building one per reading.
new_sample: Callable[[tuple[Any, Mapping[str, Any] | None, int | None]], Sample] = \
    functools.partial(tuple.__new__, Sample)  # type: ignore[assignment]


def _is_io_error(exc: BaseException) -> bool:
    """Errors of the line itself, as opposed to bugs in the driver: these are translated."""
    return (isinstance(exc, ResourceError | OSError | TimeoutError)
            or type(exc).__module__.startswith("pyvisa"))


class Session:
    """One instrument's protocol, flavor-neutral. Subclass it and declare what differs."""

    # --- the instrument type (see flavors.instrument_types) -------------------------------
    type_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    transport: ClassVar[Transport] = "serial"
    channels: ClassVar[Sequence[ChannelSpec] | ChannelsFor] = ()
    config_schema: ClassVar[Mapping[str, Any]] = {"type": "object"}
    capabilities: ClassVar[tuple[str, ...]] = ()
    #: set per class (``__init_subclass__``): True when it does not override :meth:`execute`
    plain_execute: ClassVar[bool] = True
    serial_settings: ClassVar[Mapping[str, Any]] = {}

    # --- line framing of the default exchange --------------------------------------------
    command_end: ClassVar[bytes] = b"\r\n"
    reply_end: ClassVar[bytes] = b"\r\n"
    #: seconds a reply may take; set on the port for each exchange (restored afterwards).
    #: A finite number > 0, checked when the class is defined: None would wait for ever.
    read_timeout: ClassVar[float] = 1.0
    #: longest reply accepted (None: no limit); more is line noise
    max_reply: ClassVar[int | None] = None
    encoding: ClassVar[str] = "ascii"

    def __init__(self, ctx: InstrumentContext) -> None:
        self.ctx = ctx
        self.id = ctx.instrument_id
        self.config = ctx.config
        resource = ctx.port if self.transport == "serial" else ctx.visa
        if resource is None and self.transport != "none":
            what = ("a serial port (port = ...)" if self.transport == "serial"
                    else "a VISA resource (address = ...)")
            raise ValueError(f"{self.id}: {ctx.type_name} needs {what}")
        self.resource: Any = resource
        #: the block's own keys (checked, defaults filled in): :func:`~.options.options`
        self.options: Any = options(self.config_schema, ctx.config, self.id)
        #: named fields of command templates (``{axis}``)
        self.fields: dict[str, Any] = {}
        #: what connect learnt about the instrument (model, serial, firmware): settings too
        self.identity: dict[str, Any] = {}

    # --- building transactions -------------------------------------------------------------
    def query(self, command: str, parse: Callable[[str], T] = str,  # type: ignore[assignment]
              *, urgent: bool = False) -> Transaction[T]:
        return Transaction(command, parse, urgent=urgent)

    def write(self, command: str, *, urgent: bool = False) -> Transaction[None]:
        return Transaction(command, None, urgent=urgent)

    def together(self, *transactions: Transaction[Any]) -> Transaction[tuple[Any, ...]]:
        """Several exchanges in one transaction, so no other traffic comes in between."""
        def fn(io: Any) -> tuple[Any, ...]:
            return tuple(self.execute(io, t) for t in transactions)
        return Transaction("; ".join(t.command for t in transactions), fn=fn,
                           urgent=any(t.urgent for t in transactions))

    # --- the exchange (runs with the line to itself) ---------------------------------------
    def execute(self, io: Any, tx: Transaction[T]) -> T:
        """Run one transaction's I/O on the open port (or pyvisa resource)."""
        if tx.fn is not None:
            return tx.fn(io)
        text = self.exchange(io, tx.command, tx.parse is not None)
        if tx.parse is None:
            return None  # type: ignore[return-value]
        return parse_reply(tx.parse, text or "", self.id, tx.command)

    def exchange(self, io: Any, command: str, reply: bool) -> str | None:
        """Send ``command``; with ``reply``, return the checked reply text.

        Serial: drops what an earlier exchange left on the line, writes the command with
        :attr:`command_end`, reads one line ending in :attr:`reply_end` within
        :attr:`read_timeout`. VISA: the resource's own ``write``/``query`` (its terminations
        and timeout come from the lab file).
        """
        if self.transport == "visa":
            if not reply:
                io.write(command)
                return None
            return self.check_reply(command, str(io.query(command)).strip())
        lines.begin(io, self.read_timeout, self.id)
        lines.send(io, command, self.command_end, self.encoding)
        if not reply:
            return None
        text = lines.read_line(io, self.id, command, self.reply_end, max_reply=self.max_reply,
                               encoding=self.encoding)
        if text is None:
            raise lines.no_reply(io, self.id, command)
        return self.check_reply(command, text)

    def check_reply(self, command: str, text: str) -> str:
        """Raise the instrument's error replies (``ERR 3``) as DriverReplyError; the default
        accepts every reply."""
        return text

    # --- lifecycle plans (each may return None, a Transaction or a generator) --------------
    def connect(self) -> Any:
        """Check the instrument answers and set it up; fill :attr:`identity`."""
        return None

    def poll(self) -> Any:
        """Channel name -> value (or :class:`Sample`). The default queries, in one
        transaction, the declared parameter of each channel's name (planned once, and
        again only when :attr:`fields` change). A channel without one is refused
        (:func:`unpolled_channels`), unless an own ``poll`` fills it and calls this one for
        the others."""
        key = tuple(self.fields.items())
        planned = self.__dict__.get("_planned_poll")
        if planned is None or planned[0] != key:
            params = parameters(type(self))
            # static ones were checked by instrument_types; a channels function's differ per
            # block, and a type declared without instrument_types was not checked
            specs = self.channel_specs()
            if unfilled := unpolled_channels(type(self), [c.name for c in specs]):
                raise TypeError(f"{self.id}: {unfilled}")
            names = [c.name for c in specs if c.name in params]
            planned = self._planned_poll = (
                key, names, self.together(*(params[n].query(self) for n in names)))
        values = yield planned[2]
        return dict(zip(planned[1], values, strict=True))

    def close(self) -> Any:
        """Leave the instrument safe; the core closes the port itself."""
        return None

    def settings(self) -> Plan[dict[str, Any]]:
        """The settings snapshot: :attr:`identity` and every declared setting's value."""
        out: dict[str, Any] = dict(self.identity)
        for name, param in parameters(type(self)).items():
            if param.setting:
                out[name] = yield param.query(self)
        return out

    def channel_specs(self) -> list[ChannelSpec]:
        return list(self.ctx.channels)

    # --- running steps: the flavor-specific hook -------------------------------------------
    def _io_of(self, tx: Transaction[Any]) -> Callable[[Any], Any]:
        """What a transaction runs on the open handle when it is not its own ``fn`` as it is
        (no ``fn``, or a class with its own :meth:`execute`; see :func:`_transact`)."""
        return lambda io: self.execute(io, tx)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Decide once per class how it executes, and refuse what would fail at every use
        (a template that drops its value, a read that waits for ever) as the plugin loads,
        naming the class and the attribute."""
        super().__init_subclass__(**kwargs)
        cls.plain_execute = cls.execute is Session.execute
        timeout = vars(cls).get("read_timeout", 1.0)
        if not hasattr(timeout, "__get__"):  # a property is checked at use, by lines.begin
            try:
                checked_read_timeout(timeout, f"{cls.__qualname__}.read_timeout")
            except ValueError as exc:
                raise TypeError(str(exc)) from None
        check_templates(cls)
        # not unpolled_channels: a shared base declares channels its model subclasses fill;
        # instrument_types checks the class that becomes a type (and its channels= override)

    def run_step(self, step: Any) -> Any:
        """Execute one step in the calling thread (v2). The runners send a plain
        :class:`Transaction` to the resource themselves (the commonest step, one call less):
        an override sees the other steps, and Transaction subclasses."""
        if isinstance(step, Transaction):
            return _transact(self, step)
        if isinstance(step, Pause):
            time.sleep(step.seconds)
            return None
        raise TypeError(f"{self.id}: not a plan step: {step!r}")

    async def arun_step(self, step: Any) -> Any:
        """Execute one step from the event loop (v4), as :meth:`run_step` (a plain
        Transaction does not come here); I/O runs on the resource's worker, or in the loop's
        thread when the resource judges that quick (see :mod:`daqhub.resources.loopinline`)."""
        if isinstance(step, Transaction):
            return await _atransact(self, step)
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return None
        raise TypeError(f"{self.id}: not a plan step: {step!r}")

    def step_command(self, step: Any) -> str:
        """What a step is about, for error messages."""
        return getattr(step, "command", "") if not isinstance(step, Pause) else ""


def unpolled_channels(cls: type[Session], channels: Sequence[str]) -> str | None:
    """Why the default :meth:`Session.poll` of ``cls`` would never fill some of
    ``channels``, or None: it reads each channel from the :class:`Parameter` of its name, so
    a channel without one (or with a write-only one) got no value, and the run said
    "stopped cleanly" over an empty column. A class with its own ``poll`` fills what it
    says it does (some channels legitimately report only now and then)."""
    if cls.poll is not Session.poll:
        return None
    params = parameters(cls)
    missing = [n for n in channels if getattr(params.get(n), "get", None) is None]
    if not missing:
        return None
    return (f"{cls.__qualname__}: channel(s) {', '.join(map(repr, missing))} would never get "
            f"a value: the default poll reads each channel from the Parameter of its name, "
            f"and {cls.__qualname__} declares none with a query for "
            f"{'it' if len(missing) == 1 else 'them'}; declare one ({missing[0]} = "
            f"Parameter(\"QUERY?\", ...)) or override poll()")


# --- the runners --------------------------------------------------------------------------

def run(session: Session, plan: Any) -> Any:
    """Execute a plan blocking and return its result.

    A single Transaction or Pause is a one-step plan; anything else that is not a generator
    (None, a value a command computed without I/O) is the result itself. Steps of a
    session's own kinds must be yielded from a plan.

    A failing step's error, translated into the driver error family, is thrown into the
    plan, so a plan may catch it (a retry, a cleanup) or let it end the operation.
    """
    if type(plan) is Transaction:  # a poll's usual plan: straight to the resource
        try:
            return _transact(session, plan)
        except Exception as exc:
            _raise_translated(session, plan, exc)
    if type(plan) is not GeneratorType and not isinstance(plan, Generator):
        return _sync_step(session, plan) if isinstance(plan, Transaction | Pause) else plan
    value: Any = None
    error: DriverError | None = None
    while True:
        done, step = _advance(plan, value, error)
        if done:
            return step
        try:
            value, error = _sync_step(session, step), None
        except DriverError as exc:
            value, error = None, exc


async def arun(session: Session, plan: Any) -> Any:
    """:func:`run` for coroutines: the same plan, each step awaited."""
    if type(plan) is Transaction:  # as in run, without a coroutine between
        try:
            return await _atransact(session, plan)
        except Exception as exc:
            _raise_translated(session, plan, exc)
    if not isinstance(plan, Generator):
        return (await _async_step(session, plan) if isinstance(plan, Transaction | Pause)
                else plan)
    value: Any = None
    error: DriverError | None = None
    while True:
        done, step = _advance(plan, value, error)
        if done:
            return step
        try:
            value, error = await _async_step(session, step), None
        except DriverError as exc:
            value, error = None, exc


def _advance(plan: Generator[Any, Any, Any], value: Any,
             error: DriverError | None) -> tuple[bool, Any]:
    """(True, the plan's result) when it ended, else (False, its next step)."""
    try:
        return False, plan.throw(error) if error is not None else plan.send(value)
    except StopIteration as stop:
        return True, stop.value


def _translated(session: Session, step: Any, exc: Exception) -> Exception:
    if isinstance(exc, DriverError) or not _is_io_error(exc):
        return exc
    err = driver_error(exc, session.id, session.step_command(step))
    return err


def _raise_translated(session: Session, step: Any, exc: Exception) -> NoReturn:
    err = _translated(session, step, exc)
    if err is exc:
        raise exc
    raise err from exc


def _transact(session: Session, tx: Transaction[Any]) -> Any:
    """One transaction on the session's resource (blocking). A transaction's ``fn`` runs as it
    is when the class executes the default way: a call less on a poll's path."""
    fn = tx.fn
    if fn is None or not session.plain_execute:
        fn = session._io_of(tx)
    return session.resource.transaction(fn, owner=session.id, what=tx.command,
                                        urgent=tx.urgent, timeout=tx.timeout)


def _atransact(session: Session, tx: Transaction[Any]) -> Awaitable[Any]:
    """:func:`_transact` for coroutines: the resource's own awaitable, no coroutine between."""
    fn = tx.fn
    if fn is None or not session.plain_execute:
        fn = session._io_of(tx)
    return session.resource.atransaction(  # type: ignore[no-any-return]
        fn, owner=session.id, what=tx.command, urgent=tx.urgent,
        timeout=tx.timeout)


def _sync_step(session: Session, step: Any) -> Any:
    try:
        if type(step) is Transaction:  # straight to the resource (see Session.run_step)
            return _transact(session, step)
        return session.run_step(step)
    except Exception as exc:
        _raise_translated(session, step, exc)


async def _async_step(session: Session, step: Any) -> Any:
    try:
        if type(step) is Transaction:
            return await _atransact(session, step)
        return await session.arun_step(step)
    except Exception as exc:
        _raise_translated(session, step, exc)
