"""A mover that refuses to pass a limit, in both flavors (the failure the scan must report),
a mover whose moves wait until the test lets them go (a run held at a known step), and
detectors that read unlike the demo's: a v4 one whose read has one channel at a time, a
camera (an image and an integer count) and a meter whose settings query gets no reply."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pyarrow as pa

from daqhub.instrument import DriverError, DriverTimeoutError, V2Instrument, V4Actor, now_ns
from daqhub.measurement import ChannelSpec, Image, Measurement, Scalar
from daqhub.schema import build_batch
from daqhub.specs import InstrumentType

CHANNELS = [ChannelSpec("position", "scalar", "mm", "float64")]
LIMIT = 25.0
#: home(timeout) shorter than this: the driver's own timeout error, as a lost reply gives
HOME_TAKES_S = 1.0
#: the limited stage as a lab-file block, in either flavor (``.format(flavor=...)``)
LIMITED_TOML = '''
[[{flavor}.instruments]]
id = "stage"
type = "test.limited"
poll_hz = 5
'''
#: the limited stage in each flavor at once (ids stage2 and stage4)
BOTH = '''
[[v2.instruments]]
id = "stage2"
type = "test.limited"
poll_hz = 20

[[v4.instruments]]
id = "stage4"
type = "test.limited"
poll_hz = 20
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
        if timeout < HOME_TAKES_S:
            raise DriverTimeoutError(self.id, "OR", f"not home within {timeout:g} s")
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
        if timeout < HOME_TAKES_S:
            raise DriverTimeoutError(self.id, "OR", f"not home within {timeout:g} s")
        self.position_mm = 0.0

    async def is_moving(self) -> bool:
        return False

    async def stop(self) -> None:
        pass

    async def settings(self) -> dict[str, Any]:
        return {"limit": LIMIT}


#: the gated stage as a lab-file block (v2: its moves block the instrument's own thread)
GATED_TOML = '''
[[v2.instruments]]
id = "gated"
type = "test.gated"
poll_hz = 5
'''
#: Seconds a gated move waits for the test at most (a test that fails never hangs).
GATE_TIMEOUT_S = 30.0


class GatedV2(LimitedV2):
    """Each move sets ``moving`` and then waits for ``gate``: the test acts while a run is
    inside a move, then lets the move end."""

    moving = threading.Event()
    gate = threading.Event()

    def move_absolute(self, position: float) -> None:
        type(self).moving.set()
        if not type(self).gate.wait(GATE_TIMEOUT_S):
            raise DriverError(self.id, f"PA{position}", "the test never opened the gate")
        super().move_absolute(position)


#: the detectors below as a lab-file block: ``alternating`` (v4), ``camera`` and ``mute`` (v2)
DETECTORS_TOML = '''
[[v4.instruments]]
id = "alternating"
type = "test.alternating"
poll_hz = 2

[[v2.instruments]]
id = "camera"
type = "test.camera"
poll_hz = 2

[[v2.instruments]]
id = "mute"
type = "test.mute"
poll_hz = 2
'''
PAIR = [ChannelSpec("a", "scalar", "V", "float64"), ChannelSpec("b", "scalar", "V", "float64")]


class AlternatingV4(V4Actor):
    """Each read has a new sample of one channel only, a and b in turn: a v4 read returns
    one batch per channel that has new samples."""

    reads = 0

    async def read(self) -> list[pa.RecordBatch]:
        self.reads += 1
        return [build_batch(self.id, PAIR[self.reads % 2], [now_ns()],
                            np.array([float(self.reads)]))]


#: an image of this shape and a count of the frames taken (numpy's int64, as drivers give)
FRAME_SHAPE = (2, 3)
CAMERA = [ChannelSpec("frame", "image", "counts", "uint16", FRAME_SHAPE),
          ChannelSpec("frames", "scalar", "", "int64")]


def frame(n: int) -> np.ndarray:
    """The camera's ``n``-th frame: 0 1 2 / 3 4 5, plus ``n``."""
    return np.arange(6, dtype=np.uint16).reshape(FRAME_SHAPE) + n


class CameraV2(V2Instrument):
    frames = 0

    def read(self) -> list[Measurement]:
        self.frames += 1
        t = now_ns()
        return [Measurement(self.id, "frame", t, Image(frame(self.frames), "counts")),
                Measurement(self.id, "frames", t, Scalar(np.int64(self.frames), ""))]


class MuteV2(V2Instrument):
    """A meter whose settings query gets no reply (its readings come)."""

    def read(self) -> list[Measurement]:
        return [Measurement(self.id, "position", now_ns(), Scalar(1.0, "mm"))]

    def settings(self) -> dict[str, Any]:
        raise DriverError(self.id, "CONF?", "no reply", code=5)


def fake_types() -> list[InstrumentType]:
    limited = [InstrumentType("test.limited", flavor, "none", cls,  # type: ignore[arg-type]
                              CHANNELS, "a stage with a limit switch at 25 mm",
                              capabilities=("Motion",))
               for flavor, cls in (("v2", LimitedV2), ("v4", LimitedV4))]
    return [*limited, InstrumentType("test.gated", "v2", "none", GatedV2, CHANNELS,
                                     "a stage whose moves wait for the test",
                                     capabilities=("Motion",)),
            InstrumentType("test.alternating", "v4", "none", AlternatingV4, PAIR,
                           "a detector whose read has one channel at a time"),
            InstrumentType("test.camera", "v2", "none", CameraV2, CAMERA,
                           "a camera: an image and a frame count"),
            InstrumentType("test.mute", "v2", "none", MuteV2, CHANNELS,
                           "a meter whose settings query gets no reply")]
