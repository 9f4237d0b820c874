"""SCPI instruments on the driver toolkit: one session class per profile, both flavors.

Each command a script may send is a :class:`~daqhub.driver.Transaction` with its own time
budget, run on the VISA resource by the toolkit in either flavor. Samples are typed to their
channel's dtype here, which is what makes the two flavors produce the same data.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from daqhub.driver import DriverError, Sample, Session, Transaction, command, new_sample
from daqhub.measurement import ChannelSpec, Scalar
from daqhub.specs import InstrumentContext

from .parsing import format_number, parse_idn
from .profiles import (
    CUSTOM,
    DMM,
    PSU,
    Reading,
    channels_for,
    configured_settings,
    init_commands,
    readings_for,
    setting_readings,
)
from .protocol import IDN_QUERY, ScpiProtocol, ScpiSettings, check_errors_mode
from .protocol import Session as Visa
from .schemas import CUSTOM_SCHEMA, DMM_SCHEMA, PSU_SCHEMA

#: How long ``*OPC?`` may take after a reset or the setup sequence, at least.
OPC_TIMEOUT_MS = 10000


class ScpiSession(Session):
    """Protocol, readings and setup of one instrument of a SCPI profile."""

    transport = "visa"

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        config = ctx.config
        resource = str(config.get("resource", "")) or str(getattr(ctx.visa, "label", ""))
        try:
            self.readings: list[Reading] = readings_for(self.type_name, config)
            self.setup_commands = init_commands(self.type_name, config)
            o = self.options
            settings = ScpiSettings(o.read_termination, o.write_termination, o.timeout_ms,
                                    check_errors_mode(o.check_errors))
        except (TypeError, ValueError) as exc:
            raise DriverError(self.id, "", f"bad {self.type_name} configuration: {exc}") from None
        self.protocol = ScpiProtocol(self.id, settings, resource)
        self.specs: dict[str, ChannelSpec] = {r.name: r.channel() for r in self.readings}
        declared = [c.name for c in ctx.channels]
        if declared and declared != list(self.specs):
            raise DriverError(self.id, "", f"channels {declared} given to the instrument do not "
                              f"match its readings {list(self.specs)}")
        self._by_name = {r.name: r for r in self.readings}
        self.idn: str | None = None
        self._poll = self._planned_poll()
        self._setpoints = self._planned_setpoints()

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> Generator[Any, Any, None]:
        yield self.setup((yield from self.identify(refresh=True)))

    def poll(self) -> Transaction[dict[str, Sample]]:
        return self._poll

    def _planned_poll(self) -> Transaction[dict[str, Sample]]:
        """The poll, planned once; each sample typed to its channel's dtype, as v4 gives it."""
        def sample(typed: Any, unit: str) -> Any:
            return lambda value, stamp: new_sample((Scalar(typed(value), unit), None, stamp))

        read = self.protocol.read_fn([(r.name, r.query, r.parser.function,
                                       sample(np.dtype(r.parser.dtype).type, r.unit))
                                      for r in self.readings])
        return Transaction(" ; ".join(r.query for r in self.readings), fn=read,
                           timeout=self._budget(len(self.readings)))

    def _planned_setpoints(self) -> Transaction[dict[str, Any]] | None:
        """The settings snapshot's queries of the profile (``setting_readings``), planned once
        as one transaction; None when the profile asks none."""
        wanted = setting_readings(self.type_name)
        if not wanted:
            return None
        queries = [(r.name, self.protocol.query_fn(r.query, r.parser.function)) for r in wanted]

        def read(session: Visa) -> dict[str, Any]:
            return {name: query(session) for name, query in queries}

        return Transaction(" ; ".join(r.query for r in wanted), fn=read,
                           timeout=self._budget(len(wanted)))

    def settings(self) -> Generator[Any, Any, dict[str, Any]]:
        """The settings snapshot: the identity (``*IDN?``), what the lab file set up (a DMM's
        functions) and the setpoints the instrument holds (a PSU's ``VOLT?``, ``CURR?``,
        ``OUTP?``). Setpoints that cannot be read leave the rest standing, with the reason:
        the snapshot is the session's record of what it measured with."""
        out = yield from super().settings()  # the identity (and declared parameters: none)
        out.update(configured_settings(self.type_name, self.config))
        if self._setpoints is not None:
            try:
                out.update((yield self._setpoints))
            except DriverError as exc:
                out["setpoints_error"] = str(exc)
        return out

    def _identified(self, idn: str) -> str:
        """Remember the ``*IDN?`` reply, and the identity every settings snapshot starts
        with (:func:`~.parsing.parse_idn`)."""
        self.idn = idn.strip()
        self.identity = {"idn": self.idn, **parse_idn(self.idn)}
        return self.idn

    # ------------------------------------------------------------------ generic SCPI commands
    @command
    def identify(self, refresh: bool = False) -> Generator[Any, Any, str]:
        """``*IDN?``: the answer got at connect, or asked again with ``refresh``."""
        if self.idn is None or refresh:
            idn = yield Transaction(IDN_QUERY, fn=self.protocol.idn_fn(), timeout=self._budget())
            return self._identified(str(idn))
        return self.idn

    @command
    def reset(self) -> Transaction[None]:
        """``*RST`` and the setup sequence again, then wait until the instrument is done."""
        commands = ["*RST", *self.setup_commands]
        run = self.protocol.sequence_fn(commands)
        opc = self.protocol.opc_fn(self._opc_ms())

        def reset(session: Visa) -> None:
            run(session)
            opc(session)

        return Transaction(" ; ".join(commands), fn=reset,
                           timeout=self._budget(len(commands) + 1, self._opc_ms()))

    @command
    def write(self, command: str) -> Transaction[None]:  # type: ignore[override]
        return Transaction(command, fn=self.protocol.write_fn(command), timeout=self._budget())

    @command
    def query(self, command: str) -> Transaction[str]:  # type: ignore[override]
        return Transaction(command, fn=self.protocol.query_fn(command), timeout=self._budget())

    @command
    def wait_complete(self, timeout_s: float = 10.0) -> Transaction[None]:
        ms = max(1.0, timeout_s * 1000.0)
        return Transaction("*OPC?", fn=self.protocol.opc_fn(ms), timeout=self._budget(1, ms))

    @command
    def errors(self) -> Transaction[list[tuple[int, str]]]:
        """Drain the error queue (useful with ``check_errors = "never"``)."""
        return Transaction("SYST:ERR?", fn=self.protocol.errors_fn(), timeout=self._budget(4))

    @command
    def measure(self, channel: str) -> Transaction[Any]:
        """One channel's reading as a plain value, outside the poll."""
        reading = self._by_name.get(channel)
        if reading is None:
            raise DriverError(self.id, "", f"no reading {channel!r}; readings: "
                              f"{', '.join(self._by_name)}")
        return Transaction(reading.query, fn=self.protocol.query_fn(reading.query,
                                                                    reading.parser),
                           timeout=self._budget())

    # ------------------------------------------------------------------ planned calls
    def _budget(self, reads: int = 1, extra_ms: float = 0.0) -> float:
        return self.protocol.transaction_timeout(reads, extra_ms)

    def setup(self, idn: str) -> Transaction[None]:
        """Remember the identification, discard stale errors, send the init commands.

        Stale errors are drained (``SYST:ERR?``) rather than cleared with ``*CLS`` so
        that instruments without the IEEE 488.2 status commands work too; either way
        our first command is not blamed for what happened before we connected.
        """
        self._identified(idn)
        proto = self.protocol
        drain = proto.errors_fn() if proto.settings.checks_commands else None
        init = self.setup_commands
        run = proto.sequence_fn(init) if init else None
        opc = proto.opc_fn(self._opc_ms())

        def setup(session: Visa) -> None:
            if drain is not None:
                drain(session)
            if run is not None:
                run(session)
                opc(session)

        return Transaction(" ; ".join(init) if init else "SYST:ERR?", fn=setup,
                           timeout=self._budget(len(init) + 3, self._opc_ms()))

    def _number(self, value: float, header: str) -> str:
        try:
            return format_number(value)
        except ValueError as exc:
            raise DriverError(self.id, f"{header} {value!r}", f"not sent: {exc}") from None

    def _opc_ms(self) -> float:
        return float(max(self.protocol.settings.timeout_ms, OPC_TIMEOUT_MS))


