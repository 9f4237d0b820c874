"""A session read back from its files (what the data service serves) is what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from storage_testdata import CHANNELS, INSTRUMENTS, LAB_CONFIG, table_bytes
from test_storage_roundtrip import channel_rows, feed_session

from daqhub import session_files
from daqhub.host import PluginHost
from daqhub.plugins.converters import rows_to_batch
from daqhub.storage import FlavorStorage, StorageSession

ROWS = 60


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend,options,open_while_reading", [
    ("hdf5", {}, False), ("hdf5", {}, True), ("hdf5", {"swmr": True}, True),
    ("arrow", {}, False), ("arrow", {}, True),
    ("arrow", {"parquet": True}, False)])  # Parquet is written on close
def test_every_kind_reads_back_exactly_from_any_row(
        tmp_path: Path, storage_host: PluginHost, channel_data: Any, backend: str,
        options: dict[str, Any], open_while_reading: bool) -> None:
    data = channel_data(ROWS, seed=5)
    session = StorageSession.open(storage_host, tmp_path, {"v2": FlavorStorage(
        backend, CHANNELS, INSTRUMENTS, options)}, lab_config=LAB_CONFIG)
    feed_session(session, data, "v2", seed=2)
    if open_while_reading:
        session.flush()
    else:
        session.close()
    stored = {(c.instrument_id, c.spec.name): c
              for c in session_files.channels("v2", tmp_path / "v2" / session.session_id)}
    assert set(stored) == {(d.instrument, d.spec.name) for d in data}
    for d in data:
        channel = stored[(d.instrument, d.spec.name)]
        assert channel.rows == ROWS and channel.spec == d.spec
        expected = pa.Table.from_batches([rows_to_batch(channel_rows(d, "v2"), d.spec)])
        for start in (0, 17):
            got = pa.Table.from_batches(list(session_files.read(channel, start)),
                                        schema=expected.schema)
            assert table_bytes(got) == table_bytes(expected.slice(start)), (d.instrument,
                                                                              d.spec.name)
    if open_while_reading:
        session.close()
