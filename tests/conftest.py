"""Fixtures shared by every test folder (a real ser2net in front of a simulated device), and
the suite's process set-up."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ser2net_server import Ser2net

#: stack dumps of a hung test under pytest-xdist (tests/stack_dumps.py)
pytest_plugins = ("stack_dumps",)


def pytest_configure(config: pytest.Config) -> None:
    """Every Python process of the suite caches the bytecode it compiles.

    The suite starts well over 150 Python processes (CLI runs, worker processes, lab
    scripts). Where PYTHONDONTWRITEBYTECODE is set (the CI box sets it), each compiled
    daqhub's editable sources afresh on import: pip byte-compiles only what it installs,
    not an editable checkout.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False


@pytest.fixture
def ser2net(tmp_path: Path) -> Iterator[Callable[..., Ser2net]]:
    """``ser2net(sim_url, rfc2217=True)``: the simulated device behind ``sim_url`` on a pty (as
    ``daqhub sim serve --pty`` serves it), served by a real ser2net on a free loopback port.
    ``.url`` is what a lab file names; ``.stop()``/``.start()`` restart the server."""
    from daqhub_sims import install, registry
    from daqhub_sims.pty_server import PtyServer

    install()
    started: list[tuple[Ser2net, PtyServer]] = []

    def make(url: str, *, rfc2217: bool = True) -> Ser2net:
        pty = PtyServer(registry.endpoint(url))
        pty.start()
        server = Ser2net(pty.path, tmp_path, rfc2217=rfc2217)
        started.append((server, pty))
        return server.start()

    yield make
    for server, pty in started:
        server.stop()
        pty.close()
