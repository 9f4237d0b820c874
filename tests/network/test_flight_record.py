"""daqhub record through a link that breaks: it resumes, fills what it missed from the run's
files, and reports as gaps only the rows it could get from neither."""

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
from daqhub.flight_record import Recorder

pytestmark = pytest.mark.timeout(90)


class FilesUnreadable(Recorder):
    """A recorder that gets nothing from the run's files (as if nothing had been stored yet),
    so whatever the live stream missed stays missing."""

    def _fill(self, stored: Any, key: str, upto: int | None = None) -> None:
        return None


def rows_of(rt: Any) -> int:
    return sum(sum(ch.values()) for ch in rt.counts().values())


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
