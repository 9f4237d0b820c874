"""The v2 (direct) flavor: blocking methods that run SCPI transactions in the caller's thread."""

from __future__ import annotations

from typing import Any, TypeVar

from pyvisa.errors import Error as VisaError

from daqhub.instrument import DriverError, V2Instrument
from daqhub.measurement import Measurement
from daqhub.resources.errors import ResourceError
from daqhub.specs import InstrumentContext

from .driver import Call, ScpiCore
from .profiles import CUSTOM, DMM, PSU
from .protocol import IDN_QUERY, LOCK_WAIT_S

T = TypeVar("T")
#: failures below the protocol (lock waits, closed sessions, VISA errors) become DriverErrors
_RESOURCE_FAULTS = (ResourceError, VisaError, OSError)


class ScpiInstrumentV2(V2Instrument):
    """A SCPI instrument of any profile; the profile only changes readings and setup."""

    type_name = CUSTOM

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.core = ScpiCore(ctx, self.type_name)

    def _call(self, call: Call[T]) -> T:
        visa = self.visa
        if visa is None:
            raise DriverError(self.id, call.what, "no VISA resource was given to the instrument")
        try:
            return visa.transaction(call.fn, owner=self.id, timeout=call.timeout,  # type: ignore[no-any-return]
                                    what=call.what)
        except DriverError:
            raise
        except _RESOURCE_FAULTS as exc:
            raise self.core.wrap(exc, call.what) from exc

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        self._call(self.core.setup(self.identify()))

    def read(self) -> list[Measurement]:
        return self.core.measurements(self._call(self.core.read_all()))

    # ------------------------------------------------------------------ generic SCPI commands
    def identify(self, refresh: bool = False) -> str:
        """``*IDN?``: the shared session's cached answer when the session was opened with this
        instrument's terminations (the manager asks with those), else asked directly."""
        if self.visa is None:
            raise DriverError(self.id, IDN_QUERY, "no VISA resource was given to the instrument")
        if not self.core.manager_idn_fits(self.visa):
            return str(self._call(self.core.query(IDN_QUERY))).strip()
        try:
            idn = self.visa.idn(refresh=refresh, owner=self.id,
                                timeout=LOCK_WAIT_S + self.core.protocol.settings.timeout_ms / 1e3)
        except _RESOURCE_FAULTS as exc:
            raise self.core.wrap(exc, IDN_QUERY) from exc
        return str(idn).strip()

    def reset(self) -> None:
        """``*RST`` and the setup sequence again, then wait until the instrument is done."""
        self._call(self.core.reset())

    def write(self, command: str) -> None:
        self._call(self.core.write(command))

    def query(self, command: str) -> str:
        return self._call(self.core.query(command))

    def wait_complete(self, timeout_s: float = 10.0) -> None:
        self._call(self.core.wait_complete(timeout_s))

    def errors(self) -> list[tuple[int, str]]:
        """Drain the error queue (useful with ``check_errors = false``)."""
        return self._call(self.core.errors())

    def measure(self, channel: str) -> Any:
        """One channel's reading as a plain value, outside the poll."""
        return self._call(self.core.measure(channel))

    # ------------------------------------------------------------------ settings snapshot
    def settings(self) -> dict[str, Any]:
        return {"identity": self.identify()}


class DmmV2(ScpiInstrumentV2):
    type_name = DMM


class PsuV2(ScpiInstrumentV2):
    type_name = PSU

    def set_output(self, on: bool) -> None:
        self._call(self.core.set_output(on))

    def set_voltage(self, volts: float) -> None:
        self._call(self.core.set_voltage(volts))

    def set_current_limit(self, amps: float) -> None:
        self._call(self.core.set_current_limit(amps))

    def voltage(self) -> float:
        return float(self.measure("voltage"))

    def current(self) -> float:
        return float(self.measure("current"))


class CustomV2(ScpiInstrumentV2):
    type_name = CUSTOM
