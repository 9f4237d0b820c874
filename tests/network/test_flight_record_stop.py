"""``daqhub record`` stopped (Ctrl-C, SIGTERM) before the service said the session ended: the
copy it made stays, closed and readable, and it is reported incomplete, exit 130. It said
"copy complete" and exited 0 whatever it had copied: half the rows and no ``budget.json``
while the run went on, or whatever it had when the link was down. Stopped after the session
ended and was copied, the copy is complete (exit 0)."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flight_lab import lab_text, served_run
from polling import wait_until
from tcp_proxy import TcpProxy
from test_lab_across_machines import assert_same_session

import daqhub
from daqhub import session_files
from daqhub.flight_client import Subscription
from daqhub.flight_record import Recorder, RecordResult, report

pytestmark = pytest.mark.timeout(60)
STOPPED = 130  # `daqhub --help`: "130 interrupted"


def copied_rows(copy: Path, sid: str) -> dict[str, int]:
    """``INSTRUMENT/CHANNEL`` -> rows in the copy's files, read as any session is read."""
    rows = {}
    for flavor in ("v2", "v4"):
        for c in session_files.channels(flavor, copy / flavor / sid):
            rows[f"{c.instrument_id}/{c.spec.name}"] = sum(
                b.num_rows for b in session_files.read(c))
    return rows


def recording(rec: Recorder, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=rec.run, args=(stop,), daemon=True)
    thread.start()
    return thread


def said(result: RecordResult, out: io.StringIO) -> str:
    report(result, out)
    return out.getvalue()


def test_stopped_while_the_run_goes_on_the_copy_so_far_is_kept_and_called_incomplete(
        tmp_path: Path, daqhub_host: Any, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str]) -> None:
    text = lab_text(tmp_path / "local", visa_sim_backend(), sim_url("esp300"), poll_hz=40)
    out, stop = io.StringIO(), threading.Event()
    with served_run(text, daqhub_host, tmp_path) as (rt, service):
        rec = Recorder(daqhub.connect(service.url, timeout=5), tmp_path / "copy", daqhub_host,
                       out)
        thread = recording(rec, stop)
        wait_until(lambda: rec.rows_copied > 20, "rows copied", timeout=30)
        stop.set()  # Ctrl-C: the run goes on
        thread.join(30)
        assert not thread.is_alive()
        sid = rt.session_id
    result = rec.result
    text = said(result, out)
    assert result.exit_code == STOPPED and result.stopped, text
    assert "copy complete" not in text
    rows = sum(result.rows.values())
    assert (f"copy INCOMPLETE: stopped before session {sid} ended: {rows} row(s) of 2 "
            f"channel(s) copied, in {tmp_path / 'copy' / 'v2' / sid}, "
            f"{tmp_path / 'copy' / 'v4' / sid} (closed, readable)") in text, text
    assert "(budget.json) are not in the copy" in text
    assert copied_rows(tmp_path / "copy", sid) == result.rows  # what it says it has, readable


def test_stopped_while_every_channel_is_quiet_it_ends_at_once(
        tmp_path: Path, daqhub_host: Any, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str]) -> None:
    """It looked at its stop only when a live batch came: with every channel quiet (one poll
    a minute, instruments reconnecting), Ctrl-C did nothing until the next row."""
    text = lab_text(tmp_path / "local", visa_sim_backend(), sim_url("esp300"), poll_hz=1 / 60)
    out, stop = io.StringIO(), threading.Event()
    with served_run(text, daqhub_host, tmp_path) as (rt, service):
        rec = Recorder(daqhub.connect(service.url, timeout=5), tmp_path / "copy", daqhub_host,
                       out)
        thread = recording(rec, stop)
        wait_until(lambda: service.live_streams() == 2 and rec.rows_copied == 2,
                   "the first poll's rows copied", timeout=30)
        stop.set()
        thread.join(10)  # the next poll is a minute away
        assert not thread.is_alive(), "the recorder did not stop"
    assert rec.result.exit_code == STOPPED
    assert f"stopped before session {rt.session_id} ended" in said(rec.result, out)


