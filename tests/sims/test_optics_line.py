"""The simulated meter behind a polariser (``polariser=LINE:ADDR``) when the mount is out of
reach: a reading fails naming why, and a lab file that cannot reach it is refused, instead of
the meter reading the full power while a Malus scan is stored as complete."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from daqhub.cli import main as daqhub_main
from daqhub_sims import registry
from daqhub_sims.device import ManualClock
from daqhub_sims.newport1830c import Newport1830C

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


def reading(meter: Newport1830C) -> str:
    meter.feed(b"D?\n")
    return meter.read().decode().strip()


def meter(polariser: str) -> Newport1830C:
    return Newport1830C({"power": "1e-3", "noise": "0", "polariser": polariser},
                        ManualClock())


def test_a_line_not_open_in_this_process_fails_the_reading_naming_workers() -> None:
    registry.endpoint("sim://elliptec?name=optics&devices=0:ELL14", clock=ManualClock())
    m = meter("optic:0")  # misspelt
    with pytest.raises(LookupError) as err:  # optics.PolariserUnreachable
        reading(m)
    text = str(err.value)
    assert "polariser=optic:0" in text and "no simulated Elliptec line named 'optic'" in text
    assert "sim://elliptec?name=optics" in text  # the lines it has, so the typo shows
    assert "workers = 1" in text


@pytest.mark.parametrize("polariser, why", [
    ("bus:3", "no Elliptec unit at address '3'; the bus has 0:ELL14, 1:ELL9"),
    ("bus:1", "the unit at address 1 is an ELL9 (slider), not a rotation mount"),
])
def test_no_rotation_mount_at_the_address_fails_the_reading(polariser: str, why: str) -> None:
    registry.endpoint("sim://elliptec?name=bus&devices=0:ELL14,1:ELL9", clock=ManualClock())
    with pytest.raises(LookupError, match=re.escape(why)):
        reading(meter(polariser))


def test_the_mount_in_reach_still_sets_the_power() -> None:
    registry.endpoint("sim://elliptec?name=bus&devices=0:ELL14", clock=ManualClock())
    assert float(reading(meter("bus:0"))) == pytest.approx(1e-3, rel=1e-3)


LAB = """
[daqhub]
output_dir = "data"
{workers}
[[v2.instruments]]
id = "rot"
type = "elliptec.ell14"
port = "sim://elliptec?name=optics&devices=0:ELL14"
address = 0
[[v2.instruments]]
id = "power"
type = "newport.1830c"
port = "sim://newport1830c?power=0.0005&polariser={line}:0"
"""


def validate(tmp_path: Path, line: str, workers: str = "") -> int:
    lab = tmp_path / "lab.toml"
    lab.write_text(LAB.format(line=line, workers=workers))
    return daqhub_main(["validate", "--offline", str(lab)])


def test_validate_refuses_a_polariser_with_workers(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, "optics") == 0
    assert validate(tmp_path, "optics", "workers = 2") == 2
    err = capsys.readouterr().err
    assert "polariser=optics:0" in err and "workers = 2" in err and "set workers = 1" in err


def test_validate_refuses_a_polariser_on_a_line_the_lab_does_not_open(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, "optic") == 2
    err = capsys.readouterr().err
    assert "names the Elliptec line 'optic', which no enabled instrument of this lab opens" \
        in err and "lines it opens: optics" in err


def test_a_disabled_flavor_s_instruments_neither_open_a_line_nor_need_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``[v2] enabled = false`` was read block by block: a mount in a disabled flavor counted
    as opening its line (validate passed, the meter crash-looped at run), and a meter in a
    disabled flavor was refused for a line or for workers it would never use."""
    mount_off = LAB.format(line="optics", workers="").replace(
        '[[v2.instruments]]\nid = "rot"', '[v4]\nenabled = false\n[[v4.instruments]]\nid = "rot"')
    lab = tmp_path / "lab.toml"
    lab.write_text(mount_off)
    assert daqhub_main(["validate", "--offline", str(lab)]) == 2
    assert "which no enabled instrument of this lab opens" in capsys.readouterr().err
    meter_off = LAB.format(line="optic", workers="workers = 2").replace(
        '[[v2.instruments]]\nid = "power"', '[v4]\nenabled = false\n[[v4.instruments]]\n'
        'id = "power"')
    lab.write_text(meter_off)
    assert daqhub_main(["validate", "--offline", str(lab)]) == 0, capsys.readouterr().err
