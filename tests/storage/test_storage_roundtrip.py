"""What the unified stream carried is exactly what plain h5py / pyarrow read back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from storage_testdata import CHANNELS, INSTRUMENTS, LAB_CONFIG, ChannelData

from daqhub.host import PluginHost
from daqhub.measurement import Flavor, Image, Scalar, Spectrum, UnifiedMeasurement
from daqhub.plugins.converters import rows_to_batch
from daqhub.schema import column_values, describe
from daqhub.storage import FlavorStorage, StorageSession

VERSIONS = {"daqhub": "0.1.0", "daqhub-newport": "1.2.3", "acme-cam": "0.0.1"}
ROWS = 180


def channel_rows(d: ChannelData, source: Flavor) -> list[UnifiedMeasurement]:
    out = []
    axes = iter(d.axes)
    for ts, value, meta in zip(d.timestamps, d.values, d.metadata, strict=True):
        if d.spec.kind == "scalar":
            data: Any = Scalar(value, d.spec.unit)
        elif d.spec.kind == "spectrum":
            data = Spectrum(value, next(axes), d.spec.unit, d.spec.axis_unit)
        else:
            data = Image(value, d.spec.unit)
        out.append(UnifiedMeasurement(d.instrument, d.spec.name, int(ts), data, source,
                                      meta or {}))
    return out


def feed_session(session: StorageSession, data: list[ChannelData], source: Flavor,
                 seed: int) -> None:
    """Interleave the channels in batches of random size, 1 to 60 rows, as the bridge would."""
    rng = np.random.default_rng(seed)
    queues = []
    for d in data:
        rows = channel_rows(d, source)
        bounds = [0, *(int(c) for c in np.cumsum(rng.integers(1, 61, size=len(rows)))
                       if c < len(rows)), len(rows)]
        queues.append([rows_to_batch(rows[a:b], d.spec)
                       for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    while any(queues):
        for q in queues:
            if q:
                session.write(q.pop(0))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")))


def _expected_values(d: ChannelData) -> np.ndarray | list[np.ndarray]:
    if d.spec.kind == "spectrum" and d.spec.fixed_size is None:
        return d.values
    return np.stack([np.asarray(v) for v in d.values]) if d.spec.kind != "scalar" else np.array(
        d.values, dtype=d.spec.dtype)


def _check_hdf5(path: Path, data: list[ChannelData], session_id: str) -> None:
    with h5py.File(path, "r") as f:
        assert f.attrs["session_id"] == session_id
        assert json.loads(f.attrs["versions"]) == VERSIONS
        assert f["_daqhub/lab_config"][()].decode() == LAB_CONFIG
        for iid, block in INSTRUMENTS.items():
            assert json.loads(f[iid].attrs["instrument"]) == block
        # no variable-length data past the header: each such string stays in HDF5's memory
        # while the file is open (RSS grew with every sample that carried metadata)
        vlen: list[str] = []
        f.visititems(lambda name, o: vlen.append(name) if isinstance(o, h5py.Dataset)
                     and h5py.check_vlen_dtype(o.dtype) is not None else None)
        assert vlen == ["_daqhub/lab_config"], vlen
        for d in data:
            g = f[d.instrument][d.spec.name]
            where = f"{d.instrument}.{d.spec.name}"
            assert json.loads(g.attrs["channel"]) == d.spec.to_dict(), where
            assert g.attrs["unit"] == d.spec.unit and g["value"].attrs["unit"] == d.spec.unit
            assert _same(g["timestamp_ns"][:], d.timestamps), where
            expected = _expected_values(d)
            if isinstance(expected, list):
                extent = g["extent"][:]
                values = g["value"][:]
                axis = g["axis"][:]
                assert values.dtype == np.dtype(d.spec.dtype) and len(extent) == len(expected)
                for (start, length), v, a in zip(extent, expected, d.axes, strict=True):
                    assert _same(values[start:start + length], v), where
                    assert _same(axis[start:start + length], a), where
            else:
                assert _same(g["value"][:], expected), where
                if d.spec.kind == "spectrum":
                    assert _same(g["axis"][:], np.stack(d.axes)), where
                    assert g["axis"].attrs["unit"] == d.spec.axis_unit
            ends = g["metadata_end"][:]
            text = g["metadata"][:].tobytes().decode()  # ASCII JSON here: bytes are characters
            starts = [0, *ends[:-1]]
            stored = {int(r): json.loads(text[a:b]) for r, a, b in zip(
                g["metadata_row"][:], starts, ends, strict=True)}
            assert stored == {i: m for i, m in enumerate(d.metadata) if m}, where


def _check_table(table: pa.Table, d: ChannelData, session_id: str, source: Flavor) -> None:
    where = f"{d.instrument}.{d.spec.name}"
    meta = table.schema.metadata
    assert describe(table.schema) == (d.instrument, d.spec)
    assert meta[b"daqhub.session_id"].decode() == session_id
    assert meta[b"daqhub.lab_config"].decode() == LAB_CONFIG
    assert json.loads(meta[b"daqhub.versions"]) == VERSIONS
    assert json.loads(meta[b"daqhub.instrument"]) == INSTRUMENTS[d.instrument]
    assert _same(table.column("timestamp_ns").to_numpy(), d.timestamps), where
    got = column_values(table, d.spec)
    expected = _expected_values(d)
    if isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected)
        assert all(_same(g, e) for g, e in zip(got, expected, strict=True)), where
    else:
        assert _same(np.asarray(got), expected), where
    if d.spec.kind == "spectrum":
        axes = column_values(table, d.spec, "axis")
        assert all(_same(g, e) for g, e in zip(axes, d.axes, strict=True)), where
    metas = [json.loads(m) if m else None for m in table.column("metadata").to_pylist()]
    assert metas == d.metadata, where
    assert set(table.column("source").to_pylist()) == {source}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend,options", [
    ("hdf5", {}),
    ("hdf5", {"swmr": True, "compression": "gzip", "block_bytes": 4096}),
    ("arrow", {}),
    ("arrow", {"parquet": True, "batch_rows": 7, "compression": "zstd"}),
])
@pytest.mark.parametrize("source", ["v2", "v4"])
def test_round_trip_is_exact(tmp_path: Path, storage_host: PluginHost, channel_data: Any,
                             backend: str, options: dict[str, Any], source: Flavor) -> None:
    data = channel_data(ROWS, seed=7)
    flavor = source
    session = StorageSession.open(
        storage_host, tmp_path, {flavor: FlavorStorage(backend, CHANNELS, INSTRUMENTS, options)},
        lab_config=LAB_CONFIG, versions=VERSIONS)
    feed_session(session, data, source, seed=3)
    files = session.close()[flavor]
    session_dir = tmp_path / flavor / session.session_id
    assert all(p.parent == session_dir or p.parent.parent == session_dir for p in files)
    if backend == "hdf5":
        assert files == [session_dir / "session.h5"]
        _check_hdf5(files[0], data, session.session_id)
        return
    suffix = ".parquet" if options.get("parquet") else ".arrows"
    assert sorted(files) == sorted(session_dir / d.instrument / f"{d.spec.name}{suffix}"
                                   for d in data)
    for d in data:
        path = session_dir / d.instrument / f"{d.spec.name}{suffix}"
        table = pq.read_table(path) if suffix == ".parquet" else ipc.open_stream(path).read_all()
        _check_table(table, d, session.session_id, source)
    assert not list(session_dir.rglob("*.lock")), "lock files are removed on close"


@pytest.mark.timeout(20)
def test_arrow_coalesces_small_batches(tmp_path: Path, storage_host: PluginHost,
                                       channel_data: Any) -> None:
    """Hundreds of 1-row batches become a few big ones on disk."""
    data = [d for d in channel_data(1000, seed=2) if d.spec.name == "power"]
    session = StorageSession.open(storage_host, tmp_path, {"v4": FlavorStorage(
        "arrow", {"meter": [data[0].spec]}, options={"batch_rows": 400})})
    for row in channel_rows(data[0], "v4"):
        session.write(rows_to_batch([row], data[0].spec))
    [path] = session.close()["v4"]
    sizes = [b.num_rows for b in ipc.open_stream(path)]
    assert sum(sizes) == 1000
    assert sizes == [0, 400, 400, 200], "schema batch, then coalesced batches, rest on close"


@pytest.mark.timeout(20)
def test_a_quiet_channel_still_reaches_disk_within_the_flush_interval(
        tmp_path: Path, storage_host: PluginHost, channel_data: Any) -> None:
    """A few rows and then silence: the router's background flush writes them anyway."""
    data = [d for d in channel_data(5, seed=4) if d.spec.name == "power"][0]
    session = StorageSession.open(storage_host, tmp_path, {
        "v2": FlavorStorage("hdf5", {"meter": [data.spec]}, options={"flush_interval": 0.2}),
        "v4": FlavorStorage("arrow", {"meter": [data.spec]}, options={"flush_interval": 0.2}),
    })
    try:
        session.write(rows_to_batch(channel_rows(data, "v2"), data.spec))
        session.write(rows_to_batch(channel_rows(data, "v4"), data.spec))
        h5 = session.directories["v2"] / "session.h5"
        stream = session.directories["v4"] / "meter" / "power.arrows"
        deadline = time.monotonic() + 5.0
        seen = (0, 0)
        while time.monotonic() < deadline:
            seen = (_rows_on_disk_seen_by_another_process(h5),
                    sum(b.num_rows for b in ipc.open_stream(stream)))
            if seen == (5, 5):
                break
            time.sleep(0.05)
        assert seen == (5, 5), f"rows on disk (hdf5, arrow) after 5 s: {seen}"
    finally:
        session.close()


