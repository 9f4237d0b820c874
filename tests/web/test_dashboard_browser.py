"""The dashboard as a lab sees it: `daqhub run --web` on the demo lab, in a real Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chromium import Chromium
from conftest import needs_chromium
from pixels import colour_pixels, distinct_colours

DEMO = {"stage": "v2", "power": "v2", "rotator": "v2", "slider": "v4", "dmm": "v4", "psu": "v4"}
LINE = (31, 119, 180)  # the scalar plots' line colour in app.js


def wait_for_line(path: Path, pattern: str, proc: subprocess.Popen[bytes],
                  timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text())
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in the output within {timeout} s:\n"
                         + path.read_text())


def value_of(key: str) -> str:
    return f"document.querySelector('[data-key=\"{key}\"] .v')?.textContent"


async def look_at(url: str, tmp_path: Path) -> dict[str, object]:
    async with Chromium(url, tmp_path / "profile") as page:
        await page.wait_for("document.querySelectorAll('#instruments tbody tr').length === 6",
                            60, "the six demo instruments in the table")
        rows = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#instruments tbody tr')].map("
            "r => [r.dataset.instrument, Object.fromEntries([...r.querySelectorAll('td')]"
            ".map(td => [td.dataset.col, td.textContent]))]))")
        first = await page.wait_for(f"{value_of('stage/position')} !== '-' && "
                                    f"{value_of('stage/position')}", 60, "a stage position")
        moved = await page.wait_for(
            f"{value_of('stage/position')} !== {json.dumps(first)} && "
            f"{value_of('stage/position')}", 60, "the stage position to change on the page")
        await page.wait_for("[...document.querySelectorAll('.card[data-kind=scalar]')]"
                            ".filter(c => c.querySelector('path.js-line')).length >= 6", 60,
                            "a drawn line in every scalar plot on screen")
        await page.wait_for(f"{value_of('stage/position')} !== {json.dumps(moved)}", 60,
                            "another stage position (so the plot holds a move)")
        rects = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('.card[data-kind=scalar]')]"
            ".map(c => [c.dataset.key, c.getBoundingClientRect().toJSON()])"
            ".filter(([k, r]) => r.bottom <= innerHeight && r.right <= innerWidth))")
        rows_after = await page.evaluate(
            "[...document.querySelectorAll('#instruments tbody tr')].map("
            "r => r.querySelector('[data-col=state]').textContent)")
        shot = await page.screenshot(tmp_path / "dashboard.png")
    return {"rows": rows, "first": first, "moved": moved, "rects": rects, "shot": shot,
            "states": rows_after}


@needs_chromium
@pytest.mark.timeout(240)
def test_demo_lab_dashboard_updates_live_in_chromium(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daqhub", "run", "--plain", "--interval", "1",
             "--web", "127.0.0.1:0", "--output-dir", str(tmp_path / "data")],
            stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = wait_for_line(out, r"dashboard -> (http://127\.0\.0\.1:\d+/) \(read-only\)",
                            proc, 60).group(1)
        seen = asyncio.run(look_at(url, tmp_path))
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, out.read_text()
    rows = seen["rows"]
    assert isinstance(rows, dict) and {i: r["flavor"] for i, r in rows.items()} == DEMO
    assert rows["stage"]["type"] == "newport.esp300"
    assert rows["stage"]["rate"].endswith("/ 10 Hz")
    assert seen["states"] == ["running"] * 6
    assert seen["first"] != seen["moved"] and str(seen["moved"]).endswith(" mm")
    rects = seen["rects"]
    assert isinstance(rects, dict) and len(rects) >= 4, rects
    drawn = {key: colour_pixels(Path(str(seen["shot"])), r, LINE) for key, r in rects.items()}
    assert all(n >= 40 for n in drawn.values()), f"plots without a line: {drawn}"


async def look_at_kinds(url: str, tmp_path: Path) -> dict[str, object]:
    async with Chromium(url, tmp_path / "profile", width=1400, height=1400) as page:
        await page.wait_for("['scalar', 'spectrum', 'image'].every(k => document.querySelector("
                            "`.card[data-kind=${k}] .main-svg`))", 60,
                            "a drawn plot of every kind")
        frame = await page.wait_for(f"{value_of('scope0/frame')} !== '-' && "
                                    f"{value_of('scope0/frame')}", 30, "the frame's range")
        rects = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('.card')]"
            ".map(c => [c.dataset.key, c.getBoundingClientRect().toJSON()]))")
        shot = await page.screenshot(tmp_path / "kinds.png")
    return {"rects": rects, "shot": shot, "frame": frame}


@needs_chromium
@pytest.mark.timeout(120)
def test_spectra_show_their_latest_trace_and_images_their_latest_frame(tmp_path: Path) -> None:
    from test_dashboard_server import dashboard

    from daqhub.web.settings import WebSettings

    with dashboard(tmp_path, WebSettings(port=0)) as (_, server):
        seen = asyncio.run(look_at_kinds(server.url, tmp_path))
    rects, shot = seen["rects"], Path(str(seen["shot"]))
    assert isinstance(rects, dict)
    assert colour_pixels(shot, rects["scope0/trace"], (214, 39, 40)) >= 40  # the red trace
    assert colour_pixels(shot, rects["scope0/level"], LINE) >= 40
    assert distinct_colours(shot, rects["scope0/frame"]) >= 20  # a heatmap, not a blank card
    assert str(seen["frame"]).startswith("24x32")
