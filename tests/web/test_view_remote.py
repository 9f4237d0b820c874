"""`daqhub view URL`: the dashboard of a run in another process, fed by its data service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_chromium
from pixels import colour_pixels
from test_dashboard_browser import DEMO, LINE, look_at, wait_for_line

pytest.importorskip("daqhub.flight_client", reason="the live data service client (issue 16)")


def daqhub(*args: str, out: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        return subprocess.Popen([sys.executable, "-m", "daqhub", *args], stdout=sink,
                                stderr=subprocess.STDOUT, cwd=cwd,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}api/state", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def wait_state(url: str, cond: Any, what: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        s = state(url)
        if cond(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {s}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


@needs_chromium
@pytest.mark.timeout(300)
def test_view_shows_a_run_served_by_another_process(tmp_path: Path) -> None:
    run_out, view_out = tmp_path / "run.txt", tmp_path / "view.txt"
    run = daqhub("run", "--plain", "--interval", "1", "--serve", "127.0.0.1:0",
                 "--output-dir", str(tmp_path / "data"), out=run_out, cwd=tmp_path)
    view = None
    try:
        service = wait_for_line(run_out, r"live data -> (grpc\S*://\S+)", run, 60).group(1)
        view = daqhub("view", service, "--web", "127.0.0.1:0", out=view_out, cwd=tmp_path)
        url = wait_for_line(view_out, r"-> (http://127\.0\.0\.1:\d+/)", view, 60).group(1)
        first = wait_state(url, lambda s: all(r["state"] == "receiving" and r["rate_hz"] > 0
                                              for r in s["instruments"]),
                           "data from every instrument")
        assert {r["id"]: r["flavor"] for r in first["instruments"]} == DEMO
        assert {r["id"]: r["type"] for r in first["instruments"]}["dmm"] == "scpi.dmm"
        assert {r["id"]: r["requested_hz"] for r in first["instruments"]}["stage"] == 10
        assert all(r["errors"] is None for r in first["instruments"])  # no health action
        assert {c["key"] for c in first["channels"]} >= {"stage/position", "psu/current"}
        wait_state(url, lambda s: any(f["name"] == "v2: stage/position" and f["rows"] > 0
                                      for f in s["files"]), "the session's stored channels")
        seen = asyncio.run(look_at(url, tmp_path))
        assert seen["first"] != seen["moved"]
        drawn = {k: colour_pixels(Path(str(seen["shot"])), r, LINE)
                 for k, r in dict(seen["rects"]).items()}  # type: ignore[call-overload]
        assert len(drawn) >= 4 and all(n >= 40 for n in drawn.values()), drawn
        assert stop(run) == 0, run_out.read_text()
        ended = wait_state(url, lambda s: "the run ended" in s["title"], "the end of the run")
        assert all(r["state"] == "ended" for r in ended["instruments"])
    finally:
        stop(run)
        if view is not None:
            assert stop(view) == 0, view_out.read_text()
