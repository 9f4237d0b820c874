"""A SCPI instrument on the LAN drops off and comes back: both flavors resume by themselves."""

from __future__ import annotations

import pytest
from polling import wait_until


@pytest.mark.timeout(60)
def test_both_flavors_resume_after_the_instrument_comes_back(scpi_tcp, daqhub_lab,
                                                              daqhub_run) -> None:
    server = scpi_tcp("dmm")
    block = (f'resource = "{server.resource}"\nvisa_backend = "@py"\n'
             'read_termination = "\\n"\nwrite_termination = "\\n"\ntimeout_ms = 300\n'
             'poll_hz = 20\n')
    lab = daqhub_lab(f'[[v2.instruments]]\nid = "a"\ntype = "scpi.dmm"\n{block}'
                     f'[[v4.instruments]]\nid = "b"\ntype = "scpi.dmm"\n{block}')
    rt = daqhub_run(lab)

    def health():
        return {h["id"]: h for h in rt.health()["instruments"]}
    wait_until(lambda: all(h["measurements"] > 5 for h in health().values()), "first data",
               timeout=20)
    server.disconnect()
    wait_until(lambda: all(h["errors"] > 0 for h in health().values()),
               "both instruments to notice the lost connection", timeout=20)
    before = {i: h["measurements"] for i, h in health().items()}
    server.reconnect()
    wait_until(lambda: all(h["measurements"] > before[i] + 5 for i, h in health().items()),
               "data again after the instrument came back", timeout=30)
    report = rt.shutdown()
    assert report.ok, report.as_dict()
