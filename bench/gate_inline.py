"""Cost of the gate's uncontended sync path: one thread, managed vs raw pyvisa-sim query.

The two throughput benches measure the gate among threads, coroutines and a loaded machine,
where a run's ratio spreads by tens of percent; this one isolates what every inline
transaction pays (take the gate, record the holder, count and time, let go). Raw and managed
queries alternate in blocks, and each side's time per query is the *minimum* over its blocks:
load only ever adds time, so the minimum is what the code costs. It runs in the main thread,
so the Ctrl-C deferral (two signal-handler swaps per transaction) is part of the cost. Prints
``ratio=<managed / raw time per query>`` as its last line (1.21-1.26 on the loaded 2-core box
when the gate was split, as before the split).

    python bench/gate_inline.py [--blocks 300] [--block 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyvisa
from visa_throughput import RESOURCE, write_yaml

from daqhub.resources import VisaSessionManager


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--blocks", type=int, default=300, help="blocks per side")
    parser.add_argument("--block", type=int, default=200, help="queries per block")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rm = pyvisa.ResourceManager(write_yaml(Path(tmp), "raw"))
        raw = rm.open_resource(RESOURCE, read_termination="\n", write_termination="\n")
        manager = VisaSessionManager()
        res = manager.resource(RESOURCE, backend=write_yaml(Path(tmp), "managed"),
                               read_termination="\n", write_termination="\n")
        best_raw = best_managed = float("inf")
        try:
            for _ in range(args.blocks):
                t0 = time.perf_counter()
                for _ in range(args.block):
                    raw.query("Q1?")
                t1 = time.perf_counter()
                for _ in range(args.block):
                    res.query("Q1?", owner="bench")
                t2 = time.perf_counter()
                best_raw = min(best_raw, (t1 - t0) / args.block)
                best_managed = min(best_managed, (t2 - t1) / args.block)
        finally:
            manager.close_all(5)
            raw.close()
            rm.close()
    print(f"per query, best block of {args.block}: raw {best_raw * 1e6:.2f} us, "
          f"managed {best_managed * 1e6:.2f} us (+{(best_managed - best_raw) * 1e9:.0f} ns)")
    print(f"ratio={best_managed / best_raw:.3f}")


if __name__ == "__main__":
    main()
