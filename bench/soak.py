"""Chaos soak: a mixed lab under random faults for a given time, then the checks.

    python bench/soak.py --duration 7200 --seed 1 [--json out.json]

Runs, in-process on the simulators, a v2 and a v4 ESP300 axis sharing one port, a v2
and a v4 1830-C meter, a v2 and a v4 Elliptec device on one bus, storage on, and an
alerting plugin. One fault at a time, chosen at random, with 1-4 s between the end of one
and the start of the next (``--gaps``):

- ``disconnect``: the port's adapter is pulled for 0.5-4 s (the device keeps its state);
- ``restart``: the same, but for 4-10 s, as when a device server is restarted;
- ``garbage``: bytes that are no reply arrive before the next one;
- ``truncate``: the next reply is cut short;
- ``hang``: replies are late (2 s, beyond every read timeout) for 1-3 s;
- ``slow_hook``: the plugin's next notification takes 1.5-3 s (a mail server).

At the end it checks, and exits 1 if any check fails:

- no hang: shutdown finished within its bound, nothing forced or leaked;
- exactly once: every sample an instrument produced reached the lossless sink once,
  in time order, and the report's counts agree;
- every fault visible: each disconnect/restart appears as a "port disconnected" event
  of every instrument on that port, the corrupted replies as errors on that port's
  instruments (garbage on the Elliptec bus excepted: its reply router skips lines
  addressed to no device, by design), a slow hook as an alarm naming the plugin; no
  instrument ``failed``;
- memory: the RSS slope after warm-up (least squares over the budget samples) within
  ``--max-rss-slope`` MB/min.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from daqhub.config import parse
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.runtime.dual import DualRuntimeManager
from daqhub.schema import describe

CORRUPTING = ("garbage", "truncate", "hang")
#: ports whose driver skips lines addressed to no device (a multi-drop bus router), so
#: garbage there is tolerated by design rather than an error
SKIPS_GARBAGE = {"bus"}
SETTLE_S = 3.0  # after the last fault, so its effect is counted before the shutdown
OUTAGES = {"disconnect": (0.5, 4.0), "restart": (4.0, 10.0)}


class CountingSink:
    """A lossless consumer that keeps counts and order checks, not the rows (flat memory)."""

    def __init__(self) -> None:
        self.rows: Counter[tuple[str, str]] = Counter()
        self.last_ts: dict[tuple[str, str], int] = {}
        self.out_of_order: list[str] = []

    def write(self, batch: pa.RecordBatch) -> None:
        iid, spec = describe(batch.schema)
        key = (iid, spec.name)
        ts = batch.column("timestamp_ns").to_pylist()
        if ts and (ts != sorted(ts) or ts[0] <= self.last_ts.get(key, -1)):
            self.out_of_order.append(f"{key}: batch of {len(ts)} out of order or repeated")
        if ts:
            self.last_ts[key] = ts[-1]
        self.rows[key] += batch.num_rows

    def flush(self) -> None:
        pass

    def close(self) -> int:
        return sum(self.rows.values())


class Alerts:
    """The alerting plugin: its hook is slow when the soak says so."""

    def __init__(self) -> None:
        self.delay_next = 0.0

    @hookimpl
    def daqhub_instrument_event(self, instrument_id: str, event: str, detail: str) -> None:
        delay, self.delay_next = self.delay_next, 0.0
        if delay:
            time.sleep(delay)


@dataclass
class Soak:
    duration_s: float
    seed: int
    warmup_s: float
    max_rss_slope: float
    gaps: tuple[float, float] = (1.0, 4.0)
    faults: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lab_text(self, out: Path, urls: dict[str, str]) -> str:
        return f"""
