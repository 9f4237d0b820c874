"""``daqhub view URL``: the dashboard of a run on another machine, fed by its data service.

:class:`FlightSource` is a :class:`~.source.DashboardSource` over ``daqhub.connect(URL)``
(the Arrow Flight live data service, ``daqhub run --serve``): what the run measures comes
from the service's manifest and live channels, the data from one lossy live subscription
(the service drops this viewer's oldest batches if it falls behind; the run never waits),
the instruments' states from the service's ``health`` action where the service allows it.
Every network call happens on the source's own thread or the subscription's, never in the
dashboard's loop: the page keeps answering, and says so, when the link is slow or lost. A
health answer that does not come (or fails) leaves the last one on the page, marked stale in
the title, and is asked for again next time; only the service's refusal (actions off, no or
a wrong token) turns the health requests off, and the states then come from the data. Once
the run has ended or the link is lost, every row says so ("ended", "link lost", rate 0),
whatever the last health answer said, and the service is no longer asked.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ..commands import ArgumentsRefused
from .source import InstrumentInfo

REFRESH_S = 1.0  # health and session listing


class FlightSource:
    """A remote run, read through the live data service's client ``conn``."""

    def __init__(self, conn: Any, url: str) -> None:
        self.conn = conn
        self.url = url
        manifest = conn.manifest()
        self.session = str(manifest.get("session_id", ""))
        self._infos: list[InstrumentInfo] = []
        specs = {(c.instrument, c.name): c.spec for c in conn.channels()}
        for flavor, plan in sorted(manifest.get("flavors", {}).items()):
            for iid, block in sorted(plan.get("instruments", {}).items()):
                self._infos.append(InstrumentInfo(
                    iid, str(block.get("type", "?")), flavor, float(block.get("poll_hz", 10)),
                    tuple(s for (i, _), s in sorted(specs.items()) if i == iid)))
        self.sub = conn.subscribe("*")
        self.ended = False
        self._lost: Exception | None = None
        self._health: dict[str, Any] = {}
        self._health_stale = ""  # why the health shown is not fresh ("" when it is)
        self._files: list[dict[str, Any]] = []
        self._seen: dict[str, collections.deque[float]] = {
            i.id: collections.deque(maxlen=64) for i in self._infos}
        self._counts: dict[str, int] = collections.Counter()
        # polls are counted on each instrument's first channel (all channels share a poll)
        self._primary = {i.id: i.channels[0].name for i in self._infos if i.channels}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="daqhub-view", daemon=True)
        self._thread.start()

    def title(self) -> str:
        state = " (the run ended)" if self.ended else " (link lost)" if self._lost else ""
        stale = f" (instrument states stale: {self._health_stale})" \
            if self._health_stale and not state else ""
        return f"{self.url} - session {self.session or '?'}{state}{stale}"

    def instruments(self) -> list[InstrumentInfo]:
        return list(self._infos)

    def take(self) -> list[pa.RecordBatch]:
        if self._lost is not None:  # stays on the page: the live data will not come back
            raise self._lost
        out: list[pa.RecordBatch] = []
        while not self.ended:
            try:
                item = self.sub.get(timeout=0)
            except StopIteration:
                self.ended = True
                break
            except ConnectionError as exc:  # the client's LinkLostError
                self._lost = exc
                raise
            if item is None:
                break
            out.append(item.batch)
            if self._primary.get(item.instrument) == item.channel:
                self._seen[item.instrument].extend(
                    t / 1e9 for t in item.batch.column("timestamp_ns").to_pylist())
                self._counts[item.instrument] += item.batch.num_rows
        return out

    def health(self) -> dict[str, Any]:
        remote = {i["id"]: i for i in self._health.get("instruments", [])}
        # the last health answer, or the data's last word, no longer hold
        gone = "ended" if self.ended else "link lost" if self._lost is not None else ""
        rows = []
        for info in self._infos:
            if info.id in remote:
                row = remote[info.id]
            else:  # without the service's health action: what the data itself says
                seen = self._seen.get(info.id) or collections.deque()
                fresh = bool(seen) and time.time() - seen[-1] < 5
                span = seen[-1] - seen[0] if len(seen) > 1 else 0.0
                row = {"id": info.id, "state": "receiving" if fresh else "silent",
                       "rate_hz": round((len(seen) - 1) / span, 2) if fresh and span else 0.0,
                       "measurements": self._counts.get(info.id, 0), "errors": None,
                       "restarts": None, "reconnects": None, "last_error": ""}
            rows.append({**row, "state": gone, "rate_hz": 0.0} if gone else row)
        alarms = self._health.get("alarms", [])
        return {"instruments": rows, "alarms": alarms,  # alarms_total: the run counts them
                "alarms_total": self._health.get("alarms_total", len(alarms)),
                "routines": self._health.get("routines", []),
                "dropped": sum(self.sub.lost.values()), "ended": self.ended}

    def files(self) -> list[dict[str, Any]]:
        return list(self._files)

    def call(self, instrument: str, method: str, args: Sequence[Any]) -> Any:
        """The command, run by the service and waited for as the service waits. The service
        answers ArrowInvalid (INVALID_ARGUMENT) for a command it refuses unsent: arguments
        the driver does not take, an instrument the run does not have. That is the client's
        mistake, as :class:`~daqhub.commands.ArgumentsRefused` says to the page's server (a
        400, as on the run's own page). A method the instrument does not have is found only
        when the instrument's thread looks it up: the service answers it FlightServerError,
        as the instrument's own failures, and the page a 502."""
        try:
            return self.conn.call(instrument, method, *args)
        except pa.ArrowInvalid as exc:  # the service's message only (the client's)
            raise ArgumentsRefused(str(exc)) from None

    def close(self) -> None:
        self._stop.set()
        self.sub.close()
        self._thread.join(5.0)
        self.conn.close()

    def _refresh(self) -> None:
        """Health (when the service allows it) and the session's stored channels."""
        import pyarrow.flight as flight

        from ..flight_client import clear_message  # type: ignore[import-not-found,unused-ignore]

        refused = (flight.FlightUnauthorizedError, flight.FlightUnauthenticatedError)
        health_allowed = True
        while not self._stop.wait(REFRESH_S) and not (self.ended or self._lost):
            if health_allowed:
                try:
                    self._health = self.conn.health()
                    self._health_stale = ""
                except refused:
                    health_allowed = False  # actions off or no token: the data alone then
                    self._health, self._health_stale = {}, ""
                except Exception as exc:  # slow or lost: the last answer stays, marked
                    self._health_stale = clear_message(exc)
            try:
                # the run's own session only: listing every one read every old session's files
                stored = self.conn.sessions(self.session).get(self.session, {})
                self._files = [{"name": f"{flavor}: {c.key}", "path": f"{self.session}/"
                                f"{flavor}/{c.key}", "rows": c.rows}
                               for flavor, chans in sorted(stored.items()) for c in chans]
            except Exception:  # shown as stale files; the live data go on
                continue


