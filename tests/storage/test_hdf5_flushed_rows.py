"""HDF5 readers take each channel's rows up to what the writer's last completed flush
counted, never the datasets' lengths: HDF5 may put a dataset's new length on disk
before the chunk index that covers it, so a kill during a flush leaves rows that read
as zeros. And a channel whose index such a kill spoiled is named, the others read.
These tests build those states on purpose; test_storage_crash kills writers."""

from __future__ import annotations

import json
import re
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

import h5py
import pyarrow as pa
import pytest
from storage_testdata import CHANNELS, INSTRUMENTS, LAB_CONFIG, table_bytes
from test_storage_roundtrip import feed_session

from daqhub import read_session, session_files
from daqhub.cli import inspect as daqhub_inspect
from daqhub.host import PluginHost
from daqhub.storage import FlavorStorage, StorageSession

ROWS = 80
STALE = 5000  # rows of zeros past the counted ones, as a kill mid-flush leaves them


def _inspect(path: Path, exit_status: int = 0) -> dict[str, Any]:
    """``daqhub inspect --json`` of one file: that file's report."""
    buf = StringIO()
    with redirect_stdout(buf):
        assert daqhub_inspect.main([str(path), "--json"]) == exit_status
    [session] = json.loads(buf.getvalue())["sessions"]
    [file] = session["files"]
    return file  # type: ignore[no-any-return]


def _write(tmp_path: Path, host: PluginHost, data: Any, **options: Any) -> StorageSession:
    session = StorageSession.open(host, tmp_path, {"v2": FlavorStorage(
        "hdf5", CHANNELS, INSTRUMENTS, options)}, lab_config=LAB_CONFIG)
    feed_session(session, data, "v2", seed=3)
    return session


def _written_dir(tmp_path: Path, host: PluginHost, data: Any) -> Path:
    """A session written and closed: its v2 session directory."""
    session = _write(tmp_path, host, data)
    session.close()
    return tmp_path / "v2" / session.session_id


def _channel_groups(f: h5py.File) -> list[h5py.Group]:
    return [g for iid, group in f.items() if iid != "_daqhub" for g in group.values()]


