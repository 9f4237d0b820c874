"""daqhub instruments as ophyd-async devices, for bluesky plans (``pip install 'daqhub[bluesky]'``).

``devices(lab)`` gives one device per instrument of a running :class:`~daqhub.lab.Lab`,
whatever its flavor:

* every device is readable and triggerable: ``trigger()`` takes a fresh sample
  of every channel as ``Lab.scan`` takes it (the instrument's ``read`` command,
  sent again while a channel is missing from its answer, then a
  :class:`~daqhub.scan.ScanError` naming it) and ``read()`` returns that sample
  per channel, keyed ``<name>-<channel>``, as plain Python values of the shape
  ``describe()`` gives with each channel's unit and dtype (an image: nested lists);
* ``read_configuration()`` is the instrument's ``settings()`` (also stored as a
  snapshot in the session; a failure fails the plan with the driver's error);
* an instrument with the Motion capability is a movable: ``set(x)`` moves and
  its status completes when ``wait_until_done`` returns, or fails with the
  driver's own error; its ``position`` channel is keyed by the device name
  (bluesky's convention for a motor's readback).

The daqhub streams keep recording to the session while plans run. Commands go
through the Lab's handles, which return awaitables inside the RunEngine's
event loop (a trigger's reads run on a thread), so no device call ever blocks
that loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

try:
    from ophyd_async.core import AsyncStatus, Device
except ImportError as exc:  # pragma: no cover - depends on the installed extra
    raise ImportError("daqhub.bluesky needs the bluesky extra: pip install 'daqhub[bluesky]'"
                      ) from exc

from .lab import Instrument, Lab
from .measurement import ChannelSpec
from .scan import LabCommands, fresh_samples

_DTYPES = {"f": "number", "i": "integer", "u": "integer", "b": "boolean"}


def devices(lab: Lab, *, settle_time: float = 0.0) -> dict[str, LabDevice]:
    """One device per instrument: a :class:`LabMotor` for Motion instruments.

    ``settle_time`` is what ``Lab.scan``'s ``settle`` is: seconds a motor's ``set()``
    waits after the move is done, for detectors whose reading lags (a power meter
    averaging or changing range).
    """
    return {iid: LabMotor(h, settle_time=settle_time) if "Motion" in h.capabilities
            else LabDevice(h) for iid, h in lab.instruments.items()}


class LabDevice(Device):
    """A daqhub instrument as a readable, triggerable, configurable ophyd-async device."""

    def __init__(self, handle: Instrument, name: str = "") -> None:
        self.handle = handle
        self._specs: dict[str, ChannelSpec] = dict(handle.specs)
        self._reading: dict[str, dict[str, Any]] = {}
        self._config: dict[str, Any] = {}
        super().__init__(name=name or handle.id)

    def _key(self, channel: str) -> str:
        return f"{self.name}-{channel}"

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """A fresh sample of every channel, taken by the scan engine off the loop: a ``read``
        may answer some channels only (a v4 actor's returns those with new samples), and
        an event without every described channel aborted the plan."""
        reads = [(self.handle.id, spec) for spec in self._specs.values()]
        taken = await asyncio.to_thread(fresh_samples, LabCommands(self.handle.lab), reads)
        self._reading = {
            self._key(ch): {"value": fresh.value, "timestamp": fresh.answered_ns / 1e9,
                            "alarm_severity": 0}
            for (_, ch), fresh in taken.items()}

    async def read(self) -> dict[str, Any]:
        if not self._reading:
            await self.trigger()
        return dict(self._reading)

    async def describe(self) -> dict[str, Any]:
        return {self._key(ch): {
            "source": f"daqhub://{self.handle.id}/{ch}", "dtype": _dtype(spec),
            "shape": [d or 0 for d in spec.shape], "units": spec.unit,
            "dtype_numpy": _numpy_dtype(spec)} for ch, spec in self._specs.items()}

    async def read_configuration(self) -> dict[str, Any]:
        now = time.time()
        return {k: {"value": v, "timestamp": now} for k, v in (await self._settings()).items()}

    async def describe_configuration(self) -> dict[str, Any]:
        settings = self._config or await self._settings()
        return {k: {"source": f"daqhub://{self.handle.id}/settings", "shape": [],
                    "dtype": "boolean" if isinstance(v, bool) else "integer"
                    if isinstance(v, int) else "number" if isinstance(v, float) else "string"}
                for k, v in settings.items()}

    async def _settings(self) -> dict[str, Any]:
        raw = await self.handle.settings()
        self._config = {f"{self.name}-{k}": v if isinstance(v, bool | int | float | str)
                        else json.dumps(v) for k, v in raw.items()}
        return self._config


class LabMotor(LabDevice):
    """A Motion instrument as a movable: ``set()`` completes when the move is done."""

    def __init__(self, handle: Instrument, name: str = "", move_timeout: float = 60.0,
                 settle_time: float = 0.0) -> None:
        super().__init__(handle, name)
        self.move_timeout = move_timeout
        self.settle_time = settle_time
        self._setpoint: float | None = None

    def _key(self, channel: str) -> str:
        return self.name if channel == "position" else super()._key(channel)

    @AsyncStatus.wrap
    async def set(self, value: float) -> None:
        self._setpoint = float(value)
        await self.handle.call("move_absolute", float(value))
        await self.handle.call("wait_until_done", self.move_timeout)
        self._reading = {}
        if self.settle_time:
            await asyncio.sleep(self.settle_time)

    async def stop(self, success: bool = True) -> None:
        await self.handle.call("stop")

    async def locate(self) -> dict[str, float]:
        position = float(await self.handle.call("position"))
        return {"setpoint": position if self._setpoint is None else self._setpoint,
                "readback": position}


def _dtype(spec: ChannelSpec) -> str:
    if spec.kind != "scalar":
        return "array"
    return _DTYPES.get(_numpy_dtype(spec)[1], "number")


def _numpy_dtype(spec: ChannelSpec) -> str:
    import numpy as np

    return str(np.dtype(spec.dtype).str)
