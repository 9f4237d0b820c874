"""``daqhub scan PORT``: who is on a bus, lab-file blocks that validate, address collisions."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from daqhub.cli import main as daqhub

pytestmark = pytest.mark.timeout(30)


def bus(devices: str) -> str:
    return f"sim://elliptec?name=t{uuid.uuid4().hex}&devices={devices}"


def test_scan_lists_four_modules_and_prints_blocks_daqhub_validate_accepts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = bus("0:ELL14,1:ELL9,2:ELL17,A:ELL6")
    assert daqhub(["scan", url, "--timeout", "0.05"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^  ([0-9A-F])\s+(ELL\d+)\s+(\S+)\s+(.+?)\s*$", out, re.M)
    assert [(a, m) for a, m, _, _ in rows] == [("0", "ELL14"), ("1", "ELL9"), ("2", "ELL17"),
                                               ("A", "ELL6")]
    travel = {m: t for _, m, _, t in rows}
    assert travel == {"ELL14": "360 deg", "ELL9": "4 slots", "ELL17": "28 mm",
                      "ELL6": "2 slots"}
    assert "COLLISION" not in out
    pasted = out[out.index("[[v4.instruments]]"):]
    assert pasted.count("[[v4.instruments]]") == 4
    assert 'type = "elliptec.ell17"' in pasted and "address = 10" in pasted
    lab = tmp_path / "lab.toml"
    lab.write_text(f'[daqhub]\noutput_dir = "{tmp_path / "data"}"\n\n{pasted}')
    assert daqhub(["validate", str(lab)]) == 0, capsys.readouterr().err
    assert "valid (4 instruments" in capsys.readouterr().out


def test_two_modules_on_one_address_are_reported_as_a_collision(
        capsys: pytest.CaptureFixture[str]) -> None:
    url = bus("0:ELL14,0:ELL9,3:ELL20")
    assert daqhub(["scan", url, "--timeout", "0.05", "--flavor", "v2"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"COLLISION at address 0: .*change_address", out)
    assert re.search(r"^  3\s+ELL20\s", out, re.M)
    assert out.count("[[v2.instruments]]") == 1  # the colliding address gets no block


def test_a_port_that_cannot_be_opened_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert daqhub(["scan", "/dev/does-not-exist-daqhub", "--timeout", "0.05"]) == 2
    assert "/dev/does-not-exist-daqhub" in capsys.readouterr().err


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf"])
def test_a_timeout_that_cannot_wait_is_refused(timeout: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``--timeout 0`` asked nobody long enough and reported an empty bus, exit 0."""
    with pytest.raises(SystemExit) as exit_:
        daqhub(["scan", bus("0:ELL14"), "--timeout", timeout])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert "--timeout" in captured.err and "above 0" in captured.err
    assert "module(s) answered" not in captured.out


def test_a_bus_where_nothing_answers_is_not_all_clear(
        scripted_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The wrong port, an unpowered bus: a script must not go on as if the modules were there."""
    assert daqhub(["scan", scripted_url, "--timeout", "0.02"]) == 1  # it answers nothing
    out = capsys.readouterr().out
    assert "0 module(s) answered" in out and "no module answered" in out


def test_two_modules_of_one_model_on_address_0_are_not_claimed_to_be_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Two ELL14 left on the factory address answer as one (their replies merge into a
    well-formed IN); the scan cannot tell, and says so, in its help and next to address 0."""
    assert daqhub(["scan", bus("1:ELL9,0:ELL14,0:ELL14"), "--timeout", "0.05"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  0\s+ELL14\s", out, re.M)
    assert re.search(r"note: address 0 .* two modules of one model .* answer as one", out)
    with pytest.raises(SystemExit):
        daqhub(["scan", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert "two of the same model often answer as one module" in helptext
    assert "one module connected at a time" in helptext
