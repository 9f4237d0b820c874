"""Small optical models that couple simulated devices, e.g. a polariser on an Elliptec rotator
in front of the simulated 1830-C power meter.

They are plain functions so a test wires them with a lambda, for example::

    meter.set_power_source(lambda: malus(1e-3, rotator_angle_deg("bench", "0"), 12.0))

A coupling reaches the other device through the registry of this process
(:func:`daqhub_sims.registry.endpoints`): a simulated line exists only in the process that
opened it. A rotator that cannot be reached there is an error (:class:`PolariserUnreachable`),
never the full power: a Malus scan that read flat power would look like a broken polariser
and be stored as complete.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

#: Why a line may be missing, for the error: the process boundaries a user may not see.
_ONE_PROCESS = ("a simulated line exists only in the process that opened it: a lab with "
                "[daqhub] workers = 2 or more may run instruments on different ports in "
                "different worker processes, so a lab whose meter has polariser= needs "
                "workers = 1 (and `daqhub sim serve` serves one device per process)")


class PolariserUnreachable(LookupError):
    """The Elliptec rotator a ``polariser=`` coupling names is not simulated in this process
    (or is not a rotator). Raised where the meter computes its power, so the command the host
    sent fails with it instead of reading as if nothing were in the beam."""


def malus(p0: float, angle_deg: float, offset_deg: float = 0.0, extinction: float = 0.0) -> float:
    """Power (W) behind a polariser at ``angle_deg`` for polarised light of power ``p0``.

    ``offset_deg`` is the polariser angle of maximum transmission. ``extinction`` is the
    fraction still transmitted when crossed (0 for an ideal polariser), so a test can model a
    real extinction ratio without a second helper.
    """
    if not 0.0 <= extinction <= 1.0:
        raise ValueError(f"extinction must be within 0..1, got {extinction}")
    cos2 = math.cos(math.radians(angle_deg - offset_deg)) ** 2
    return p0 * (cos2 + extinction * (1.0 - cos2))


def line_url(line_name: str) -> str:
    """The registry's key of the Elliptec line ``sim://elliptec?name=line_name``."""
    from daqhub_sims import registry

    return registry.SimUrl("elliptec", {}, {"name": line_name}).canonical


def rotator_angle_deg(line_name: str, address: str) -> float:
    """Angle (deg) of the Elliptec rotary unit at ``address`` on the line ``name=line_name``.

    Raises :class:`PolariserUnreachable` when this process has no such line, or no rotary
    unit at that (volatile) address. Reads the unit without taking the line's lock: the
    caller holds the meter's, and taking a second device's lock from inside a first one's is
    how two simulated lines would deadlock; a stale read costs nothing.
    """
    from daqhub_sims import registry

    url = line_url(line_name)
    live = registry.endpoints()
    ep = live.get(url)
    if ep is None:
        others = sorted(u for u in live if u.startswith("sim://elliptec?"))
        raise PolariserUnreachable(
            f"no simulated Elliptec line named {line_name!r} in this process (pid "
            f"{os.getpid()}; {url} was never opened here; Elliptec lines here: "
            f"{', '.join(others) or 'none'}): {_ONE_PROCESS}")
    try:
        unit = ep.device.unit(address)  # type: ignore[attr-defined]
    except KeyError as exc:
        raise PolariserUnreachable(f"{url}: {exc.args[0]}") from None
    pulses = unit.model.pulses
    if unit.model.kind != "rotary" or not pulses:
        raise PolariserUnreachable(f"{url}: the unit at address {unit.address} is an "
                                   f"{unit.model.name} ({unit.model.kind}), not a rotation "
                                   f"mount")
    return float(unit.position_at(ep.device.clock.now()) % pulses) / pulses * 360.0


def polariser_line(spec: str) -> tuple[str, str]:
    """The Elliptec line name and unit address a ``polariser=LINE:ADDR`` option names
    (address 0 when left out)."""
    line, _, address = spec.partition(":")
    if not line:
        raise ValueError(f"polariser={spec!r}: expected <elliptec line name>:<address>")
    return line, address or "0"


def polariser_source(p0: float, spec: str, offset_deg: float = 0.0,
                     extinction: float = 0.0) -> Callable[[], float]:
    """Incident power behind a polariser on an Elliptec rotator: ``spec`` is ``line:address``.

    The 1830-C simulator takes it from its ``polariser=`` option, so a lab file can couple
    the meter to a rotator on a named bus (``sim://elliptec?name=bench&...``). The rotator is
    looked for at each reading, not when the meter is made: a lab opens its ports one by one,
    the meter's maybe first.
    """
    line, address = polariser_line(spec)

    def source() -> float:
        try:
            angle = rotator_angle_deg(line, address)
        except PolariserUnreachable as exc:
            raise PolariserUnreachable(f"1830-C polariser={spec}: {exc}") from None
        return malus(p0, angle, offset_deg, extinction)
    return source
