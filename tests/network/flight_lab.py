"""A small simulated lab run with its data service, for the Flight tests and the benchmark.

A module with a unique name rather than conftest.py (several test folders have one).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daqhub.config import parse
from daqhub.flight_service import FlightService, start_service
from daqhub.host import PluginHost
from daqhub.runtime.dual import DualRuntimeManager
from daqhub.serve_config import ServeConfig


def lab_text(output_dir: Path | str, visa_backend: str, esp_url: str, *, poll_hz: float = 20,
             stage_hz: float | None = None, resource: str = "GPIB0::5::INSTR",
             extra: str = "") -> str:
    """A v2 ESP300 axis (HDF5, with per-sample metadata) and a v4 DMM (Arrow), + ``extra``."""
    return f"""
[daqhub]
output_dir = "{output_dir}"
[v2]
storage = "hdf5"
[v4]
storage = "arrow"
[[v2.instruments]]
id = "stage"
type = "newport.esp300"
port = "{esp_url}"
axis = 1
poll_hz = {stage_hz or poll_hz}
[[v4.instruments]]
id = "dmm"
type = "scpi.dmm"
resource = "{resource}"
visa_backend = "{visa_backend}"
poll_hz = {poll_hz}
{extra}"""


@contextmanager
def served_run(text: str, host: PluginHost, base: Path, config: ServeConfig | None = None,
               **runtime: Any) -> Iterator[tuple[DualRuntimeManager, FlightService]]:
    """The lab running with storage, its service on a free loopback port; both stopped after."""
    lab = parse(text, str(base / "lab.toml"), host, base)
    rt = DualRuntimeManager(lab, host, storage=True, **runtime)
    service = start_service(rt, config or ServeConfig(port=0))
    try:
        rt.start()
        yield rt, service
    finally:
        rt.shutdown()
        service.stop()


def ipv6_loopback() -> bool:
    """Whether this machine can bind the IPv6 loopback (some CI containers cannot)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
