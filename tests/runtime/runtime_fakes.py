"""In-process instrument types for runtime tests: counters, crashers, hangers."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from daqhub.config import LabConfig, parse
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument, V4Actor, now_ns
from daqhub.measurement import ChannelSpec, Measurement, Scalar, V2Read
from daqhub.plugins.converters import rows_to_batch
from daqhub.runtime.bridge import MeasurementBridge, RowsToBatch
from daqhub.runtime.broadcast import Broadcast, Subscription
from daqhub.schema import build_batch
from daqhub.specs import InstrumentType

CHANNELS = [ChannelSpec("count", "scalar", "", "int64"), ChannelSpec("x", "scalar", "V")]
PRODUCED: dict[str, int] = {}          # instrument id -> samples produced per channel
RELEASE = threading.Event()            # lets hung drivers go at the end of a test


def refuse_gain(value: float) -> None:
    if not 0 <= value <= 10:
        raise ValueError(f"gain must be from 0 to 10, got {value!r}")


class CounterV2(V2Instrument):
    def connect(self) -> None:
        self.n = 0

    def read(self) -> list[Measurement]:
        self.n += 1
        PRODUCED[self.id] = self.n
        ts = now_ns()
        return [Measurement(self.id, "count", ts, Scalar(np.int64(self.n), "")),
                Measurement(self.id, "x", ts, Scalar(float(self.n) / 2, "V"))]

    def add(self, a: int, b: int) -> int:
        return a + b

    def dwell(self, seconds: float) -> None:
        """A command that takes a while (a move waited for)."""
        time.sleep(seconds)

    def set_gain(self, value: float) -> None:
        """Refuses a value before sending anything, as a driver checking its range does."""
        refuse_gain(value)

    def buggy(self) -> None:
        """A command with a bug in it."""
        {}["gain"]  # noqa: B018


class CounterV4(V4Actor):
    async def start(self) -> None:
        self.n = 0

    async def read(self):
        self.n += 1
        PRODUCED[self.id] = self.n
        ts = [now_ns()]
        return [build_batch(self.id, CHANNELS[0], ts, np.array([self.n], np.int64)),
                build_batch(self.id, CHANNELS[1], ts, np.array([self.n / 2]))]

    async def add(self, a: int, b: int) -> int:
        return a + b

    async def stop(self) -> str:  # a control message: served before routine ones
        return "stopped"

    async def set_gain(self, value: float) -> None:
        refuse_gain(value)

    async def buggy(self) -> None:
        {}["gain"]  # noqa: B018


class SpinV4(CounterV4):
    """Computes for 0.2 ms per read without ever suspending."""

    async def read(self):
        busy_until = time.perf_counter() + 0.0002  # longer than a poll period at 10 kHz
        while time.perf_counter() < busy_until:
            pass
        return await super().read()


class CrashV4(CounterV4):
    async def read(self):
        raise RuntimeError("sensor on fire")


class FlakyV4(CounterV4):
    crashed: set[str] = set()

    async def read(self):
        if self.id not in FlakyV4.crashed:
            FlakyV4.crashed.add(self.id)
            raise RuntimeError("transient glitch")
        return await super().read()


class OnCueV4(CounterV4):
    """Crashes once when the test gives the cue (so something is announced then)."""

    cue = threading.Event()

    async def read(self):
        if OnCueV4.cue.is_set() and self.id not in FlakyV4.crashed:
            FlakyV4.crashed.add(self.id)
            raise RuntimeError("crashed on cue")
        return await super().read()


class HangV2(CounterV2):
    def read(self) -> list[Measurement]:
        RELEASE.wait(60)  # a driver stuck in a call that never returns (until the test ends)
        return []


#: lets a ``test.lateconnect`` driver's connect() return
CONNECT_GATE = threading.Event()


class LateConnectV2(CounterV2):
    def connect(self) -> None:
        CONNECT_GATE.wait(60)  # a vendor library's open that waits on the device
        super().connect()


class LateFactoryV2(CounterV2):
    def __init__(self, ctx: Any) -> None:
        CONNECT_GATE.wait(60)  # a vendor library opened as the driver is made
        super().__init__(ctx)


class CrashV2(CounterV2):
    def read(self) -> list[Measurement]:
        raise RuntimeError("sensor on fire")


class HangV4(CounterV4):
    async def read(self):
        await asyncio.Event().wait()  # a read that never finishes, without blocking the loop


class SlowStartV4(CounterV4):
    async def start(self) -> None:
        await asyncio.sleep(0.05)
        await super().start()


class BlockingV4(CounterV4):
    """Calls blocking code in read() once (its 5th poll): the whole event loop stalls."""

    returned_at: dict[str, float] = {}

    async def read(self):
        if self.n == 4 and self.id not in BlockingV4.returned_at:
            time.sleep(2)
            BlockingV4.returned_at[self.id] = time.monotonic()
        return await super().read()


class SlowReadV4(CounterV4):
    async def read(self):
        await asyncio.sleep(0.05)  # at most 20 polls a second, whatever is asked
        return await super().read()


class ImpostorV2(CounterV2):
    """Its own counter, and a sample named for instrument ``a`` (a copy-paste bug)."""

    def read(self) -> list[Measurement]:
        rows = super().read()
        return [*rows, Measurement("a", "count", rows[0].timestamp_ns, Scalar(np.int64(-1), ""))]


class StrayV4(CounterV4):
    """Besides its counter: a channel it never declared, and ``x`` in mV (declared in V)."""

    async def read(self):
        count, _ = await super().read()
        ts = [now_ns()]
        return [count, build_batch(self.id, ChannelSpec("bogus", "scalar", "V"), ts,
                                   np.array([1.0])),
                build_batch(self.id, ChannelSpec("x", "scalar", "mV"), ts, np.array([1.0]))]


class OnlyStrayV4(StrayV4):
    async def read(self):
        return (await super().read())[1:]


class YieldingV4(CounterV4):
    """Lets the loop run once in every read, as any read that waits for I/O does."""

    async def read(self):
        await asyncio.sleep(0)
        return await super().read()


class NoneItemV2(CounterV2):
    """A None among its samples (a driver that forgot a return in a helper)."""

    def read(self) -> list[Measurement]:
        return [None, *super().read()]  # type: ignore[list-item]


class NanTimestampV2(CounterV2):
    """Every other read's samples carry a NaN timestamp (a clock read that failed)."""

    def read(self) -> list[Measurement]:
        rows = super().read()
        if self.n % 2:
            for m in rows:
                m.timestamp_ns = float("nan")  # type: ignore[assignment]
        return rows


