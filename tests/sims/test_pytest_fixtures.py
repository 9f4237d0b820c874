"""The fixtures daqhub-sims gives driver authors work as a driver would use them."""

from __future__ import annotations

import serial

from daqhub_sims.visa_files import DMM_RESOURCE


def _identify(url: str) -> bytes:
    with serial.serial_for_url(url, timeout=2) as s:
        s.write(b"0in")
        return s.read_until(b"\r\n")


def test_sim_url_pty_and_tcp_reach_the_same_simulated_bus(sim_url, sim_pty, sim_tcp,
                                                          sim_endpoint) -> None:
    url = sim_url("elliptec", devices="0:ELL14")
    assert _identify(url).startswith(b"0IN0E")
    assert _identify(sim_tcp(url)).startswith(b"0IN0E")
    # the pty last: its server takes every reply on the line from then on, since a pty cannot
    # tell whether a client holds it open (a TCP server takes them only while one is connected)
    assert _identify(sim_pty(url)).startswith(b"0IN0E")
    assert sim_endpoint(url).device is not None


def test_sim_url_gives_fresh_devices(sim_url) -> None:
    assert sim_url("esp300") != sim_url("esp300")


def test_visa_sim_backend_is_a_fresh_copy(visa_sim_backend) -> None:
    import pyvisa

    a, b = visa_sim_backend(), visa_sim_backend()
    assert a != b and a.endswith("@sim")
    rm = pyvisa.ResourceManager(a)
    try:
        dmm = rm.open_resource(DMM_RESOURCE, read_termination="\n", write_termination="\n")
        assert dmm.query("*IDN?").startswith("SIM,DMM1")
    finally:
        rm.close()


def test_scpi_tcp_and_daqhub_run(scpi_tcp, daqhub_lab, daqhub_run) -> None:
    server = scpi_tcp("dmm")
    lab = daqhub_lab(f'[[v4.instruments]]\nid = "dmm"\ntype = "scpi.dmm"\n'
                     f'resource = "{server.resource}"\nvisa_backend = "@py"\n'
                     f'read_termination = "\\n"\nwrite_termination = "\\n"\npoll_hz = 50\n')
    rt = daqhub_run(lab)
    assert rt.call("dmm", "identify").startswith("SIM,DMM1")
