"""pyserial handler for ``sim://<device>?<options>`` (see :mod:`daqhub_sims.registry`).

pyserial imports ``protocol_<scheme>`` from each package in ``serial.protocol_handler_packages``;
``daqhub_sims.install()`` (or the daqhub plugin hook) adds ``daqhub_sims.urlhandler``.

Once the simulated line is unplugged (``faults.disconnect()``), this port raises exactly what
pyserial's POSIX port raises after a USB adapter vanished (docs/architecture.md, "Library
behaviour the code relies on"):
``SerialException`` from read/write, a bare ``OSError(EIO)`` from ``in_waiting``,
``termios.error`` from ``flush``/``reset_*_buffer``; ``is_open`` stays True, and the handle
stays dead after a reconnect: reopen it, as with real hardware.
"""

from __future__ import annotations

import errno
import termios
from typing import Any

from serial.serialutil import LF, PortNotOpenError, SerialBase, SerialException, to_bytes

from daqhub_sims import registry
from daqhub_sims.endpoint import Endpoint, EndpointBusy, EndpointDisconnected, Session

#: Which simulated line a URL reaches; the core keys shared ports by it (one lock per device
#: however the lab spells its URL), found through ``daqhub_serial_url_packages``.
canonical_url = registry.canonical_url

_READ_GONE = ("device reports readiness to read but returned no data "
              "(device disconnected or multiple access on port?)")


class Serial(SerialBase):
    """A serial port whose far end is a simulated device in this process."""

    is_open: bool
    BAUDRATES = (50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800,
                 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._session: Session | None = None
        super().__init__(*args, **kwargs)

    @property
    def endpoint(self) -> Endpoint:
        """The simulated line this port is open on (for fault injection in tests)."""
        return self._live_session().endpoint

    # -- open / close -------------------------------------------------------------------
    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        try:
            ep = registry.endpoint(self._port)
        except (ValueError, LookupError) as exc:
            raise SerialException(f"could not open port {self._port}: {exc}") from exc
        try:
            self._session = ep.open_session(exclusive=bool(self._exclusive))
        except EndpointBusy as exc:
            raise SerialException(errno.EBUSY, f"could not open port {self._port}: {exc}") from None
        except EndpointDisconnected:
            raise SerialException(
                errno.ENOENT,
                f"could not open port {self._port}: [Errno 2] No such file or directory: "
                f"{self._port!r}",
            ) from None
        self._reconfigure_port()
        self.is_open = True
        self.reset_input_buffer()  # as the POSIX port does on open

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self.is_open = False

    def _reconfigure_port(self, force_update: bool = False) -> None:
        # Nothing to program; validate like a real port so bad settings fail the same way.
        if not isinstance(self._baudrate, int) or not 0 < self._baudrate < 2**32:
            raise ValueError(f"invalid baudrate: {self._baudrate!r}")

    def _live_session(self) -> Session:
        if not self.is_open or self._session is None:
            raise PortNotOpenError()
        return self._session

    # -- I/O ------------------------------------------------------------------------------
    def read(self, size: int = 1) -> bytes:
        session = self._live_session()
        if size <= 0:
            return b""
        try:
            return session.read(size, self._timeout, self._inter_byte_timeout)
        except EndpointDisconnected:
            raise SerialException(_READ_GONE) from None

    def read_until(self, expected: bytes = LF, size: int | None = None) -> bytes:
        """Same result as ``SerialBase.read_until``, without a ``read(1)`` call per byte."""
        session = self._live_session()
        try:
            return session.read_until(bytes(expected), size, self._timeout)
        except EndpointDisconnected:
            raise SerialException(_READ_GONE) from None

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        return self.read_until(LF, None if size is None or size < 0 else size)

    def write(self, data: bytes) -> int:  # type: ignore[override]
        session = self._live_session()
        payload = to_bytes(data)
        try:
            session.write(payload)
        except EndpointDisconnected:
            raise SerialException("write failed: [Errno 5] Input/output error") from None
        return len(payload)

    def flush(self) -> None:
        self._io_check()

    @property
    def in_waiting(self) -> int:
        session = self._live_session()
        try:
            return session.in_waiting()
        except EndpointDisconnected:
            raise OSError(errno.EIO, "Input/output error") from None

    @property
    def out_waiting(self) -> int:
        session = self._live_session()
        if not session.alive:
            raise OSError(errno.EIO, "Input/output error")
        return 0  # writes reach the device at once

    def reset_input_buffer(self) -> None:
        session = self._live_session()
        try:
            session.reset_input()
        except EndpointDisconnected:
            raise termios.error(errno.EIO, "Input/output error") from None

    def reset_output_buffer(self) -> None:
        self._io_check()

    def cancel_read(self) -> None:
        if self.is_open and self._session is not None:
            self._session.cancel_read()

    def cancel_write(self) -> None:
        """Writes never block, so there is nothing to cancel."""

    def _io_check(self) -> None:
        session = self._live_session()
        if not session.alive:
            raise termios.error(errno.EIO, "Input/output error")

    # -- modem lines: a USB-serial adapter with nothing wired but RX/TX/GND -----------------
    def _update_break_state(self) -> None:
        self._live_session()

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        self._live_session()
        return True

    @property
    def dsr(self) -> bool:
        self._live_session()
        return True

    @property
    def ri(self) -> bool:
        self._live_session()
        return False

    @property
    def cd(self) -> bool:
        self._live_session()
        return True