def _rows_on_disk_seen_by_another_process(h5: Path) -> int:
    """HDF5 shares an open file within a process, so only another process sees the disk."""
    code = ("import h5py, sys\n"
            "with h5py.File(sys.argv[1], 'r', locking=False) as f:\n"
            "    print(len(f['meter/power/timestamp_ns']))\n")
    out = subprocess.run([sys.executable, "-c", code, str(h5)], capture_output=True, text=True,
                         timeout=20, check=True)
    return int(out.stdout)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("v2_backend,v4_backend,v4_options", [
    ("hdf5", "arrow", {}), ("arrow", "arrow", {"parquet": True}), ("arrow", "hdf5", {}),
    ("hdf5", "hdf5", {})])
def test_read_session_gives_back_both_flavors_exactly(
        tmp_path: Path, storage_host: PluginHost, channel_data: Any, v2_backend: str,
        v4_backend: str, v4_options: dict[str, Any]) -> None:
    """daqhub.read_session: every kind, both flavors, units in each field's metadata, and
    each row's source the flavor that took it, whichever backend stored that flavor."""
    import daqhub

    v2_data, v4_data = channel_data(ROWS, seed=5), channel_data(ROWS, seed=6)
    v4_channels = {f"{iid}4": specs for iid, specs in CHANNELS.items()}
    for d in v4_data:
        d.instrument += "4"
    session = StorageSession.open(
        storage_host, tmp_path,
        {"v2": FlavorStorage(v2_backend, CHANNELS, INSTRUMENTS),
         "v4": FlavorStorage(v4_backend, v4_channels, {}, v4_options)},
        lab_config=LAB_CONFIG, versions=VERSIONS)
    feed_session(session, v2_data, "v2", seed=1)
    feed_session(session, v4_data, "v4", seed=2)
    session.close()
    tables = daqhub.read_session(tmp_path / "v4" / session.session_id)
    assert isinstance(tables, dict)
    assert sorted(tables) == sorted(f"{d.instrument}.{d.spec.name}" for d in v2_data + v4_data)
    for d, source in [*((d, "v2") for d in v2_data), *((d, "v4") for d in v4_data)]:
        table = tables[f"{d.instrument}.{d.spec.name}"]
        where = f"{d.instrument}.{d.spec.name}"
        assert _same(table.column("timestamp_ns").to_numpy(), d.timestamps), where
        got, expected = column_values(table, d.spec), _expected_values(d)
        if isinstance(expected, list):
            assert all(_same(g, e) for g, e in zip(got, expected, strict=True)), where
        else:
            assert _same(np.asarray(got), expected), where
        metas = [json.loads(m) if m else None for m in table.column("metadata").to_pylist()]
        assert metas == d.metadata, where
        assert set(table.column("source").to_pylist()) == {source}
        unit = (table.schema.field("value").metadata or {}).get(b"unit", b"").decode()
        assert unit == d.spec.unit, where
    merged = daqhub.read_session(tmp_path / "v2" / session.session_id, merge=True)
    assert isinstance(merged, pa.Table)
    scalars = [d for d in v2_data + v4_data if d.spec.kind == "scalar"]
    assert merged.column_names == ["timestamp_ns", *sorted(f"{d.instrument}.{d.spec.name}"
                                                           for d in scalars)]
    power = merged.schema.field("meter.power")
    assert power.metadata == {b"unit": b"W"}
    times = merged.column("timestamp_ns").to_numpy()
    assert (np.diff(times) > 0).all()
    col = merged.column("meter.power").to_numpy(zero_copy_only=False)
    d = next(d for d in v2_data if d.instrument == "meter" and d.spec.name == "power")
    at = np.searchsorted(times, d.timestamps)
    assert _same(col[at].astype(np.float64), np.array(d.values, np.float64))