@pytest.mark.timeout(30)
def test_appended_rows_are_shown_only_once_a_flush_has_completed(
        tmp_path: Path, storage_host: PluginHost, channel_data: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # small blocks: rows reach the datasets long before the (hour-long) flush interval
    session = _write(tmp_path, storage_host, channel_data(ROWS, seed=4), block_bytes=1024,
                     flush_interval=3600)
    session_dir = tmp_path / "v2" / session.session_id
    with h5py.File(session_dir / "session.h5", "r") as f:  # the writer's file, shared
        appended = {g.name: len(g["timestamp_ns"]) for g in _channel_groups(f)}
        assert any(appended.values()), "block_bytes=1024 appends before any flush"
        assert {g.name: int(g.attrs["rows"]) for g in _channel_groups(f)} == dict.fromkeys(
            appended, 0)
    assert {c.rows for c in session_files.channels("v2", session_dir)} == {0}

    # the counts must not be in the flush that writes what they count (a kill during it
    # would leave them on disk ahead of the rows): they go in a second one
    flushes: list[dict[str, tuple[int, int]]] = []
    real_flush = h5py.File.flush

    def flush(f: h5py.File) -> None:
        flushes.append({g.name: (int(g.attrs["rows"]), len(g["timestamp_ns"]))
                        for g in _channel_groups(f)})
        real_flush(f)

    monkeypatch.setattr(h5py.File, "flush", flush)
    session.flush()
    monkeypatch.undo()
    assert flushes == [dict.fromkeys(appended, (0, ROWS)), dict.fromkeys(appended, (ROWS, ROWS))]
    assert {c.rows for c in session_files.channels("v2", session_dir)} == {ROWS}
    with h5py.File(session_dir / "session.h5", "r") as f:
        for g in _channel_groups(f):
            assert int(g.attrs["rows"]) == len(g["timestamp_ns"]) == ROWS
            assert int(g.attrs["metadata_rows"]) == len(g["metadata_row"])
    session.close()


@pytest.mark.timeout(30)
def test_rows_past_the_flushed_count_are_ignored_by_every_reader(
        tmp_path: Path, storage_host: PluginHost, channel_data: Any) -> None:
    session_dir = _written_dir(tmp_path, storage_host, channel_data(ROWS, seed=6))
    path = session_dir / "session.h5"
    written = read_session(session_dir)
    assert isinstance(written, dict) and {t.num_rows for t in written.values()} == {ROWS}
    with h5py.File(path, "r+") as f:  # what a kill mid-flush leaves: lengths, no data
        for g in _channel_groups(f):
            for ds in g.values():
                ds.resize(len(ds) + STALE, axis=0)

    again = read_session(session_dir)
    assert isinstance(again, dict) and again.keys() == written.keys()
    for name, table in written.items():
        assert table_bytes(again[name]) == table_bytes(table), name
    stored = session_files.channels("v2", session_dir)
    assert {c.rows for c in stored} == {ROWS}
    for channel in stored:
        got = pa.Table.from_batches(list(session_files.read(channel)))
        assert got.num_rows == ROWS
        assert got.column("metadata").equals(
            written[f"{channel.instrument_id}.{channel.spec.name}"].column("metadata"))
    report = _inspect(path)
    for c in report["channels"]:
        assert c["rows"] == ROWS
        assert c["notes"] == [f"{STALE} row(s) past the writer's last completed flush; "
                              "ignored"], c


@pytest.mark.timeout(30)
def test_files_without_the_count_are_read_up_to_their_shortest_dataset(
        tmp_path: Path, storage_host: PluginHost, channel_data: Any) -> None:
    session_dir = _written_dir(tmp_path, storage_host, channel_data(ROWS, seed=7))
    with h5py.File(session_dir / "session.h5", "r+") as f:  # as daqhub wrote them before
        for g in _channel_groups(f):
            del g.attrs["rows"], g.attrs["metadata_rows"]
            g["timestamp_ns"].resize(ROWS - 3, axis=0)
    assert {c.rows for c in session_files.channels("v2", session_dir)} == {ROWS - 3}
    tables = read_session(session_dir)
    assert isinstance(tables, dict) and {t.num_rows for t in tables.values()} == {ROWS - 3}


def _break_chunk_index(path: Path, dataset: str) -> None:
    """Spoil the signature of the chunk-index node that points at ``dataset``'s first chunk,
    as a kill between an index split's writes leaves it (HDF5 then says "wrong B-tree
    signature")."""
    with h5py.File(path, "r") as f:
        chunk = f[dataset].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    pointer = chunk.to_bytes(8, "little")
    starts = [m.start() for m in re.finditer(b"TREE\x01", data)]
    nodes = {max(i for i in starts if i < m.start())
             for m in re.finditer(re.escape(pointer), data) if starts[0] < m.start()}
    assert len(nodes) == 1, nodes  # the node holding the pointer: the last one before it
    [node] = nodes
    data[node:node + 4] = b"XXXX"
    path.write_bytes(bytes(data))


@pytest.mark.timeout(30)
def test_a_channel_that_cannot_be_read_is_named_and_the_others_are_read(
        tmp_path: Path, storage_host: PluginHost, channel_data: Any) -> None:
    session_dir = _written_dir(tmp_path, storage_host, channel_data(ROWS, seed=8))
    path = session_dir / "session.h5"
    before = _inspect(path)
    [broken, *others] = before["channels"]
    _break_chunk_index(path, f"{broken['instrument']}/{broken['channel']}/timestamp_ns")

    file = _inspect(path, exit_status=1)  # not "fine": a channel's rows are lost
    assert file["status"] == "damaged"
    assert file["channels"] == others
    [note] = file["notes"]
    assert note.startswith(f"{broken['instrument']}.{broken['channel']}: its rows cannot be "
                           "read") and "wrong B-tree signature" in note
    with pytest.raises(OSError, match=f"channel {broken['instrument']}.{broken['channel']} "
                                      "cannot be read .*daqhub inspect"):
        read_session(session_dir)  # the API does not hand back a session with a hole
