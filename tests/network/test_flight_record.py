"""daqhub record through a link that breaks: it resumes, fills what it missed from the run's
files, and reports as gaps only the rows it could get from neither; a run that ended while the
link was down is finished from its files, or the copy is reported incomplete; a link that
freezes ends the attempt's streams, the followed record files' too."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flight_lab import lab_text, served_run
from polling import wait_until
from tcp_proxy import TcpProxy
from test_lab_across_machines import assert_same_but_gaps, assert_same_session

import daqhub
from daqhub.flight_record import Recorder, report

pytestmark = pytest.mark.timeout(90)


class FilesUnreadable(Recorder):
    """A recorder that gets nothing from the run's files (as if nothing had been stored yet),
    so whatever the live stream missed stays missing."""

    def _fill(self, stored: Any, key: str, upto: int | None = None) -> None:
        return None


def rows_of(rt: Any) -> int:
    return sum(sum(ch.values()) for ch in rt.counts().values())


def channel_rows(rt: Any) -> dict[str, int]:
    """``INSTRUMENT/CHANNEL`` -> rows the run has produced (the recorder's keys)."""
    return {f"{i}/{c}": n for i, chans in rt.counts().items() for c, n in chans.items()}


@pytest.mark.parametrize("recorder", [Recorder, FilesUnreadable])
def test_a_broken_link_is_resumed_and_only_unrecoverable_rows_are_gaps(
        recorder: type[Recorder], tmp_path: Path, daqhub_host: Any,
        visa_sim_backend: Callable[..., str], sim_url: Callable[..., str]) -> None:
    text = lab_text(tmp_path / "local", visa_sim_backend(), sim_url("esp300"), poll_hz=40)
    with served_run(text, daqhub_host, tmp_path) as (rt, service):
        proxy = TcpProxy(("127.0.0.1", service.port))
        out = io.StringIO()
        rec = recorder(daqhub.connect(f"grpc://127.0.0.1:{proxy.port}", timeout=5),
                       tmp_path / "copy", daqhub_host, out)
        thread = threading.Thread(target=rec.run, daemon=True)
        thread.start()
        wait_until(lambda: "copying session" in out.getvalue(), "the recorder started",
                   timeout=30)
        wait_until(lambda: rec.rows_copied > 20, "rows copied", timeout=30)
        proxy.cut()  # the link breaks; the run goes on and the recorder reconnects
        before = rows_of(rt)
        wait_until(lambda: rows_of(rt) > before + 40, "the run goes on", timeout=30)
        wait_until(lambda: "link back" in out.getvalue(), "the recorder resumed", timeout=30)
        resumed_at = rows_of(rt)
        wait_until(lambda: rows_of(rt) > resumed_at + 20, "the run goes on after", timeout=30)
        rt.shutdown()
        service.stop()
        thread.join(30)
        assert not thread.is_alive()
        proxy.close()
    result = rec.result
    sid = rt.session_id
    assert result.links_lost >= 1 and result.session_id == sid
    if recorder is Recorder:
        assert result.gaps == [] and result.exit_code == 0, out.getvalue()
        assert_same_session(tmp_path / "local", tmp_path / "copy")
    else:
        assert result.gaps and result.exit_code == 1
        for gap in result.gaps:
            assert f"gap: {gap}" in out.getvalue()
        assert_same_but_gaps(tmp_path / "local", tmp_path / "copy", sid,
                             [(g.channel, g.first_row, g.rows) for g in result.gaps])
    counts = rt.counts()
    assert result.rows == {f"{i}/{c}": n - sum(g.rows for g in result.gaps
                                               if g.channel == f"{i}/{c}")
                           for i, chans in counts.items() for c, n in chans.items()}


@pytest.mark.parametrize("files", ["offered", "elsewhere", "unreadable"])
def test_a_run_that_ended_while_the_link_was_down_is_finished_from_its_files(
        files: str, tmp_path: Path, daqhub_host: Any,
        visa_sim_backend: Callable[..., str], sim_url: Callable[..., str]) -> None:
    """The link drops while the run goes on; the run ends and the lab is started again on the
    same address. The new run's service offers the ended session's files when it stores into
    the same directories: the copy is finished from them (rows and the final record files).
    Stored elsewhere, the copy is reported incomplete, naming what it may lack. Offered but
    unreadable (its session.h5 cut short), likewise: the flavor was left out of the listing,
    and the copy said "copy complete", exit 0, rows missing."""
    text = lab_text(tmp_path / "local", visa_sim_backend(), sim_url("esp300"), poll_hz=40)
    out = io.StringIO()
    with served_run(text, daqhub_host, tmp_path) as (rt, service):
        proxy = TcpProxy(("127.0.0.1", service.port))
        rec = Recorder(daqhub.connect(f"grpc://127.0.0.1:{proxy.port}", timeout=5),
                       tmp_path / "copy", daqhub_host, out)
        thread = threading.Thread(target=rec.run, daemon=True)
        thread.start()
        wait_until(lambda: rec.rows_copied > 20, "rows copied", timeout=30)
        proxy.hold()  # down until the lab runs again
        before = channel_rows(rt)
        wait_until(lambda: all(n > before[k] + 10 for k, n in channel_rows(rt).items()),
                   "every channel goes on", timeout=30)
    sid, counts = rt.session_id, channel_rows(rt)
    cut = Path(rt.lab.flavors["v2"].output_dir) / sid / "session.h5"
    if files == "unreadable":
        cut.write_bytes(cut.read_bytes()[:100])  # a truncated copy
    again = text if files != "elsewhere" else lab_text(tmp_path / "elsewhere",
                                                       visa_sim_backend(), sim_url("esp300"),
                                                       poll_hz=40)
    with served_run(again, daqhub_host, tmp_path) as (rt2, service2):
        assert rt2.session_id != sid
        proxy.release(("127.0.0.1", service2.port))  # the link is back, to the new run
        thread.join(60)
        assert not thread.is_alive(), out.getvalue()
    proxy.close()
    report(rec.result, out)
    said = out.getvalue()
    assert f"session {sid} has ended" in said
    if files == "offered":
        assert rec.result.exit_code == 0 and "copy complete" in said, said
        assert rec.result.rows == counts
        assert_same_session(tmp_path / "local", tmp_path / "copy", sid)  # budget.json too
    elif files == "elsewhere":
        assert rec.result.exit_code == 1 and "copy INCOMPLETE" in said, said
        for key, n in rec.result.rows.items():
            assert n < counts[key] and f"{key} from row {n}" in said, said
        assert "the record files of v2, the record files of v4" in said, said
    else:  # the v4 rows are finished; the stage's (v2) are said to be lacking, and why
        assert rec.result.exit_code == 1 and "copy INCOMPLETE" in said, said
        assert rec.result.rows["dmm/voltage"] == counts["dmm/voltage"]
        n = rec.result.rows["stage/position"]
        assert n < counts["stage/position"] and f"stage/position from row {n}" in said, said
        assert f"the service cannot read its v2 files (cannot read {cut}: " in said, said
        assert "the record files of" not in said, said


def test_a_host_that_stops_answering_is_a_lost_link_given_up_on_in_time(
        tmp_path: Path, daqhub_host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frozen host does not close the connection: the recorder's reconnect then found a
    call unanswered (TimeoutError), and ``daqhub record`` failed with "command 'record'
    failed: TimeoutError" instead of retrying until its ``--give-up``."""
    out = io.StringIO()
    rec = Recorder(daqhub.connect("grpc://127.0.0.1:9", timeout=0.5), tmp_path / "copy",
                   daqhub_host, out, give_up_s=0.2)

    def unanswered(stop: threading.Event) -> bool:
        raise TimeoutError("the manifest: no answer from grpc://127.0.0.1:9 within 0.5 s")
    monkeypatch.setattr(rec, "_copy_once", unanswered)
    result = rec.run()
    assert result.links_lost == 1
    assert result.error.startswith("the service did not come back within")
    assert "link lost (the manifest: no answer" in out.getvalue()


def followers() -> list[str]:
    """The recorder's threads following record files (one per flavor while it copies)."""
    return sorted(t.name for t in threading.enumerate()
                  if t.name.startswith("daqhub-record-records:"))


def test_a_link_that_freezes_ends_the_attempt_s_record_file_streams(
        tmp_path: Path, daqhub_host: Any, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str]) -> None:
    """The watchdog ended a frozen host's live streams, but the followers of the record
    files kept theirs: each reconnect added one more per flavor, writing the same files."""
    text = lab_text(tmp_path / "local", visa_sim_backend(), sim_url("esp300"), poll_hz=20)
    each = ["daqhub-record-records:v2", "daqhub-record-records:v4"]
    with served_run(text, daqhub_host, tmp_path) as (rt, service):
        proxy = TcpProxy(("127.0.0.1", service.port))
        out = io.StringIO()
        rec = Recorder(daqhub.connect(f"grpc://127.0.0.1:{proxy.port}", timeout=2,
                                      silence_limit=1), tmp_path / "copy", daqhub_host, out)
        stop = threading.Event()
        thread = threading.Thread(target=rec.run, args=(stop,), daemon=True)
        thread.start()
        wait_until(lambda: rec.rows_copied > 20 and followers() == each, "copying", timeout=30)
        proxy.freeze()  # the host stops answering; the connection stays open
        wait_until(lambda: "link lost" in out.getvalue(), "the link lost", timeout=30)
        assert followers() == [], out.getvalue()  # the attempt ended with its streams
        proxy.thaw()
        wait_until(lambda: "link back" in out.getvalue(), "the link back", timeout=30)
        copied = rec.rows_copied
        wait_until(lambda: rec.rows_copied > copied + 20, "copying again", timeout=30)
        assert followers() == each, out.getvalue()
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        proxy.close()
    assert followers() == []
