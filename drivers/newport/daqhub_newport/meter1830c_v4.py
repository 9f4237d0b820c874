"""Newport 1830-C, v4 flavor: async methods, each one :class:`MeterSession` operation."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from daqhub.instrument import V4Actor, now_ns
from daqhub.schema import build_batch
from daqhub.specs import InstrumentContext

from .lineio import Op, arun_op, serial_port_of
from .meter1830c_config import MeterSettings
from .meter1830c_session import MeterSession, MeterState

T = TypeVar("T")


class Meter1830cV4(V4Actor):
    """A Newport 1830-C (PowerMeter capability) as an actor."""

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.serial_port = serial_port_of(ctx)
        state = self.serial_port.shared(MeterState.KEY, MeterState)
        self.session = MeterSession(self.id, MeterSettings.from_config(ctx.config), state)

    async def _do(self, op: Op[T]) -> T:
        return await arun_op(self.serial_port, self.id, op)

    async def start(self) -> None:
        await self._do(self.session.connect())

    async def read(self) -> list[pa.RecordBatch]:
        value, meta = await self._do(self.session.poll())
        return [build_batch(self.id, self.channel("power"), [now_ns()],
                            np.array([value], dtype=np.float64), metadata=[meta])]

    # ------------------------------------------------------------------ PowerMeter
    async def power(self) -> float:
        """The reading in the meter's current units (:meth:`units`)."""
        return await self._do(self.session.power())

    async def set_wavelength(self, nm: float) -> None:
        await self._do(self.session.set_wavelength(nm))

    async def wavelength(self) -> float:
        return await self._do(self.session.wavelength())

    async def set_units(self, units: str) -> None:
        """``W``, ``dB``, ``dBm`` or ``REL`` for the display and :meth:`power`; the ``power``
        channel stays in the unit the lab file declares."""
        await self._do(self.session.set_units(units))

    async def units(self) -> str:
        return await self._do(self.session.units())

    async def set_range(self, range_: int) -> None:
        """0 = auto range, 1 (most gain) .. 8 (least)."""
        await self._do(self.session.set_range(range_))

    # ------------------------------------------------------------------ more of the 1830-C
    async def current_range(self) -> int:
        return await self._do(self.session.current_range())

    async def set_filter(self, speed: str) -> None:
        """``slow`` (16-reading average), ``medium`` (4) or ``fast`` (none)."""
        await self._do(self.session.set_filter(speed))

    async def filter_speed(self) -> str:
        return await self._do(self.session.filter_speed())

    async def set_attenuator(self, on: bool) -> None:
        await self._do(self.session.set_flag("A", on))

    async def attenuator(self) -> bool:
        return await self._do(self.session.flag("A"))

    async def set_zero(self, on: bool) -> None:
        """On: the next reading becomes an offset subtracted from all later ones."""
        await self._do(self.session.set_flag("Z", on))

    async def zero(self) -> bool:
        return await self._do(self.session.flag("Z"))

    async def store_reference(self) -> None:
        """``S``: the current reading becomes the dB/REL reference."""
        await self._do(self.session.set("S"))

    async def status(self) -> int:
        """The raw status byte (``Q?``)."""
        return await self._do(self.session.status())

    async def raw_command(self, text: str) -> None:
        """Send a command this driver does not wrap; raise what the status byte reports."""
        await self._do(self.session.raw_command(text))

    async def raw_query(self, text: str) -> str:
        """Send a query this driver does not wrap and return its reply line."""
        return await self._do(self.session.raw_query(text))

    # ------------------------------------------------------------------ settings snapshot
    async def settings(self) -> dict[str, Any]:
        return {"model": "Newport 1830-C", "units": await self.units(),
                "wavelength_nm": await self.wavelength(), "range": await self.current_range(),
                "filter": await self.filter_speed(), "attenuator": await self.attenuator(),
                "zero": await self.zero()}
