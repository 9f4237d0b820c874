"""A scripted serial line for protocol tests that need no simulator.

Named apart from conftest so test modules can import it; the answers come from a function
the test writes, so each test states the exact exchange it expects.
"""

from __future__ import annotations

from collections.abc import Callable


class FakeLine:
    """Looks like the core's ``PortIO``: replies are queued when a command line is written."""

    name = "fake-line"

    def __init__(self, answer: Callable[[str], bytes | None], terminator: bytes = b"\r") -> None:
        self.answer = answer
        self.terminator = terminator
        self.timeout: float | None = 0.05
        self.sent: list[str] = []
        self._out = bytearray()
        self.flushes = 0

    def write(self, data: bytes) -> int:
        assert data.endswith(self.terminator), f"{data!r} lacks the terminator"
        command = data[: -len(self.terminator)].decode("ascii")
        self.sent.append(command)
        reply = self.answer(command)
        if reply:
            self._out += reply
        return len(data)

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        end = self._out.find(expected)
        cut = len(self._out) if end < 0 else end + len(expected)
        data = bytes(self._out[:cut])
        del self._out[:cut]
        return data

    def reset_input_buffer(self) -> None:
        self.flushes += 1
        self._out.clear()
