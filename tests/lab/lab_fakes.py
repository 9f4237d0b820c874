"""A mover that refuses to pass a limit, in both flavors (the failure the scan must report)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from daqhub.instrument import DriverError, V2Instrument, V4Actor, now_ns
from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.schema import build_batch
from daqhub.specs import InstrumentType

CHANNELS = [ChannelSpec("position", "scalar", "mm", "float64")]
LIMIT = 25.0
#: the limited stage as a lab-file block, in either flavor (``.format(flavor=...)``)
LIMITED_TOML = '''
[[{flavor}.instruments]]
id = "stage"
type = "test.limited"
poll_hz = 5
'''


class LimitedV2(V2Instrument):
    position_mm = 0.0

    def read(self) -> list[Measurement]:
        return [Measurement(self.id, "position", now_ns(), Scalar(self.position_mm, "mm"))]

    def move_absolute(self, position: float) -> None:
        if position > LIMIT:
            raise DriverError(self.id, f"PA{position}", "limit switch hit", code=7)
        self.position_mm = position

    def wait_until_done(self, timeout: float = 30.0) -> float:
        return self.position_mm

    def position(self) -> float:
        return self.position_mm

    def move_relative(self, distance: float) -> None:
        self.move_absolute(self.position_mm + distance)

    def home(self, timeout: float = 30.0) -> None:
        self.position_mm = 0.0

    def is_moving(self) -> bool:
        return False

    def stop(self) -> None:
        pass

    def settings(self) -> dict[str, Any]:
        return {"limit": LIMIT}


class LimitedV4(V4Actor):
    position_mm = 0.0

    async def read(self) -> list[pa.RecordBatch]:
        return [build_batch(self.id, CHANNELS[0], [now_ns()],
                            np.array([self.position_mm], np.float64))]

    async def move_absolute(self, position: float) -> None:
        if position > LIMIT:
            raise DriverError(self.id, f"PA{position}", "limit switch hit", code=7)
        self.position_mm = position

    async def wait_until_done(self, timeout: float = 30.0) -> float:
        return self.position_mm

    async def position(self) -> float:
        return self.position_mm

    async def move_relative(self, distance: float) -> None:
        await self.move_absolute(self.position_mm + distance)

    async def home(self, timeout: float = 30.0) -> None:
        self.position_mm = 0.0

    async def is_moving(self) -> bool:
        return False

    async def stop(self) -> None:
        pass

    async def settings(self) -> dict[str, Any]:
        return {"limit": LIMIT}


def fake_types() -> list[InstrumentType]:
    return [InstrumentType("test.limited", flavor, "none", cls, CHANNELS,  # type: ignore[arg-type]
                           "a stage with a limit switch at 25 mm", capabilities=("Motion",))
            for flavor, cls in (("v2", LimitedV2), ("v4", LimitedV4))]
