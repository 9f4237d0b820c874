"""Which modules answer on a bus: ``in`` to each address 0-F with a short timeout.

Useful before writing a lab file (which addresses, which models) and to spot
two modules left on one address (factory default 0 for every unit): their
replies collide on the open-drain line and arrive garbled. Addresses already
claimed by a running instrument are not asked; their owner is reported instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daqhub.driver import Plan, arun, run
from daqhub.driver.bus import Exchange
from daqhub.resources import SharedSerialPort
from daqhub.specs import InstrumentContext

from .driver import ElliptecBus
from .frames import ADDRESSES, BadLine, Command, Frame
from .models import DeviceInfo, parse_info
from .router import BusRouter, Expectation

#: A module answers `in` within a few ms plus ~36 ms of wire time for the reply.
DEFAULT_SCAN_TIMEOUT_S = 0.1
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
