"""When SYST:ERR? is read (``check_errors``), and VISA settings applied only when they change."""

from __future__ import annotations

from typing import Any

import pytest

from daqhub_scpi.protocol import CHECK_ERRORS, ScpiDeviceError, check_errors_mode
from daqhub_sims import visa_files

DMM = visa_files.DMM_RESOURCE


def sent(session: Any, log: list[bytes]) -> None:
    """Record every message written on the pyvisa session."""
    write_raw = session.write_raw

    def recording(data: bytes) -> Any:
        log.append(bytes(data))
        return write_raw(data)

    session.write_raw = recording


@pytest.mark.parametrize("mode, poll_checks, command_checks", [
    ("always", 1, 1), ("commands", 0, 1), ("never", 0, 0), (True, 1, 1), (False, 0, 0)])
def test_the_error_check_runs_when_the_lab_file_says(sim_library, open_resource, build,
                                                     mode, poll_checks, command_checks) -> None:
    res = open_resource(DMM, sim_library)
    dmm = build("v2", "scpi.dmm", res, "dmm", check_errors=mode)
    dmm.connect()
    log: list[bytes] = []
    sent(res._session, log)
    dmm.read()
    assert log.count(b"SYST:ERR?\n") == poll_checks, log
    log.clear()
    dmm.write("CONF:RES")
    assert log.count(b"SYST:ERR?\n") == command_checks, log
    if command_checks:
        with pytest.raises(ScpiDeviceError, match="-113"):
            dmm.write("BOGUS")
    else:
        dmm.write("BOGUS")  # nobody looks: the entry waits in the queue for errors()
        assert dmm.errors() == [(-113, "Undefined header")]


def test_a_check_errors_value_that_is_none_of_them_is_refused() -> None:
    assert [check_errors_mode(m) for m in (*CHECK_ERRORS, True, False)] == [
        "always", "commands", "never", "always", "never"]
    with pytest.raises(ValueError, match="'always', 'commands', 'never'.*got 'sometimes'"):
        check_errors_mode("sometimes")


def test_visa_settings_are_applied_only_when_they_change(sim_library, open_resource,
                                                          build) -> None:
    res = open_resource(DMM, sim_library, timeout_ms=2000)
    dmm = build("v2", "scpi.dmm", res, "dmm", check_errors="never")  # timeout_ms 300
    dmm.connect()
    session = res._session
    dmm.read()
    assert session.timeout == 300  # the instrument's own, set by its first exchange
    calls: list[tuple[str, Any]] = []
    for name in ("get_visa_attribute", "set_visa_attribute"):
        real = getattr(session, name)

        def counting(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append((_name, args))
            return _real(*args)

        setattr(session, name, counting)
    for _ in range(5):
        dmm.read()
    assert calls == []  # the session already has this instrument's settings
    dmm.wait_complete(timeout_s=1.0)  # *OPC? waits longer: the timeout changes...
    dmm.read()  # ...and is put back for the next reading, once
    assert [c for c in calls if c[0] == "set_visa_attribute"] != []
    calls.clear()
    dmm.read()
    assert calls == [] and session.timeout == 300
