"""The driver's errors: each one names the instrument and the command it was carrying out.

The core's port errors name the port and whoever held it; a user reading a log wants to know
which instrument failed doing what, so the flavors wrap every transaction in
:func:`port_errors`. The original error stays chained as the cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from daqhub.instrument import DriverError
from daqhub.resources import PortDisconnectedError, ResourceError, ResourceTimeoutError


class Tc1TimeoutError(DriverError, TimeoutError):
    """The TC-1 did not answer in time (or the line was busy for too long).

    Also a ``TimeoutError``, so generic timeout handling catches it, and so the core's port
    does not mistake it for a vanished device.
    """


class Tc1DisconnectedError(DriverError, ConnectionError):
    """The serial line vanished under a command; the core reopens it in the background."""


@contextmanager
def port_errors(instrument_id: str, command: str) -> Iterator[None]:
    """Turn the core's port errors into DriverErrors naming ``instrument_id`` and ``command``."""
    try:
        yield
    except PortDisconnectedError as exc:
        raise Tc1DisconnectedError(instrument_id, command, str(exc), "disconnected") from exc
    except ResourceTimeoutError as exc:
        raise Tc1TimeoutError(instrument_id, command, str(exc), "busy") from exc
    except ResourceError as exc:
        raise DriverError(instrument_id, command, str(exc), "port") from exc
