"""``read_session(merge=True)`` holds one sample per channel and instant: the samples it leaves
out are a warning naming each channel and how many, never dropped silently."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from storage_testdata import LAB_CONFIG

import daqhub
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.readback import MergeWarning
from daqhub.schema import build_batch
from daqhub.storage import FlavorStorage, StorageSession

A, B, C = (ChannelSpec(name, "scalar", "V", "float64") for name in "abc")


@pytest.mark.timeout(20)
def test_samples_sharing_an_instant_left_out_of_the_merged_table_are_a_warning(
        tmp_path: Path, storage_host: PluginHost) -> None:
    """Two samples of a channel at one instant: the merged table kept the second, and the
    first was gone without a word (it is in the channel's own table)."""
    session = StorageSession.open(
        storage_host, tmp_path, {"v2": FlavorStorage("hdf5", {"m": [A, B, C]}, {"m": {}})},
        lab_config=LAB_CONFIG)
    for spec, ts, values in [(A, [1, 2, 2, 3], [1.0, 2.0, 2.5, 3.0]),  # one at 2 left out
                             (B, [2, 2, 2, 4], [20.0, 21.0, 22.0, 40.0]),  # two at 2
                             (C, [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0])]:  # none
        session.write(build_batch("m", spec, ts, np.array(values), source="v2"))
    session.close()
    where = tmp_path / "v2" / session.session_id
    assert daqhub.read_session(where)["m.a"].num_rows == 4  # all stored
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        merged = daqhub.read_session(where, merge=True)
    assert isinstance(merged, pa.Table)
    assert merged.column("timestamp_ns").to_pylist() == [1, 2, 3, 4]
    assert merged.column("m.a").to_pylist() == [1.0, 2.5, 3.0, None]  # the last at 2
    assert merged.column("m.b").to_pylist() == [None, 22.0, None, 40.0]
    [w] = [w for w in caught if issubclass(w.category, MergeWarning)]
    assert "left out 1 sample(s) of m.a, 2 sample(s) of m.b," in str(w.message)
    assert "m.c" not in str(w.message)
    assert w.filename == __file__  # the caller's line, not daqhub's
