"""The live table of ``daqhub run`` in terminals of different widths, as a user reads it.

The view is rendered into a rich console as wide as ``COLUMNS`` says (what a terminal of
that width gives rich), from a runtime stand-in whose health is fixed.
"""

from __future__ import annotations

import io
from collections import deque
from typing import Any

import pytest

from daqhub.cli.run import COLUMNS, GIVE_UP, MIN_TABLE_WIDTH, LiveView

pytestmark = pytest.mark.timeout(30)


def instrument(iid: str, type_: str, value: str, *, flavor: str = "v2",
               state: str = "running", errors: int = 0) -> dict[str, Any]:
    return {"id": iid, "flavor": flavor, "type": type_, "state": state, "rate_hz": 10.0,
            "last_value": value, "measurements": 1234, "errors": errors, "restarts": 1,
            "reconnects": 2, "last_error": ""}


DEMO = [instrument("stage", "newport.esp300", "5 mm"),
        instrument("power", "newport.1830c", "502 uW"),
        instrument("rotator", "elliptec.ell14", "0 deg"),
        instrument("slider", "elliptec.ell9", "0 slot", flavor="v4"),
        instrument("dmm", "scpi.dmm", "999.9 mV", flavor="v4"),
        instrument("psu", "scpi.psu", "500 mA", flavor="v4")]
TWINS = [instrument("powermeter_north", "newport.1830c", "1.001 uW"),
         instrument("powermeter_south", "newport.1830c", "1.002 uW", state="reconnecting",
                    errors=2)]


class Runtime:
    """What the live view asks of a DualRuntimeManager."""

    session_id = "20261207T171928Z-55c89cd9"

    def __init__(self, instruments: list[dict[str, Any]]) -> None:
        self.instruments = instruments
        self.state_changes: deque[dict[str, Any]] = deque()

    def health(self) -> dict[str, Any]:
        return {"instruments": self.instruments, "alarms": [], "routines": [],
                "queues": {"bridge": {"depth": 2, "capacity": 10000}},
                "budget": {"cpu_percent": {"v2": 2.0}, "rss_mb": 150}}


def screen(instruments: list[dict[str, Any]], columns: int,
           monkeypatch: pytest.MonkeyPatch) -> str:
    """What the view shows at the end of a 3 s run in a terminal ``columns`` wide."""
    monkeypatch.setenv("COLUMNS", str(columns))
    out = io.StringIO()
    with LiveView(Runtime(instruments), plain=False, out=out, interval_s=2,  # type: ignore[arg-type]
                  duration_s=3) as view:
        view.update(3.0)
    return out.getvalue()


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """The header's column names and each row's cells (cells are 2+ spaces apart)."""
    lines = text.splitlines()
    at = next(n for n, ln in enumerate(lines) if ln.split()[:1] == ["instrument"])
    split = [[c for c in ln.strip().split("  ") if c] for ln in lines[at:]]
    header = [c.strip() for c in split[0]]
    rows = [[c.strip() for c in r] for r in split[2:] if r]
    return header, rows[:next((n for n, r in enumerate(rows) if r[0].startswith("queues")),
                              len(rows))]


def test_ids_are_shown_whole_when_the_terminal_has_room(monkeypatch) -> None:
    """They were cut to 12 characters: both power meters read ``powermeter_…``."""
    _, rows = table(screen(TWINS, 120, monkeypatch))
    assert [r[0] for r in rows] == ["powermeter_north", "powermeter_south"]


@pytest.mark.parametrize("columns", [40, 45, 50])
def test_ids_shortened_to_fit_keep_their_ends_and_stay_apart(columns, monkeypatch) -> None:
    _, rows = table(screen(TWINS, columns, monkeypatch))
    north, south = rows[0][0], rows[1][0]
    assert north != south
    assert north.endswith("north") and south.endswith("south"), (north, south)
    assert north.startswith("power"), north


@pytest.mark.parametrize("columns", range(MIN_TABLE_WIDTH, 121, 5))
@pytest.mark.parametrize("lab", [DEMO, TWINS], ids=["demo", "twins"])
def test_a_narrow_terminal_leaves_columns_out_in_the_stated_order(lab, columns,
                                                                  monkeypatch) -> None:
    """Values keep their unit prefix (they lost it at 40 columns: ``502 u``), headers and
    numbers are whole, and what is missing is the start of the stated order, so err and
    rs/rc no longer vanish first."""
    text = screen(lab, columns, monkeypatch)
    header, rows = table(text)
    assert max(len(ln) for ln in text.splitlines()) <= columns
    dropped = [c for how, c in GIVE_UP if how == "drop"]
    missing = {c for c in COLUMNS if c not in header}
    assert missing == set(dropped[:len(missing)]), (columns, header)
    assert {"instrument", "state", "last value"} <= set(header)
    for row, inst in zip(rows, lab, strict=True):
        cells = dict(zip(header, row, strict=True))
        assert cells["last value"] == inst["last_value"], (columns, row)
        assert cells["state"] == inst["state"]
        assert cells.get("samples", "1234") == "1234" and cells.get("rs/rc", "1/2") == "1/2"


def test_at_60_columns_errors_and_restarts_are_still_shown(monkeypatch) -> None:
    header, rows = table(screen(DEMO, 60, monkeypatch))
    assert "err" in header and "last value" in header, header
    assert "…" not in "".join(header)


def test_the_type_is_shortened_at_its_end_before_it_goes(monkeypatch) -> None:
    header, rows = table(screen(DEMO, 76, monkeypatch))
    assert "type" in header and "fl" not in header, header
    types = [r[header.index("type")] for r in rows]
    assert types[0].startswith("newport") and types[0].endswith("…"), types
    assert "scpi.dmm" in types


def test_below_the_minimum_width_the_view_prints_plain_lines(monkeypatch) -> None:
    text = screen(DEMO, MIN_TABLE_WIDTH - 1, monkeypatch)
    assert f"needs {MIN_TABLE_WIDTH}: plain status lines every 2 s instead" in text
    assert "[   3.0s] stage=running:1234 power=running:1234" in text
    assert "polls/s" not in text
