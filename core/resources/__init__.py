"""Core-owned shared hardware managers: serial ports, VISA sessions, leases across them.

Instruments of both flavors get handles from these managers and never open hardware
themselves; see the module docs of ``gate`` (transactions, and the modules it is split
into), ``lease``, ``ordering`` (deadlock freedom), ``shared`` (what both kinds have in
common: transactions, disconnects), ``serial`` and ``visa``, and "Shared hardware" in
``docs/architecture.md``.
"""

from .errors import (
    LockOrderError,
    PortDisconnectedError,
    PortOpenError,
    ReplyTimeoutError,
    ResourceBusyError,
    ResourceClosedError,
    ResourceConfigConflictError,
    ResourceDisconnectedError,
    ResourceError,
    ResourceTimeoutError,
    TransactionOverrunError,
    VisaDisconnectedError,
)
from .gate import DEFAULT_TIMEOUT_S, Gate, dump_gates
from .identity import LINE_SETTINGS, line_settings, serial_identity, visa_identity
from .lease import Lease, lease
from .ordering import DEFAULT_CHECKER, LockOrderChecker, held_resources
from .serial import (
    PortEvent,
    PortIO,
    SerialPortManager,
    SharedSerialPort,
    UsbIdentity,
    canonical_port_name,
    register_url_packages,
)
from .shared import ResourceEvent, SharedResource
from .stats import TransactionStats
from .visa import SharedVisaResource, VisaSessionManager

__all__ = [
    "DEFAULT_CHECKER",
    "DEFAULT_TIMEOUT_S",
    "LINE_SETTINGS",
    "Gate",
    "Lease",
    "LockOrderChecker",
    "LockOrderError",
    "PortDisconnectedError",
    "PortEvent",
    "PortIO",
    "PortOpenError",
    "ReplyTimeoutError",
    "ResourceBusyError",
    "ResourceClosedError",
    "ResourceConfigConflictError",
    "ResourceDisconnectedError",
    "ResourceError",
    "ResourceEvent",
    "ResourceTimeoutError",
    "SerialPortManager",
    "SharedResource",
    "SharedSerialPort",
    "SharedVisaResource",
    "TransactionOverrunError",
    "TransactionStats",
    "UsbIdentity",
    "VisaDisconnectedError",
    "VisaSessionManager",
    "canonical_port_name",
    "dump_gates",
    "held_resources",
    "lease",
    "line_settings",
    "register_url_packages",
    "serial_identity",
    "visa_identity",
]
