"""Byte-exchange tests without a simulator: a line that answers from a script.

For a driver's unit tests: the script lists the exact bytes the driver must send and the
bytes the instrument answers, in order. :class:`ScriptedPort` stands where the core's shared
serial port stands (``transaction`` for v2, ``atransaction`` for v4, ``shared``), so the
same script drives either flavor::

    line = ScriptedPort([(b"TEMP?\\r", b"+293.150\\r\\n"), (b"HEAT?\\r", b"0.0\\r\\n")])
    tc = scripted_instrument(daqhub_host, "acme.tc1", "v2", line)
    tc.read()
    line.assert_done()

A request the script does not expect fails at once with both sides shown; a reply of
``b""`` is silence (the driver's read gives up at once, as after its timeout, with no
waiting); :meth:`ScriptedPort.assert_done` fails if requests the script lists were never sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from daqhub.specs import InstrumentContext

T = TypeVar("T")


class ScriptedIO:
    """The open port inside a transaction (the part of ``PortIO`` drivers use)."""

    def __init__(self, port: ScriptedPort) -> None:
        self._port = port
        self.name = port.name
        self.timeout: float | None = port.read_timeout

    def write(self, data: bytes) -> int:
        self._port._request(bytes(data))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        out = self._port._pending[:size]
        del self._port._pending[:size]
        return bytes(out)

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        buf = self._port._pending
        end = buf.find(expected)
        n = len(buf) if end < 0 else end + len(expected)
        if size is not None:
            n = min(n, size)
        return self.read(n)

    def readline(self) -> bytes:
        return self.read_until(b"\n")

    def reset_input_buffer(self) -> None:
        self._port._pending.clear()

    def flush(self) -> None:
        pass

    @property
    def in_waiting(self) -> int:
        return len(self._port._pending)


class ScriptedPort:
    """A serial port that checks each request against the script and answers from it."""

    def __init__(self, script: Sequence[tuple[bytes, bytes]], name: str = "scripted",
                 read_timeout: float = 1.0) -> None:
        self.script = list(script)
        self.name = name
        self.read_timeout = read_timeout
        self.default_timeout = 2.0
        self.sent: list[bytes] = []
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._shared: dict[str, Any] = {}

    def _request(self, data: bytes) -> None:
        index = len(self.sent)
        self.sent.append(data)
        if index >= len(self.script):
            raise AssertionError(f"{self.name}: request #{index + 1} {data!r} is not in the "
                                 f"script (it lists {len(self.script)})")
        expected, reply = self.script[index]
        if data != expected:
            raise AssertionError(f"{self.name}: request #{index + 1} was {data!r}, the script "
                                 f"expects {expected!r}")
        self._pending += reply

    def transaction(self, fn: Callable[[ScriptedIO], T], **_: Any) -> T:
        with self._lock:
            return fn(ScriptedIO(self))

    async def atransaction(self, fn: Callable[[ScriptedIO], T], **_: Any) -> T:
        return self.transaction(fn)

    def shared(self, key: str, factory: Callable[[], T]) -> T:
        return self._shared.setdefault(key, factory())  # type: ignore[no-any-return]

    def assert_done(self) -> None:
        """Every request of the script was sent, and nothing more."""
        left = self.script[len(self.sent):]
        if left:
            raise AssertionError(f"{self.name}: {len(left)} scripted request(s) never sent, "
                                 f"first {left[0][0]!r}")


def scripted_instrument(host: Any, type_name: str, flavor: str, port: ScriptedPort,
                        config: Mapping[str, Any] | None = None,
                        instrument_id: str = "dut") -> Any:
    """An unconnected instrument of an installed type, in ``flavor``, on ``port``."""
    itype = host.instrument_type(type_name, flavor)
    if itype is None:
        raise LookupError(f"no {flavor} instrument type {type_name!r} is installed "
                          f"(installed: {', '.join(host.type_names())})")
    block = {"id": instrument_id, "type": type_name, **(config or {})}
    ctx = InstrumentContext(instrument_id, type_name, block, itype.channels_for(block),
                            port=port)  # type: ignore[arg-type]
    return itype.factory(ctx)
