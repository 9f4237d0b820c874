"""Throughput of one pyvisa-sim resource: the manager under 4 threads + 4 coroutines vs raw.

raw: one thread calling ``session.query`` in a loop (the best one resource can do, GIL-bound).
managed: 4 V2-style threads (``res.query``) and 4 V4-style coroutines (``await res.aquery``)
sharing the resource through ``VisaSessionManager`` for ``--seconds``.
Each round measures raw for half that time before and half after the managed run and compares
with their mean: the machine is shared, and its speed drifts by tens of percent from one second
to the next, which a single raw run taken before the managed one turned into ratios from 0.4
to 0.9 for the same code. Prints ``ratio=<median of managed q/s / raw q/s>`` as its last line
(target >= 0.7).

    python bench/visa_throughput.py [--seconds 1.0] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pyvisa

from daqhub.resources import VisaSessionManager

YAML = """spec: "1.1"
devices:
  dmm:
    eom:
      GPIB INSTR:
        q: "\\n"
        r: "\\n"
    dialogues:
      - q: "*IDN?"
        r: "ACME,DMM,1,1.0"
{dialogues}
resources:
  GPIB0::5::INSTR:
    device: dmm
"""
RESOURCE = "GPIB0::5::INSTR"


def write_yaml(folder: Path, tag: str) -> str:
    dialogues = "\n".join(f'      - q: "Q{n}?"\n        r: "R{n}"' for n in range(16))
    path = folder / f"bench-{tag}.yaml"
    path.write_text(YAML.format(dialogues=dialogues))
    return f"{path}@sim"


def raw_rate(backend: str, seconds: float) -> float:
    rm = pyvisa.ResourceManager(backend)
    inst: Any = rm.open_resource(RESOURCE, read_termination="\n", write_termination="\n")
    count = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for n in range(16):
            if inst.query(f"Q{n}?") != f"R{n}":
                raise AssertionError("raw reply mismatch")
        count += 16
    elapsed = time.perf_counter() - t0
    inst.close()
    return count / elapsed


def managed_rate(backend: str, seconds: float, threads: int = 4, coroutines: int = 4
                 ) -> tuple[float, float]:
    """Total q/s, and the share of it the coroutines got."""
    mgr = VisaSessionManager()
    res = mgr.resource(RESOURCE, backend=backend, read_termination="\n",
                       write_termination="\n")
    counts = [0] * (threads + coroutines)
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1, timeout=10)
    end_box = [0.0]

    def v2(index: int) -> None:
        start.wait()
        end = end_box[0]
        done = 0
        try:
            while time.perf_counter() < end:
                for n in range(16):
                    if res.query(f"Q{n}?", owner=f"v2-{index}") != f"R{n}":
                        raise AssertionError("managed reply mismatch")
                done += 16
        except BaseException as exc:
            errors.append(exc)
        counts[index] = done

    async def v4(index: int) -> None:
        end = end_box[0]
        done = 0
        while time.perf_counter() < end:
            for n in range(16):
                if await res.aquery(f"Q{n}?", owner=f"v4-{index}") != f"R{n}":
                    raise AssertionError("managed reply mismatch")
            done += 16
        counts[threads + index] = done

    async def main() -> None:
        await asyncio.gather(*(v4(i) for i in range(coroutines)))

    workers = [threading.Thread(target=v2, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    t0 = time.perf_counter()
    end_box[0] = t0 + seconds
    start.wait()
    asyncio.run(main())
    for w in workers:
        w.join(10)
    elapsed = time.perf_counter() - t0
    failed = mgr.close_all(5)
    if errors or failed:
        raise SystemExit(f"errors: {errors[:3]} close failures: {failed}")
    total = sum(counts)
    return total / elapsed, sum(counts[threads:]) / max(1, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            raw_backend = write_yaml(Path(tmp), f"raw{round_}")
            before = raw_rate(raw_backend, args.seconds / 2)
            managed, v4_share = managed_rate(write_yaml(Path(tmp), f"mgd{round_}"),
                                             args.seconds)
            raw = (before + raw_rate(raw_backend, args.seconds / 2)) / 2
            ratios.append(managed / raw)
            print(f"round {round_}: raw {raw:,.0f} q/s, managed (4 threads + 4 coroutines) "
                  f"{managed:,.0f} q/s ({v4_share:.0%} by coroutines), "
                  f"ratio {managed / raw:.2f}")
    print(f"ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
