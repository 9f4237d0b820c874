"""Hand-written drivers (not the toolkit's) whose ``read()`` refuses its own values, for
``tests/runtime/test_read_refusals.py``.

Worker processes load their plugins from the installed entry points, so this one is
installed as a real plugin would be (a dist-info with an entry point on PYTHONPATH, see
the ``refusals_host`` fixture there); the parent loads it the same way.
"""

from __future__ import annotations

import pyarrow as pa

from daqhub.hookspecs import hookimpl
from daqhub.instrument import V2Instrument, V4Actor, now_ns
from daqhub.measurement import ChannelSpec, DataError, Measurement, Scalar
from daqhub.schema import build_batch
from daqhub.specs import InstrumentType

X = ChannelSpec("x", "scalar", "V")
BOGUS = ChannelSpec("bogus", "scalar", "V")  # a channel no type here declares
#: the polls whose values the driver's own check refuses: three in a row, as many failed
#: reads as make the runtime reconnect
REFUSED_POLLS = (2, 3, 4)
#: polls made per instrument id in this process (a reconnect makes a new driver object)
POLLS: dict[str, int] = {}


def poll(instrument_id: str) -> int:
    """The poll's number; a :class:`DataError` for the ones the driver refuses, as a
    driver whose own conversion finds the value contradicts its channel raises it."""
    n = POLLS[instrument_id] = POLLS.get(instrument_id, 0) + 1
    if n in REFUSED_POLLS:
        raise DataError(f"{instrument_id}: data contradicts the channel (poll {n})")
    return n


class RefusesV2(V2Instrument):
    def read(self) -> list[Measurement]:
        return [Measurement(self.id, "x", now_ns(), Scalar(float(poll(self.id)), "V"))]


class RefusesV4(V4Actor):
    async def read(self) -> list[pa.RecordBatch]:
        return [build_batch(self.id, X, [now_ns()], [float(poll(self.id))])]


class StrayV2(V2Instrument):
    """Each read's samples: one of its channel, one of a channel it does not declare."""

    def read(self) -> list[Measurement]:
        t = now_ns()
        return [Measurement(self.id, "x", t, Scalar(1.0, "V")),
                Measurement(self.id, "bogus", t, Scalar(2.0, "V"))]


class StrayV4(V4Actor):
    async def read(self) -> list[pa.RecordBatch]:
        t = [now_ns()]
        return [build_batch(self.id, X, t, [1.0]), build_batch(self.id, BOGUS, t, [2.0])]


@hookimpl
def daqhub_instrument_types() -> list[InstrumentType]:
    return [InstrumentType(f"read_refusals.{name}", flavor, "none", cls, [X], doc,
                           capabilities=("Readable",))
            for name, flavor, cls, doc in (
                ("refuses", "v2", RefusesV2, "polls 2-4 refuse their values"),
                ("refuses", "v4", RefusesV4, "polls 2-4 refuse their values"),
                ("stray", "v2", StrayV2, "reads a channel it does not declare"),
                ("stray", "v4", StrayV4, "reads a channel it does not declare"))]
