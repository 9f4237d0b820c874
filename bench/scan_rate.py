"""Scan rate: steps/s of ``Lab.scan`` against bluesky's RunEngine ``scan``, in one run.

daqhub: a lab of two simulated instruments of one flavor, a mover whose moves are instant
(the lab tests' ``test.limited``: Motion capability, ``wait_until_done`` returns the
position at once) and a meter with one scalar channel;
``lab.scan("mover", values, read=["meter.value"])``. Every step moves, waits until the
move is done, takes a fresh reading and records the row (setpoint,
readback, value, requested/answered times), and the table is stored in the session at the
end, as in any scan. Both instruments keep being polled meanwhile (``--poll-hz``).

bluesky: ``RunEngine`` running ``bluesky.plans.scan([det], motor, 0, 1, n)`` on ophyd-async
soft devices (``SimMotor(instant=True)`` and a soft signal as the detector), documents
going to a callback that keeps them, the least a bluesky user records.

Phases alternate (bluesky, daqhub v2, bluesky, daqhub v4, ...) for ``--rounds``, each a
scan of ``--steps`` points: the box is shared and its speed drifts, adjacent phases see
the same machine. Each flavor's figure is the median over its phases of its steps/s over
the mean of the two bluesky phases around it. Prints both, then ``ratio=`` (the lower
flavor's) last; target at least 5. Needs the bluesky extra (``pip install
'daqhub[bluesky]'``); without it, says so and exits 0 without a ratio.

    python bench/scan_rate.py [--steps 200] [--rounds 5] [--poll-hz 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import daqhub
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument, V4Actor, now_ns
from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.schema import build_batch
from daqhub.specs import InstrumentType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lab"))
from lab_fakes import fake_types  # noqa: E402  (the instant mover the lab tests scan)

VALUE = ChannelSpec("value", "scalar", "V", "float64")


class MeterV2(V2Instrument):
    def read(self) -> list[Measurement]:
        return [Measurement(self.id, "value", now_ns(), Scalar(1.0, "V"))]


class MeterV4(V4Actor):
    async def read(self) -> list[pa.RecordBatch]:
        return [build_batch(self.id, VALUE, [now_ns()], np.array([1.0], np.float64))]


def instrument_types() -> list[InstrumentType]:
    """The lab tests' instant mover (``test.limited``: moves at once, refuses past 25 mm,
    never reached here) and a meter, in both flavors."""
    return [*fake_types(), *(InstrumentType("bench.meter", flavor, "none", meter, [VALUE],
                                            "a meter")
                             for flavor, meter in (("v2", MeterV2), ("v4", MeterV4)))]


def lab_text(flavor: str, out: str, poll_hz: float) -> str:
    return (f'[daqhub]\noutput_dir = "{out}"\n'
            f'[[{flavor}.instruments]]\nid = "mover"\ntype = "test.limited"\npoll_hz = {poll_hz}\n'
            f'[[{flavor}.instruments]]\nid = "meter"\ntype = "bench.meter"\npoll_hz = {poll_hz}\n')


def daqhub_rate(lab: Any, steps: int) -> float:
    values = np.linspace(0.0, 1.0, steps)
    t0 = time.perf_counter()
    table = lab.scan("mover", values, read=["meter.value"])
    dt = time.perf_counter() - t0
    assert table.num_rows == steps and table.schema.metadata[b"daqhub.complete"] == b"true"
    return steps / dt


class Bluesky:
    def __init__(self) -> None:
        from bluesky import RunEngine
        from ophyd_async.core import init_devices, soft_signal_rw
        from ophyd_async.sim import SimMotor

        self.RE = RunEngine({})
        with init_devices():
            self.motor = SimMotor("motor", instant=True)
            self.det = soft_signal_rw(float, initial_value=1.0, name="det")

    def rate(self, steps: int) -> float:
        from bluesky.plans import scan

        docs: list[tuple[str, dict[str, Any]]] = []
        t0 = time.perf_counter()
        self.RE(scan([self.det], self.motor, 0.0, 1.0, steps),
                lambda name, doc: docs.append((name, doc)))
        dt = time.perf_counter() - t0
        assert sum(1 for name, _ in docs if name == "event") == steps
        return steps / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200, help="points per scan")
    ap.add_argument("--rounds", type=int, default=5, help="scans per flavor")
    ap.add_argument("--poll-hz", type=float, default=2.0, help="the instruments' poll rate")
    args = ap.parse_args(argv)
    try:
        blue = Bluesky()
    except ImportError as exc:
        print(f"scan_rate: skipped, the bluesky extra is not installed ({exc}); "
              "pip install 'daqhub[bluesky]'")
        return 0
    host = PluginHost()
    host.load_entry_points()
    host.register(types.SimpleNamespace(daqhub_instrument_types=hookimpl(instrument_types)),
                  "scan-rate-bench", "scan-rate-bench", "0")
    ratios: dict[str, list[float]] = {"v2": [], "v4": []}
    rates: dict[str, list[float]] = {"v2": [], "v4": [], "bluesky": []}
    with tempfile.TemporaryDirectory() as out:
        labs = {f: daqhub.open_lab(lab_text(f, out, args.poll_hz), host=host, report=None)
                for f in ("v2", "v4")}
        try:
            for lab in labs.values():  # warm-up: first scan, first table write
                daqhub_rate(lab, 20)
            blue.rate(20)
            before = blue.rate(args.steps)
            for _ in range(args.rounds):
                for flavor, lab in labs.items():
                    rate = daqhub_rate(lab, args.steps)
                    after = blue.rate(args.steps)
                    rates[flavor].append(rate)
                    rates["bluesky"].append(after)
                    ratios[flavor].append(rate / ((before + after) / 2))
                    before = after
        finally:
            for lab in labs.values():
                lab.close()
    for name, r in rates.items():
        print(f"{name}: {statistics.median(r):.0f} steps/s (median of {len(r)} scans of "
              f"{args.steps} steps)")
    per = {f: statistics.median(r) for f, r in ratios.items()}
    print("daqhub / bluesky: " + ", ".join(f"{f} {v:.2f}" for f, v in per.items())
          + " (target >= 5)")
    print(f"ratio={min(per.values()):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
