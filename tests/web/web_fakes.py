"""A lab of in-process instruments with every channel kind, for dashboard tests; a dashboard
source that is not a runtime; a data service that answers where and how a test says."""

from __future__ import annotations

import collections
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from daqhub.config import LabConfig, parse
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.instrument import V2Instrument, V4Actor, now_ns
from daqhub.measurement import ChannelSpec, Image, Measurement, Scalar, Spectrum
from daqhub.schema import build_batch
from daqhub.web.source import InstrumentInfo

SCOPE = [ChannelSpec("level", "scalar", "V"),
         ChannelSpec("trace", "spectrum", "V", shape=(64,), axis_unit="nm"),
         ChannelSpec("frame", "image", "counts", "uint16", shape=(24, 32))]
WAVE = [ChannelSpec("wave", "scalar", "V")]


class ScopeV2(V2Instrument):
    """A level that ramps, a Gaussian peak that walks, a frame with a bright spot."""

    def connect(self) -> None:
        self.n = 0

    def read(self) -> list[Measurement]:
        self.n += 1
        ts = now_ns()
        x = np.linspace(400.0, 700.0, 64)
        peak = np.exp(-((x - 400 - (self.n * 7) % 300) / 20) ** 2)
        yy, xx = np.mgrid[0:24, 0:32]
        frame = (1000 * np.exp(-((xx - self.n % 32) ** 2 + (yy - 12) ** 2) / 30)).astype(np.uint16)
        return [Measurement(self.id, "level", ts, Scalar(float(self.n % 50), "V")),
                Measurement(self.id, "trace", ts, Spectrum(peak, x, "V", "nm")),
                Measurement(self.id, "frame", ts, Image(frame, "counts"))]

    def add(self, a: int, b: int) -> int:
        return a + b

    def hold(self, timeout: float = 60.0) -> str:
        """A command that takes its own ``timeout`` (as a motion wait does); it lasts until
        the test sets ``HELD``."""
        HELD.wait(60)
        return "released"


HELD = threading.Event()


class WaveV4(V4Actor):
    """A sine of the clock: a v4 channel that always moves."""

    async def read(self):
        t = now_ns()
        return [build_batch(self.id, WAVE[0], [t], np.array([np.sin(t / 1e9)]))]


def web_host() -> PluginHost:
    from daqhub.specs import InstrumentType

    h = PluginHost()
    h.load_entry_points()
    kinds = [InstrumentType("webtest.scope", "v2", "none", ScopeV2, SCOPE, "scope for tests"),
             InstrumentType("webtest.wave", "v4", "none", WaveV4, WAVE, "sine for tests")]
    plugin = types.SimpleNamespace(daqhub_instrument_types=hookimpl(lambda: kinds))
    assert h.register(plugin, "web-tests", "web-tests", "0")
    return h


def web_lab(host: PluginHost, tmp_path: Path, scopes: int = 1, waves: int = 1,
            poll_hz: float = 20, extra: str = "") -> LabConfig:
    """``extra``: TOML after [daqhub] (a [daqhub.web] table, [[routines]])."""
    text = f'[daqhub]\noutput_dir = "{tmp_path}/data"\n{extra}\n'
    for i in range(scopes):
        text += (f'[[v2.instruments]]\nid = "scope{i}"\ntype = "webtest.scope"\n'
                 f'poll_hz = {poll_hz}\n')
    for i in range(waves):
        text += (f'[[v4.instruments]]\nid = "wave{i}"\ntype = "webtest.wave"\n'
                 f'poll_hz = {poll_hz}\n')
    return parse(text, "web-test.toml", host, tmp_path)


