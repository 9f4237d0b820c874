"""The dashboard of ``daqhub run``: bound before the lab starts, served once it runs.

Binding first makes a busy or forbidden address an error before any instrument moves;
serving needs the running runtime (its unified stream exists only then). At the end, after
the runtime has shut down, the page is told: its instruments' final states and that the run
ended, served for a moment (``DashboardServer.stop(last_word=True)``) before the server
stops.
"""

from __future__ import annotations

import socket
import sys
from types import ModuleType
from typing import Any, TextIO

from ..config import LabConfig
from ..runtime.dual import DualRuntimeManager, ShutdownReport
from .settings import (
    HANDLER_GRACE_S,
    LAST_WORD_S,
    ListenError,
    WebSettings,
    web_extra_problem,
    web_settings,
)

#: the least the dashboard's stop is given, however much of ``shutdown_timeout`` the runtime's
#: shutdown took: the page's last word, then the requests being answered
STOP_LEAST_S = LAST_WORD_S + HANDLER_GRACE_S


class WebError(Exception):
    """The dashboard cannot be served as asked (the message says why and what to do)."""


def dashboard_server() -> ModuleType:
    """:mod:`daqhub.web.server`, or WebError naming the web extra when a module of it cannot
    be imported (:func:`~.settings.web_extra_problem`, which ``validate`` asks too): aiohttp,
    or plotly, whose plotly.js every page loads (a missing plotly was found by the page's
    request: a 500 and a traceback in the run's output). ``run --web``, ``[daqhub.web]`` and
    ``daqhub view`` check it alike."""
    if (why := web_extra_problem()) is not None:
        raise WebError(why)
    from . import server

    return server


class RunDashboard:
    def __init__(self, settings: WebSettings, sock: socket.socket) -> None:
        self.settings = settings
        self.sock = sock
        self.server: Any = None
        self.source: Any = None

    @classmethod
    def prepare(cls, lab: LabConfig, listen: str | None) -> RunDashboard | None:
        """None when neither ``--web`` nor ``[daqhub.web]`` asks for a dashboard."""
        daq = lab.data.get("daqhub", {})
        try:
            settings = web_settings(daq.get("web") if isinstance(daq, dict) else None, listen)
        except ListenError as exc:
            raise WebError(f"--web {exc}") from None
        if settings is None:
            return None
        server = dashboard_server()
        try:
            return cls(settings, server.bind(settings))
        except OSError as exc:
            raise WebError(str(exc)) from None

    def start(self, rt: DualRuntimeManager, out: TextIO) -> None:
        from .server import DashboardServer
        from .source import RuntimeSource

        self.source = RuntimeSource(rt)
        self.server = DashboardServer(self.source, self.settings, self.sock)
        try:
            self.server.start()
        except (RuntimeError, TimeoutError) as exc:  # the data matter more than the page
            print(f"daqhub: {exc}; the run goes on without it", file=sys.stderr, flush=True)
            return
        access = ("read-only" if not self.settings.commands else "commands allowed with the "
                  "token") + ("; token required" if self.settings.token_required else "")
        print(f"  dashboard -> {self.server.url} ({access})", file=out, flush=True)

    def stop_after(self, report: ShutdownReport, total_s: float) -> str | None:
        """After the runtime has shut down (``report``): the pages get the end of the run,
        then no more; within what the shutdown left of ``total_s`` (the lab's
        ``shutdown_timeout``), and at least the page's last word, its time in the report's
        "took". What to tell the user if the server did not stop in time, else None (its
        thread is a daemon: it holds no exit). It stopped within a fixed 5 s of its own, not
        in the report's time, and a server that did not stop went unsaid."""
        if self.server is None:
            self.sock.close()
            return None
        self.source.ended = True
        server = self.server
        stopped, limit = report.stop_in_budget(
            lambda limit: server.stop(limit, last_word=True), total_s, STOP_LEAST_S)
        if stopped:
            return None
        return (f"the dashboard did not stop within {limit:.1f} s "
                f"(the rest of shutdown_timeout = {total_s:g} s, at least its last word): a "
                f"request it was answering did not end")
