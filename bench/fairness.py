"""Fairness between flavors on one pyvisa-sim resource: a flat-out poller next to a 100 Hz one.

Two flavors, each run ``--rounds`` times, alternated so both see the same machine:

* v2 flat out, v4 at 100 Hz: a thread calls ``res.query`` in a loop (what a V2 instrument's
  poll thread does with no rate limit) while a coroutine on an event loop in its own thread
  polls ``await res.aquery`` at ``--hz``;
* v4 flat out, v2 at 100 Hz: the reverse.

The pair is minimal (a thread and a coroutine sharing one ``VisaSessionManager`` resource, no
runtime around them), so the figure is the gate's and the GIL's, not the runtime's. The
rate-limited side schedules like the runtimes do (``core/runtime/v2.py`` and ``v4.py``):
start to start on a fixed grid, a late poll starts at once and missed slots are not made up.
Prints each flavor's achieved / requested rate of its rate-limited side (median over rounds)
and the flat-out side's queries/s; ``ratio=`` is the worse flavor's (target >= 0.9).

    python bench/fairness.py [--seconds 2] [--rounds 3] [--hz 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

from visa_throughput import BATCH, RESOURCE, write_yaml

from daqhub.resources import SharedVisaResource, VisaSessionManager


class Grid:
    """When to poll: flat out when ``period`` is 0, else start to start on a fixed grid."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.next = time.monotonic()

    def wait(self, now: float) -> float:
        """Seconds until the next poll is due; 0 means poll now (and the grid moves on)."""
        if not self.period:
            return 0.0
        if self.next > now:
            return self.next - now
        self.next += self.period
        if self.next < now:  # a late poll starts at once; missed slots are not made up
            self.next = now + self.period
        return 0.0


def v2_poll(res: SharedVisaResource, end: float, period: float) -> int:
    """A V2 poll thread."""
    done, grid = 0, Grid(period)
    while (now := time.monotonic()) < end:
        if wait := grid.wait(now):
            time.sleep(min(wait, end - now))
            continue
        n = done % BATCH
        if res.query(f"Q{n}?", owner="v2") != f"R{n}":
            raise AssertionError("v2 reply mismatch")
        done += 1
    return done


async def v4_poll(res: SharedVisaResource, end: float, period: float) -> int:
    """A V4 actor's poll loop."""
    done, grid = 0, Grid(period)
    while (now := time.monotonic()) < end:
        if wait := grid.wait(now):
            await asyncio.sleep(min(wait, end - now))
            continue
        n = done % BATCH
        if await res.aquery(f"Q{n}?", owner="v4") != f"R{n}":
            raise AssertionError("v4 reply mismatch")
        done += 1
    return done


def one_round(res: SharedVisaResource, seconds: float, hz: float, v2_flat_out: bool
              ) -> tuple[float, float]:
    """Run one flavor; returns (rate-limited side's achieved / requested, flat-out side's q/s)."""
    period = 1.0 / hz
    result: dict[str, int] = {}
    start = time.monotonic() + 0.05  # both sides start on the same instant
    end = start + seconds

    def thread_main() -> None:
        time.sleep(max(0.0, start - time.monotonic()))
        result["v2"] = v2_poll(res, end, 0.0 if v2_flat_out else period)

    async def loop_main() -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        result["v4"] = await v4_poll(res, end, period if v2_flat_out else 0.0)

    threads = [threading.Thread(target=thread_main),
               threading.Thread(target=asyncio.run, args=(loop_main(),))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
        if t.is_alive():
            raise SystemExit("a poller did not finish within 30 s of the end of its round")
    limited, flat = ("v4", "v2") if v2_flat_out else ("v2", "v4")
    if limited not in result or flat not in result:
        raise SystemExit(f"a poller failed: got {sorted(result)}")
    return result[limited] / (hz * seconds), result[flat] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each flavor")
    parser.add_argument("--hz", type=float, default=100.0, help="the rate-limited side's rate")
    args = parser.parse_args()
    flavors = {True: "v2 flat out, v4 at", False: "v4 flat out, v2 at"}
    shares: dict[bool, list[float]] = {True: [], False: []}
    flat_rates: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        manager = VisaSessionManager()
        try:
            res = manager.resource(RESOURCE, backend=write_yaml(Path(tmp), "fair"),
                                   read_termination="\n", write_termination="\n")
            for _ in range(args.rounds):
                for v2_flat_out in (True, False):
                    share, flat = one_round(res, args.seconds, args.hz, v2_flat_out)
                    shares[v2_flat_out].append(share)
                    flat_rates[v2_flat_out].append(flat)
        finally:
            manager.close_all(5)
    worst = 1.0
    for v2_flat_out, label in flavors.items():
        share = statistics.median(shares[v2_flat_out])
        worst = min(worst, share)
        print(f"{label} {args.hz:g} Hz: achieved / requested "
              f"{' '.join(f'{s:.2f}' for s in shares[v2_flat_out])} (median {share:.3f}); "
              f"flat-out side median {statistics.median(flat_rates[v2_flat_out]):,.0f} q/s")
    print(f"ratio={worst:.3f}")


if __name__ == "__main__":
    main()
