"""The dashboard as a lab sees it: `daqhub run --web` on the demo lab, in a real Chromium."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from chromium import Chromium
from conftest import needs_chromium
from pixels import colour_pixels, distinct_colours
from webtest import DEMO, LINE, dashboard, look_at, value_of, wait_for_line


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
    from daqhub.web.settings import WebSettings

    with dashboard(tmp_path, WebSettings(port=0)) as (_, server):
        seen = asyncio.run(look_at_kinds(server.url, tmp_path))
    rects, shot = seen["rects"], Path(str(seen["shot"]))
    assert isinstance(rects, dict)
    assert colour_pixels(shot, rects["scope0/trace"], (214, 39, 40)) >= 40  # the red trace
    assert colour_pixels(shot, rects["scope0/level"], LINE) >= 40
    assert distinct_colours(shot, rects["scope0/frame"]) >= 20  # a heatmap, not a blank card
    assert str(seen["frame"]).startswith("24x32")