def main(args: argparse.Namespace) -> int:
    """``daqhub view URL``: serve the remote run's dashboard until Ctrl-C (or --duration)."""
    from .runweb import WebError, dashboard_server
    from .settings import ListenError, web_settings

    try:
        server = dashboard_server()
        from ..flight_client import (  # type: ignore[import-not-found,unused-ignore]
            clear_message,
            connect,
        )
    except (WebError, ImportError) as exc:  # flight_client's says what to install
        print(f"daqhub view: {exc}", file=sys.stderr)
        return 2
    try:
        settings = web_settings({"commands": args.commands}, args.web)
        assert settings is not None
        sock = server.bind(settings)
    except (ListenError, OSError) as exc:
        print(f"daqhub view: {exc}", file=sys.stderr)
        return 2
    try:  # every step bounded (the client's timeout), and Ctrl-C ends the wait
        source = FlightSource(connect(args.url, token=args.token), args.url)
    except KeyboardInterrupt:
        sock.close()
        print(f"daqhub view: interrupted while connecting to {args.url}", file=sys.stderr)
        return 130
    except Exception as exc:  # no service there, refused token, no live run, no answer
        sock.close()
        print(f"daqhub view: cannot follow {args.url}: {clear_message(exc)}", file=sys.stderr)
        return 1
    dashboard = server.DashboardServer(source, settings, sock)
    dashboard.start()
    print(f"daqhub view: {args.url} -> {dashboard.url}", flush=True)
    t0 = time.monotonic()
    try:
        while not (args.duration and time.monotonic() - t0 >= args.duration):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    dashboard.stop()
    return 0

