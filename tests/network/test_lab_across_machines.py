"""A lab across machines, simulated on one (the lab guide's recipe).

Node A serves instruments: a simulated ESP300 on a pty (``daqhub sim serve --pty``) behind a
real ser2net (RFC 2217), and a SCPI DMM on TCP (``python -m daqhub_sims.scpi_tcp``).
Node B runs the lab over the network (``rfc2217://`` and ``TCPIP::...::SOCKET``) and serves
its data (``[daqhub.serve]``). Node C records the session over Arrow Flight twice: one
recorder runs throughout, the other is killed mid-run and restarted into the same directory.
Each is its own process, as on separate machines.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from flight_lab import lab_text
from ser2net_server import Ser2net

from daqhub import session_files

pytestmark = pytest.mark.timeout(120)
DAQHUB = [sys.executable, "-m", "daqhub"]
RUN_S = 10


class Proc:
    """A child process whose stdout lines can be waited for."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.log = log
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log.open("wb"),
                                  text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {timeout} s; got "
                                     f"{self.seen[-5:]}; stderr: "
                                     f"{self.log.read_text()[-1500:]}") from None
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.p.wait(timeout)
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        self.seen += rest
        return code, "\n".join(self.seen)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def h5_content(path: Path) -> dict[str, Any]:
    """Every dataset and attribute (the file's creation time aside)."""
    out: dict[str, Any] = {}
    with h5py.File(path) as f:
        out["/"] = {k: v for k, v in f.attrs.items() if k != "created_utc"}

        def visit(name: str, obj: Any) -> None:
            out[name] = (dict(obj.attrs), obj[()] if isinstance(obj, h5py.Dataset) else None)

        f.visititems(visit)
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return bool(a == b)


def data_files(root: Path, sid: str | None = None) -> list[Path]:
    """Every file of the sessions under ``root`` (of session ``sid`` only, when given): the
    channels' and the records'."""
    files = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return sorted(rel for rel in files if sid is None or rel.parts[1] == sid)


def assert_same_session(local: Path, copy: Path, sid: str | None = None) -> None:
    """The copy equals the local session (``sid``: that one of the local sessions) file for
    file: rows, units, metadata, records."""
    assert data_files(copy) == data_files(local, sid)
    for rel in data_files(local, sid):
        if rel.suffix == ".h5":
            assert same(h5_content(local / rel), h5_content(copy / rel)), rel
        elif rel.suffix == ".arrows":
            a, b = (ipc.open_stream(p).read_all() for p in (local / rel, copy / rel))
            assert a.equals(b, check_metadata=True), rel
        else:  # records (settings, points tables) are copied as they are
            assert (local / rel).read_bytes() == (copy / rel).read_bytes(), rel


def assert_same_but_gaps(local: Path, copy: Path, sid: str, gaps: list[tuple[str, int, int]]
                         ) -> None:
    """Every channel of the copy equals the local one without the reported gap rows."""
    for flavor in ("v2", "v4"):
        mine = {(c.instrument_id, c.spec.name): c
                for c in session_files.channels(flavor, copy / flavor / sid)}
        for c in session_files.channels(flavor, local / flavor / sid):
            key = f"{c.instrument_id}/{c.spec.name}"
            want = pa.Table.from_batches(list(session_files.read(c)))
            keep = np.ones(want.num_rows, bool)
            for ch, first, n in gaps:
                if ch == key:
                    keep[first:first + n] = False
            got = pa.Table.from_batches(list(session_files.read(mine[(c.instrument_id,
                                                                       c.spec.name)])))
            assert got.equals(want.filter(pa.array(keep))), key


def test_a_lab_across_machines_recorded_over_flight(tmp_path: Path) -> None:
    procs: list[Proc] = []

    def start(args: list[str], name: str) -> Proc:
        p = Proc(args, tmp_path / f"{name}.log")
        procs.append(p)
        return p

    ser2net: Ser2net | None = None
    try:
        # node A: the instruments
        esp = start([*DAQHUB, "sim", "serve", "esp300", "-o", "speed_scale=20", "--pty"], "esp")
        pty = esp.wait_line(r"^(/dev/pts/\d+)$").group(1)
        ser2net = Ser2net(pty, tmp_path).start()
        dmm = start([sys.executable, "-m", "daqhub_sims.scpi_tcp", "--seed", "4"], "dmm")
        resource = dmm.wait_line(r"^(TCPIP::\S+::SOCKET)$").group(1)
        # node B: the lab, over the network, serving its data
        lab = tmp_path / "lab.toml"
        lab.write_text(lab_text("local", "@py", ser2net.url, stage_hz=5, resource=resource,
                                extra="""
[daqhub.serve]
address = "127.0.0.1:0"
[[routines]]
instrument = "stage"
repeat = true
steps = [["move_absolute", 2.0], ["wait_until_done", 10], ["move_absolute", 0.0],
         ["wait_until_done", 10], ["sleep", 0.05]]
"""))
        run = start([*DAQHUB, "run", str(lab), "--plain", "--interval", "1",
                     "--duration", str(RUN_S)], "run")
        url = run.wait_line(r"live data -> (grpc://127\.0\.0\.1:\d+)").group(1)
        # node C: two recorders; the second is killed mid-run and restarted
        steady = start([*DAQHUB, "record", url, "--output-dir", str(tmp_path / "copy1")],
                       "rec1")
        first = start([*DAQHUB, "record", url, "--output-dir", str(tmp_path / "copy2")],
                      "rec2")
        sid = first.wait_line(r"copying session (\S+) into").group(1)
        run.wait_line(r"stage=running:\d+.*dmm=running:[1-9]")  # data is flowing
        first.p.kill()
        first.p.wait(10)
        again = start([*DAQHUB, "record", url, "--output-dir", str(tmp_path / "copy2")],
                      "rec2b")
        again.wait_line(rf"moved the partial copy .*{sid} aside")
        run_code, run_out = run.finish(RUN_S + 60)
        assert run_code == 0, run_out + (tmp_path / "run.log").read_text()
        code1, out1 = steady.finish()
        code2, out2 = again.finish()
    finally:
        for p in procs:
            p.stop()
        if ser2net is not None:
            ser2net.stop()
    local = tmp_path / "local"
    assert code1 == 0 and "copy complete" in out1, out1
    assert_same_session(local, tmp_path / "copy1")
    gaps = [(m.group(1), int(m.group(2)), int(m.group(4)))
            for m in re.finditer(r"^gap: (\S+): rows (\d+)\.\.(\d+) \((\d+)\)", out2, re.M)]
    assert code2 == (1 if gaps else 0), out2
    assert ("copy complete" in out2) == (not gaps), out2
    assert_same_but_gaps(local, tmp_path / "copy2", sid, gaps)
    assert (tmp_path / "copy2" / "v2" / f"{sid}.partial-1").is_dir()  # kept, not overwritten
    with h5py.File(local / "v2" / sid / "session.h5") as f:
        assert f["stage/position"].attrs["unit"] == "mm"
        assert len(f["stage/position/value"]) > 10
