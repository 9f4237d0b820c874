"""What the Lab API refuses before anything is sent or moved, and what it keeps apart.

A script is not a lab file: nothing validated its commands' arguments before they went to
the driver, several threads may start runs at once, and it may go on after the lab closed.
Each test here failed on the code before it: a string sent as a truthy ``OUTP 1``, runs of
two threads under one id (one table silently replaced), two scans moving one mover and
both marked complete, a NaN timeout turned into an immediate TimeoutError.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from lab_texts import optics_lab
from polling import wait_until

import daqhub
from daqhub.host import PluginHost
from daqhub.scan import ScanError

pytestmark = pytest.mark.timeout(120)


def test_runs_started_at_once_in_several_threads_each_keep_their_table(
        tmp_path: Path, host: PluginHost) -> None:
    with daqhub.open_lab(optics_lab(tmp_path, "v2"), host=host, report=None) as lab:
        with ThreadPoolExecutor(8) as pool:
            tables = list(pool.map(lambda _: lab.measure(["power"]), range(24)))
        dirs = lab.output_dirs()
    ids = sorted(t["run_id"][0].as_py() for t in tables)
    assert ids == sorted(f"measure-{n}" for n in range(1, 25))
    with h5py.File(dirs["v2"] / "records.h5", "r") as f:
        assert sorted(f["points"]) == ids


def test_a_mover_is_moved_by_one_run_at_a_time(tmp_path: Path, host: PluginHost) -> None:
    with daqhub.open_lab(optics_lab(tmp_path, "v2"), host=host, report=None) as lab:
        first: dict[str, Any] = {}
        scanning = threading.Thread(target=lambda: first.update(
            table=lab.scan("rotator", [0, 90, 0, 90], read=["power"], settle=0.3)))
        scanning.start()
        wait_until(lambda: lab.movers_held.get("rotator", "").startswith("scan-"),
                   what="the first scan to hold the rotator")
        with pytest.raises(ScanError, match=r"rotator is being moved by scan-1 \(another "):
            lab.scan("rotator", [45, 45], read=["power"])
        assert len(lab.measure(["power"], repeat=2)) == 2  # moving nothing: not held up
        scanning.join(30)
        assert not scanning.is_alive()
        assert first["table"].schema.metadata[b"daqhub.kind"] == b"scan"
        assert lab.records.runs["scan-1"].complete
        assert len(lab.scan("rotator", [45], read=["power"])) == 1  # free again


def test_commands_refuse_arguments_of_the_wrong_kind_before_sending(
        tmp_path: Path, host: PluginHost, visa_sim_backend: Any) -> None:
    psu = (f'\n[[v4.instruments]]\nid = "psu"\ntype = "scpi.psu"\n'
           f'resource = "GPIB0::6::INSTR"\nvisa_backend = "{visa_sim_backend()}"\npoll_hz = 2\n')
    with daqhub.open_lab(optics_lab(tmp_path, "v2", extra=psu), host=host, report=None) as lab:
        with pytest.raises(ValueError, match=r"^psu: set_output's on is a bool, got 'off'"):
            lab["psu"].set_output("off")  # was sent as OUTP 1: a string is true
        assert lab["psu"].query("OUTP?") == "0"
        with pytest.raises(ValueError, match=r"^rotator: move_absolute's \w+ is a float, got"):
            lab["rotator"].move_absolute("abc")
        with pytest.raises(ValueError,
                           match=r"^power: set_wavelength's value is a float, got 'abc'"):
            lab["power"].set_wavelength("abc")
        with pytest.raises(ValueError, match=r"^rotator: move_absolute takes 1 argument"):
            lab["rotator"].move_absolute()
        lab["rotator"].move_absolute(np.float64(30))  # numpy's numbers are numbers
        assert lab["rotator"].wait_until_done(np.int64(10)) == pytest.approx(30, abs=0.01)


def test_a_wait_that_could_not_end_is_the_drivers_refusal_not_a_timeout(
        tmp_path: Path, host: PluginHost) -> None:
    with daqhub.open_lab(optics_lab(tmp_path, "v2"), host=host, report=None) as lab:
        for never in (float("nan"), float("inf"), 1e12):
            with pytest.raises(ValueError, match="rotator: timeout must be a number of"):
                lab["rotator"].wait_until_done(never)
        with pytest.raises(ScanError, match="settle must be a number of seconds"):
            lab.scan("rotator", [0], read=["power"], settle=float("inf"))
        with pytest.raises(ScanError, match="interval must be a number of seconds"):
            lab.measure(["power"], repeat=2, interval=float("nan"))
        with pytest.raises(ScanError, match="move_timeout must be a number of seconds"):
            lab.scan("rotator", [0], read=["power"], move_timeout=float("inf"))
        assert lab.records.runs == {}  # refused before a run began


def test_a_closed_lab_runs_nothing_and_reports_once(tmp_path: Path, host: PluginHost) -> None:
    out = io.StringIO()
    lab = daqhub.open_lab(optics_lab(tmp_path, "v2"), host=host, report=out)
    with ThreadPoolExecutor(3) as pool:
        reports = list(pool.map(lambda _: lab.close(), range(3)))
    assert all(r is reports[0] for r in reports) and reports[0].ok
    assert out.getvalue().count("shutdown report") == 1
    with pytest.raises(ScanError, match="is closed: open a new one"):
        lab.measure(["power"])
    assert lab.records.runs == {}