class DmmSession(ScpiSession):
    type_name = DMM
    description = "SCPI digital multimeter over VISA (MEAS:VOLT:DC? and friends)"
    channels = staticmethod(channels_for(DMM))
    config_schema = DMM_SCHEMA
    capabilities = ("Readable",)


class PsuSession(ScpiSession):
    """SCPI-99 SOURce/OUTPut subsystems, short forms."""

    type_name = PSU
    description = "SCPI programmable DC power supply over VISA (VOLT, CURR, OUTP, MEAS)"
    channels = staticmethod(channels_for(PSU))
    config_schema = PSU_SCHEMA
    capabilities = ("Readable", "PowerSupply")

    @command
    def set_output(self, on: bool) -> Transaction[None]:
        return self.write(f"OUTP {1 if on else 0}")

    @command
    def set_voltage(self, volts: float) -> Transaction[None]:
        return self.write(f"VOLT {self._number(volts, 'VOLT')}")

    @command
    def set_current_limit(self, amps: float) -> Transaction[None]:
        return self.write(f"CURR {self._number(amps, 'CURR')}")

    @command
    def voltage(self) -> Generator[Any, Any, float]:
        return float((yield self.measure("voltage")))

    @command
    def current(self) -> Generator[Any, Any, float]:
        return float((yield self.measure("current")))


class CustomSession(ScpiSession):
    type_name = CUSTOM
    description = "any SCPI instrument over VISA, its readings and setup listed in the lab file"
    channels = staticmethod(channels_for(CUSTOM))
    config_schema = CUSTOM_SCHEMA
    capabilities = ("Readable",)