[daqhub]
output_dir = "{out}"
[[v2.instruments]]
id = "x"
type = "newport.esp300"
port = "{urls['esp']}"
axis = 1
poll_hz = 20
[[v4.instruments]]
id = "y"
type = "newport.esp300"
port = "{urls['esp']}"
axis = 2
poll_hz = 20
[[v2.instruments]]
id = "pm2"
type = "newport.1830c"
port = "{urls['pm2']}"
poll_hz = 10
[[v4.instruments]]
id = "pm4"
type = "newport.1830c"
port = "{urls['pm4']}"
poll_hz = 10
[[v2.instruments]]
id = "rot"
type = "elliptec.ell14"
port = "{urls['bus']}"
address = 0
poll_hz = 5
[[v4.instruments]]
id = "slide"
type = "elliptec.ell9"
port = "{urls['bus']}"
address = 1
poll_hz = 5
"""

    def run(self) -> dict[str, Any]:
        from daqhub_sims import install, registry

        install()
        rng = random.Random(self.seed)
        tag = f"soak{self.seed}x{int(time.time())}"
        urls = {"esp": f"sim://esp300?name={tag}esp&speed_scale=20",
                "pm2": f"sim://newport1830c?name={tag}pm2",
                "pm4": f"sim://newport1830c?name={tag}pm4",
                "bus": f"sim://elliptec?name={tag}bus&devices=0:ELL14,1:ELL9&speed_scale=10"}
        on_port = {"esp": ["x", "y"], "pm2": ["pm2"], "pm4": ["pm4"], "bus": ["rot", "slide"]}
        host = PluginHost()
        host.load_entry_points()
        alerts = Alerts()
        host.register(alerts, "soak-alerts", "soak-alerts", "1")
        out = Path(tempfile.mkdtemp(prefix="daqhub-soak-"))
        lab = parse(self.lab_text(out, urls), "soak.toml", host, out)
        sink = CountingSink()
        rt = DualRuntimeManager(lab, host, sinks={"count": sink}, storage=True)
        t0 = time.monotonic()
        rt.start()
        stop = threading.Event()
        try:
            while time.monotonic() - t0 < self.duration_s:
                if stop.wait(rng.uniform(*self.gaps)):
                    break
                self._fault(rng, urls, alerts, registry, t0)
            stop.wait(SETTLE_S)
        finally:
            stop.set()
            for url in urls.values():  # leave every line up for the shutdown
                registry.endpoint(url).faults.reconnect()
                registry.endpoint(url).faults.latency = 0.0
            shutdown_started = time.monotonic()
            report = rt.shutdown()
            shutdown_s = time.monotonic() - shutdown_started
        result = self._check(rt, report, sink, on_port, shutdown_s)
        shutil.rmtree(out, ignore_errors=True)
        return result

    def _fault(self, rng: random.Random, urls: dict[str, str], alerts: Alerts,
               registry: Any, t0: float) -> None:
        kind = rng.choice(["disconnect", "restart", "garbage", "truncate", "hang",
                           "slow_hook"])
        port = rng.choice(sorted(urls))
        faults = registry.endpoint(urls[port]).faults
        record: dict[str, Any] = {"t": round(time.monotonic() - t0, 2), "kind": kind,
                                  "port": port}
        if kind in OUTAGES:
            lo, hi = OUTAGES[kind]
            record["seconds"] = round(rng.uniform(lo, hi), 2)
            faults.disconnect()
            time.sleep(record["seconds"])  # the outage itself
            faults.reconnect()
        elif kind == "garbage":
            faults.inject_garbage(b"\x15#!?garbage\r\n")
        elif kind == "truncate":
            faults.truncate_next(2)
        elif kind == "hang":
            record["seconds"] = round(rng.uniform(1.0, 3.0), 2)
            faults.latency = 2.0
            time.sleep(record["seconds"])  # the hang itself
            faults.latency = 0.0
        else:
            record.pop("port")
            alerts.delay_next = record["seconds"] = round(rng.uniform(1.5, 3.0), 2)
        self.faults.append(record)

    def _check(self, rt: DualRuntimeManager, report: Any, sink: CountingSink,
               on_port: dict[str, list[str]], shutdown_s: float) -> dict[str, Any]:
        p = self.problems
        if shutdown_s > rt.phases.total_s + 2 or report.forced or report.leaked:
            p.append(f"shutdown took {shutdown_s:.1f} s; forced {report.forced}; "
                     f"leaked {report.leaked}")
        outcomes = {o["id"]: o for o in report.instruments}
        for iid, o in outcomes.items():
            if o["state"] != "stopped" or o["samples"] == 0:
                p.append(f"{iid}: {o['state']}, {o['samples']} samples: {o['problem']}")
            produced = rt.health_of(iid).measurements
            got = sum(n for (i, _), n in sink.rows.items() if i == iid)
            stored = sum(report.counts.get(iid, {}).values())
            if not produced == got == stored:
                p.append(f"{iid}: produced {produced}, sink got {got}, report counts {stored}")
        p.extend(sink.out_of_order)
        outages: Counter[str] = Counter()
        corrupted: Counter[str] = Counter()
        for f in self.faults:
            if f["kind"] in OUTAGES:
                outages[f["port"]] += 1
            elif f["kind"] in CORRUPTING and not (f["kind"] == "garbage"
                                                  and f["port"] in SKIPS_GARBAGE):
                corrupted[f["port"]] += 1
        for port, ids in on_port.items():
            for iid in ids:
                seen = outcomes[iid]["event_counts"].get("port disconnected", 0)
                if seen != outages[port]:
                    p.append(f"{iid}: {outages[port]} outage(s) of its port, {seen} in its "
                             "events")
            errors = sum(outcomes[i]["errors"] for i in ids)
            if corrupted[port] and errors < corrupted[port]:
                p.append(f"port {port}: {corrupted[port]} corrupted replies, {errors} errors")
        if any(f["kind"] == "slow_hook" for f in self.faults) and not any(
                a["what"] == "plugin:soak-alerts" for a in rt.alarms):
            p.append("slow hooks raised no alarm naming the plugin")
        slope = rss_slope(rt.budget.history(), self.warmup_s)
        if slope is not None and slope > self.max_rss_slope:
            p.append(f"RSS grows {slope:.3f} MB/min after warm-up (limit "
                     f"{self.max_rss_slope:g})")
        rss = [s["rss_mb"] for s in rt.budget.history()]
        kinds = Counter(f["kind"] for f in self.faults)
        return {"duration_s": self.duration_s, "seed": self.seed, "faults": dict(kinds),
                "samples": sum(sink.rows.values()), "shutdown_s": round(shutdown_s, 2),
                "rss_mb_first_last": [rss[0], rss[-1]] if rss else [],
                "rss_slope_mb_per_min": None if slope is None else round(slope, 4),
                "errors": {i: o["errors"] for i, o in outcomes.items()},
                "reconnects": {i: o["reconnects"] for i, o in outcomes.items()},
                "restarts": {i: o["restarts"] for i, o in outcomes.items()},
                "alarms": len(rt.alarms), "problems": list(p), "ok": not p,
                "fault_log": self.faults}


def rss_slope(samples: list[dict[str, Any]], warmup_s: float) -> float | None:
    """Least-squares slope of RSS (MB per minute) over the samples after ``warmup_s``."""
    if not samples:
        return None
    start = samples[0]["time"] + warmup_s
    pts = [(s["time"], s["rss_mb"]) for s in samples if s["time"] >= start]
    if len(pts) < 10:
        return None
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mr = sum(r for _, r in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    cov = sum((t - mt) * (r - mr) for t, r in pts)
    return cov / var * 60 if var else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of faults")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=60.0,
                    help="seconds left out of the RSS slope")
    ap.add_argument("--max-rss-slope", type=float, default=0.05, help="MB per minute")
    ap.add_argument("--gaps", type=float, nargs=2, default=(1.0, 4.0), metavar=("MIN", "MAX"),
                    help="seconds from the end of one fault to the start of the next, drawn "
                         "evenly from MIN-MAX (default 1 4)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    if not 0 <= args.gaps[0] <= args.gaps[1]:
        ap.error(f"--gaps: need 0 <= MIN <= MAX, got {args.gaps[0]:g} {args.gaps[1]:g}")
    result = Soak(args.duration, args.seed, args.warmup, args.max_rss_slope,
                  tuple(args.gaps)).run()
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    per_kind = defaultdict(int, result["faults"])
    print(f"soak {'OK' if result['ok'] else 'FAILED'}: {args.duration:g} s, "
          f"{sum(per_kind.values())} faults, {result['samples']} samples, RSS slope "
          f"{result['rss_slope_mb_per_min']} MB/min", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
