"""A third-party backend's mistakes in ``open()`` and ``close()`` are named with its flavor,
name and distribution, and cost only its own flavor's files."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from storage_testdata import LAB_CONFIG

import daqhub.plugins.hdf5 as hdf5_plugin
from daqhub.hookspecs import hookimpl
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.schema import build_batch
from daqhub.specs import StorageBackend, StorageTarget
from daqhub.storage import FlavorStorage, StorageError, StorageSession

SPEC = ChannelSpec("x", "scalar", "W")


def with_backend(host: PluginHost, open_: Any) -> PluginHost:
    host.register(types.SimpleNamespace(daqhub_storage_backends=hookimpl(
        lambda: [StorageBackend("odd", open_, "a backend with a bug")])),
        "odd:store", "odd-store", "1.2")
    return host


def hdf5_open(target: StorageTarget) -> Any:
    [hdf5] = [b for b in hdf5_plugin.daqhub_storage_backends() if b.name == "hdf5"]
    return hdf5.open(target)


def cannot_open(target: StorageTarget) -> Any:
    raise RuntimeError("the share is read-only")


@pytest.mark.parametrize("open_,says", [
    (cannot_open, r"v2 storage backend odd \(odd-store 1.2\) could not open {dir}: "
                  r"RuntimeError: the share is read-only"),
    (lambda target: None, r"v2 storage backend odd \(odd-store 1.2\): open\(\) returned "
                          r"NoneType None, not a storage writer \(it has no write, flush, "
                          r"close\)")])
def test_a_backend_that_cannot_open_is_named(tmp_path: Path, storage_host: PluginHost,
                                             open_: Any, says: str) -> None:
    """"could not start the lab: the share is read-only" named no backend; None failed at
    the first write instead."""
    host = with_backend(storage_host, open_)
    with pytest.raises(StorageError) as caught:
        StorageSession.open(host, tmp_path, {"v4": FlavorStorage("hdf5", {"m": [SPEC]}),
                                             "v2": FlavorStorage("odd", {"m": [SPEC]})},
                            lab_config=LAB_CONFIG)
    session_dir = re.escape(str(tmp_path / "v2")) + r"/\d{8}T\d{6}Z-[0-9a-f]{8}"
    assert re.fullmatch(says.replace("{dir}", session_dir), str(caught.value)), caught.value
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # the other flavor's too


def listed_as(result: Any) -> Any:
    def open_(target: StorageTarget) -> Any:
        writer = hdf5_open(target)
        close = writer.close
        writer.close = lambda: (close(), result)[1]
        return writer
    return open_


@pytest.mark.parametrize("result", ["/some/file.h5", None, 3])
def test_a_close_that_returns_no_list_of_files_is_named_and_keeps_the_others_files(
        tmp_path: Path, storage_host: PluginHost, result: Any) -> None:
    """A str was listed a character a line; None dropped every flavor's files."""
    host = with_backend(storage_host, listed_as(result))
    session = StorageSession.open(host, tmp_path, {"v2": FlavorStorage("odd", {"m": [SPEC]}),
                                                   "v4": FlavorStorage("hdf5", {"n": [SPEC]})},
                                  lab_config=LAB_CONFIG)
    session.write(build_batch("n", SPEC, [1], np.array([1.0]), source="v4"))
    with pytest.raises(StorageError) as caught:
        session.close()
    assert f"v2 storage backend odd (odd-store 1.2): close() returned {type(result).__name__} " \
        f"{result!r}, not the list of the files it wrote" in str(caught.value)
    kept = caught.value.result
    assert list(kept) == ["v4"] and kept["v4"] == [session.directories["v4"] / "session.h5"]


def test_each_flavor_closes_on_its_own_and_takes_its_own_instruments_batches(
        tmp_path: Path, storage_host: PluginHost) -> None:
    """What lets the runtime give each flavor a queue and thread of its own."""
    session = StorageSession.open(storage_host, tmp_path, {
        "v2": FlavorStorage("hdf5", {"m": [SPEC]}), "v4": FlavorStorage("arrow", {"n": [SPEC]})},
        lab_config=LAB_CONFIG)
    lanes = session.lanes()
    m = build_batch("m", SPEC, [1], np.array([1.0]), source="v2")
    n = build_batch("n", SPEC, [1], np.array([2.0]), source="v4")
    stray = build_batch("z", SPEC, [1], np.array([3.0]), source="v4")
    assert [f for f, lane in lanes.items() if lane.takes(m)] == ["v2"]
    assert [f for f, lane in lanes.items() if lane.takes(n)] == ["v4"]
    assert [f for f, lane in lanes.items() if lane.takes(stray)] == ["v2"]  # refused there
    assert lanes["v2"].label == "v2 storage backend hdf5 (daqhub test)"
    lanes["v4"].write(n)
    assert lanes["v4"].close() == [session.directories["v4"] / "n" / "x.arrows"]
    lanes["v2"].write(m)  # the other flavor still writes
    assert lanes["v2"].close() == [session.directories["v2"] / "session.h5"]
    assert session.close() == {}  # closed already, each on its own
