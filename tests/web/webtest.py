"""Helpers for the dashboard tests: a served in-process lab, HTTP requests, and the demo
lab's page as headless Chromium shows it."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chromium import Chromium
from polling import wait_until
from web_fakes import web_host, web_lab

from daqhub.runtime.dual import DualRuntimeManager
from daqhub.web.server import DashboardServer
from daqhub.web.settings import WebSettings
from daqhub.web.source import RuntimeSource


@contextmanager
def dashboard(tmp_path: Path, settings: WebSettings, **lab: Any
              ) -> Iterator[tuple[DualRuntimeManager, DashboardServer]]:
    rt = DualRuntimeManager(web_lab(web_host(), tmp_path, **lab), web_host(), storage=True)
    rt.start()
    # a run whose instrument stored nothing is not ok, whatever the test did with it
    wait_until(lambda: set(rt.counts()) == {i.id for i in rt.lab.instruments()},
               what="every instrument's first samples")
    server = DashboardServer(RuntimeSource(rt), settings)
    try:
        server.start()
        yield rt, server
    finally:
        assert server.stop(10), "the dashboard thread did not end"
        assert rt.shutdown().ok


def page_json(text: str) -> Any:
    """``text`` read as the page's ``JSON.parse`` reads it: NaN and Infinity are not JSON
    (Python's json reads them, and a state holding one froze the page)."""
    def refuse(word: str) -> None:
        raise ValueError(f"{word} is not JSON: the page cannot read this")

    return json.loads(text, parse_constant=refuse)


def request(server: DashboardServer, path: str, headers: dict[str, str] | None = None,
            body: Any = None, timeout: float = 10.0) -> tuple[int, Any, Any]:
    host = f"[{server.settings.host}]" if ":" in server.settings.host else server.settings.host
    req = urllib.request.Request(f"http://{host}:{server.port}{path}", headers=headers or {},
                                 data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        r = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        r = exc
    with r:
        raw = r.read()
        json_body = "json" in r.headers.get("Content-Type", "")
        return r.status, page_json(raw.decode()) if json_body else raw.decode(), r.headers


def wait_state(server: DashboardServer, cond: Any, what: str, since: int = 0,
               timeout: float = 20.0, headers: dict[str, str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, state, _ = request(server, f"/api/state?since={since}", headers)
        assert status == 200, state
        if cond(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {state}")
        time.sleep(0.1)


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
