"""Fixtures of the SCPI driver tests: simulated VISA resources and instruments built the way
the runtime builds them (factory of the registered type, shared resource from the manager)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daqhub.resources.visa import SharedVisaResource, VisaSessionManager
from daqhub.specs import InstrumentContext, InstrumentType
from daqhub_scpi.plugin import daqhub_instrument_types
from daqhub_sims import visa_files
from daqhub_sims.scpi_tcp import ScpiTcpServer

#: Short reply timeout so error paths stay fast; the sims answer in well under 1 ms.
TIMEOUT_MS = 300


def scpi_type(name: str, flavor: str) -> InstrumentType:
    for t in daqhub_instrument_types():
        if t.name == name and t.flavor == flavor:
            return t
    raise LookupError(f"no {flavor} type {name}")


@pytest.fixture
def sim_library(tmp_path: Path) -> str:
    """A private copy of the shipped pyvisa-sim YAML: fresh instrument state per test."""
    return visa_files.sim_library(visa_files.fresh_copy(tmp_path))


@pytest.fixture
def visa_manager() -> Iterator[VisaSessionManager]:
    mgr = VisaSessionManager()
    try:
        yield mgr
    finally:
        leftovers = mgr.close_all(timeout=3.0)
        assert not leftovers, f"VISA sessions not closed: {leftovers}"


Opener = Callable[..., SharedVisaResource]


@pytest.fixture
def open_resource(visa_manager: VisaSessionManager) -> Opener:
    def opener(name: str, backend: str, timeout_ms: int = TIMEOUT_MS) -> SharedVisaResource:
        return visa_manager.resource(name, backend=backend, read_termination="\n",
                                     write_termination="\n", timeout_ms=timeout_ms)

    return opener


Builder = Callable[..., Any]


@pytest.fixture
def build() -> Builder:
    """Instrument of ``type_name`` in ``flavor`` through its registered factory."""

    def builder(flavor: str, type_name: str, resource: SharedVisaResource,
                instrument_id: str = "inst", **config: Any) -> Any:
        t = scpi_type(type_name, flavor)
        block: dict[str, Any] = {"id": instrument_id, "type": type_name,
                                 "resource": resource.name, "timeout_ms": TIMEOUT_MS, **config}
        ctx = InstrumentContext(instrument_id, type_name, block, t.channels_for(block),
                                visa=resource)
        return t.factory(ctx)

    return builder


TcpFactory = Callable[..., ScpiTcpServer]


@pytest.fixture
def tcp_server() -> Iterator[TcpFactory]:
    """Start TCP SCPI simulators (``profile``, ``seed``); all are closed after the test."""
    servers: list[ScpiTcpServer] = []

    def start(profile: str = "dmm", seed: int = 0, **kwargs: Any) -> ScpiTcpServer:
        server = ScpiTcpServer(profile, seed=seed, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
