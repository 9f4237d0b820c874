"""The data service stops after its run within what the run's shutdown left of
``shutdown_timeout`` (at least ``STOP_MIN_S``), and its stop is in the report's "took".

With a client that stopped reading, ``daqhub run`` gave the service 5 s of its own after the
runtime had used the whole budget: shutdown_timeout = 15, the report 19 s after SIGTERM saying
"took 14.07 s", then "the data service did not stop within 5 s". ``Lab.close`` the same,
without a word.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flight_lab import lab_text
from polling import wait_until
from tcp_proxy import TcpProxy

import daqhub
from daqhub import flight_service
from daqhub.cli import main as cli_main
from daqhub.runtime.dual import SERVICE_STOP_MIN_S as STOP_MIN_S

pytestmark = pytest.mark.timeout(60)
#: rows of a 1 kHz DMM after which a client that reads nothing holds the service's stream
#: (gRPC's window and buffers between them are full)
BEHIND = 1500
HELD = ("a client stopped reading; live streams open as it stopped: to 127.0.0.1: "
        "dmm/voltage{}")


def fast_lab(tmp_path: Path, visa_backend: str, esp_url: str, port: int,
             shutdown_timeout: float) -> str:
    """A DMM at 1 kHz, served on ``port``."""
    text = lab_text(tmp_path / "data", visa_backend, esp_url, poll_hz=1000, stage_hz=20,
                    extra=f'[daqhub.serve]\naddress = "127.0.0.1:{port}"\n')
    return text.replace("[daqhub]\n", f"[daqhub]\nshutdown_timeout = {shutdown_timeout}\n", 1)


@contextmanager
def frozen_client(port: int) -> Iterator[None]:
    """A client subscribed to dmm/voltage whose process froze (SIGSTOP: its connection open,
    nothing read from it any more); here its link freezes, the same to the service."""
    proxy = TcpProxy(("127.0.0.1", port))
    try:
        with daqhub.connect(f"grpc://127.0.0.1:{proxy.port}") as conn, \
                conn.subscribe("dmm/voltage") as live:
            assert live.get(timeout=30) is not None  # it reads, then freezes
            proxy.freeze()
            yield
            proxy.thaw()
    finally:
        proxy.close()


def test_lab_close_stops_its_service_within_the_budget_and_says_so(
        tmp_path: Path, daqhub_host: Any, visa_sim_backend: Callable[..., str],
        sim_url: Callable[..., str]) -> None:
    """The runtime's shutdown uses the whole budget: the service gets the floor."""
    text = fast_lab(tmp_path, visa_sim_backend(), sim_url("esp300"), 0, STOP_MIN_S)
    said = io.StringIO()
    lab = daqhub.open_lab(text, host=daqhub_host, report=said)
    try:
        assert lab.service is not None

        def rows() -> int:
            return lab.rt.counts().get("dmm", {}).get("voltage", 0)
        with frozen_client(lab.service.port):
            start = rows()
            wait_until(lambda: rows() > start + BEHIND, "the client behind", timeout=30)
            report = lab.close()
    finally:
        lab.close()
    text = said.getvalue()
    assert (f"daqhub: the data service did not stop within {STOP_MIN_S:.1f} s (the rest of "
            f"shutdown_timeout = {STOP_MIN_S:g} s, at least {STOP_MIN_S:g} s): "
            f"{HELD.format('')}; this process's exit waits for that client to read again or "
            "its connection to end") in text, text
    assert report.duration_s >= STOP_MIN_S  # the service's wait is in it
    assert f"took {report.duration_s:.2f} s" in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_daqhub_run_s_report_counts_the_service_s_stop_in_the_budget(
        tmp_path: Path, visa_sim_backend: Callable[..., str], sim_url: Callable[..., str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM with a frozen client: the service gets the rest of shutdown_timeout."""
    port = free_port()
    lab_file = tmp_path / "lab.toml"
    lab_file.write_text(fast_lab(tmp_path, visa_sim_backend(), sim_url("esp300"), port, 1.5))
    url = f"grpc://127.0.0.1:{port}"
    done = threading.Event()

    def running() -> bool:
        try:
            with daqhub.connect(url, timeout=1) as conn, conn.subscribe("dmm/voltage"):
                return True
        except Exception:  # not listening, or the run not started yet
            return False

    def client() -> None:
        """Freezes once the run runs; SIGTERM when it is behind; frozen until the end."""
        sent = False
        try:
            wait_until(running, "the run running", timeout=30, every=0.05)
            with frozen_client(port):
                with daqhub.connect(url) as conn, conn.subscribe("dmm/voltage") as live:
                    first = live.get(timeout=30)
                    assert first is not None
                    while (item := live.get(timeout=30)) is not None and \
                            item.first_row < first.first_row + BEHIND:
                        continue
                os.kill(os.getpid(), signal.SIGTERM)
                sent = True
                done.wait(30)
        finally:  # the run ends whatever happened here (the test then fails, not hangs)
            if not sent:
                os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        code = cli_main(["run", str(lab_file), "--plain"])
        # what the daqhub command's process then ends on, not waiting for the client (pyarrow's
        # exit would wait for it to read again: for ever, if it never does)
        assert flight_service.held_open()
    finally:
        done.set()
        thread.join(10)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    said = re.search(r"daqhub: the data service did not stop within ([\d.]+) s \(the rest of "
                     r"shutdown_timeout = 1.5 s, at least 0.5 s\): "
                     # the counting stream may not have ended yet: it was just closed
                     + re.escape(HELD).replace(r"\{\}", r"(?: \(2\))?")
                     + re.escape("; daqhub ends without waiting for it"), err)
    assert said, err
    limit = float(said.group(1))
    assert STOP_MIN_S <= limit < 1.5
    took = re.search(r"took ([\d.]+) s", out)
    assert took and float(took.group(1)) >= limit, out  # the service's wait is in "took"


def test_the_daqhub_process_ends_while_a_frozen_client_holds_its_service(
        tmp_path: Path, visa_sim_backend: Callable[..., str], sim_url: Callable[..., str]) -> None:
    """pyarrow shuts every server down at the process's exit and waits for a client that
    stopped reading: the report came, then ``daqhub run`` waited until that client read
    again (for ever if it never did)."""
    port = free_port()
    lab_file = tmp_path / "lab.toml"
    lab_file.write_text(fast_lab(tmp_path, visa_sim_backend(), sim_url("esp300"), port, 1.0))
    run = subprocess.Popen([sys.executable, "-m", "daqhub", "run", str(lab_file), "--plain",
                            "--duration", "3"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: _serving(port), "the run serving", timeout=30, every=0.05)
        with frozen_client(port):
            out, _ = run.communicate(timeout=40)  # while the client stays frozen
    finally:
        run.kill()
    assert run.returncode == 0, out[-2000:]
    assert "daqhub ends without waiting for it" in out, out[-2000:]
    assert "stopped cleanly: " in out


def _serving(port: int) -> bool:
    try:
        with daqhub.connect(f"grpc://127.0.0.1:{port}", timeout=1) as conn, \
                conn.subscribe("dmm/voltage"):
            return True
    except Exception:  # not listening, or the run not started yet
        return False
