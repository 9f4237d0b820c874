"""Storage backends vs the raw library writing the same data in the same run.

Four cases, each a ratio of backend throughput to raw throughput (1.0 = as fast as raw):

- ``hdf5 scalars``: unified 1000-row batches (timestamp_ns + float64 value) through a
  ``StorageSession`` with the hdf5 backend, vs h5py appending the same 1000-row blocks
  to two resizable chunked datasets (resize + assign per block).
- ``hdf5 images``: 512x512 uint16 images, one per batch, vs h5py appending one image per
  resize to a (n, 512, 512) dataset chunked per image.
- ``arrow scalars`` / ``arrow images``: the same batches through the arrow backend vs
  ``pyarrow.ipc.new_stream`` on a ``pa.OSFile`` writing the same batches.

Both sides include creating and closing their files; the backend side also includes
the session directory, locks, routing, validation and its periodic flushes. Raw and
backend runs alternate, and each ratio is the median of the rounds, so machine load hits
both alike. The last line is ``ratio=<worst ratio>`` (target >= 0.85:
issue 18 keeps it there; the seed design asked >= 0.8).

    python bench/storage.py [--rounds 5] [--rows 2000000] [--images 300] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

import daqhub.plugins.arrow as arrow_plugin
import daqhub.plugins.hdf5 as hdf5_plugin
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.schema import build_batch
from daqhub.storage import FlavorStorage, StorageSession

SCALAR = ChannelSpec("x", "scalar", "W")
IMAGE = ChannelSpec("frame", "image", "counts", "uint16", (512, 512))
BATCH_ROWS = 1000


def scalar_batches(rows: int) -> list[pa.RecordBatch]:
    out = []
    for start in range(0, rows, BATCH_ROWS):
        ts = np.arange(start, start + BATCH_ROWS, dtype=np.int64) * 1000
        out.append(build_batch("meter", SCALAR, ts, np.random.rand(BATCH_ROWS),
                               source="v2"))
    return out


def image_batches(count: int) -> list[pa.RecordBatch]:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 4096, size=(1, 512, 512), dtype=np.uint16) for _ in range(8)]
    return [build_batch("cam", IMAGE, [i], frames[i % 8], source="v2") for i in range(count)]


def through_backend(host: PluginHost, backend: str, spec: ChannelSpec, instrument: str,
                    batches: list[pa.RecordBatch], out: Path) -> None:
    session = StorageSession.open(host, out, {"v2": FlavorStorage(backend,
                                                                  {instrument: [spec]})})
    for b in batches:
        session.write(b)
    session.close()


def raw_h5py(spec: ChannelSpec, batches: list[pa.RecordBatch], out: Path) -> None:
    """What a careful hand-written script does: numpy blocks appended to chunked datasets."""
    out.mkdir(parents=True)
    columns = [(b.column(0).to_numpy(),
                b.column(1).to_numpy() if spec.kind == "scalar" else
                b.column(1).flatten().to_numpy().reshape(b.num_rows, *spec.shape))
               for b in batches]
    shape = tuple(int(d) for d in spec.shape if d is not None)
    chunk = 16384 if spec.kind == "scalar" else 1
    with h5py.File(out / "raw.h5", "w") as f:
        ts_ds = f.create_dataset("timestamp_ns", (0,), "i8", maxshape=(None,), chunks=(16384,))
        val_ds = f.create_dataset("value", (0, *shape), spec.dtype, maxshape=(None, *shape),
                                  chunks=(chunk, *shape))
        n = 0
        for ts, values in columns:
            k = len(ts)
            val_ds.resize(n + k, axis=0)
            val_ds[n:n + k] = values
            ts_ds.resize(n + k, axis=0)
            ts_ds[n:n + k] = ts
            n += k


def raw_arrow(batches: list[pa.RecordBatch], out: Path) -> None:
    out.mkdir(parents=True)
    with pa.OSFile(str(out / "raw.arrows"), "wb") as sink, \
            ipc.new_stream(sink, batches[0].schema) as writer:
        for b in batches:
            writer.write_batch(b)


def timed(fn: Callable[[Path], None], work: Path) -> float:
    out = work / "run"
    t0 = time.perf_counter()
    fn(out)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(out)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    host = PluginHost()
    host.register(hdf5_plugin, "daqhub:hdf5")
    host.register(arrow_plugin, "daqhub:arrow")
    scalars = scalar_batches(args.rows)
    images = image_batches(args.images)
    cases: list[tuple[str, int, str, Callable[[Path], None], Callable[[Path], None]]] = [
        ("hdf5 scalars", args.rows, "rows",
         lambda o: through_backend(host, "hdf5", SCALAR, "meter", scalars, o),
         lambda o: raw_h5py(SCALAR, scalars, o)),
        ("hdf5 images", args.images, "images",
         lambda o: through_backend(host, "hdf5", IMAGE, "cam", images, o),
         lambda o: raw_h5py(IMAGE, images, o)),
        ("arrow scalars", args.rows, "rows",
         lambda o: through_backend(host, "arrow", SCALAR, "meter", scalars, o),
         lambda o: raw_arrow(scalars, o)),
        ("arrow images", args.images, "images",
         lambda o: through_backend(host, "arrow", IMAGE, "cam", images, o),
         lambda o: raw_arrow(images, o)),
    ]
    ratios = []
    with tempfile.TemporaryDirectory(prefix="daqhub-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        for name, count, unit, backend, raw in cases:
            per_round = []
            raw_times, backend_times = [], []
            for _ in range(args.rounds):
                r = timed(raw, work)
                b = timed(backend, work)
                raw_times.append(r)
                backend_times.append(b)
                per_round.append(r / b)
            ratio = statistics.median(per_round)
            ratios.append(ratio)
            print(f"{name:14s} raw {count / statistics.median(raw_times):12,.0f} {unit}/s   "
                  f"backend {count / statistics.median(backend_times):12,.0f} {unit}/s   "
                  f"ratio {ratio:.2f}")
    print(f"ratio={min(ratios):.2f}")


if __name__ == "__main__":
    main()
