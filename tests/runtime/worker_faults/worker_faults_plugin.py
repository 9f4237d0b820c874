"""Instrument types whose worker process dies, or takes long, during the lab's shutdown,
for ``tests/runtime/test_workers.py``.

Worker processes load their plugins from the installed entry points, so this one is
installed as a real plugin would be (a dist-info with an entry point on PYTHONPATH, see
the ``worker_faults`` fixture there); the parent loads it the same way.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from typing import Any

import pyarrow as pa

from daqhub.hookspecs import hookimpl
from daqhub.instrument import V2Instrument, V4Actor, now_ns
from daqhub.measurement import ChannelSpec, Measurement, Scalar
from daqhub.resources import ReplyTimeoutError
from daqhub.schema import build_batch
from daqhub.specs import InstrumentType

X = ChannelSpec("x", "scalar", "V")
#: a ``dies_after_shutdown`` instrument closed: its process dies once its shard has stopped
CLOSED = threading.Event()


class Good(V2Instrument):
    def connect(self) -> None:
        self.n = 0

    def read(self) -> list[Measurement]:
        self.n += 1
        return [Measurement(self.id, "x", now_ns(), Scalar(float(self.n), "V"))]

    def hold(self, seconds: float) -> str:
        """Appends ``<id> hold began (pid P)`` to ``$WORKER_FAULTS_LOG``, then takes
        ``seconds``: a command its worker process can die in."""
        with open(os.environ["WORKER_FAULTS_LOG"], "a") as log:
            log.write(f"{self.id} hold began (pid {os.getpid()})\n")
        time.sleep(seconds)
        return "held"

    def unloadable(self) -> Unloadable:
        """A result that pickles in the worker and cannot be unpickled in the parent."""
        return Unloadable()


def _only_in_a_worker() -> Unloadable:
    if getattr(sys.modules.get("__main__"), "BatchPump", None) is None:
        raise RuntimeError("only a worker process can load this")
    return Unloadable()


class Unloadable:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _only_in_a_worker, ()


class DiesInClose(Good):
    """A vendor library that takes its process down when the device is closed."""

    def close(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class FailsClose(Good):
    """Its close() raises: the output it switches off is left on."""

    def close(self) -> None:
        raise OSError("OUTP OFF not acknowledged")


class DiesAfterShutdown(Good):
    """Closes fine; its process dies after its shard's shutdown (see below)."""

    def close(self) -> None:
        CLOSED.set()


class LogsClose(Good):
    """Takes its block's ``close_s`` to close, then appends ``<id> closed (pid P)`` to the
    file ``$WORKER_FAULTS_LOG``: which driver's ``close()`` ran, and in which process."""

    def close(self) -> None:
        time.sleep(float(self.config.get("close_s", 0)))
        with open(os.environ["WORKER_FAULTS_LOG"], "a") as log:
            log.write(f"{self.id} closed (pid {os.getpid()})\n")


#: how long a ``stuck_close`` instrument's close() takes: longer than any shutdown waits
STUCK_S = 300.0


class StuckCloseV2(Good):
    """A vendor call in close() that does not return."""

    def close(self) -> None:
        time.sleep(STUCK_S)


class StuckCloseV4(V4Actor):
    """The same in a v4 driver: a blocking vendor call in its async close()."""

    async def start(self) -> None:
        self.n = 0

    async def read(self) -> list[pa.RecordBatch]:
        self.n += 1
        return [build_batch(self.id, X, [now_ns()], [float(self.n)])]

    async def close(self) -> None:
        time.sleep(STUCK_S)  # blocks the event loop, as such a call does


class HoldsV4(StuckCloseV4):
    """A v4 driver with a command that takes ``seconds``: one the shutdown must force."""

    async def close(self) -> None:
        pass

    async def hold(self, seconds: float) -> str:
        """Appends ``<id> hold began`` to ``$WORKER_FAULTS_LOG``, then takes ``seconds``."""
        with open(os.environ["WORKER_FAULTS_LOG"], "a") as log:
            log.write(f"{self.id} hold began\n")
        await asyncio.sleep(seconds)
        return "held"


class Listens(Good):
    """On a serial port: a command that asks, again and again, for a reply that never comes,
    until the port is closed under it (the shutdown closes ports, between two transactions,
    to end such a command, as it ends a motion driver's wait polling ``MD?``)."""

    def listen(self, seconds: float) -> bytes:
        """Appends ``<id> listen began`` to ``$WORKER_FAULTS_LOG``, then asks for up to
        ``seconds``."""
        with open(os.environ["WORKER_FAULTS_LOG"], "a") as log:
            log.write(f"{self.id} listen began\n")
        assert self.ctx.port is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                return self.ctx.port.query(b"?", terminator=b"never", read_timeout=0.1)
            except ReplyTimeoutError:
                continue
        return b""


def _die_after_the_shard_shutdown() -> None:
    """In a worker process (``python -m daqhub.runtime.worker_process``): once a
    ``dies_after_shutdown`` instrument closed, the process is killed right after its shard's
    shutdown, when it would send its last batches and its ``stopped`` report (as a crash in
    interpreter teardown or in a C extension's cleanup would). What the shutdown reported
    until then (the instruments ``stopped``) reaches the parent first."""
    pump = getattr(sys.modules.get("__main__"), "BatchPump", None)
    if pump is None:  # not a worker process
        return
    stop = pump.stop

    def stop_or_die(self: Any, timeout: float) -> bool:
        if CLOSED.is_set():
            self.outbox.close(5.0)
            os.kill(os.getpid(), signal.SIGKILL)
        return bool(stop(self, timeout))

    pump.stop = stop_or_die


_die_after_the_shard_shutdown()


@hookimpl
def daqhub_instrument_types() -> list[InstrumentType]:
    listens = InstrumentType("worker_faults.listens", "v2", "serial", Listens, [X],
                             "listen(seconds) reads its port", capabilities=("Readable",))
    return [listens] + [InstrumentType(f"worker_faults.{name}", flavor, "none", cls, [X], doc,
                           capabilities=("Readable",),
                           config_schema={"type": "object",
                                          "properties": {"close_s": {"type": "number"}}})
            for name, flavor, cls, doc in (
                ("good", "v2", Good, "reads a counter"),
                ("dies_in_close", "v2", DiesInClose, "kills its process in close()"),
                ("fails_close", "v2", FailsClose, "close() raises"),
                ("dies_after_shutdown", "v2", DiesAfterShutdown,
                 "its process dies after its shard's shutdown"),
                ("logs_close", "v2", LogsClose, "says when its close() ran"),
                ("stuck_close", "v2", StuckCloseV2, "close() does not return"),
                ("stuck_close", "v4", StuckCloseV4, "close() does not return"),
                ("holds", "v4", HoldsV4, "hold(seconds) takes that long"))]
