"""A generated mixed lab under load: achieved / requested polls per second, per flavor.

The lab is made of racks; each rack is one Elliptec bus (``sim://``, a v2 ELL14 and a v4
ELL9), one SCPI DMM on its own pyvisa-sim file (a v2 and a v4 instrument on the one
resource) and one ESP300 (``sim://``, a v2 axis 1 and a v4 axis 2): six instruments, three
resource groups. Every instrument asks for the same ``poll_hz`` so that the lab asks for
``--polls`` polls per second in all. The lab runs as ``daqhub run`` runs it, storage
included (the parent's one writer), with the simulators in the process that opens them.

A poll is counted as the stored rows of the instrument's busiest channel (one row per
poll); after a warm-up, rows stored during ``--seconds`` over the rows asked for gives
the achieved fraction. The worse flavor's fraction is the run's figure. Two runs:
``workers = 1`` at 2,500 polls/s and ``workers = 2`` at 5,000 polls/s (the issue's
targets: at least 0.95 each); the last line is ``ratio=`` the lower of the two.
CPU seconds of the daqhub process and of its workers are printed with each run: the
box the figure comes from matters (``uptime`` before and after).

    python bench/lab_load.py [--racks 8] [--seconds 5] [--polls 2500] [--polls2 5000]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from daqhub.config import parse
from daqhub.host import PluginHost
from daqhub.runtime.dual import DualRuntimeManager
from daqhub_sims import visa_files

INSTRUMENTS_PER_RACK = 6


def lab_text(out: Path, racks: int, polls: float, workers: int, tag: str) -> str:
    hz = polls / (racks * INSTRUMENTS_PER_RACK)
    text = f'[daqhub]\noutput_dir = "{out / tag}"\nworkers = {workers}\n'
    for r in range(racks):
        bus = f"sim://elliptec?devices=0:ELL14,1:ELL9&speed_scale=50&name={tag}bus{r}"
        esp = f"sim://esp300?speed_scale=50&name={tag}esp{r}"
        visa = visa_files.sim_library(visa_files.fresh_copy(out, visa_files.DMM_PSU_YAML))
        for flavor, n in (("v2", 0), ("v4", 1)):
            text += (f'[[{flavor}.instruments]]\nid = "ell{r}{flavor}"\n'
                     f'type = "elliptec.{"ell14" if n == 0 else "ell9"}"\nport = "{bus}"\n'
                     f'address = {n}\npoll_hz = {hz}\n'
                     f'[[{flavor}.instruments]]\nid = "dmm{r}{flavor}"\ntype = "scpi.dmm"\n'
                     f'resource = "{visa_files.DMM_RESOURCE}"\nvisa_backend = "{visa}"\n'
                     f'poll_hz = {hz}\n'
                     f'[[{flavor}.instruments]]\nid = "esp{r}{flavor}"\n'
                     f'type = "newport.esp300"\nport = "{esp}"\naxis = {n + 1}\n'
                     f'poll_hz = {hz}\n')
    return text


def polls(rt: DualRuntimeManager) -> dict[str, int]:
    """Per instrument, rows of its busiest channel in the unified stream so far."""
    return {iid: max(chs.values()) for iid, chs in rt.counts().items()}


def child_cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run(host: PluginHost, out: Path, racks: int, rate: float, workers: int, seconds: float,
        tag: str) -> dict[str, Any]:
    lab = parse(lab_text(out, racks, rate, workers, tag), "lab_load.toml", host, out)
    asked = {i.id: (i.flavor, i.poll_hz) for i in lab.instruments()}
    rt = DualRuntimeManager(lab, host, storage=True)
    rt.start()
    try:
        deadline = time.monotonic() + 60
        while not all(h["state"] == "running" for h in rt.health()["instruments"]):
            if time.monotonic() > deadline:
                raise SystemExit(f"not every instrument running after 60 s: "
                                 f"{rt.health()['instruments']}")
            time.sleep(0.1)
        time.sleep(1.0)  # warm-up: connects, first batches, storage files created
        pids = [w.process.pid for w in rt.pool.workers] if rt.pool else []
        a, t_a = polls(rt), time.monotonic()
        cpu_a, kids_a = resource.getrusage(resource.RUSAGE_SELF), child_cpu_s(pids)
        time.sleep(seconds)
        b, t_b = polls(rt), time.monotonic()
        cpu_b, kids_b = resource.getrusage(resource.RUSAGE_SELF), child_cpu_s(pids)
    finally:
        report = rt.shutdown()
    span = t_b - t_a
    frac: dict[str, float] = {}
    worst = (1e9, "")
    for flavor in ("v2", "v4"):
        ids = [i for i, (f, _) in asked.items() if f == flavor]
        got = sum(b.get(i, 0) - a.get(i, 0) for i in ids)
        frac[flavor] = got / (sum(asked[i][1] for i in ids) * span)
        for i in ids:
            worst = min(worst, ((b.get(i, 0) - a.get(i, 0)) / (asked[i][1] * span), i))
    own = (cpu_b.ru_utime + cpu_b.ru_stime) - (cpu_a.ru_utime + cpu_a.ru_stime)
    return {"frac": frac, "worst": worst, "ok": report.ok, "failed": report.failed,
            "cpu_parent": own / span, "cpu_workers": (kids_b - kids_a) / span}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--racks", type=int, default=8, help="racks of six instruments")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    ap.add_argument("--polls", type=float, default=2500.0, help="polls/s asked, workers = 1")
    ap.add_argument("--polls2", type=float, default=5000.0, help="polls/s asked, workers = 2")
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cores")
    host = PluginHost()
    host.load_entry_points()
    figures = []
    with tempfile.TemporaryDirectory() as d:
        for workers, rate in ((1, args.polls), (2, args.polls2)):
            r = run(host, Path(d), args.racks, rate, workers, args.seconds, f"w{workers}")
            worse = min(r["frac"].values())
            figures.append(worse)
            print(f"workers = {workers}, {args.racks * INSTRUMENTS_PER_RACK} instruments asking "
                  f"{rate:.0f} polls/s: v2 {r['frac']['v2']:.3f}, v4 {r['frac']['v4']:.3f} of "
                  f"requested (worst instrument {r['worst'][1]} {r['worst'][0]:.3f}); CPU "
                  f"{r['cpu_parent']:.2f} core(s) in daqhub + {r['cpu_workers']:.2f} in "
                  f"workers; report {'ok' if r['ok'] else 'NOT ok: ' + '; '.join(r['failed'])}")
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")
    print(f"workers=1 {figures[0]:.3f} (target 0.95), workers=2 {figures[1]:.3f} (target 0.95)")
    print(f"ratio={min(figures):.3f}")


if __name__ == "__main__":
    main()