@pytest.mark.timeout(20)
def test_metadata_of_format_1_files_is_still_read(
        tmp_path: Path, storage_host: PluginHost, channel_data: Any) -> None:
    """daqhub-hdf5/1 stored each row's metadata as a variable-length string."""
    import daqhub

    data = channel_data(ROWS, seed=9)
    session = StorageSession.open(storage_host, tmp_path,
                                  {"v2": FlavorStorage("hdf5", CHANNELS, INSTRUMENTS)},
                                  lab_config=LAB_CONFIG, versions=VERSIONS)
    feed_session(session, data, "v2", seed=4)
    session.close()
    with h5py.File(tmp_path / "v2" / session.session_id / "session.h5", "a") as f:
        f.attrs["daqhub_format"] = "daqhub-hdf5/1"
        for d in data:
            g = f[d.instrument][d.spec.name]
            for name in ("metadata", "metadata_end", "metadata_row"):
                del g[name]
            rows = [i for i, m in enumerate(d.metadata) if m]
            g["metadata_row"] = np.asarray(rows, np.int64)
            g.create_dataset("metadata", data=[json.dumps(d.metadata[i]) for i in rows],
                             dtype=h5py.string_dtype())
    tables = daqhub.read_session(tmp_path / "v2" / session.session_id)
    assert isinstance(tables, dict)
    assert any(any(d.metadata) for d in data)
    for d in data:
        got = tables[f"{d.instrument}.{d.spec.name}"].column("metadata").to_pylist()
        assert [json.loads(m) if m else None for m in got] == d.metadata


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("options", "line", "words"), [
    ({"compression_level": 9}, 4, "does nothing without compression"),
    ({"compression": "lzf", "compression_level": 9}, 5, 'does nothing with compression = "lzf"'),
])
def test_a_compression_level_that_would_do_nothing_is_refused_at_its_line(
        tmp_path: Path, storage_host: PluginHost, options: dict[str, Any], line: int,
        words: str) -> None:
    """Only gzip has levels: the level was accepted and the file stored uncompressed (or
    with lzf's fixed level)."""
    from daqhub.config import ConfigError, parse

    keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())
    text = f'[daqhub]\noutput_dir = "{tmp_path}"\n[storage.hdf5]\n{keys}'
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", storage_host, tmp_path)
    (problem,) = map(str, info.value.problems)
    assert problem.startswith(f"lab.toml:{line}: compression_level = 9 {words}"), problem
    assert 'only compression = "gzip" has levels' in problem
    with pytest.raises(ValueError, match="compression_level = 9 does nothing"):
        StorageSession.open(storage_host, tmp_path, {"v2": FlavorStorage(
            "hdf5", CHANNELS, INSTRUMENTS, options)}, lab_config=LAB_CONFIG, versions=VERSIONS)
    assert not list(tmp_path.rglob("*.h5"))


