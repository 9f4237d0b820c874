"""The daqhub entry point of daqhub-acme (``[project.entry-points.daqhub] acme = ...``).

One instrument type, ``acme.tc1``, declared once per flavor with the same name, channels,
schema and capabilities, so a lab can move an instrument from v2 to v4 by moving its block.
"""

from __future__ import annotations

from daqhub.hookspecs import hookimpl
from daqhub.specs import Flavor, InstrumentType

from . import config
from .v2 import Tc1V2
from .v4 import Tc1V4


@hookimpl
def daqhub_instrument_types() -> list[InstrumentType]:
    flavors: tuple[tuple[Flavor, type], ...] = (("v2", Tc1V2), ("v4", Tc1V4))
    return [
        InstrumentType(
            name=config.TYPE_NAME, flavor=flavor, transport="serial", factory=factory,
            channels=config.CHANNELS, description=config.DESCRIPTION,
            config_schema=config.CONFIG_SCHEMA, capabilities=config.CAPABILITIES,
            serial_settings=config.SERIAL_SETTINGS)
        for flavor, factory in flavors
    ]
