"""A run writes what the unified stream carried into both backends' session directories."""

from __future__ import annotations

from collections import Counter

import h5py
import pyarrow as pa
import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, make_lab

from daqhub.runtime.dual import DualRuntimeManager


@pytest.mark.timeout(60)
def test_run_writes_v2_to_hdf5_and_v4_to_arrow(host, tmp_path) -> None:
    lab = make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[("c", "test.counter")],
                   poll_hz=100)
    rt = DualRuntimeManager(lab, host, storage=True)
    rt.start()
    dirs = rt.output_dirs()
    assert set(dirs) == {"v2", "v4"} and dirs["v2"].parent == tmp_path / "data" / "v2"
    wait_until(lambda: PRODUCED.get("a", 0) > 30 and PRODUCED.get("c", 0) > 30, what="data")
    report = rt.shutdown()
    assert report.ok, report
    files = report.sink_results["storage"]
    h5 = [p for p in files["v2"] if str(p).endswith(".h5")]
    assert h5, files
    with h5py.File(h5[0], "r") as f:
        assert list(f["a"]["count"]["value"][:]) == list(range(1, PRODUCED["a"] + 1))
    arrows = [p for p in files["v4"] if str(p).endswith(".arrows")]
    counts: Counter[str] = Counter()
    for p in arrows:
        with pa.ipc.open_stream(p) as r:
            for b in r:
                counts[p.name] += b.num_rows
    assert sum(counts.values()) == 2 * PRODUCED["c"]   # two channels
    assert (dirs["v2"] / "budget.json").exists()
