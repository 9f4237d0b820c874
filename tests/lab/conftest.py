"""Fixtures for Lab API tests: the demo's optics (power meter behind a polariser on a rotation
mount, Malus' law in the sims) with the mount in either flavor, and a mover that fails."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from lab_fakes import fake_types

from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost

_counter = iter(range(1_000_000))


def optics_lab(out: Path, mount_flavor: str, *, routines: str = "", extra: str = "") -> str:
    """The demo lab's optics as TOML, on a sim bus of its own (so tests never share one)."""
    bus = f"optics{next(_counter)}"
    return f'''
[daqhub]
output_dir = "{out}"
shutdown_timeout = 10

[v2]
storage = "hdf5"

[v4]
storage = "arrow"

[[v2.instruments]]
id = "power"
type = "newport.1830c"
port = "sim://newport1830c?power=0.0005&noise=0.002&polariser={bus}:0&extinction=0.02"
wavelength_nm = 633
poll_hz = 5

[[{mount_flavor}.instruments]]
id = "rotator"
type = "elliptec.ell14"
port = "sim://elliptec?name={bus}&devices=0:ELL14&speed_scale=4"
address = 0
poll_hz = 4
{extra}
{routines}
'''


@pytest.fixture
def host() -> PluginHost:
    h = PluginHost()
    h.load_entry_points()
    plugin = types.SimpleNamespace(daqhub_instrument_types=hookimpl(fake_types))
    assert h.register(plugin, "lab-tests", "lab-tests", "0")
    return h
