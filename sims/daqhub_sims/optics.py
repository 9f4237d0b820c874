"""Small optical models that couple simulated devices, e.g. a polariser on an Elliptec rotator
in front of the simulated 1830-C power meter.

They are plain functions so a test wires them with a lambda, for example::

    meter.set_power_source(lambda: malus(1e-3, rotator_angle_deg(), offset_deg=12.0))
"""

from __future__ import annotations

import math


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
