"""Instrument types that go wrong in the ways a run used to hide, for `daqhub run` tests.

Installed for a subprocess as a real plugin would be (a dist-info with an entry point on
PYTHONPATH, see ``tests/e2e/conftest.py``).
"""

from __future__ import annotations

import asyncio

import numpy as np

from daqhub.hookspecs import hookimpl
from daqhub.instrument import DriverError, V2Instrument, V4Actor, now_ns
from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.schema import build_batch
from daqhub.specs import InstrumentType

X = ChannelSpec("x", "scalar", "V")


class GoodV2(V2Instrument):
    def connect(self) -> None:
        self.n = 0

    def read(self) -> list[Measurement]:
        self.n += 1
        return [Measurement(self.id, "x", now_ns(), Scalar(float(self.n), "V"))]

    def explode(self) -> None:
        raise DriverError(self.id, "EXPLODE", "refused by the instrument", code=42)


class RaisesV2(GoodV2):
    def read(self) -> list[Measurement]:
        raise DriverError(self.id, "READ?", "garbled reply", code=158)


class UndeclaredV2(GoodV2):
    def read(self) -> list[Measurement]:
        return [Measurement(self.id, "bogus", now_ns(), Scalar(1.0, "V"))]


class GoodV4(V4Actor):
    async def start(self) -> None:
        self.n = 0

    async def read(self) -> list:
        self.n += 1
        return [build_batch(self.id, X, [now_ns()], np.array([float(self.n)]))]


class ForeverV4(GoodV4):
    async def read(self) -> list:
        await asyncio.Event().wait()  # a reply that never comes, awaited without a timeout
        return []


@hookimpl
def daqhub_instrument_types() -> list[InstrumentType]:
    kinds = [("liar.good", "v2", GoodV2), ("liar.raises", "v2", RaisesV2),
             ("liar.undeclared", "v2", UndeclaredV2), ("liar.good", "v4", GoodV4),
             ("liar.forever", "v4", ForeverV4)]
    return [InstrumentType(name, flavor, "none", cls, [X], f"{name} ({flavor}) for tests",
                           capabilities=("Readable",)) for name, flavor, cls in kinds]
