"""Errors raised by the shared hardware managers.

Each error carries the facts a user needs to act on it (which resource, who held it, for how
long, what was sent) both as attributes and in its message, because these errors usually end
up in a log read long after the fact.
"""

from __future__ import annotations


class ResourceError(Exception):
    """Base class of every error raised by ``daqhub.resources``."""


class ResourceTimeoutError(ResourceError, TimeoutError):
    """A bounded wait for a resource (or a lease) ran out.

    ``holder`` is the description of who held the resource when the wait ended (``None`` if it
    was free by then, e.g. because the queue ahead was long).
    """

    def __init__(self, message: str, *, resource: str, waited_s: float, holder: str | None,
                 owner: str) -> None:
        super().__init__(message)
        self.resource = resource
        self.waited_s = waited_s
        self.holder = holder
        self.owner = owner


class TransactionOverrunError(ResourceTimeoutError):
    """A queued transaction started but did not finish within its time budget.

    The transaction keeps running on the resource's worker thread (I/O cannot be interrupted
    half-way without splitting a command from its reply); its result is discarded.
    """


class LockOrderError(ResourceError, RuntimeError):
    """An acquisition against the global order (serial before VISA, then by name).

    Raised before waiting, so a potential deadlock becomes a deterministic bug report.
    """


class ResourceClosedError(ResourceError):
    """The resource was closed (manager shut down) before or while the request waited."""


class ResourceDisconnectedError(ResourceError, ConnectionError):
    """The resource is (or just became) disconnected; the request was not completed.

    A transaction that was queued when the device dropped was never sent. The one in flight
    may have been partially sent; instruments decide whether to retry. ``resource`` names it.
    """

    def __init__(self, message: str, *, resource: str) -> None:
        super().__init__(message)
        self.resource = resource


class PortDisconnectedError(ResourceDisconnectedError):
    """A serial port is (or just became) disconnected."""

    def __init__(self, message: str, *, port: str) -> None:
        super().__init__(message, resource=port)
        self.port = port


class VisaDisconnectedError(ResourceDisconnectedError):
    """A VISA session lost its connection (a LAN instrument rebooted, a socket reset)."""


class PortOpenError(ResourceError, ConnectionError):
    """The port could not be opened (missing device, no USB device with that identity...)."""

    def __init__(self, message: str, *, port: str) -> None:
        super().__init__(message)
        self.port = port


class ReplyTimeoutError(ResourceError, TimeoutError):
    """A query's reply did not end with its terminator within the read timeout."""

    def __init__(self, message: str, *, port: str, sent: bytes, partial: bytes) -> None:
        super().__init__(message)
        self.port = port
        self.sent = sent
        self.partial = partial


class ResourceConfigConflictError(ResourceError, ValueError):
    """A second user asked for an already-open resource with different settings.

    A bus has one baud rate and a VISA session one termination; silently keeping the first
    settings would make the second instrument fail in a confusing way later.
    """


class ResourceBusyError(ResourceError, ConnectionError):
    """Another process (or a driver bypassing the managers) owns the device.

    ``holder`` describes the owner when it is known (a daqhub process records pid, host,
    command and since when); ``None`` when the operating system refused without saying who.
    """

    def __init__(self, message: str, *, resource: str, holder: str | None) -> None:
        super().__init__(message)
        self.resource = resource
        self.holder = holder