class CancelReadV4(CounterV4):
    """Raises CancelledError from its read (its own, nothing cancelled it) after 3 reads."""

    async def read(self):
        if self.n >= 3:
            raise asyncio.CancelledError()
        return await super().read()


class CancelStartV4(CounterV4):
    async def start(self) -> None:
        raise asyncio.CancelledError()


class BadCloseV2(CounterV2):
    """Its close() fails: the output it switches off is left on."""

    def close(self) -> None:
        raise OSError("OUTP OFF not acknowledged")


class BadCloseV4(CounterV4):
    async def close(self) -> None:
        raise OSError("OUTP OFF not acknowledged")


def fake_instrument_types() -> list[InstrumentType]:
    out = []
    for name, flavor, cls in [("test.counter", "v2", CounterV2), ("test.counter", "v4", CounterV4),
                              ("test.crash", "v4", CrashV4), ("test.crash", "v2", CrashV2),
                              ("test.flaky", "v4", FlakyV4),
                              ("test.hang", "v2", HangV2), ("test.hang", "v4", HangV4),
                              ("test.slow", "v4", SlowStartV4),
                              ("test.blocking", "v4", BlockingV4),
                              ("test.slowread", "v4", SlowReadV4),
                              ("test.oncue", "v4", OnCueV4), ("test.spin", "v4", SpinV4),
                              ("test.yielding", "v4", YieldingV4),
                              ("test.stray", "v4", StrayV4),
                              ("test.impostor", "v2", ImpostorV2),
                              ("test.onlystray", "v4", OnlyStrayV4),
                              ("test.noneitem", "v2", NoneItemV2),
                              ("test.nants", "v2", NanTimestampV2),
                              ("test.cancelread", "v4", CancelReadV4),
                              ("test.cancelstart", "v4", CancelStartV4),
                              ("test.badclose", "v2", BadCloseV2),
                              ("test.lateconnect", "v2", LateConnectV2),
                              ("test.latefactory", "v2", LateFactoryV2),
                              ("test.badclose", "v4", BadCloseV4)]:
        out.append(InstrumentType(name, flavor, "none", cls, CHANNELS, f"{name} for tests",
                                  capabilities=("Readable",)))
    return out


def make_lab(host: PluginHost, tmp_path: Path, v2: list[tuple[str, str]],
             v4: list[tuple[str, str]], poll_hz: float = 50, extra: str = "") -> LabConfig:
    text = f'[daqhub]\noutput_dir = "{tmp_path}/data"\nshutdown_timeout = 15\n{extra}\n'
    for flavor, items in (("v2", v2), ("v4", v4)):
        for iid, t in items:
            text += f'[[{flavor}.instruments]]\nid = "{iid}"\ntype = "{t}"\npoll_hz = {poll_hz}\n'
    return parse(text, "test.toml", host, tmp_path)


def bare_bridge(channels: dict[tuple[str, str], ChannelSpec],
                convert: RowsToBatch = rows_to_batch, window_s: float = 0.01
                ) -> tuple[MeasurementBridge, Broadcast[V2Read], Subscription[Any],
                           list[tuple[str, str]]]:
    """A bridge alone (not started): its v2 input, a lossless subscriber to its output, and
    the (instrument, message) of every refusal it reports."""
    errors: list[tuple[str, str]] = []
    v2_in: Broadcast[V2Read] = Broadcast("v2")
    bridge = MeasurementBridge(channels, v2_in, convert, window_s=window_s,
                               on_refused=lambda iid, n, msg: errors.append((iid, msg)))
    return bridge, v2_in, bridge.unified.subscribe("test", lossless=True, capacity=100), errors
