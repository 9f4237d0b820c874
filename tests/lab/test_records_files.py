"""What the session records write, against a runtime that is only what records ask of one:
rows without a value in a spectrum column, odd metadata, and a session-start snapshot the
run stopped before it ended."""

from __future__ import annotations

import concurrent.futures
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pytest

from daqhub.records import START_WAIT_S, SessionRecords

pytestmark = pytest.mark.timeout(60)


class RecordsRuntime:
    """A v2 flavor stored in HDF5 and a v4 one in Arrow; ``settings`` answered by the test."""

    def __init__(self, out: Path, answer: bool = False) -> None:
        self.answer = answer  # settings answered at once ({}), else by the test
        self.on_command: list[Any] = []
        self.on_stopped: list[Any] = []
        self.routines: list[Any] = []
        self.lab = SimpleNamespace(flavors={"v2": SimpleNamespace(storage="hdf5"),
                                            "v4": SimpleNamespace(storage="arrow")})
        self.dirs = {"v2": out / "v2", "v4": out / "v4"}
        for d in self.dirs.values():
            d.mkdir(parents=True)
        self.asked: dict[str, concurrent.futures.Future[Any]] = {}
        self.all_asked = threading.Event()

    def instrument_ids(self) -> list[str]:
        return ["meter", "stage"]

    def output_dirs(self) -> dict[str, Path]:
        return self.dirs

    def submit(self, iid: str, method: str) -> concurrent.futures.Future[Any]:
        assert method == "settings"
        fut = self.asked[iid] = concurrent.futures.Future()
        if self.answer:
            fut.set_result({})
        if len(self.asked) == len(self.instrument_ids()):
            self.all_asked.set()
        return fut


def hdf5_settings(rt: RecordsRuntime) -> list[tuple[str, str]]:
    with h5py.File(rt.dirs["v2"] / "records.h5", "r") as f:
        return list(zip((v.decode() for v in f["settings/instrument"][:]),
                        (v.decode() for v in f["settings/settings"][:]), strict=True))


def test_spectrum_columns_with_rows_without_a_value_and_runs_without_rows(tmp_path: Path
                                                                          ) -> None:
    """A routine whose second record step read a spectrometer the first did not crashed the
    whole process (h5py writing the 0-d array of a null row); a stopped scan with no rows
    and a spectrum column made every later write of records.h5 fail."""
    rt = RecordsRuntime(tmp_path, answer=True)
    records = SessionRecords(rt)  # type: ignore[arg-type]
    records.start()
    schema = pa.schema([pa.field("step", pa.int64()),
                        pa.field("spec.spectrum", pa.list_(pa.float64()),
                                 metadata={"unit": "counts"})])
    widened = records.new_run("routine-x", schema)
    records.add_row(widened, {"step": 0, "spec.spectrum": None})
    records.add_row(widened, {"step": 1, "spec.spectrum": [1.0, 2.0, 3.0]})
    records.end_run(widened, True, "complete")
    empty = records.new_run("scan", schema)
    records.end_run(empty, False, "stopped")
    later = records.new_run("measure", schema)
    records.add_row(later, {"step": 0, "spec.spectrum": [4.0, 5.0]})
    records.end_run(later, True, "complete")
    assert records.finish() == []
    with h5py.File(rt.dirs["v2"] / "records.h5", "r") as f:
        assert sorted(f["points"]) == ["measure-1", "routine-x-1", "scan-1"]
        spectra = f["points/routine-x-1/spec.spectrum"]
        assert [list(row) for row in spectra[:]] == [[], [1.0, 2.0, 3.0]]
        assert list(spectra.attrs["missing_rows"]) == [0]
        assert spectra.attrs["unit"] == "counts"
        assert len(f["points/scan-1/spec.spectrum"]) == 0
        assert f["points/scan-1"].attrs["stop_reason"] == "stopped"
        assert np.array_equal(f["points/measure-1/spec.spectrum"][:], [[4.0, 5.0]])


def test_any_metadata_a_script_may_give_is_stored(tmp_path: Path) -> None:
    """A key named ``json`` replaced the whole metadata's attribute; an empty key or an
    integer beyond 64 bits made every write of records.h5 fail for the whole session."""
    rt = RecordsRuntime(tmp_path, answer=True)
    meta = {"operator": "Ada", "json": "see notebook p. 12", "": "x", "count": 2**70,
            "shots": 12, "ok": True}
    records = SessionRecords(rt, meta)  # type: ignore[arg-type]
    records.start()
    assert records.finish() == []
    with h5py.File(rt.dirs["v2"] / "records.h5", "r") as f:
        attrs = f["meta"].attrs
        assert json.loads(attrs["json"]) == meta
        assert attrs["operator"] == "Ada" and attrs["shots"] == 12 and attrs["ok"]
        assert attrs["count"] == str(2**70)


def test_a_snapshot_the_run_stopped_before_it_ended_is_named_and_never_written_after(
        tmp_path: Path) -> None:
    """``daqhub run`` takes the session-start snapshot on a thread: a run stopped before it
    ended wrote it after the shutdown report, or never, with the report saying ok."""
    rt = RecordsRuntime(tmp_path)
    records = SessionRecords(rt, {"operator": "Ada"})  # type: ignore[arg-type]
    records.start_in_background()
    assert rt.all_asked.wait(10)
    rt.asked["meter"].set_result({"range": 3})  # the stage never answers in time
    lines = records.finish()
    assert lines == [f"records: the session-start settings snapshot had not ended "
                     f"{START_WAIT_S:g} s after the run stopped; not recorded for stage"]
    assert hdf5_settings(rt) == [("meter", '{"range": 3}')]  # what there was, written
    written = (rt.dirs["v2"] / "records.h5").read_bytes()
    [snapshot] = [t for t in threading.enumerate() if t.name == "daqhub-settings-snapshot"]
    rt.asked["stage"].set_result({"speed": 1})
    snapshot.join(10)
    assert not snapshot.is_alive()
    assert (rt.dirs["v2"] / "records.h5").read_bytes() == written  # nothing after the report


def test_a_snapshot_that_ends_while_the_run_stops_is_in_the_last_flush(tmp_path: Path
                                                                       ) -> None:
    rt = RecordsRuntime(tmp_path)
    records = SessionRecords(rt)  # type: ignore[arg-type]
    records.start_in_background()
    assert rt.all_asked.wait(10)
    finished: list[list[str]] = []
    stopping = threading.Thread(target=lambda: finished.append(records.finish()))
    stopping.start()
    for iid, fut in rt.asked.items():
        fut.set_result({"id": iid})
    stopping.join(10)
    assert finished == [[]]
    assert sorted(hdf5_settings(rt)) == [("meter", '{"id": "meter"}'),
                                         ("stage", '{"id": "stage"}')]
