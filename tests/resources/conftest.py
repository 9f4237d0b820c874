"""Fixtures for the shared-manager tests: pty fake devices, pyvisa-sim copies, managers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from resources_fakes import PtyDevice, sim_yaml

from daqhub.resources import LockOrderChecker, SerialPortManager, VisaSessionManager


@pytest.fixture
def checker() -> LockOrderChecker:
    return LockOrderChecker(enabled=True)


@pytest.fixture
def pty_device() -> Iterator[Callable[..., PtyDevice]]:
    """Factory for pty fake devices; all are closed at teardown."""
    made: list[PtyDevice] = []

    def make(**kwargs: object) -> PtyDevice:
        dev = PtyDevice(**kwargs)  # type: ignore[arg-type]
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.close()


@pytest.fixture
def serial_mgr(checker: LockOrderChecker) -> Iterator[SerialPortManager]:
    mgr = SerialPortManager(checker=checker)
    yield mgr
    assert mgr.close_all(5.0) == []


@pytest.fixture
def visa_mgr(checker: LockOrderChecker) -> Iterator[VisaSessionManager]:
    mgr = VisaSessionManager(checker=checker)
    yield mgr
    assert mgr.close_all(5.0) == []


@pytest.fixture
def sim_backend(tmp_path: Path) -> str:
    """A fresh pyvisa-sim YAML (``Q<n>?`` -> ``R<n>``) on GPIB0::5 and GPIB0::7."""
    return sim_yaml(tmp_path, resources=("GPIB0::5::INSTR", "GPIB0::7::INSTR"))
