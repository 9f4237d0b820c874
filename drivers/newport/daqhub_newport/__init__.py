"""daqhub drivers for Newport instruments: ESP300 motion controller and 1830-C power meter.

Each instrument is one session class of daqhub's driver toolkit (:mod:`.esp300`,
:mod:`.meter1830c`) over its protocol module; both flavors are generated from it.
"""

from __future__ import annotations

from daqhub.driver import DriverTimeoutError, flavor_class

from .esp300 import Esp300Axis
from .meter1830c import Meter1830c

Esp300AxisV2 = flavor_class(Esp300Axis, "v2")
Esp300AxisV4 = flavor_class(Esp300Axis, "v4")
Meter1830cV2 = flavor_class(Meter1830c, "v2")
Meter1830cV4 = flavor_class(Meter1830c, "v4")

__all__ = ["DriverTimeoutError", "Esp300Axis", "Esp300AxisV2", "Esp300AxisV4", "Meter1830c",
           "Meter1830cV2", "Meter1830cV4"]
