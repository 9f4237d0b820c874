"""Numbers a lab file gives are finite, in range, and cannot make a run spin or overflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from daqhub.config import ConfigError, parse

METER = '[[v2.instruments]]\nid = "m"\ntype = "newport.1830c"\nport = "sim://newport1830c"\n'


def problems(host, tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse(text, "lab.toml", host, tmp_path)
    return str(e.value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
@pytest.mark.parametrize("where", ["poll_hz", "daqhub", "routine", "step", "budget"])
def test_nan_and_infinities_are_refused_everywhere(daqhub_host, tmp_path, value, where) -> None:
    text = {
        "poll_hz": METER + f"poll_hz = {value}\n",
        "daqhub": f"[daqhub]\nshutdown_timeout = {value}\n" + METER,
        "routine": METER + f'[[routines]]\ninstrument = "m"\nstart_delay_s = {value}\n'
                           'steps = [["sleep", 1]]\n',
        "step": METER + f'[[routines]]\ninstrument = "m"\nsteps = [["set_wavelength", {value}]]\n',
        "budget": f"[daqhub.budget]\nmax_rss_mb = {value}\n" + METER,
    }[where]
    assert f"{value.lstrip('+')} is not a finite number" in problems(daqhub_host, tmp_path, text)


@pytest.mark.parametrize("duration", ["0", "-1", "0.0001", '"x"', "1e300"])
def test_sleep_needs_a_positive_duration(daqhub_host, tmp_path, duration) -> None:
    text = METER + f'[[routines]]\ninstrument = "m"\nsteps = [["sleep", {duration}]]\n'
    found = problems(daqhub_host, tmp_path, text)
    assert ("sleep needs one duration in seconds" if duration == '"x"'  # not a number at all
            else "sleep needs one duration from 0.001 to 1e+07 s") in found
    assert found.count("sleep needs") == 1  # one problem, said once


def test_a_repeating_routine_needs_a_sleep_step(daqhub_host, tmp_path) -> None:
    text = (METER + '[[routines]]\ninstrument = "m"\nrepeat = true\n'
            'steps = [["set_wavelength", 633]]\n')
    assert "a repeating routine needs a sleep step" in problems(daqhub_host, tmp_path, text)
    ok = text.replace('633]]', '633], ["sleep", 0.5]]')
    assert parse(ok, "lab.toml", daqhub_host, tmp_path).routines[0]["repeat"] is True


@pytest.mark.parametrize("key,value,most", [("start_delay_s", "1e300", "10000000.0"),
                                            ("step_timeout_s", "1e20", "3600.0")])
def test_durations_that_would_overflow_a_wait_are_refused(daqhub_host, tmp_path, key,
                                                          value, most) -> None:
    text = METER + f'[[routines]]\ninstrument = "m"\n{key} = {value}\nsteps = [["sleep", 1]]\n'
    found = problems(daqhub_host, tmp_path, text)
    assert f"{key} = {float(value)} is not allowed" in found and f" {most}" in found


def test_a_tiny_poll_rate_whose_period_overflows_is_refused(daqhub_host, tmp_path) -> None:
    found = problems(daqhub_host, tmp_path, METER + "poll_hz = 1e-320\n")
    assert "poll_hz = 1e-320 is not allowed: poll_hz must be a number from 1e-07" in found


def test_restart_policy_is_settable_per_lab_and_per_instrument(daqhub_host, tmp_path) -> None:
    lab = parse("[daqhub.restart]\nmax_restarts = 9\nwindow_s = 30\n" + METER.replace(
        "v2", "v4") + "restart = {backoff_first_s = 0.5, max_restarts = 2}\n",
        "lab.toml", daqhub_host, tmp_path)
    from daqhub.runtime.dual import DualRuntimeManager

    rt = DualRuntimeManager(lab, daqhub_host)
    try:
        rt.start()
        policy = rt.v4.runners["m"].policy
        assert (policy.max_restarts, policy.window_s, policy.backoff_first_s) == (2, 30, 0.5)
    finally:
        rt.shutdown()
    assert "restart.max_restarts = -1 is not allowed: restart.max_restarts must be a whole " \
        "number from 0" in problems(daqhub_host, tmp_path,
                                    "[daqhub.restart]\nmax_restarts = -1\n" + METER)
