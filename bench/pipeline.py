"""Pipeline throughput: fast in-process sources -> unified stream -> a null lossless subscriber.

Prints rows/s for v2 sources (one ``Measurement`` per sample, and ``Columns`` arrays per
channel) and for two v4 sources, one whose ``read()`` never suspends and one that awaits once
per read, each next to a raw pyarrow loop building the same batches in the same run. While a
v4 source runs, another thread posts a callback to the event loop every 10 ms, as a live view
or a remote client would, and waits for it (the loop must stay responsive: printed as round
trips/s and the slowest; posting every 1 ms costs the v4 phases a further 10-25 % in GIL
hand-overs to that thread). Ends with
``ratio=<the slower v4 source's rows/s / raw rows/s>``. The sources do no I/O, so what is
measured is the runtime's own cost: polling, conversion, publishing and fan-out.

The v4 phases run ``--sources`` instruments at once at the highest poll rate a lab file may ask
(10 kHz), so what limits them is the runtime, not their schedule (one source would be capped at
10,000 polls/s). The v2 phases run one source, as a v2 rows/s figure always has.

    python bench/pipeline.py [--seconds 3] [--rows 1000] [--sources 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np
import pyarrow as pa

from daqhub.config import parse
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument, V4Actor
from daqhub.measurement import ChannelSpec, Columns, Measurement, Scalar
from daqhub.runtime.broadcast import SubscriptionClosed
from daqhub.runtime.dual import DualRuntimeManager
from daqhub.schema import build_batch

SPEC = ChannelSpec("x", "scalar", "V", "float64")
ROWS = 1000
SOURCES = 8


class FastV2(V2Instrument):
    def read(self) -> list[Measurement]:
        t = time.time_ns()
        return [Measurement(self.id, "x", t + i, Scalar(float(i), "V")) for i in range(ROWS)]


class FastV2Columns(V2Instrument):
    """The same samples as arrays: one ``Columns`` block per poll."""

    def read(self) -> list[Columns]:
        t = time.time_ns()
        return [Columns(self.id, "x", np.arange(t, t + ROWS, dtype=np.int64),
                        np.arange(ROWS, dtype=np.float64), "V")]


class FastV4(V4Actor):
    async def read(self) -> list[pa.RecordBatch]:
        t = time.time_ns()
        return [build_batch(self.id, SPEC, np.arange(t, t + ROWS, dtype=np.int64),
                            np.arange(ROWS, dtype=np.float64))]


class SuspendingV4(FastV4):
    """The same batches, with one suspension per read (as any real I/O has)."""

    async def read(self) -> list[pa.RecordBatch]:
        await asyncio.sleep(0)
        return await super().read()


def host() -> PluginHost:
    h = PluginHost()
    h.load_entry_points()
    from daqhub.specs import InstrumentType

    types_ = [InstrumentType("bench.fast", "v2", "none", FastV2, [SPEC], "bench source"),
              InstrumentType("bench.columns", "v2", "none", FastV2Columns, [SPEC],
                             "bench source"),
              InstrumentType("bench.fast", "v4", "none", FastV4, [SPEC], "bench source"),
              InstrumentType("bench.suspending", "v4", "none", SuspendingV4, [SPEC],
                             "bench source")]
    h.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(lambda: types_)),
               "bench", "bench", "0")
    return h


class LoopPinger:
    """Posts a callback to the v4 event loop every 10 ms and waits for it (bounded)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.trips = 0
        self.missed = 0
        self.slowest = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._main)

    def _main(self) -> None:
        while not self.stop.is_set():
            done = threading.Event()
            t0 = time.perf_counter()
            self.loop.call_soon_threadsafe(done.set)
            if not done.wait(1.0):
                self.missed += 1
                continue
            self.trips += 1
            self.slowest = max(self.slowest, time.perf_counter() - t0)
            time.sleep(0.01)


