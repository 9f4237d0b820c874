"""Live stream over Arrow Flight: daqhub's data service vs a raw pyarrow Flight ``do_get``.

live: the run's unified stream (a ``Broadcast``, as the bridge publishes it) -> the service's
      per-subscriber ``ChannelFeed`` -> Flight ``GeneratorStream`` with per-batch metadata ->
      ``daqhub.connect(url).subscribe(...)`` (reader thread, merged queue) in this process.
raw:  the same batches as one table, served by a bare ``FlightServerBase`` with
      ``RecordBatchStream`` and read with ``do_get(...).read_chunk()``.
Both on loopback gRPC, same batches (``--batch`` rows of one float64 channel), alternating
rounds so machine load hits both alike. The live subscriber's queue holds every batch, so
nothing is dropped (lost rows are printed anyway).

Then latency: batches of ``--latency-rows`` rows published at ``--rate`` batches/s, each
stamped with the publish time; p50/p99 of (arrival at the subscriber - stamp).

Prints ``ratio=<median over rounds of live rows/s / raw rows/s>`` last (target >= 0.8).

    python bench/flight_stream.py [--batches 6000] [--batch 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

import daqhub
from daqhub.flight_service import start_service
from daqhub.measurement import ChannelSpec
from daqhub.runtime.broadcast import Broadcast
from daqhub.schema import build_batch
from daqhub.serve_config import ServeConfig

SPEC = ChannelSpec("signal", "scalar", "V", "float64")


def batches(n: int, rows: int) -> list[pa.RecordBatch]:
    ts = np.arange(rows, dtype=np.int64)
    return [build_batch("bench", SPEC, ts + i * rows, np.random.default_rng(i).random(rows),
                        source="v4") for i in range(n)]


class RawServer(flight.FlightServerBase):  # type: ignore[misc]
    def __init__(self, table: pa.Table) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.table = table

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        return flight.RecordBatchStream(self.table)


def bench_run() -> Any:
    """What the service uses of a runtime: its channels and the unified stream."""
    unified: Broadcast[pa.RecordBatch] = Broadcast("unified")
    return SimpleNamespace(channels={("bench", "signal"): SPEC},
                           bridge=SimpleNamespace(unified=unified), taps=[], started=False,
                           storage=None, session_id="", lab=SimpleNamespace(flavors={}))


def feeds(rt: Any) -> set[int]:
    return {id(s) for s in rt.bridge.unified.subscriptions()}


def wait_new_feed(rt: Any, before: set[int]) -> None:
    """The subscription's feed is attached on the server (else early batches go nowhere)."""
    deadline = time.monotonic() + 10
    while not feeds(rt) - before:
        if time.monotonic() > deadline:
            raise RuntimeError("the live subscription was not attached within 10 s")
        time.sleep(0.001)


def live_rate(url: str, rt: Any, data: list[pa.RecordBatch]) -> tuple[float, int]:
    rows = sum(b.num_rows for b in data)
    before = feeds(rt)
    with daqhub.connect(url) as conn, conn.subscribe("bench/*",
                                                     queue_batches=len(data) + 1) as live:
        wait_new_feed(rt, before)
        t0 = time.perf_counter()
        publisher = threading.Thread(target=lambda: [rt.bridge.unified.publish(b)
                                                     for b in data])
        publisher.start()
        got = 0
        while got < rows - live.lost["bench/signal"]:
            item = live.get(timeout=10)
            if item is None:
                raise RuntimeError(f"live stream stalled at {got}/{rows} rows")
            got += item.batch.num_rows
        elapsed = time.perf_counter() - t0
        publisher.join()
        return got / elapsed, live.lost["bench/signal"]


def raw_rate(url: str, rows: int) -> float:
    client = flight.connect(url)
    t0 = time.perf_counter()
    reader = client.do_get(flight.Ticket(b"all"))
    got = 0
    while True:
        try:
            got += reader.read_chunk().data.num_rows
        except StopIteration:
            break
    elapsed = time.perf_counter() - t0
    client.close()
    assert got == rows
    return got / elapsed


def latency(url: str, rt: Any, n: int, rows: int, rate: float) -> list[float]:
    out: list[float] = []
    before = feeds(rt)
    with daqhub.connect(url) as conn, conn.subscribe("bench/*", queue_batches=n + 1) as live:
        wait_new_feed(rt, before)

        def publish() -> None:
            for _ in range(n):
                ts = np.full(rows, time.time_ns(), dtype=np.int64)
                rt.bridge.unified.publish(build_batch("bench", SPEC, ts, np.zeros(rows),
                                                      source="v4"))
                time.sleep(1 / rate)  # the pace of an instrument, not a synchronisation

        threading.Thread(target=publish, daemon=True).start()
        while len(out) < n:
            item = live.get(timeout=10)
            if item is None:
                raise RuntimeError("latency stream stalled")
            out.append((time.time_ns() - item.batch.column("timestamp_ns")[0].as_py()) / 1e6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--latency-batches", type=int, default=500)
    ap.add_argument("--latency-rows", type=int, default=10)
    ap.add_argument("--rate", type=float, default=200.0)
    args = ap.parse_args()
    data = batches(args.batches, args.batch)
    rows = args.batches * args.batch
    rt = bench_run()
    service = start_service(rt, ServeConfig(port=0))
    rt.bridge.unified.attach(rt.taps[0])  # the runtime attaches its taps first at start()
    raw = RawServer(pa.Table.from_batches(data))
    raw_url = f"grpc://127.0.0.1:{raw.port}"
    ratios = []
    try:
        for r in range(args.rounds):
            if r % 2:  # alternate the order, so a load change hits both alike
                rw = raw_rate(raw_url, rows)
                lv, lost = live_rate(service.url, rt, data)
            else:
                lv, lost = live_rate(service.url, rt, data)
                rw = raw_rate(raw_url, rows)
            ratios.append(lv / rw)
            print(f"round {r + 1}: live {lv / 1e6:.2f} M rows/s (lost {lost}), raw "
                  f"{rw / 1e6:.2f} M rows/s, ratio {lv / rw:.3f}", flush=True)
        lat = latency(service.url, rt, args.latency_batches, args.latency_rows, args.rate)
    finally:
        service.stop()
        raw.shutdown()
    lat.sort()
    print(f"latency sample->subscriber over {len(lat)} batches at {args.rate:.0f}/s: "
          f"p50 {statistics.median(lat):.2f} ms, p99 {lat[int(0.99 * (len(lat) - 1))]:.2f} ms")
    print(f"ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
