"""Cost of running both flavors together: the same simulated workload V2-only, V4-only, both.

Each run polls simulated Newport 1830-C meters (the real driver, ``sim://`` devices, one
per instrument) as fast as the runtime allows for ``--seconds``. With ``k`` meters per
flavor: V2-only runs k v2 meters, V4-only k v4 meters, both runs the same k + k at once.

From the single runs we know what one v2 and one v4 measurement cost (t2 = T / N2,
t4 = T / N4). The both-together run made B2 v2 and B4 v4 measurements in T; doing the
same number of measurements in single runs would take B2*t2 + B4*t4. The last line is
``ratio=<x>`` with x = T / (B2*t2 + B4*t4): the time of both together over the sum of
the single runs' times for the same number of measurements. Counting per flavor keeps the
figure honest when one flavor gets more of the CPU than the other. The seed design's
bound is 1.20; our target is <= 1.05.

    python bench/dual_overhead.py [--meters 2] [--seconds 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from daqhub.config import parse
from daqhub.host import PluginHost
from daqhub.runtime.dual import DualRuntimeManager


def lab_text(out: Path, v2: int, v4: int, tag: str) -> str:
    text = f'[daqhub]\noutput_dir = "{out}"\n'
    for flavor, n in (("v2", v2), ("v4", v4)):
        for i in range(n):
            text += (f'[[{flavor}.instruments]]\nid = "{flavor}m{i}"\ntype = "newport.1830c"\n'
                     f'port = "sim://newport1830c?name={tag}{flavor}{i}&noise=0"\n'
                     f'poll_hz = 10000\n')
    return text


def counted_run(host: PluginHost, out: Path, v2: int, v4: int, seconds: float,
                tag: str) -> tuple[int, int]:
    """Measurements made by the v2 and by the v4 instruments during ``seconds``."""
    lab = parse(lab_text(out, v2, v4, tag), "bench.toml", host, out)
    rt = DualRuntimeManager(lab, host)
    rt.start()

    def counts() -> tuple[int, int]:
        h = rt.health()["instruments"]
        return (sum(i["measurements"] for i in h if i["flavor"] == "v2"),
                sum(i["measurements"] for i in h if i["flavor"] == "v4"))
    time.sleep(0.5)  # connect and warm up before counting
    a2, a4 = counts()
    time.sleep(seconds)
    b2, b4 = counts()
    rt.shutdown()
    if any(i["errors"] for i in rt.health()["instruments"]):
        raise SystemExit(f"errors during the run: {rt.health()['instruments']}")
    return b2 - a2, b4 - a4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", type=int, default=2, help="instruments per flavor")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    host = PluginHost()
    host.load_entry_points()
    ratios = []
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        for r in range(args.repeat):
            T = args.seconds
            n2, _ = counted_run(host, out, args.meters, 0, T, f"a{r}")
            _, n4 = counted_run(host, out, 0, args.meters, T, f"b{r}")
            b2, b4 = counted_run(host, out, args.meters, args.meters, T, f"c{r}")
            ratios.append(T / (b2 * T / n2 + b4 * T / n4))
            print(f"round {r}: v2-only {n2 / T:.0f}/s, v4-only {n4 / T:.0f}/s, both "
                  f"{b2 / T:.0f} v2/s + {b4 / T:.0f} v4/s -> {ratios[-1]:.3f}")
    print(f"ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
