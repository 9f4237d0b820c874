"""The daqhub entry point of daqhub-acme (``[project.entry-points.daqhub] acme = ...``).

One instrument type, ``acme.tc1``, in both flavors made from one session class, so a lab can
move an instrument from v2 to v4 by moving its block.
"""

from __future__ import annotations

from daqhub.driver import instrument_types
from daqhub.hookspecs import hookimpl
from daqhub.specs import InstrumentType

from .driver import Tc1


@hookimpl
def daqhub_instrument_types() -> list[InstrumentType]:
    return instrument_types(Tc1)
