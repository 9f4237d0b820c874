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


def conformance() -> list[dict[str, object]]:
    """How ``daqhub check`` and the conformance test check acme.tc1 against its simulator
    (entry point group ``daqhub_sims.conformance``)."""
    return [{"type": "acme.tc1", "sim": "acmetemp", "options": {"tau": 0},
             "block": {"setpoint_k": 80.0}, "steps": [["set_setpoint", 350.0]],
             "garbage": "\x00??\r\n"}]
