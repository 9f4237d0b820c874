"""A third-party storage backend that hangs or misbehaves costs its own flavor's data only,
is named with its flavor, name and distribution, and its instruments are not called clean.

The backend here is a plugin ("faulty-store 0.2") wrapping daqhub's hdf5 writer for v2; v4
stores to daqhub's arrow backend beside it.
"""

from __future__ import annotations

import threading
import types
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until
from runtime_fakes import PRODUCED, make_lab

import daqhub.plugins.hdf5 as hdf5_plugin
import daqhub.runtime.dual as dual
from daqhub import read_session
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.runtime.dual import DualRuntimeManager, PhaseTimeouts
from daqhub.specs import StorageBackend, StorageTarget

LABEL = "v2 storage backend faulty (faulty-store 0.2)"


class Faulty:
    """daqhub's hdf5 writer, with the fault a test asks for."""

    def __init__(self, target: StorageTarget, fault: str, release: threading.Event) -> None:
        [hdf5] = [b for b in hdf5_plugin.daqhub_storage_backends() if b.name == "hdf5"]
        self.inner = hdf5.open(target)
        self.fault = fault
        self.release = release

    def write(self, batch: Any) -> None:
        if self.fault == "write_hangs":
            self.release.wait(60)  # a network share that stopped answering
        self.inner.write(batch)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> Any:
        files = self.inner.close()
        if self.fault == "close_raises":
            raise RuntimeError("the share went away")
        return {"close_returns_str": "/some/file.h5", "close_returns_none": None}.get(
            self.fault, files)


@pytest.fixture
def release() -> Any:
    event = threading.Event()
    yield event
    event.set()  # lets a hung write go once the test is done


def faulty_lab(host: PluginHost, tmp_path: Path, fault: str, release: threading.Event) -> Any:
    backend = StorageBackend("faulty", lambda target: Faulty(target, fault, release),
                             "hdf5 with a fault")
    host.register(types.SimpleNamespace(daqhub_storage_backends=hookimpl(lambda: [backend])),
                  "faulty:store", "faulty-store", "0.2")
    return make_lab(host, tmp_path, v2=[("a", "test.counter")], v4=[("c", "test.counter")],
                    extra='[v2]\nstorage = "faulty"\n[v4]\nstorage = "arrow"\n')


def stored_rows(session_dir: Path) -> dict[str, int]:
    return {k: t.num_rows for k, t in read_session(str(session_dir)).items()}


@pytest.mark.timeout(60)
def test_a_backend_hung_in_write_costs_its_own_flavor_only_and_is_named_in_time(
        host, tmp_path, release, monkeypatch) -> None:
    """One thread wrote both flavors: every channel of both ended with no rows on disk, no
    alarm came during the run, and every instrument was "stopped cleanly"."""
    monkeypatch.setattr(dual, "SINK_STUCK_S", 0.3, raising=False)  # (none before)
    lab = faulty_lab(host, tmp_path, "write_hangs", release)
    rt = DualRuntimeManager(lab, host, storage=True,
                            phases=PhaseTimeouts(v4_s=2, v2_s=2, total_s=4))
    rt.start()
    try:
        wait_until(lambda: any(LABEL in a["message"] and "write() has not returned" in
                               a["message"] for a in rt.alarms),
                   what="an alarm naming the hung backend, during the run")
        wait_until(lambda: PRODUCED.get("c", 0) >= 20, what="20 polls of c meanwhile")
    finally:
        report = rt.shutdown()
    assert not report.ok and report.duration_s < 6
    outcome = {o["id"]: o for o in report.instruments}
    assert outcome["c"]["ok"], outcome["c"]
    assert not outcome["a"]["ok"]
    assert f"not stored by {LABEL}" in outcome["a"]["problem"]
    assert outcome["a"]["not_stored"] == sum(report.counts["a"].values())
    assert any(LABEL in e and "was not closed" in e for e in report.errors), report.errors
    v4 = report.sink_results["storage"]["v4"]  # the healthy flavor's files, complete
    stored = stored_rows(rt.output_dirs()["v4"])
    assert v4 and {ch: stored[f"c.{ch}"] for ch in report.counts["c"]} == report.counts["c"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault,says", [
    ("close_returns_str", "close() returned str '/some/file.h5', not the list of the files "
                          "it wrote; its files are not listed"),
    ("close_returns_none", "close() returned NoneType None, not the list of the files it "
                           "wrote; its files are not listed"),
    ("close_raises", "closing failed: RuntimeError: the share went away")])
def test_a_backend_close_that_misbehaves_is_named_and_the_other_flavors_files_are_kept(
        host, tmp_path, release, fault, says) -> None:
    """A str was listed a character a line as session files, exit 0; None or an exception
    dropped both flavors' files from the report."""
    lab = faulty_lab(host, tmp_path, fault, release)
    rt = DualRuntimeManager(lab, host, storage=True)
    rt.start()
    try:
        wait_until(lambda: PRODUCED.get("a", 0) >= 5 and PRODUCED.get("c", 0) >= 5,
                   what="5 polls each")
    finally:
        report = rt.shutdown()
    assert not report.ok
    assert f"closing storage:v2 failed: {LABEL}: {says}" in report.errors, report.errors
    files = report.sink_results["storage"]
    assert "v2" not in files
    assert files["v4"] and all(Path(p).is_file() for p in files["v4"])
    assert {p.parent.name for p in map(Path, files["v4"])} == {"c"}


@pytest.mark.timeout(30)
def test_a_writer_the_shutdown_gave_up_on_writes_nothing_more() -> None:
    """The shutdown's wait for a lane ran out while its write() hung: the batches it held
    and those queued were counted as not written, and when that write returned the thread
    wrote them all the same, into a writer nobody closes (counted written and not)."""
    import pyarrow as pa

    from daqhub.measurement import ChannelSpec
    from daqhub.runtime.broadcast import Subscription
    from daqhub.schema import build_batch

    release = threading.Event()

    class Slow:
        def __init__(self) -> None:
            self.rows = 0

        def write(self, batch: pa.RecordBatch) -> None:
            release.wait(10)
            self.rows += batch.num_rows

        def close(self) -> list[str]:
            return []

    spec = ChannelSpec("x", "scalar", "V")
    sink, sub = Slow(), Subscription[pa.RecordBatch]("storage:v2", lossless=True, capacity=100)
    st = dual.SinkThread("storage:v2", sink, sub, lambda n, m: None)
    for i in range(5):
        sub.offer(build_batch("a", spec, [i], [1.0]), 1.0)
    st.start()
    wait_until(lambda: st.busy_since > 0, "the first write under way", timeout=10)
    assert not st.stop(0.1)  # the shutdown's wait runs out
    assert st.abandon() == (5, 5)
    release.set()
    st.thread.join(10)
    assert not st.thread.is_alive()
    assert sink.rows == 1 and st.written == 0  # the write in hand ended; nothing after it
    assert st.unstored == {"a": 5}
