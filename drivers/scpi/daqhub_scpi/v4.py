"""The v4 (actor) flavor: the same SCPI transactions, awaited on the resource's worker thread."""

from __future__ import annotations

from typing import Any, TypeVar

import pyarrow as pa
from pyvisa.errors import Error as VisaError

from daqhub.instrument import DriverError, V4Actor
from daqhub.resources.errors import ResourceError
from daqhub.specs import InstrumentContext

from .driver import Call, ScpiCore
from .profiles import CUSTOM, DMM, PSU
from .protocol import IDN_QUERY, LOCK_WAIT_S

T = TypeVar("T")
#: failures below the protocol (lock waits, closed sessions, VISA errors) become DriverErrors
_RESOURCE_FAULTS = (ResourceError, VisaError, OSError)


class ScpiActorV4(V4Actor):
    """A SCPI instrument of any profile as an actor; the profile only changes readings and setup."""

    type_name = CUSTOM

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.core = ScpiCore(ctx, self.type_name)

    async def _call(self, call: Call[T]) -> T:
        visa = self.visa
        if visa is None:
            raise DriverError(self.id, call.what, "no VISA resource was given to the instrument")
        try:
            return await visa.atransaction(call.fn, owner=self.id,  # type: ignore[no-any-return]
                                           timeout=call.timeout, what=call.what)
        except DriverError:
            raise
        except _RESOURCE_FAULTS as exc:
            raise self.core.wrap(exc, call.what) from exc

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._call(self.core.setup(await self.identify()))

    async def read(self) -> list[pa.RecordBatch]:
        return self.core.batches(await self._call(self.core.read_all()))

    # ------------------------------------------------------------------ generic SCPI commands
    async def identify(self, refresh: bool = False) -> str:
        """``*IDN?``: the shared session's cached answer when the session was opened with this
        instrument's terminations (the manager asks with those), else asked directly."""
        if self.visa is None:
            raise DriverError(self.id, IDN_QUERY, "no VISA resource was given to the instrument")
        if not self.core.manager_idn_fits(self.visa):
            return str(await self._call(self.core.query(IDN_QUERY))).strip()
        try:
            idn = await self.visa.aidn(
                refresh=refresh, owner=self.id,
                timeout=LOCK_WAIT_S + self.core.protocol.settings.timeout_ms / 1e3)
        except _RESOURCE_FAULTS as exc:
            raise self.core.wrap(exc, IDN_QUERY) from exc
        return str(idn).strip()

    async def reset(self) -> None:
        """``*RST`` and the setup sequence again, then wait until the instrument is done."""
        await self._call(self.core.reset())

    async def write(self, command: str) -> None:
        await self._call(self.core.write(command))

    async def query(self, command: str) -> str:
        return await self._call(self.core.query(command))

    async def wait_complete(self, timeout_s: float = 10.0) -> None:
        await self._call(self.core.wait_complete(timeout_s))

    async def errors(self) -> list[tuple[int, str]]:
        """Drain the error queue (useful with ``check_errors = false``)."""
        return await self._call(self.core.errors())

    async def measure(self, channel: str) -> Any:
        """One channel's reading as a plain value, outside the poll."""
        return await self._call(self.core.measure(channel))

    # ------------------------------------------------------------------ settings snapshot
    async def settings(self) -> dict[str, Any]:
        return {"identity": await self.identify()}


class DmmV4(ScpiActorV4):
    type_name = DMM


class PsuV4(ScpiActorV4):
    type_name = PSU

    async def set_output(self, on: bool) -> None:
        await self._call(self.core.set_output(on))

    async def set_voltage(self, volts: float) -> None:
        await self._call(self.core.set_voltage(volts))

    async def set_current_limit(self, amps: float) -> None:
        await self._call(self.core.set_current_limit(amps))

    async def voltage(self) -> float:
        return float(await self.measure("voltage"))

    async def current(self) -> float:
        return float(await self.measure("current"))


class CustomV4(ScpiActorV4):
    type_name = CUSTOM
