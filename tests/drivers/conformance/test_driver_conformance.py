"""Our three driver distributions pass the same conformance kit third parties run."""

from __future__ import annotations

import math

import pytest

from daqhub_sims.conformance import ConformanceCase

GARBAGE = b"\xff\xfe#?!\r\n"


def garbage_instead_of_reply(sim_endpoint):
    """The device's next reply is replaced by garbage (its own bytes never arrive)."""
    def spoil(block) -> None:
        faults = sim_endpoint(block["port"]).faults
        faults.truncate_next(0)
        faults.inject_garbage(GARBAGE)
    return spoil


def close_values(rel: float):
    """Noisy simulated readings: same channel, dtype and unit, values within ``rel``."""
    def same(a, b) -> bool:
        return (a.data.unit == b.data.unit and type(a.data.value) is type(b.data.value)
                and math.isclose(float(a.data.value), float(b.data.value), rel_tol=rel))
    return same


@pytest.mark.timeout(120)
def test_newport_conformance(daqhub_conformance, sim_url, sim_endpoint) -> None:
    garbage = garbage_instead_of_reply(sim_endpoint)

    daqhub_conformance.check("daqhub-newport", [
        ConformanceCase("newport.esp300",
                        lambda: {"port": sim_url("esp300", speed_scale=20), "axis": 1},
                        steps=[("move_absolute", 2.0), ("wait_until_done", 10.0)],
                        garbage=garbage),
        ConformanceCase("newport.1830c",
                        lambda: {"port": sim_url("newport1830c", noise=0, power=0.001),
                                 "wavelength_nm": 800},
                        steps=[("set_wavelength", 900)], garbage=garbage),
    ])


@pytest.mark.timeout(120)
def test_elliptec_conformance(daqhub_conformance, sim_url, sim_endpoint) -> None:
    garbage = garbage_instead_of_reply(sim_endpoint)

    daqhub_conformance.check("daqhub-elliptec", [
        ConformanceCase("elliptec.ell14",
                        lambda: {"port": sim_url("elliptec", devices="0:ELL14", speed_scale=20),
                                 "address": 0},
                        steps=[("move_absolute", 45.0), ("wait_until_done", 10.0)],
                        garbage=garbage),
        ConformanceCase("elliptec.ell9",
                        lambda: {"port": sim_url("elliptec", devices="2:ELL9", speed_scale=20),
                                 "address": 2},
                        steps=[("move_absolute", 2), ("wait_until_done", 10.0)],
                        garbage=garbage),
    ])


@pytest.mark.timeout(120)
def test_scpi_conformance(daqhub_conformance, scpi_tcp, visa_sim_backend) -> None:
    servers = {}

    def tcp_block(profile: str):
        def block():
            server = scpi_tcp(profile)
            servers[server.resource] = server
            return {"resource": server.resource, "visa_backend": "@py",
                    "read_termination": "\n", "write_termination": "\n"}
        return block

    def garbage(block) -> None:
        servers[block["resource"]].garbage_next_reply()

    daqhub_conformance.check("daqhub-scpi", [
        ConformanceCase("scpi.dmm", tcp_block("dmm"), garbage=garbage,
                        same=close_values(0.05)),
        ConformanceCase("scpi.psu", tcp_block("psu"), steps=[("set_voltage", 3.0),
                                                            ("set_output", True)],
                        garbage=garbage, same=close_values(0.05)),
        ConformanceCase("scpi.dmm", lambda: {"resource": "GPIB0::5::INSTR",
                                             "visa_backend": visa_sim_backend()},
                        same=close_values(0.05)),
    ])