def pipeline_rows_per_s(h: PluginHost, flavor: str, seconds: float, out: Path,
                        type_name: str = "bench.fast", ping: list[LoopPinger] | None = None
                        ) -> float:
    lab = parse(f'[daqhub]\noutput_dir = "{out}"\n' + "".join(
        f'[[{flavor}.instruments]]\nid = "src{i}"\ntype = "{type_name}"\npoll_hz = 10000\n'
        for i in range(SOURCES if flavor == "v4" else 1)), "bench.toml", h, out)
    rt = DualRuntimeManager(lab, h)
    rt.start()
    sub = rt.subscribe("null", lossless=True, capacity=1000)
    rows = 0
    stop = threading.Event()

    def drain() -> None:
        nonlocal rows
        while not stop.is_set():
            try:
                for b in sub.get_many(0.1):
                    rows += b.num_rows
            except SubscriptionClosed:
                return
    t = threading.Thread(target=drain)
    t.start()
    time.sleep(0.3)  # warm-up
    pinger = LoopPinger(rt.v4.loop)
    if ping is not None:
        ping.append(pinger)
        pinger.thread.start()
    r0, t0 = rows, time.perf_counter()
    time.sleep(seconds)
    r1, t1 = rows, time.perf_counter()
    pinger.stop.set()
    if pinger.thread.ident is not None:
        pinger.thread.join(5)
    stop.set()
    rt.shutdown()
    t.join(5)
    return (r1 - r0) / (t1 - t0)


def raw_rows_per_s(seconds: float) -> float:
    """What pyarrow alone does: build the same 1000-row batches in a loop."""
    schema = pa.schema([("timestamp_ns", pa.int64()), ("value", pa.float64())])
    rows, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        t = time.time_ns()
        pa.RecordBatch.from_arrays([pa.array(np.arange(t, t + ROWS, dtype=np.int64)),
                                    pa.array(np.arange(ROWS, dtype=np.float64))], schema=schema)
        rows += ROWS
    return rows / (time.perf_counter() - t0)


def main() -> None:
    global ROWS, SOURCES
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rows", type=int, default=ROWS, help="rows per poll")
    ap.add_argument("--sources", type=int, default=SOURCES, help="v4 instruments per phase")
    args = ap.parse_args()
    ROWS, SOURCES = args.rows, args.sources
    h = host()
    raw_s = min(1.0, args.seconds)
    raws = [raw_rows_per_s(raw_s)]
    pings: list[LoopPinger] = []
    figures: list[tuple[float, float]] = []  # (rows/s, of raw): raw measured around each phase
    with tempfile.TemporaryDirectory() as d:
        for flavor, type_name in (("v2", "bench.fast"), ("v2", "bench.columns"),
                                  ("v4", "bench.fast"), ("v4", "bench.suspending")):
            rate = pipeline_rows_per_s(h, flavor, args.seconds, Path(d), type_name,
                                       pings if flavor == "v4" else None)
            raws.append(raw_rows_per_s(raw_s))
            figures.append((rate, rate / ((raws[-2] + raws[-1]) / 2)))
    (v2, v2r), (v2c, v2cr), (v4, v4r), (v4s, v4sr) = figures
    print(f"raw pyarrow batches: {statistics.median(raws):12,.0f} rows/s (median of "
          f"{len(raws)}, measured around each phase)")
    print(f"v2 -> bridge -> sub: {v2:12,.0f} rows/s  ({v2r:.3f} of raw; a Measurement "
          f"per sample)")
    print(f"v2 columns -> sub:   {v2c:12,.0f} rows/s  ({v2cr:.3f} of raw; Columns arrays "
          f"per channel)")
    for name, rate, rel, p in (("never suspends", v4, v4r, pings[0]),
                               ("suspends", v4s, v4sr, pings[1])):
        print(f"v4 -> sub ({name + '):':16s}{rate:12,.0f} rows/s  ({rel:.3f} of raw; "
              f"loop: {p.trips / args.seconds:,.0f} round trips/s, slowest "
              f"{p.slowest * 1e3:.1f} ms, {p.missed} missed 1 s)")
    print(f"ratio={min(v4r, v4sr):.3f}")


if __name__ == "__main__":
    main()
