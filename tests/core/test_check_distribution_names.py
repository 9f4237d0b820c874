"""``daqhub check DIST`` takes a distribution's name as pip does, and says a distribution
is not installed rather than that it "declares no conformance cases"."""

from __future__ import annotations

import pytest

from daqhub import firstparty
from daqhub_sims import checks


@pytest.mark.parametrize("spelt", ["daqhub_newport", "Daqhub-Newport"])
def test_a_name_spelt_as_pip_allows_is_checked(spelt: str) -> None:
    """Both said "declares no conformance cases (...); installed: daqhub-newport"."""
    outcomes = checks.run_checks([spelt])
    assert outcomes and all(o.error == "" for o in outcomes), [o.error for o in outcomes]
    assert {o.distribution for o in outcomes} == {"daqhub-newport"}


def test_a_distribution_not_installed_is_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    [outcome] = checks.run_checks(["acme-nowhere"])
    assert outcome.error == "acme-nowhere declares no conformance cases: it is not installed"
    real_declared, real_installed = checks.declared, firstparty.is_installed
    monkeypatch.setattr(checks, "declared", lambda: {
        d: specs for d, specs in real_declared().items() if d != "daqhub-scpi"})
    monkeypatch.setattr(firstparty, "is_installed",
                        lambda d: d != "daqhub-scpi" and real_installed(d))
    [outcome] = checks.run_checks(["daqhub-scpi"])
    assert outcome.error == ("daqhub-scpi declares no conformance cases: it is not installed; "
                             "pip install daqhub-scpi (from a daqhub checkout: pip install "
                             "./drivers/scpi)")
