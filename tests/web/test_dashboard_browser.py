"""The dashboard as a lab sees it, in a real Chromium: `daqhub run --web` on the demo lab, and
the page's own behaviour (its command box, a run ending, the next run at its address)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chromium import Chromium
from conftest import needs_chromium
from pixels import colour_pixels, distinct_colours
from web_fakes import ScriptedSource
from webtest import DEMO, LINE, dashboard, look_at, value_of, wait_for_line

from daqhub.web.server import DashboardServer
from daqhub.web.settings import WebSettings


@contextlib.contextmanager
def demo_run_with_web(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    """``daqhub run --web`` of the demo lab: the process, its output file, the page's URL;
    killed if it is still running at the end."""
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
        yield proc, out, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@needs_chromium
@pytest.mark.timeout(240)
def test_demo_lab_dashboard_updates_live_in_chromium(tmp_path: Path) -> None:
    with demo_run_with_web(tmp_path) as (proc, out, url):
        seen = asyncio.run(look_at(url, tmp_path))
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
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
    with dashboard(tmp_path, WebSettings(port=0)) as (_, server):
        seen = asyncio.run(look_at_kinds(server.url, tmp_path))
    rects, shot = seen["rects"], Path(str(seen["shot"]))
    assert isinstance(rects, dict)
    assert colour_pixels(shot, rects["scope0/trace"], (214, 39, 40)) >= 40  # the red trace
    assert colour_pixels(shot, rects["scope0/level"], LINE) >= 40
    assert distinct_colours(shot, rects["scope0/frame"]) >= 20  # a heatmap, not a blank card
    assert str(seen["frame"]).startswith("24x32")


RESULT = "document.getElementById('cmd-result')"
ROWS = ("[...document.querySelectorAll('#instruments tbody tr')]"
        ".map(r => r.dataset.instrument + ' ' + r.querySelector('[data-col=state]').textContent)"
        ".join()")


def send_js(method: str, args: str = "[]") -> str:
    """Fill in the page's command form and send it, as a user does."""
    return (f"document.getElementById('cmd-method').value = {json.dumps(method)};"
            f"document.getElementById('cmd-args').value = {json.dumps(args)};"
            "document.querySelector('#command-form button').click(); true")