def test_stopped_while_the_link_is_down_after_the_run_ended_the_copy_is_incomplete(
        tmp_path: Path, daqhub_host: Any, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str]) -> None:
    text = lab_text(tmp_path / "local", visa_sim_backend(), sim_url("esp300"), poll_hz=40)
    out, stop = io.StringIO(), threading.Event()
    with served_run(text, daqhub_host, tmp_path) as (rt, service):
        proxy = TcpProxy(("127.0.0.1", service.port))
        rec = Recorder(daqhub.connect(f"grpc://127.0.0.1:{proxy.port}", timeout=5),
                       tmp_path / "copy", daqhub_host, out)
        thread = recording(rec, stop)
        wait_until(lambda: rec.rows_copied > 20, "rows copied", timeout=30)
        proxy.hold()  # the link goes down; the run goes on, then is stopped
        wait_until(lambda: "link lost" in out.getvalue(), "the link lost", timeout=30)
    stop.set()  # the recorder, still reconnecting, is stopped
    thread.join(30)
    assert not thread.is_alive()
    proxy.close()
    text = said(rec.result, out)
    assert rec.result.exit_code == STOPPED, text
    assert f"copy INCOMPLETE: stopped before session {rt.session_id} ended" in text, text
    assert copied_rows(tmp_path / "copy", rt.session_id) == rec.result.rows


def test_stopped_after_the_session_ended_the_copy_is_complete(
        tmp_path: Path, daqhub_host: Any, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The stop comes the moment the live streams say the run ended: no false alarm."""
    text = lab_text(tmp_path / "local", visa_sim_backend(), sim_url("esp300"), poll_hz=40)
    out, stop = io.StringIO(), threading.Event()
    get = Subscription.get

    def ended_then_stopped(self: Subscription, timeout: float | None = None) -> Any:
        try:
            return get(self, timeout)
        except StopIteration:
            stop.set()
            raise

    monkeypatch.setattr(Subscription, "get", ended_then_stopped)
    with served_run(text, daqhub_host, tmp_path) as (rt, service):
        rec = Recorder(daqhub.connect(service.url, timeout=5), tmp_path / "copy", daqhub_host,
                       out)
        thread = recording(rec, stop)
        wait_until(lambda: rec.rows_copied > 20, "rows copied", timeout=30)
    thread.join(30)
    assert not thread.is_alive() and stop.is_set()
    text = said(rec.result, out)
    assert rec.result.exit_code == 0 and text.endswith("copy complete\n"), text
    assert_same_session(tmp_path / "local", tmp_path / "copy", rt.session_id)  # budget.json too


def test_daqhub_record_interrupted_exits_130_saying_the_copy_is_incomplete(
        tmp_path: Path, daqhub_host: Any, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str]) -> None:
    text = lab_text(tmp_path / "local", visa_sim_backend(), sim_url("esp300"), poll_hz=40)
    with served_run(text, daqhub_host, tmp_path) as (rt, service):
        err = tmp_path / "record.err"
        with err.open("w") as to_err:
            rec = subprocess.Popen([sys.executable, "-m", "daqhub", "record", service.url,
                                    "--output-dir", str(tmp_path / "copy")],
                                   stdout=subprocess.PIPE, stderr=to_err, text=True)
        try:
            assert rec.stdout is not None
            first = rec.stdout.readline()  # its handlers are in place: Ctrl-C is its stop
            assert "copying session" in first, first + err.read_text()
            wait_until(lambda: service.live_streams() == 2, "the recorder's live streams",
                       timeout=30)
            rec.send_signal(signal.SIGINT)
            stdout = rec.communicate(timeout=30)[0]
        finally:
            rec.kill()
            rec.wait()
    assert rec.returncode == STOPPED, stdout + err.read_text()
    assert f"copy INCOMPLETE: stopped before session {rt.session_id} ended" in stdout, stdout
