"""Small optical models that couple simulated devices, e.g. a polariser on an Elliptec rotator
in front of the simulated 1830-C power meter.

They are plain functions so a test wires them with a lambda, for example::

    meter.set_power_source(lambda: malus(1e-3, rotator_angle_deg(), offset_deg=12.0))
"""

from __future__ import annotations

import math
from collections.abc import Callable


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


def rotator_angle_deg(line_name: str, address: str) -> float | None:
    """Angle (deg) of the Elliptec rotary unit at ``address`` on the line ``name=line_name``.

    None while that line or unit does not exist (yet). Reads the unit without taking the
    line's lock: the caller holds the meter's, and taking a second device's lock from inside
    a first one's is how two simulated lines would deadlock; a stale read costs nothing.
    """
    from daqhub_sims import registry

    ep = registry.endpoints().get(f"sim://elliptec?name={line_name}")
    if ep is None:
        return None
    try:
        unit = ep.device.unit(address)  # type: ignore[attr-defined]
    except KeyError:
        return None
    pulses = unit.model.pulses
    if unit.model.kind != "rotary" or not pulses:
        return None
    return float(unit.position_at(ep.device.clock.now()) % pulses) / pulses * 360.0


def polariser_source(p0: float, spec: str, offset_deg: float = 0.0,
                     extinction: float = 0.0) -> Callable[[], float]:
    """Incident power behind a polariser on an Elliptec rotator: ``spec`` is ``line:address``.

    The 1830-C simulator takes it from its ``polariser=`` option, so a lab file can couple
    the meter to a rotator on a named bus (``sim://elliptec?name=bench&...``).
    """
    line, _, address = spec.partition(":")
    if not line:
        raise ValueError(f"polariser={spec!r}: expected <elliptec line name>:<address>")

    def source() -> float:
        angle = rotator_angle_deg(line, address or "0")
        return p0 if angle is None else malus(p0, angle, offset_deg, extinction)
    return source
