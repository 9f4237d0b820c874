"""A running lab keeps what existed at its start out of the collector's full passes, and
gives it back when it stops (see daqhub.runtime.gcbaseline)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from polling import wait_until
from runtime_fakes import make_lab

from daqhub.runtime.dual import DualRuntimeManager

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    assert gc.get_freeze_count() == 0, "an earlier test left objects frozen"
    yield
    gc.unfreeze()


def runtime(host, tmp_path, name: str) -> DualRuntimeManager:  # type: ignore[no-untyped-def]
    lab = make_lab(host, tmp_path / name, v2=[(f"{name}2", "test.counter")],
                   v4=[(f"{name}4", "test.counter")])
    return DualRuntimeManager(lab, host)


def test_a_run_freezes_the_baseline_and_gives_it_back(host, tmp_path) -> None:
    baseline = ["made before the run"]  # tracked by the collector
    rt = runtime(host, tmp_path, "a")
    rt.start()
    assert gc.get_freeze_count() > 0
    assert not any(o is baseline for o in gc.get_objects())  # in no generation it collects
    # an instrument that stored nothing makes the run not ok, so let both store something
    wait_until(lambda: set(rt.counts()) == {"a2", "a4"}, what="samples of a2 and a4")
    report = rt.shutdown()
    assert report.ok, report
    assert gc.get_freeze_count() == 0
    assert any(o is baseline for o in gc.get_objects())  # collected normally again


def test_the_last_of_two_runs_gives_it_back(host, tmp_path) -> None:
    first, second = runtime(host, tmp_path, "a"), runtime(host, tmp_path, "b")
    first.start()
    second.start()
    first.shutdown()
    assert gc.get_freeze_count() > 0  # the second still runs
    second.shutdown()
    assert gc.get_freeze_count() == 0


def test_a_run_that_failed_to_start_leaves_nothing_frozen(host, tmp_path) -> None:
    rt = runtime(host, tmp_path, "a")

    def fail() -> None:
        raise RuntimeError("thread limit reached")
    rt.v2.start = fail  # type: ignore[method-assign]  # the last step, after the freeze
    with pytest.raises(RuntimeError, match="thread limit"):
        rt.start()
    assert gc.get_freeze_count() == 0


def test_a_process_that_froze_objects_itself_is_left_as_it_was(host, tmp_path) -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    rt = runtime(host, tmp_path, "a")
    rt.start()
    rt.shutdown()
    assert gc.get_freeze_count() == frozen