@pytest.mark.timeout(20)
def test_hdf5_compression_is_offered_as_toml_can_write_it(
        tmp_path: Path, storage_host: PluginHost, channel_data: Any) -> None:
    """TOML has no null: "leave the key out" is how a lab writes no compression. gzip with a
    level compresses at that level."""
    from daqhub.config import ConfigError, parse

    text = f'[daqhub]\noutput_dir = "{tmp_path}"\n[storage.hdf5]\ncompression = "zstd"\n'
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml", storage_host, tmp_path)
    (problem,) = map(str, info.value.problems)
    assert problem == ('lab.toml:4: compression = "zstd" is not allowed: compression must be '
                       'one of "gzip", "lzf" (leave the key out for no compression)')
    session = StorageSession.open(
        storage_host, tmp_path, {"v2": FlavorStorage(
            "hdf5", CHANNELS, INSTRUMENTS, {"compression": "gzip", "compression_level": 9})},
        lab_config=LAB_CONFIG, versions=VERSIONS)
    feed_session(session, channel_data(ROWS, seed=1), "v2", seed=2)
    (path,) = session.close()["v2"]
    with h5py.File(path) as f:
        value = next(f[i][c]["value"] for i in f if i != "_daqhub" for c in f[i])
        assert (value.compression, value.compression_opts) == ("gzip", 9)
