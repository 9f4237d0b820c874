"""The settings snapshot every toolkit driver generates from its declarations, both flavors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_esp300_axis(flavor: str, daqhub_instrument: Callable[..., Any],
                     sim_url: Callable[..., str]) -> None:
    ax = daqhub_instrument("newport.esp300", flavor, port=sim_url("esp300"), axis=2,
                           velocity=4.0, limits=[-10.0, 10.0])
    snap = ax.settings()
    assert {k: snap[k] for k in ("model", "axis", "units", "velocity", "left_limit",
                                 "right_limit")} == {
        "model": "ESP300", "axis": 2, "units": "mm", "velocity": 4.0, "left_limit": -10.0,
        "right_limit": 10.0}
    assert isinstance(snap["acceleration"], float)


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_1830c_meter(flavor: str, daqhub_instrument: Callable[..., Any],
                     sim_url: Callable[..., str]) -> None:
    m = daqhub_instrument("newport.1830c", flavor, port=sim_url("newport1830c"), units="dBm",
                          wavelength_nm=800, range=6, filter="slow")
    assert m.settings() == {"model": "1830-C", "units": "dBm", "wavelength": 800.0,
                            "current_range": 6, "filter_speed": "slow", "attenuator": False,
                            "zero": False, "running": True}


@pytest.mark.parametrize("flavor", ["v2", "v4"])
def test_elliptec_module(flavor: str, daqhub_instrument: Callable[..., Any],
                         sim_url: Callable[..., str]) -> None:
    rot = daqhub_instrument("elliptec.ell14", flavor,
                            port=sim_url("elliptec", devices="0:ELL14"), address=0)
    snap = rot.settings()
    assert snap["model"] == "ELL14" and snap["serial"] and snap["firmware"]
    assert 1 <= snap["velocity"] <= 100
