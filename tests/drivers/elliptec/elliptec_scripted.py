"""A stand-in Elliptec bus for replies the protocol simulator never produces (test helper)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from daqhub_sims.device import Clock, SimDevice


class ScriptedBus(SimDevice):
    """A stand-in bus answering each command (up to its CR) from a test's table.

    For replies the protocol simulator never produces (thermal error, reserved codes): it
    records what the driver sent, so a test can also check the driver's follow-up commands.
    """

    def __init__(self, options: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(options, clock)
        #: command text (without CR) -> reply; a list is answered one entry per command, the
        #: last entry repeating; "*" answers anything else
        self.script: dict[str, bytes | list[bytes]] = {}
        self.received: list[str] = []
        self._rx = bytearray()
        self._out = bytearray()

    def feed(self, data: bytes) -> None:
        self._rx += data
        while b"\r" in self._rx:
            end = self._rx.index(b"\r")
            text = self._rx[:end].decode("ascii", "replace")
            del self._rx[:end + 1]
            self.received.append(text)
            reply = self.script.get(text, self.script.get("*", b""))
            if isinstance(reply, list):
                reply = reply.pop(0) if len(reply) > 1 else reply[0]
            self._out += reply

    def read(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_output_in(self) -> float | None:
        return 0.0 if self._out else None


ELL14_IN = b"0IN0E1140051720231701016800023000\r\n"


def call(inst: Any, flavor: str, name: str, *args: Any) -> Any:
    """Run a command of either flavor to its end (``connect`` is ``start`` in v4)."""
    if flavor == "v4" and name == "connect":
        name = "start"
    result = getattr(inst, name)(*args)
    return asyncio.run(result) if flavor == "v4" else result
