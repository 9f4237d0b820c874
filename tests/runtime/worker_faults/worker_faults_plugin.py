"""Instrument types whose worker process dies during the lab's shutdown, for
``tests/runtime/test_workers.py``.

Worker processes load their plugins from the installed entry points, so this one is
installed as a real plugin would be (a dist-info with an entry point on PYTHONPATH, see
the ``worker_faults`` fixture there); the parent loads it the same way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from daqhub.hookspecs import hookimpl
from daqhub.instrument import V2Instrument, now_ns
from daqhub.measurement import ChannelSpec, Measurement, Scalar
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


class DiesInClose(Good):
    """A vendor library that takes its process down when the device is closed."""

    def close(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class DiesAfterShutdown(Good):
    """Closes fine; its process dies after its shard's shutdown (see below)."""

    def close(self) -> None:
        CLOSED.set()


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
    return [InstrumentType(f"worker_faults.{name}", "v2", "none", cls, [X], doc,
                           capabilities=("Readable",))
            for name, cls, doc in (
                ("good", Good, "reads a counter"),
                ("dies_in_close", DiesInClose, "kills its process in close()"),
                ("dies_after_shutdown", DiesAfterShutdown,
                 "its process dies after its shard's shutdown"))]
