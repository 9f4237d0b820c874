"""A lease entered inside another: a gate the caller still holds is skipped (taken once), and
one against the global order is refused before anything waits. ``Lease._plan`` checks the
order once, for the first gate left to take (its gates are sorted); a record copied from a
lease that has ended holds nothing (``tests/resources/test_lease_outlived.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from daqhub.resources import Gate, LockOrderChecker, LockOrderError, held_resources, lease
from daqhub.resources.ordering import SERIAL_ORDER

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def checker() -> LockOrderChecker:
    return LockOrderChecker(enabled=True)


@pytest.fixture
def gates(checker: LockOrderChecker) -> Iterator[dict[str, Gate]]:
    """Gates ``a`` to ``d``, in that order, sharing ``checker``."""
    made = {name: Gate(f"serial:{name}", (SERIAL_ORDER, name), checker=checker)
            for name in "abcd"}
    yield made
    for gate in made.values():
        assert gate.close(2)


def test_a_nested_lease_skips_a_gate_still_held_and_refuses_one_against_the_order(
        gates: dict[str, Gate], checker: LockOrderChecker) -> None:
    with lease([gates["b"]], owner="scan"):
        with lease([gates["b"], gates["c"], gates["d"]], owner="scan"):
            assert held_resources() == ["serial:b", "serial:c", "serial:d"]  # b taken once
        with pytest.raises(LockOrderError, match="asked for serial:a while holding serial:b"):
            with lease([gates["a"], gates["c"]], owner="scan"):
                pass
        assert held_resources() == ["serial:b"]
    assert checker.violations == 1
