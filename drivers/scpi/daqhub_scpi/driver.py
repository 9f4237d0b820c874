"""Everything about one SCPI instrument that does not depend on the flavor.

Each command a script may send is planned here as a :class:`Call` (the
transaction function, what it sends, its time budget); the v2 class runs a call
with ``transaction`` and the v4 actor with ``atransaction``. Samples become
``Measurement`` objects or Arrow batches here too, from the same values, which
is what makes the two flavors produce the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import pyarrow as pa

from daqhub.instrument import DriverError
from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.schema import build_batch
from daqhub.specs import InstrumentContext

from .parsing import format_number
from .profiles import PSU, Reading, init_commands, readings_for
from .protocol import (
    Query,
    Sample,
    ScpiProtocol,
    ScpiSettings,
    ScpiTimeoutError,
    Session,
)

T = TypeVar("T")

#: How long ``*OPC?`` may take after a reset or the setup sequence, at least.
OPC_TIMEOUT_MS = 10000


@dataclass(frozen=True)
class Call(Generic[T]):
    """A planned transaction: run ``fn`` on the session, allowing ``timeout`` seconds."""

    fn: Callable[[Session], T]
    what: str
    timeout: float


class ScpiCore:
    """Protocol, readings and setup of one instrument of a SCPI profile."""

    def __init__(self, ctx: InstrumentContext, type_name: str) -> None:
        self.id = ctx.instrument_id
        self.type_name = type_name
        config = ctx.config
        resource = str(config.get("resource", "")) or str(getattr(ctx.visa, "label", ""))
        try:
            self.readings: list[Reading] = readings_for(type_name, config)
            self.setup_commands = init_commands(type_name, config)
            settings = ScpiSettings.from_config(config)
        except (TypeError, ValueError) as exc:
            raise DriverError(self.id, "", f"bad {type_name} configuration: {exc}") from None
        self.protocol = ScpiProtocol(self.id, settings, resource)
        self.specs: dict[str, ChannelSpec] = {r.name: r.channel() for r in self.readings}
        declared = [c.name for c in ctx.channels]
        if declared and declared != list(self.specs):
            raise DriverError(self.id, "", f"channels {declared} given to the instrument do not "
                              f"match its readings {list(self.specs)}")
        self._queries = [Query(r.query, r.parser) for r in self.readings]
        self._by_name = {r.name: r for r in self.readings}
        self.idn: str | None = None

    def manager_idn_fits(self, visa: Any) -> bool:
        """Whether the manager's cached ``*IDN?`` can be used for this instrument.

        The manager asks with the session's own terminations; a session opened
        without them (the lab file left them at their defaults) would time out on
        a socket, so such an instrument asks ``*IDN?`` itself, with its settings.
        """
        opened = getattr(visa, "settings", {})
        s = self.protocol.settings
        return bool(opened.get("read_termination") == s.read_termination
                    and opened.get("write_termination") == s.write_termination)

    # ------------------------------------------------------------------ planned calls
    def _budget(self, reads: int = 1, extra_ms: float = 0.0) -> float:
        return self.protocol.transaction_timeout(reads, extra_ms)

    def setup(self, idn: str) -> Call[None]:
        """Remember the identification, discard stale errors, send the init commands.

        Stale errors are drained (``SYST:ERR?``) rather than cleared with ``*CLS`` so
        that instruments without the IEEE 488.2 status commands work too; either way
        our first command is not blamed for what happened before we connected.
        """
        self.idn = idn.strip()
        ident = self.idn
        proto = self.protocol
        drain = proto.errors_fn() if proto.settings.check_errors else None
        init = self.setup_commands
        run = proto.sequence_fn(init) if init else None
        opc = proto.opc_fn(self._opc_ms())

        def setup(session: Session) -> None:
            proto.remember_idn(session, ident)
            if drain is not None:
                drain(session)
            if run is not None:
                run(session)
                opc(session)

        what = " ; ".join(init) if init else "SYST:ERR?"
        return Call(setup, what, self._budget(len(init) + 3, self._opc_ms()))

    def read_all(self) -> Call[list[Sample]]:
        return Call(self.protocol.read_fn(self._queries),
                    " ; ".join(q.command for q in self._queries), self._budget(len(self._queries)))

    def write(self, command: str) -> Call[None]:
        return Call(self.protocol.write_fn(command), command, self._budget())

    def query(self, command: str) -> Call[str]:
        fn: Callable[[Session], Any] = self.protocol.query_fn(command)
        return Call(fn, command, self._budget())

    def reset(self) -> Call[None]:
        """``*RST``, the profile's init commands again, then wait for ``*OPC?``."""
        commands = ["*RST", *self.setup_commands]
        run = self.protocol.sequence_fn(commands)
        opc = self.protocol.opc_fn(self._opc_ms())

        def reset(session: Session) -> None:
            run(session)
            opc(session)

        return Call(reset, " ; ".join(commands), self._budget(len(commands) + 1, self._opc_ms()))

    def wait_complete(self, timeout_s: float) -> Call[None]:
        ms = max(1.0, timeout_s * 1000.0)
        return Call(self.protocol.opc_fn(ms), "*OPC?", self._budget(1, ms))

    def errors(self) -> Call[list[tuple[int, str]]]:
        return Call(self.protocol.errors_fn(), "SYST:ERR?", self._budget(4))

    def measure(self, channel: str) -> Call[Any]:
        """One reading by channel name, as a plain value (for PowerSupply.voltage() etc.)."""
        reading = self._by_name.get(channel)
        if reading is None:
            raise DriverError(self.id, "", f"no reading {channel!r}; readings: "
                              f"{', '.join(self._by_name)}")
        fn: Callable[[Session], Any] = self.protocol.query_fn(reading.query, reading.parser)
        return Call(fn, reading.query, self._budget())

    # PowerSupply commands (SCPI-99 SOURce/OUTPut subsystems, short forms)
    def set_output(self, on: bool) -> Call[None]:
        self._need(PSU, "set_output")
        return self.write(f"OUTP {1 if on else 0}")

    def set_voltage(self, volts: float) -> Call[None]:
        self._need(PSU, "set_voltage")
        return self.write(f"VOLT {self._number(volts, 'VOLT')}")

    def set_current_limit(self, amps: float) -> Call[None]:
        self._need(PSU, "set_current_limit")
        return self.write(f"CURR {self._number(amps, 'CURR')}")

    def _need(self, type_name: str, method: str) -> None:
        if self.type_name != type_name:
            raise DriverError(self.id, "", f"{method} is a {type_name} command, this is a "
                              f"{self.type_name}")

    def _number(self, value: float, header: str) -> str:
        try:
            return format_number(value)
        except ValueError as exc:
            raise DriverError(self.id, f"{header} {value!r}", f"not sent: {exc}") from None

    def _opc_ms(self) -> float:
        return float(max(self.protocol.settings.timeout_ms, OPC_TIMEOUT_MS))

    # ------------------------------------------------------------------ results
    def measurements(self, samples: list[Sample]) -> list[Measurement]:
        out = []
        for reading, s in zip(self.readings, samples, strict=True):
            spec = self.specs[reading.name]
            out.append(Measurement(self.id, reading.name, s.timestamp_ns,
                                   Scalar(_typed(s.value, spec), spec.unit)))
        return out

    def batches(self, samples: list[Sample]) -> list[pa.RecordBatch]:
        out = []
        for reading, s in zip(self.readings, samples, strict=True):
            spec = self.specs[reading.name]
            values = np.array([s.value], dtype=spec.dtype)
            out.append(build_batch(self.id, spec, [s.timestamp_ns], values))
        return out

    # ------------------------------------------------------------------ errors
    def wrap(self, exc: BaseException, what: str) -> DriverError:
        """A resource-level failure (lock wait, closed session, VISA error) as a DriverError."""
        if isinstance(exc, DriverError):
            return exc
        if isinstance(exc, TimeoutError):
            return ScpiTimeoutError(self.id, what, str(exc))
        return DriverError(self.id, what, f"{type(exc).__name__}: {exc}")



def _typed(value: Any, spec: ChannelSpec) -> Any:
    """The value as the numpy scalar type of its channel, so both flavors store one dtype."""
    return np.dtype(spec.dtype).type(value)
