"""Which modules answer on a bus: ``in`` to each address 0-F with a short timeout.

Useful before writing a lab file (which addresses, which models). Two modules
left on one address (factory default 0 for every unit) both answer, and their
replies collide on the open-drain line, a wired AND of their bits. Replies of
different models mostly arrive damaged (``damaged``), but two modules of one
model answer with replies of one length at about the same moment, which can
merge into one well-formed ``IN`` reply whose serial (and other fields) may be
neither module's. Nothing in the reply tells (no checksum; ANDed digits are
digits), and asking again is no check (the same replies merge the same way), so
such an address shows as one module: the manual's remedy, re-addressing modules
with one connected at a time, is the only sure way. Addresses already claimed
by a running instrument are not asked; their owner is reported instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daqhub.driver import Plan, arun, run
from daqhub.driver.bus import Exchange
from daqhub.resources import SharedSerialPort
from daqhub.specs import InstrumentContext

from .driver import ElliptecBus
from .frames import ADDRESSES, BadLine, Command, Frame
from .models import IN_REPLY_S, DeviceInfo, parse_info
from .router import BusRouter, Expectation

DEFAULT_SCAN_TIMEOUT_S = IN_REPLY_S
OWNER = "elliptec-discovery"


@dataclass
class BusScan:
    """What each address said: a module, a damaged reply, or nothing (absent from all)."""

    found: dict[str, DeviceInfo] = field(default_factory=dict)
    #: address -> what arrived instead of an `IN` reply (e.g. two modules on one address)
    damaged: dict[str, str] = field(default_factory=dict)
    #: address -> instrument that owns it (not asked)
    in_use: dict[str, str] = field(default_factory=dict)


def scan(router: BusRouter, reply_timeout: float = DEFAULT_SCAN_TIMEOUT_S) -> Plan[BusScan]:
    result = BusScan()
    for address in ADDRESSES:
        owner = router.owner_of(address)
        if owner is not None:
            result.in_use[address] = owner
            continue
        command = Command(address, "in", reply="IN")
        line = yield Exchange(Expectation(command), reply_timeout)
        if line is None:
            continue
        if isinstance(line, BadLine):
            result.damaged[address] = line.describe()
        elif isinstance(line, Frame) and line.mnemonic == "IN":
            try:
                result.found[address] = parse_info(line.data)
            except ValueError as exc:
                result.damaged[address] = f"bad IN reply {line.text!r}: {exc}"
        else:
            result.damaged[address] = f"{line.text!r} instead of an IN reply"
    return result


def discover(port: SharedSerialPort, reply_timeout: float = DEFAULT_SCAN_TIMEOUT_S
             ) -> BusScan:
    """Scan the bus on ``port`` (blocking; from a thread). Port failures raise DriverError."""
    bus = _bus(port)
    return run(bus, scan(bus.router, reply_timeout))  # type: ignore[no-any-return]


async def adiscover(port: SharedSerialPort, reply_timeout: float = DEFAULT_SCAN_TIMEOUT_S
                    ) -> BusScan:
    """Scan the bus on ``port`` from a coroutine."""
    bus = _bus(port)
    return await arun(bus, scan(bus.router, reply_timeout))  # type: ignore[no-any-return]


def _bus(port: SharedSerialPort) -> ElliptecBus:
    return ElliptecBus(InstrumentContext(OWNER, "elliptec.bus", {}, (), port=port))
