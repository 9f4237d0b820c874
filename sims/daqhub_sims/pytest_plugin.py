"""pytest fixtures for testing daqhub drivers on simulated hardware (entry point ``pytest11``).

Installed with daqhub-sims, so a third-party driver's test suite gets them
without a conftest:

* ``sim_url(model, **options)`` - a ``sim://`` URL of a fresh simulated device
  (a unique ``name=`` keeps tests from sharing state); ``sim_endpoint(url)``
  gives its fault-injection handle (``.faults.disconnect()``, ``inject_garbage``...).
* ``sim_pty(url)`` / ``sim_tcp(url)`` - the same device behind a real
  pseudo-terminal path or ``socket://127.0.0.1:PORT``.
* ``visa_sim_backend(name="dmm_psu.yaml")`` - a ``path@sim`` backend string on a
  fresh copy of a packaged pyvisa-sim file (pyvisa-sim keeps state per path).
* ``scpi_tcp(profile)`` - a TCP SCPI simulator with fault knobs, as
  ``TCPIP::127.0.0.1::PORT::SOCKET`` for ``@py``.
* ``daqhub_host`` - a plugin host loaded from the installed entry points.
* ``daqhub_lab(text)`` / ``daqhub_run(lab)`` - validate a lab and run it on the
  dual runtime; every run is shut down at teardown.
* ``daqhub_conformance`` - the conformance kit (see ``daqhub_sims.conformance``).
* ``daqhub_instrument(type, flavor, port=..., **block)`` - one connected instrument of an
  installed type, either flavor, without a lab file (see ``daqhub_sims.instruments``).
* ``scripted_port(script)`` - a line answering from scripted request/reply pairs, for quick
  byte-exchange tests of either flavor (see ``daqhub_sims.scripted``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_counter = itertools.count()


@pytest.fixture
def sim_registry() -> Iterator[Any]:
    """The simulator registry, reset after the test so no device state leaks out."""
    from daqhub_sims import install, registry

    install()
    yield registry
    registry.reset()


@pytest.fixture
def sim_url(sim_registry: Any) -> Callable[..., str]:
    def make(model: str, **options: Any) -> str:
        options.setdefault("name", f"t{next(_counter)}")
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"sim://{model}?{query}"
    return make


@pytest.fixture
def sim_endpoint(sim_registry: Any) -> Callable[[str], Any]:
    return sim_registry.endpoint  # type: ignore[no-any-return]


def _serving(registry: Any, server_class: Any, address: str
             ) -> Iterator[Callable[[str], str]]:
    """``make(url)`` serves the device behind ``url`` and gives the server's ``address``."""
    servers: list[Any] = []

    def make(url: str) -> str:
        server = server_class(registry.endpoint(url))
        servers.append(server)
        server.start()
        return str(getattr(server, address))
    yield make
    for s in servers:
        s.close()


@pytest.fixture
def sim_pty(sim_registry: Any) -> Iterator[Callable[[str], str]]:
    from daqhub_sims.pty_server import PtyServer

    yield from _serving(sim_registry, PtyServer, "path")


@pytest.fixture
def sim_tcp(sim_registry: Any) -> Iterator[Callable[[str], str]]:
    from daqhub_sims.tcp_server import TcpServer

    yield from _serving(sim_registry, TcpServer, "url")


@pytest.fixture
def visa_sim_backend(tmp_path: Path) -> Callable[..., str]:
    from daqhub_sims import visa_files

    def make(name: str = visa_files.DMM_PSU_YAML) -> str:
        sub = tmp_path / f"visa{next(_counter)}"
        sub.mkdir()
        return visa_files.sim_library(visa_files.fresh_copy(sub, name))
    return make


@pytest.fixture
def scpi_tcp() -> Iterator[Callable[..., Any]]:
    from daqhub_sims.scpi_tcp import ScpiTcpServer

    servers: list[Any] = []

    def make(profile: str = "dmm", **kwargs: Any) -> Any:
        server = ScpiTcpServer(profile, **kwargs)
        server.__enter__()
        servers.append(server)
        return server
    yield make
    for s in servers:
        s.__exit__(None, None, None)


@pytest.fixture
def daqhub_host() -> Any:
    from daqhub.host import PluginHost

    host = PluginHost()
    host.load_entry_points()
    return host


@pytest.fixture
def daqhub_lab(daqhub_host: Any, tmp_path: Path) -> Callable[[str], Any]:
    from daqhub.config import parse

    def make(text: str) -> Any:
        return parse(text, "test-lab.toml", daqhub_host, tmp_path)
    return make


@pytest.fixture
def daqhub_run(daqhub_host: Any) -> Iterator[Callable[..., Any]]:
    from daqhub.runtime.dual import DualRuntimeManager

    runs: list[Any] = []

    def start(lab: Any, **kwargs: Any) -> Any:
        rt = DualRuntimeManager(lab, daqhub_host, **kwargs)
        runs.append(rt)
        rt.start()
        return rt
    yield start
    for rt in runs:
        rt.shutdown()


@pytest.fixture
def daqhub_conformance(sim_registry: Any) -> Any:
    from daqhub_sims.conformance import ConformanceKit

    return ConformanceKit()


@pytest.fixture
def daqhub_instrument(daqhub_host: Any, sim_registry: Any) -> Iterator[Callable[..., Any]]:
    from daqhub_sims.instruments import InstrumentMaker

    maker = InstrumentMaker(daqhub_host)

    def make(type_name: str, flavor: str, *, instrument_id: str = "dut", connect: bool = True,
             **block: Any) -> Any:
        return maker.make(type_name, flavor, block, instrument_id, connect)
    yield make
    assert maker.close() == [], "ports or VISA sessions did not close"


@pytest.fixture
def scripted_port() -> Callable[..., Any]:
    from daqhub_sims.scripted import ScriptedPort

    return ScriptedPort
