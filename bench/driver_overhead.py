"""Driver overhead: the SCPI DMM's ``read()`` in each flavor against raw pyvisa.

One pyvisa-sim DMM (the YAML daqhub-sims ships, a fresh copy). raw: one pyvisa session
calling ``float(session.query("MEAS:VOLT:DC?"))`` in a loop, the least any driver can do
for one reading. v2: the ``scpi.dmm`` v2 instrument's ``read()`` (the driver toolkit, the
shared VISA manager, a ``Measurement`` per reading) called in a loop on a thread of its
own, as the runtime polls a v2 instrument (so without the Ctrl-C guard a transaction of the
main thread takes, ~1 us); raw runs on that thread too. v4: the v4 actor's ``await read()``
(an Arrow batch per reading) from an event loop. ``check_errors =
"never"`` in both, so all three send one query per reading.

Phases alternate (raw, v2, raw, v4, ...; ``--phase`` seconds each) for ``--seconds`` in
all: the box is shared and its speed drifts, adjacent phases see the same machine. Each
flavor's figure is the median over its phases of reads/s divided by the mean of the two
raw phases around it. Prints both, then ``ratio=<min(v2 / 0.8, v4 / 0.5)>`` last (targets:
v2 >= 0.8, v4 >= 0.5 of raw; 1.0 means both are met).

    python bench/driver_overhead.py [--seconds 12] [--phase 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyvisa

from daqhub.resources import VisaSessionManager
from daqhub.specs import InstrumentContext, InstrumentType
from daqhub_scpi.plugin import daqhub_instrument_types
from daqhub_sims import visa_files

RESOURCE = "GPIB0::5::INSTR"
QUERY = "MEAS:VOLT:DC?"
BATCH = 16  # reads between two looks at the clock
CHECK: Any = "never"


def scpi_dmm(flavor: str) -> InstrumentType:
    return next(t for t in daqhub_instrument_types() if t.name == "scpi.dmm"
                and t.flavor == flavor)


def build(flavor: str, resource: Any) -> Any:
    t = scpi_dmm(flavor)
    block = {"id": f"dmm-{flavor}", "type": "scpi.dmm", "resource": RESOURCE,
             "check_errors": CHECK}
    ctx = InstrumentContext(block["id"], "scpi.dmm", block, t.channels_for(block),
                            visa=resource)
    return t.factory(ctx)


def sync_rate(read: Callable[[], Any], seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while (now := time.perf_counter()) - t0 < seconds:
        for _ in range(BATCH):
            read()
        n += BATCH
    return n / (now - t0)


async def async_rate(read: Callable[[], Awaitable[Any]], seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while (now := time.perf_counter()) - t0 < seconds:
        for _ in range(BATCH):
            await read()
        n += BATCH
    return n / (now - t0)


def run(seconds: float, phase: float, backend: str) -> tuple[float, float]:
    """v4 phases run on an event loop driven only during them: a v2 (blocking) read may
    not run on a thread whose loop is running."""
    loop = asyncio.new_event_loop()
    rm = pyvisa.ResourceManager(backend)
    raw = rm.open_resource(RESOURCE, read_termination="\n", write_termination="\n")

    def raw_read() -> float:
        return float(raw.query(QUERY))

    poller = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="v2-poller")

    def polled(read: Callable[[], Any]) -> float:
        return poller.submit(sync_rate, read, phase).result(timeout=phase + 30)

    with VisaSessionManager() as manager:
        res = manager.resource(RESOURCE, backend=backend, read_termination="\n",
                               write_termination="\n")
        v2, v4 = build("v2", res), build("v4", res)
        v2.connect()
        loop.run_until_complete(v4.start())
        assert v2.read() and loop.run_until_complete(v4.read())
        raws = [polled(raw_read)]
        flavors: dict[str, list[float]] = {"v2": [], "v4": []}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline or not flavors["v4"]:
            for name in ("v2", "v4"):
                rate = (polled(v2.read) if name == "v2"
                        else loop.run_until_complete(async_rate(v4.read, phase)))
                raws.append(polled(raw_read))
                flavors[name].append(rate / ((raws[-2] + raws[-1]) / 2))
        v2.close()
        loop.run_until_complete(v4.close())
    poller.shutdown()
    loop.close()
    raw.close()
    print(f"raw pyvisa: median {statistics.median(raws):9,.0f} reads/s over {len(raws)} phases")
    return statistics.median(flavors["v2"]), statistics.median(flavors["v4"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--phase", type=float, default=0.3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        backend = visa_files.sim_library(visa_files.fresh_copy(Path(d)))
        v2, v4 = run(args.seconds, args.phase, backend)
    print(f"v2 read() / raw: {v2:.3f}  (target 0.8)")
    print(f"v4 read() / raw: {v4:.3f}  (target 0.5)")
    print(f"ratio={min(v2 / 0.8, v4 / 0.5):.3f}")


if __name__ == "__main__":
    main()
