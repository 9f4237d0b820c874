"""Both runtimes on shared simulated hardware: nothing lost, doubled or reordered; nothing leaked.

One Elliptec bus (on a real pty) carries a v2 rotation mount and a v4 slider; one VISA
resource serves a v2 and a v4 DMM; one ESP300 serves a v2 and a v4 axis next to a v4
1830-C. Routines move the stages while everything polls.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, defaultdict

import pytest
from polling import wait_until

from daqhub.config import parse
from daqhub.plugins.converters import batch_to_rows
from daqhub.runtime.dual import DualRuntimeManager


class Recorder:
    def __init__(self) -> None:
        self.rows: list = []

    def write(self, batch) -> None:
        self.rows.extend(batch_to_rows(batch))

    def flush(self) -> None:
        pass

    def close(self) -> int:
        return len(self.rows)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(90)
def test_shared_hardware_exactly_once_in_order_and_nothing_leaks(
        daqhub_host, sim_url, sim_registry, visa_sim_backend, tmp_path) -> None:
    from daqhub_sims.pty_server import PtyServer

    threads_before = {t.name for t in threading.enumerate()}
    fds_before = open_fds()
    bus = sim_url("elliptec", devices="0:ELL14,1:ELL9", speed_scale=10)
    pty = PtyServer(sim_registry.endpoint(bus))
    pty.start()
    esp = sim_url("esp300", speed_scale=20)
    visa = visa_sim_backend()
    lab = parse(f"""
[daqhub]
output_dir = "{tmp_path}"
[[v2.instruments]]
id = "rot"
type = "elliptec.ell14"
port = "{pty.path}"
address = 0
poll_hz = 20
[[v4.instruments]]
id = "slide"
type = "elliptec.ell9"
port = "{pty.path}"
address = 1
poll_hz = 20
[[v2.instruments]]
id = "dmm_a"
type = "scpi.dmm"
resource = "GPIB0::5::INSTR"
visa_backend = "{visa}"
poll_hz = 50
[[v4.instruments]]
id = "dmm_b"
type = "scpi.dmm"
resource = "GPIB0::5::INSTR"
visa_backend = "{visa}"
poll_hz = 50
[[v2.instruments]]
id = "x"
type = "newport.esp300"
port = "{esp}"
axis = 1
poll_hz = 20
[[v4.instruments]]
id = "y"
type = "newport.esp300"
port = "{esp}"
axis = 2
poll_hz = 20
[[v4.instruments]]
id = "meter"
type = "newport.1830c"
port = "{sim_url("newport1830c", noise=0)}"
poll_hz = 20
[[routines]]
instrument = "rot"
repeat = true
steps = [["move_absolute", 30.0], ["wait_until_done", 10], ["move_absolute", 0.0],
         ["wait_until_done", 10], ["sleep", 0.05]]
[[routines]]
instrument = "slide"
repeat = true
steps = [["move_absolute", 1], ["wait_until_done", 10], ["move_absolute", 0],
         ["wait_until_done", 10], ["sleep", 0.05]]
[[routines]]
instrument = "y"
repeat = true
steps = [["move_absolute", 1.0], ["wait_until_done", 10], ["move_absolute", 0.0],
         ["wait_until_done", 10], ["sleep", 0.05]]
""", "shared.toml", daqhub_host, tmp_path)
    rec = Recorder()
    rt = DualRuntimeManager(lab, daqhub_host, sinks={"rec": rec})
    rt.start()
    try:
        wait_until(lambda: all(r["cycles"] >= 2 for r in rt.health()["routines"]), timeout=40,
                   what="every routine to complete two cycles")
        wait_until(lambda: all(h["measurements"] >= 20 for h in rt.health()["instruments"]),
                   timeout=20, what="20 samples from every instrument")
    finally:
        report = rt.shutdown()
        pty.close()
    health = {h["id"]: h for h in rt.health()["instruments"]}
    assert report.ok, report.as_dict()
    assert all(h["errors"] == 0 for h in health.values()), health
    assert all(r["state"] in ("stopped", "done") and not r["error"]
               for r in rt.health()["routines"])
    got = Counter((r.instrument_id, r.channel) for r in rec.rows)
    for iid, h in health.items():
        chans = {c for (i, c) in got if i == iid}
        assert chans, f"no data from {iid}"
        for ch in chans:
            # every sample the instrument produced reached the lossless sink exactly once
            assert got[(iid, ch)] == h["measurements"] == report.counts[iid][ch], (iid, ch)
    seen = defaultdict(list)
    for r in rec.rows:
        seen[(r.instrument_id, r.channel)].append(r.timestamp_ns)
    for key, ts in seen.items():
        assert ts == sorted(ts) and len(set(ts)) == len(ts), f"{key} out of order or doubled"
    assert {r.source for r in rec.rows if r.instrument_id in ("rot", "dmm_a", "x")} \
        == {"v2"}
    # every port and session closed: no file descriptors or daqhub threads left behind
    assert open_fds() - fds_before == set(), "file descriptors left open"
    leftover = [t for t in threading.enumerate() if t.name not in threads_before
                and t.name.startswith("daqhub")]
    assert not leftover, leftover
