"""Our three driver distributions pass the same conformance kit third parties run."""

from __future__ import annotations

import math

import pytest

from daqhub_elliptec.plugin import conformance as elliptec_conformance
from daqhub_newport.plugin import conformance as newport_conformance
from daqhub_sims.checks import case
from daqhub_sims.conformance import ConformanceCase


def close_values(rel: float):
    """Noisy simulated readings: same channel, dtype and unit, values within ``rel``."""
    def same(a, b) -> bool:
        return (a.data.unit == b.data.unit and type(a.data.value) is type(b.data.value)
                and math.isclose(float(a.data.value), float(b.data.value), rel_tol=rel))
    return same


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("distribution", "declared"), [
    ("daqhub-newport", newport_conformance), ("daqhub-elliptec", elliptec_conformance)])
def test_serial_driver_conformance(distribution, declared, daqhub_conformance, sim_url,
                                   sim_endpoint) -> None:
    """The cases the drivers declare for ``daqhub check``, run by the kit."""
    daqhub_conformance.check(distribution, [case(spec, sim_url, sim_endpoint)
                                            for spec in declared()])


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