class CommandBox(ScriptedSource):
    """Commands with each kind of outcome; ``hold`` lasts until ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def call(self, instrument: str, method: str, args: Any) -> Any:
        if method == "hold":
            assert self.release.wait(30), "the test never released the command"
            return "released"
        if method == "lookup_gain":
            return {"offset": 1.0}["gain"]  # a driver's own KeyError
        return {"dark": math.nan, "add": sum(args)}[method]


#: what the command box shows after each command (its text, its class), in order
BOX_SHOWS = [("oven.add: {\"ok\":true,\"result\":5}", ""),
             ("oven.dark: {\"ok\":true,\"result\":\"NaN\"}", ""),
             ("oven.lookup_gain: {\"ok\":false,\"error\":\"KeyError: 'gain'\"}", "failed"),
             ("oven.hold: sending ...", "sending"),
             ("oven.hold: {\"ok\":true,\"result\":\"released\"}", ""),
             ("oven.add: no answer (", "failed")]


async def use_the_command_box(server: DashboardServer, source: CommandBox,
                              tmp_path: Path) -> list[tuple[str, str]]:
    """Send the commands of :data:`BOX_SHOWS` (the last once the dashboard has gone); what
    the box showed after each, the last cut to the length of its expected start."""
    seen: list[tuple[str, str]] = []
    async with Chromium(server.url, tmp_path / "profile") as page:
        await page.wait_for("document.getElementById('commands')?.hidden === false && "
                            "document.getElementById('cmd-instrument').value === 'oven'", 60,
                            "the command form")

        async def shows(text: str, cls: str) -> None:
            await page.wait_for(f"{RESULT}.textContent.startsWith({json.dumps(text)}) && "
                                f"{RESULT}.className === {json.dumps(cls)}", 30,
                                f"{text!r} in the command box")
            shown = await page.evaluate(f"[{RESULT}.textContent, {RESULT}.className]")
            seen.append((str(shown[0])[:len(text)] if text.endswith("(") else str(shown[0]),
                         str(shown[1])))

        for (method, args), (text, cls) in zip(
                [("add", "[2, 3]"), ("dark", "[]"), ("lookup_gain", "[]"), ("hold", "[]")],
                BOX_SHOWS, strict=False):
            await page.evaluate(send_js(method, args))
            await shows(text, cls)
        source.release.set()
        await shows(*BOX_SHOWS[4])
        assert await asyncio.to_thread(server.stop, 10)
        await page.evaluate(send_js("add", "[1, 1]"))
        await shows(*BOX_SHOWS[5])
    return seen


@needs_chromium
@pytest.mark.timeout(120)
def test_the_command_box_shows_each_command_s_own_outcome(tmp_path: Path) -> None:
    """The box kept the previous result when a command returned NaN (not JSON), when the
    dashboard had gone, and while a command was on its way."""
    source = CommandBox()
    server = DashboardServer(source, WebSettings(port=0, token="tok-for-tests",
                                                 commands=True))
    server.start()
    try:
        seen = asyncio.run(use_the_command_box(server, source, tmp_path))
    finally:
        source.release.set()
        server.stop(10)
    assert seen == BOX_SHOWS


async def watch_two_runs(tmp_path: Path) -> dict[str, Any]:
    first_source = ScriptedSource("oven")
    first_source.alarms = [{"time": 1e9, "what": "test", "message": "oven too hot"}]
    # the first run's ticks slow, the next run's fast: the page's first request to the next
    # run asks for what changed after a tick that run has passed, so it gets no channels
    first = DashboardServer(first_source, WebSettings(port=0, rate_hz=1))
    first.start()
    try:
        async with Chromium(first.url, tmp_path / "profile") as page:
            await page.wait_for(f"{ROWS} === 'oven running' && {value_of('oven/temp')} "
                                "!== '-' && !!document.querySelector('#alarms li:not(.none)')",
                                60, "the first run on the page")
            assert await asyncio.to_thread(first.stop, 10)
            # the next run on the same address, its ticks counting from 0 again
            second = DashboardServer(ScriptedSource("kiln"),
                                     WebSettings(port=first.port, rate_hz=20))
            second.start()
            try:
                await page.wait_for(f"{ROWS} === 'kiln running' && {value_of('kiln/temp')} "
                                    "!== '-'", 60, "the next run alone on the page")
                return dict(await page.evaluate(
                    "({cards: [...document.querySelectorAll('.card')].map(c => c.dataset.key),"
                    " options: [...document.getElementById('cmd-instrument').options]"
                    ".map(o => o.value),"
                    " alarms: document.getElementById('alarms').textContent,"
                    " values: [...document.querySelectorAll('.value')].map(v => v.dataset.key)})"))
            finally:
                second.stop(10)
    finally:
        first.stop(10)


@needs_chromium
@pytest.mark.timeout(120)
def test_a_page_left_open_shows_the_next_run_alone(tmp_path: Path) -> None:
    """The page kept the previous run's instruments ("running"), plots and alarms for good
    when the next run took over its address."""
    seen = asyncio.run(watch_two_runs(tmp_path))
    assert seen == {"cards": ["kiln/temp"], "options": ["kiln"], "alarms": "none",
                    "values": ["kiln/temp"]}


async def watch_the_end(url: str, proc: subprocess.Popen[bytes], tmp_path: Path
                        ) -> dict[str, Any]:
    async with Chromium(url, tmp_path / "profile") as page:
        await page.wait_for(f"{ROWS}.split(',').filter(r => r.endsWith(' running')).length "
                            "=== 6", 60, "the six demo instruments running")
        proc.send_signal(signal.SIGINT)
        await page.wait_for("document.getElementById('status').textContent"
                            ".startsWith('the run ended')", 60, "the end of the run")
        ended = await page.evaluate(ROWS)
        code = await asyncio.to_thread(proc.wait, 60)
        status = await page.evaluate("document.getElementById('status').textContent")
    return {"states": ended, "code": code, "status": status}


@needs_chromium
@pytest.mark.timeout(240)
def test_the_page_says_when_the_run_ended(tmp_path: Path) -> None:
    """`daqhub run --web`: the dashboard stopped as the shutdown returned, and the page kept
    a mix of running and stopped instruments and never said that the run had ended."""
    with demo_run_with_web(tmp_path) as (proc, out, url):
        seen = asyncio.run(watch_the_end(url, proc, tmp_path))
    assert seen["code"] == 0, out.read_text()
    assert sorted(str(seen["states"]).split(",")) == [f"{i} stopped" for i in sorted(DEMO)]
    assert str(seen["status"]).startswith("the run ended")  # the dashboard gone: still said
