"""Pipeline throughput: fast in-process sources -> bridge -> a null lossless subscriber.

Prints rows/s for v2 sources (one ``Measurement`` per sample, and ``Columns`` arrays per
channel) and for v4 sources, each next to a raw pyarrow loop building the same batches in
the same run, and ends with
``ratio=<v4 rows/s / raw rows/s>``. The sources do no I/O, so what is measured is
the runtime's own cost: polling, conversion, bridging and fan-out.

    python bench/pipeline.py [--seconds 3] [--rows 1000]
"""

from __future__ import annotations

import argparse
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


def host() -> PluginHost:
    h = PluginHost()
    h.load_entry_points()
    from daqhub.specs import InstrumentType

    types_ = [InstrumentType("bench.fast", "v2", "none", FastV2, [SPEC], "bench source"),
              InstrumentType("bench.columns", "v2", "none", FastV2Columns, [SPEC],
                             "bench source"),
              InstrumentType("bench.fast", "v4", "none", FastV4, [SPEC], "bench source")]
    h.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(lambda: types_)),
               "bench", "bench", "0")
    return h


def pipeline_rows_per_s(h: PluginHost, flavor: str, seconds: float, out: Path,
                        type_name: str = "bench.fast") -> float:
    lab = parse(f'[daqhub]\noutput_dir = "{out}"\n[[{flavor}.instruments]]\nid = "src"\n'
                f'type = "{type_name}"\npoll_hz = 10000\n', "bench.toml", h, out)
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
    r0, t0 = rows, time.perf_counter()
    time.sleep(seconds)
    r1, t1 = rows, time.perf_counter()
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
    global ROWS
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rows", type=int, default=ROWS, help="rows per poll")
    args = ap.parse_args()
    ROWS = args.rows
    h = host()
    with tempfile.TemporaryDirectory() as d:
        raw = raw_rows_per_s(args.seconds)
        v2 = pipeline_rows_per_s(h, "v2", args.seconds, Path(d))
        v2c = pipeline_rows_per_s(h, "v2", args.seconds, Path(d), "bench.columns")
        v4 = pipeline_rows_per_s(h, "v4", args.seconds, Path(d))
    print(f"raw pyarrow batches: {raw:12,.0f} rows/s")
    print(f"v2 -> bridge -> sub: {v2:12,.0f} rows/s  ({v2 / raw:.3f} of raw; a Measurement "
          f"per sample)")
    print(f"v2 columns -> sub:   {v2c:12,.0f} rows/s  ({v2c / raw:.3f} of raw; Columns arrays "
          f"per channel)")
    print(f"v4 -> bridge -> sub: {v4:12,.0f} rows/s  ({v4 / raw:.3f} of raw)")
    print(f"ratio={v4 / raw:.3f}")


if __name__ == "__main__":
    main()
