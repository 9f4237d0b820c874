"""Which worker process runs which instrument (``[daqhub] workers = N``).

Instruments that reach one device share its core-owned manager (one serial
port, one VISA session, one gate), and that sharing is only exact inside one
process. So the unit of placement is the *resource group*: every instrument
on one port or VISA resource (the same device, however it is spelled, by the
identity the lab-file check uses; a VISA resource per VISA library, as the
VISA manager keys its sessions), widened to the GPIB board or to all of VISA
when ``visa_lock_scope`` says the VISA library must be serialized that way.
A VISA ``ASRL`` resource on a local device path is that device's serial port
(:func:`~daqhub.resources.identity.visa_serial_identity`), so its group is the
port's, whichever transport names it, unless all of VISA is one group (the
lab-file check refuses a device opened both ways; one group keeps a lab that
was not checked from having two workers race for the device). An instrument
without a transport is a group of its own.

Groups are placed largest first (by requested polls per second) on the least
loaded worker, so N workers share the load about evenly. Asking for more
workers than there are groups runs one worker per group: an empty process
would only cost memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pyvisa import rname

from ..config import InstrumentConfig
from ..resources import serial_identity, visa_identity
from ..resources.identity import normalize_backend, visa_serial_identity
from ..specs import InstrumentType


@dataclass
class Shard:
    """The instruments one worker process runs."""

    index: int
    instruments: list[InstrumentConfig] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    load_hz: float = 0.0

    @property
    def name(self) -> str:
        return f"worker {self.index + 1}"

    @property
    def ids(self) -> list[str]:
        return [i.id for i in self.instruments]


def resource_group(inst: InstrumentConfig, itype: InstrumentType, visa_lock_scope: str,
                   url_packages: Sequence[str]) -> str:
    """The key every instrument that must share a process with ``inst`` also has."""
    if itype.transport == "serial":
        return "serial " + serial_identity(str(inst.block["port"]), url_packages)
    if itype.transport == "visa":
        name = str(inst.block["resource"])
        backend = normalize_backend(str(inst.block.get("visa_backend", "@py")))
        if visa_lock_scope == "global":
            return "visa (global lock scope)"
        device = visa_serial_identity(name, backend)
        if device is not None:  # its board is the device, so under "board" scope too
            return "serial " + device
        if visa_lock_scope == "board":
            parsed = rname.parse_resource_name(visa_identity(name))
            return f"visa board {parsed.interface_type}{getattr(parsed, 'board', '')}@{backend}"
        return f"visa {visa_identity(name)}@{backend}"
    return f"instrument {inst.id}"


def plan(instruments: Sequence[InstrumentConfig], types: Mapping[str, InstrumentType],
         workers: int, visa_lock_scope: str, url_packages: Sequence[str]) -> list[Shard]:
    """At most ``workers`` shards, each a union of whole resource groups, loads balanced."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    groups: dict[str, list[InstrumentConfig]] = {}
    for inst in instruments:
        key = resource_group(inst, types[inst.id], visa_lock_scope, url_packages)
        groups.setdefault(key, []).append(inst)

    def load(members: list[InstrumentConfig]) -> float:
        return sum(i.poll_hz for i in members)

    shards = [Shard(i) for i in range(min(workers, len(groups)))]
    for key, members in sorted(groups.items(), key=lambda kv: (-load(kv[1]), kv[0])):
        target = min(shards, key=lambda s: (s.load_hz, s.index))
        target.instruments += members
        target.groups.append(key)
        target.load_hz += load(members)
    return shards
