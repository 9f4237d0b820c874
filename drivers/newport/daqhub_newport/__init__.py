"""daqhub drivers for Newport instruments: ESP300 motion controller and 1830-C power meter.

Both instruments are written once as a protocol module plus a flavor-neutral session
(``esp300_axis``, ``meter1830c_session``); the v2 and v4 classes only run its transactions.
"""

from __future__ import annotations

from .esp300_v2 import Esp300AxisV2
from .esp300_v4 import Esp300AxisV4
from .lineio import DriverTimeoutError
from .meter1830c_v2 import Meter1830cV2
from .meter1830c_v4 import Meter1830cV4

__all__ = ["DriverTimeoutError", "Esp300AxisV2", "Esp300AxisV4", "Meter1830cV2",
           "Meter1830cV4"]
