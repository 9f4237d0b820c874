"""A writer killed with SIGKILL at random moments leaves files plain h5py / pyarrow read,
missing at most about one flush interval.

The writer subprocess (storage_crash_writer.py) writes v2 to HDF5 and v4 to Arrow at full
rate; each sample's timestamp is the wall-clock time it was generated and its value a
running index. So the files alone show what survived: an unbroken prefix 0, 1, 2 ...
whose last timestamp lies at most ``INTERVAL`` (+ scheduling slack) before the kill.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from daqhub.cli import inspect as daqhub_inspect

WRITER = Path(__file__).with_name("storage_crash_writer.py")
INTERVAL = 0.15
#: a flush can come late when the shared 2-core machine is busy; the loss bound is
#: INTERVAL + SLACK, still well below the 0.3-1.2 s a run lasts
SLACK = 0.45
KILLS = 12


def _start(out: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(WRITER), str(out), str(INTERVAL), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20.0)
    if not ready:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"writer did not report ready within 20 s: {proc.stderr.read()}")  # type: ignore[union-attr]
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.wait(10)
        pytest.fail(f"writer failed to start: {line!r} {proc.stderr.read()}")  # type: ignore[union-attr]
    return proc


def _kill_after(proc: subprocess.Popen[str], seconds: float) -> int:
    time.sleep(seconds)  # the random moment of the kill, not a synchronisation
    t_kill = time.time_ns()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()  # type: ignore[union-attr]
    return t_kill


def _check_prefix(what: str, ts: np.ndarray, index: np.ndarray, t_kill: int | None, *,
                  some: bool = True) -> None:
    """``some``: a flush had completed before the kill, so rows must have survived."""
    n = len(index)
    assert n > 0 or not some, f"{what}: nothing survived"
    assert np.array_equal(index, np.arange(n)), f"{what}: the rows are not an unbroken prefix"
    assert np.all(np.diff(ts) >= 0), f"{what}: timestamps out of order"
    if t_kill is None:
        return
    lag = (t_kill - int(ts[-1])) / 1e9
    assert lag <= INTERVAL + SLACK, (f"{what}: the last {lag:.3f} s before the kill were lost "
                                     f"(flush interval {INTERVAL} s)")


def _check_hdf5(path: Path, t_kill: int | None, *, some: bool = True,
                **open_kwargs: object) -> None:
    """Read as a plain h5py user would: each channel up to its documented ``rows`` count."""
    with h5py.File(path, "r", **open_kwargs) as f:  # type: ignore[arg-type]
        g = f["meter/x"]
        n = int(g.attrs["rows"])
        values = g["value"][:n]
        assert values.dtype == np.float64
        _check_prefix(f"{path}:meter/x", g["timestamp_ns"][:n], values, t_kill, some=some)
        g = f["cam/frame"]
        n = int(g.attrs["rows"])
        frames = g["value"][:n]
        assert frames.dtype == np.uint16 and frames.shape[1:] == (32, 48)
        assert np.all(frames == frames[:, :1, :1]), "every frame is uniform"
        _check_prefix(f"{path}:cam/frame", g["timestamp_ns"][:n], frames[:, 0, 0], t_kill,
                      some=some)
        g = f["cam/spec"]
        n = int(g.attrs["rows"])
        extent = g["extent"][:n]
        for j, (start, length) in enumerate(extent):
            assert length == j % 7 + 1
            assert np.all(g["value"][start:start + length] == j)
            assert np.array_equal(g["axis"][start:start + length], np.arange(length))
        _check_prefix(f"{path}:cam/spec", g["timestamp_ns"][:n], np.arange(n), t_kill,
                      some=some)


def _read_stream(path: Path) -> tuple[pa.Table, bool]:
    """Complete batches of a stream, and whether it ended in a cut batch."""
    reader = ipc.open_stream(path)
    batches = []
    truncated = False
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break
        except (OSError, pa.ArrowInvalid):
            truncated = True
            break
    return pa.Table.from_batches(batches, schema=reader.schema), truncated


def _message_ends(data: bytes) -> list[int]:
    """Where each whole message of an Arrow IPC stream ends, in bytes."""
    source = pa.BufferReader(data)
    reader = ipc.MessageReader.open_stream(source)
    ends: list[int] = []
    while True:
        try:
            reader.read_next_message()
        except (StopIteration, OSError, pa.ArrowInvalid):
            return ends
        ends.append(source.tell())


def _check_arrow(session_dir: Path, t_kill: int | None) -> None:
    table, _ = _read_stream(session_dir / "meter" / "x.arrows")
    values = table.column("value").to_numpy()
    assert values.dtype == np.float64
    _check_prefix("arrow meter/x", table.column("timestamp_ns").to_numpy(), values, t_kill)
    table, _ = _read_stream(session_dir / "cam" / "frame.arrows")
    frames = table.column("value").combine_chunks().flatten().to_numpy().reshape(-1, 32, 48)
    assert frames.dtype == np.uint16
    _check_prefix("arrow cam/frame", table.column("timestamp_ns").to_numpy(),
                  frames[:, 0, 0], t_kill)
    table, _ = _read_stream(session_dir / "cam" / "spec.arrows")
    spectra = table.column("value").to_pylist()
    assert [len(s) for s in spectra] == [j % 7 + 1 for j in range(len(spectra))]
    assert all(set(s) == {j} for j, s in enumerate(spectra))
    _check_prefix("arrow cam/spec", table.column("timestamp_ns").to_numpy(),
                  np.arange(len(spectra)), t_kill)


def _inspect_json(path: Path) -> tuple[int, dict[str, object]]:
    buf = StringIO()
    with redirect_stdout(buf):
        rc = daqhub_inspect.main([str(path), "--json"])
    return rc, json.loads(buf.getvalue())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_killed_writer_leaves_readable_files_missing_at_most_a_flush_interval(
        tmp_path: Path) -> None:
    seed = int(os.environ.get("DAQHUB_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    for run in range(KILLS):
        out = tmp_path / f"run{run}"
        proc = _start(out)
        seconds = rng.uniform(0.3, 1.2)
        t_kill = _kill_after(proc, seconds)
        context = f"run {run}, killed after {seconds:.2f} s (DAQHUB_CRASH_SEED={seed})"
        [v2_dir] = (out / "v2").iterdir()
        [v4_dir] = (out / "v4").iterdir()
        try:
            _check_hdf5(v2_dir / "session.h5", t_kill)  # plain h5py, no special flags
            _check_arrow(v4_dir, t_kill)
        except AssertionError as exc:
            raise AssertionError(f"{context}: {exc}") from exc
        rc, summary = _inspect_json(out)
        assert rc == 0, context
        files = [f for s in summary["sessions"] for f in s["files"]]  # type: ignore[attr-defined]
        assert len(files) == 4 and {f["status"] for f in files} == {"recovered"}, context


def _strace_works() -> bool:
    """strace can trace a child here (it is installed, and ptrace is allowed)."""
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-qq", "-o", os.devnull, "true"], capture_output=True,
                          timeout=30).returncode == 0


#: Kill points. The "ready" flush is over after 20 to 50 pwrite64 calls (more on a busy
#: machine, where flushes on the clock come first). Before the 128th, the meter's datasets
#: cannot hold more than 64 chunks (one pwrite each), so no chunk index node has split yet:
#: what a kill during a split does is the documented residual risk (see the hdf5 plugin's
#: docstring), which these points stay clear of.
WRITE_POINTS = range(30, 128)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_writer_killed_at_an_exact_write_leaves_its_counted_rows_intact(
        tmp_path: Path) -> None:
    """Random kills rarely land inside a flush, which lasts ~0.1 ms; strace kills the writer
    just before its N-th pwrite, and about half of its writes are a flush's."""
    if not _strace_works():  # asked here, not at collection: every run collects this module
        pytest.skip("needs strace, allowed to trace (ptrace)")
    seed = int(os.environ.get("DAQHUB_CRASH_SEED", time.time_ns() % 1_000_000))
    points = sorted(random.Random(seed).sample(WRITE_POINTS, 8))
    for n in points:
        out = tmp_path / f"at{n}"
        proc = subprocess.run(
            ["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=pwrite64",
             "-e", f"inject=pwrite64:signal=KILL:when={n}",
             sys.executable, str(WRITER), str(out), str(INTERVAL)],
            capture_output=True, text=True, timeout=60)
        context = f"killed before pwrite {n} (DAQHUB_CRASH_SEED={seed})"
        assert proc.returncode == -signal.SIGKILL, (context, proc.returncode, proc.stdout,
                                                    proc.stderr[-2000:])
        ready = proc.stdout.startswith("ready")  # its first flush was over
        [v2_dir] = (out / "v2").iterdir()
        [v4_dir] = (out / "v4").iterdir()
        try:
            _check_hdf5(v2_dir / "session.h5", None, some=ready)
            if ready:
                _check_arrow(v4_dir, None)
        except (AssertionError, OSError) as exc:
            raise AssertionError(f"{context}: {type(exc).__name__}: {exc}") from exc


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_killed_swmr_writer_needs_swmr_readers_and_inspect_knows(tmp_path: Path) -> None:
    for run, seconds in enumerate((0.4, 0.9)):
        out = tmp_path / f"run{run}"
        t_kill = _kill_after(_start(out, "--swmr"), seconds)
        [v2_dir] = (out / "v2").iterdir()
        h5 = v2_dir / "session.h5"
        with pytest.raises(OSError, match="already open for write"):
            h5py.File(h5, "r")  # documented: a killed SWMR file needs swmr=True
        _check_hdf5(h5, t_kill, swmr=True)
        rc, summary = _inspect_json(h5)
        assert rc == 0
        [f] = summary["sessions"][0]["files"]  # type: ignore[index]
        assert f["status"] == "recovered"
        assert any("swmr=True" in n for n in f["notes"])
        assert {c["channel"]: c["rows"] > 0 for c in f["channels"]} == {
            "x": True, "frame": True, "spec": True}


@pytest.mark.timeout(30)
def test_truncated_arrow_stream_reads_up_to_the_cut_and_inspect_says_so(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _kill_after(_start(out), 0.3)
    [v4_dir] = (out / "v4").iterdir()
    stream = v4_dir / "meter" / "x.arrows"
    intact, _ = _read_stream(stream)
    # cut the file in the middle of its last whole batch, as a kill during a write would (the
    # kill may itself have cut one: what follows the last whole batch is not a batch to cut)
    data = stream.read_bytes()
    stream.write_bytes(data[:_message_ends(data)[-1] - 100])
    table, truncated = _read_stream(stream)
    assert truncated and 0 < table.num_rows < intact.num_rows
    assert intact.slice(0, table.num_rows).equals(table)
    _check_prefix("cut stream", table.column("timestamp_ns").to_numpy(),
                  table.column("value").to_numpy(), None)
    rc, summary = _inspect_json(stream)
    assert rc == 0
    [f] = summary["sessions"][0]["files"]  # type: ignore[index]
    assert f["status"] == "recovered" and any("truncated" in n for n in f["notes"])
    assert f["channels"][0]["rows"] == table.num_rows
