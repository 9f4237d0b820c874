"""Fault knobs of one simulated endpoint.

A test reaches them as ``registry.endpoint(url).faults`` (or ``server.endpoint.faults``) and
every transport serving that endpoint obeys them: the ``sim://`` handler, a pseudo-terminal
and a TCP server behave alike, each with the errors its real counterpart raises.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daqhub_sims.endpoint import Endpoint


class Faults:
    """Disconnects, garbage, truncated and delayed replies, wire-speed emulation.

    State changes are made under the endpoint's lock and wake every reader, so a knob turned
    by a test takes effect for the very next byte.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._latency = 0.0
        self._baud_emulation = False
        self.garbage = bytearray()  # guarded by the endpoint lock
        self.truncations: deque[int] = deque()  # guarded by the endpoint lock

    # -- line presence ------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._endpoint.connected

    def disconnect(self) -> None:
        """Pull the USB adapter: every open handle fails now and stays dead, even after
        :meth:`reconnect`; clients must reopen, as with a real vanished ``/dev/ttyUSB0``.
        Returns once every transport of the endpoint has torn its link down."""
        self._endpoint.set_connected(False)

    def reconnect(self) -> None:
        """Plug the adapter back in; the device behind it kept its state."""
        self._endpoint.set_connected(True)

    # -- reply corruption -----------------------------------------------------------------
    def inject_garbage(self, data: bytes) -> None:
        """Bytes the host receives just before the device's next output."""
        with self._endpoint.lock:
            self.garbage += data

    def truncate_next(self, n_bytes: int) -> None:
        """Cut the next reply (up to and including its ``\\n``) to its first ``n_bytes``."""
        if n_bytes < 0:
            raise ValueError(f"truncate_next needs n_bytes >= 0, got {n_bytes}")
        with self._endpoint.lock:
            self.truncations.append(n_bytes)

    # -- timing -------------------------------------------------------------------------
    @property
    def latency(self) -> float:
        """Seconds added before each reply reaches the host."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"latency must be >= 0 seconds, got {seconds!r}")
        with self._endpoint.lock:
            self._latency = float(seconds)
        self._endpoint.poke()

    @property
    def baud_emulation(self) -> bool:
        """Bytes travel at ``device.baudrate`` with 10 bits a character, both ways."""
        return self._baud_emulation

    @baud_emulation.setter
    def baud_emulation(self, on: bool) -> None:
        with self._endpoint.lock:
            self._baud_emulation = bool(on)
        self._endpoint.poke()
