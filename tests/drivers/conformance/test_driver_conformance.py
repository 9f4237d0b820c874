"""Our three driver distributions pass the same conformance kit third parties run."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from daqhub_elliptec.plugin import conformance as elliptec_conformance
from daqhub_newport.plugin import conformance as newport_conformance
from daqhub_scpi.plugin import conformance as scpi_conformance
from daqhub_sims.checks import case


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("distribution", "declared"), [
    ("daqhub-newport", newport_conformance), ("daqhub-elliptec", elliptec_conformance),
    ("daqhub-scpi", scpi_conformance)])
def test_driver_conformance(distribution, declared, daqhub_conformance, sim_url,
                            sim_endpoint) -> None:
    """The cases the drivers declare for ``daqhub check``, run by the kit (SCPI: on
    pyvisa-sim and on the TCP simulator, which also garbles a reply)."""
    with ExitStack() as stack:
        daqhub_conformance.check(distribution, [case(spec, sim_url, sim_endpoint, stack)
                                                for spec in declared()])
