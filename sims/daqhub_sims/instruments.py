"""One instrument of an installed type, either flavor, on a simulated device: no lab file.

Behind the ``daqhub_instrument`` fixture. The handle it gives is the same for both flavors:
``inst.call("set_setpoint", 77.0)`` runs a command (blocking for v2, awaited on a private
event loop for v4, bounded by ``timeout``), ``inst.rows()`` polls once and returns
``[(channel, data)]`` whatever the flavor produced, ``inst.driver`` is the instrument object
itself (``Measurement`` lists from v2, Arrow batches from v4).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Mapping
from typing import Any

from daqhub.plugins.converters import batch_to_rows
from daqhub.resources import SerialPortManager, VisaSessionManager
from daqhub.runtime.dual import make_context

CALL_TIMEOUT_S = 30.0


class InstrumentHandle:
    """A connected instrument; see the module docstring."""

    def __init__(self, driver: Any, flavor: str, loop: asyncio.AbstractEventLoop | None,
                 timeout: float) -> None:
        self.driver = driver
        self.flavor = flavor
        self.id: str = driver.id
        self._loop = loop
        self._timeout = timeout

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``method`` (a command or a lifecycle method) in the instrument's flavor."""
        result = getattr(self.driver, method)(*args, **kwargs)
        if not inspect.isawaitable(result):
            return result
        if self._loop is None:
            raise TypeError(f"{self.id}: {method} returned an awaitable in a v2 instrument")
        return asyncio.run_coroutine_threadsafe(
            _awaited(result), self._loop).result(self._timeout)

    def rows(self) -> list[tuple[str, Any]]:
        """One poll, as ``(channel, data)`` pairs in either flavor."""
        out = self.call("read")
        if self.flavor == "v2":
            return [(m.channel, m.data) for m in out]
        return [(r.channel, r.data) for b in out for r in batch_to_rows(b)]

    def settings(self) -> dict[str, Any]:
        return self.call("settings")  # type: ignore[no-any-return]


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class InstrumentMaker:
    """Builds instruments on shared managers it owns; :meth:`close` ends them all."""

    def __init__(self, host: Any, timeout: float = CALL_TIMEOUT_S) -> None:
        self.host = host
        self.timeout = timeout
        self.serial = SerialPortManager(host.serial_url_packages(), reconnect_initial_s=0.05)
        self.visa = VisaSessionManager()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._made: list[InstrumentHandle] = []

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever,
                                            name="daqhub-sims-instruments", daemon=True)
            self._thread.start()
        return self._loop

    def make(self, type_name: str, flavor: str, config: Mapping[str, Any],
             instrument_id: str = "dut", connect: bool = True) -> InstrumentHandle:
        itype = self.host.instrument_type(type_name, flavor)
        if itype is None:
            raise LookupError(f"no {flavor} instrument type {type_name!r} is installed "
                              f"(installed: {', '.join(self.host.type_names())})")
        block = {"id": instrument_id, "type": type_name, **config}
        ctx = make_context(itype, instrument_id, block, self.serial, self.visa)
        handle = InstrumentHandle(itype.factory(ctx), flavor,
                                  self._event_loop() if flavor == "v4" else None, self.timeout)
        self._made.append(handle)
        if connect:
            handle.call("connect" if flavor == "v2" else "start")
        return handle

    def close(self) -> list[str]:
        """Close every instrument, then the ports; what did not close in time, by name."""
        for handle in reversed(self._made):
            try:
                handle.call("close")
            except Exception:  # a failed close must not hide the test's own outcome
                pass
        leaked = self.serial.close_all(timeout=5.0) + self.visa.close_all(timeout=5.0)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5.0)
            self._loop.close()
        return leaked