class ScriptedSource:
    """A DashboardSource that is not a runtime (as a remote run's source is): instrument ``iid``
    with a temperature that rises every take, the batches a test puts in ``queued`` (for
    the ``channels`` it declares as well); its health says ``state`` and the ``alarms``."""

    def __init__(self, iid: str = "oven", channels: tuple[ChannelSpec, ...] = ()) -> None:
        self.iid = iid
        self.spec = ChannelSpec("temp", "scalar", "K")
        self.channels = (self.spec, *channels)
        self.queued: collections.deque[pa.RecordBatch] = collections.deque()
        self.alarms: list[dict[str, Any]] = []
        self.state = "running"
        self.fail = False
        self.ended = False
        self.n = 0

    def title(self) -> str:
        return "scripted"

    def instruments(self) -> list[InstrumentInfo]:
        return [InstrumentInfo(self.iid, "acme.oven", "v4", 2.0, self.channels)]

    def take(self) -> list[Any]:
        if self.fail:
            raise OSError("link to the remote run lost")
        self.n += 1
        out = [build_batch(self.iid, self.spec, [time.time_ns()], np.array([300.0 + self.n]),
                           source="v4")]
        while self.queued:
            out.append(self.queued.popleft())
        return out

    def health(self) -> dict[str, Any]:
        return {"instruments": [{"id": self.iid, "state": self.state, "rate_hz": 2.0}],
                "alarms": list(self.alarms), "routines": [], "ended": self.ended}

    def files(self) -> list[dict[str, Any]]:
        return []

    def call(self, instrument: str, method: str, args: Any) -> Any:
        raise AssertionError("read-only")

    def close(self) -> None:
        pass


class FakeService:
    """A Flight server that answers like a daqhub data service, slow where a test says.

    ``stall_live``: opening a live stream gets no answer (the handler waits for ``release``);
    otherwise the live stream sends nothing and ends (the run ended) at ``release``, or
    breaks (the link lost) at ``break_live``; the health answer holds ``alarms`` and, as a
    run's does, ``alarms_total`` (how many the run raised; its list keeps the newest);
    ``health``: what the health action does next, in order: ``"slow"`` (no answer for 5 s),
    ``"refuse"`` (unauthorized), ``"ok"``; the last one repeats.
    """

    def __init__(self, *, stall_live: bool = False, health: tuple[str, ...] = ("ok",)) -> None:
        import json

        import pyarrow.flight as flight

        from daqhub.schema import channel_schema

        spec = ChannelSpec("v", "scalar", "V")
        schema = channel_schema("dmm", spec, unified=True)
        self.release = threading.Event()
        self.break_live = threading.Event()
        self.alarms: list[dict[str, Any]] = []
        self.alarms_total = 0
        self.health_calls = 0
        fake = self

        class Server(flight.FlightServerBase):  # type: ignore[misc]
            def list_flights(self, context: object, criteria: bytes) -> object:
                if criteria.startswith(b"live"):
                    yield flight.FlightInfo(
                        schema, flight.FlightDescriptor.for_path("live", "dmm", "v"),
                        [flight.FlightEndpoint(b'{"live": "dmm/v"}', [])], -1, -1)

            def do_get(self, context: object, ticket: flight.Ticket) -> object:
                if b"manifest" in ticket.ticket:
                    manifest = {"session_id": "s1", "flavors": {"v4": {"instruments": {
                        "dmm": {"type": "scpi.dmm", "poll_hz": 5}}}}}
                    return flight.RecordBatchStream(pa.table({"manifest": [json.dumps(
                        manifest)]}))
                if stall_live:
                    fake.release.wait(30)
                    raise flight.FlightServerError("released")

                def nothing() -> object:
                    while not fake.release.wait(0.05) and not context.is_cancelled():  # type: ignore[attr-defined]
                        if fake.break_live.is_set():
                            raise flight.FlightServerError("the run's process died")
                    return
                    yield

                return flight.GeneratorStream(schema, nothing())

            def do_action(self, context: object, action: flight.Action) -> object:
                kind = health[min(fake.health_calls, len(health) - 1)]
                fake.health_calls += 1
                if kind == "slow":
                    fake.release.wait(5)
                if kind == "refuse":
                    raise flight.FlightUnauthorizedError("remote commands are off")
                return iter([json.dumps({"instruments": [
                    {"id": "dmm", "state": "running", "rate_hz": 5.0}],
                    "alarms": list(fake.alarms),
                    "alarms_total": fake.alarms_total}).encode()])

        self.server = Server("grpc://127.0.0.1:0")
        self.url = f"grpc://127.0.0.1:{self.server.port}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
