"""Storage sessions opened from another process, for the session and lock tests.

``race OUTPUT_DIR``: print ``armed`` once imported, read a start time (seconds since the
epoch) from stdin, wait until the wall clock reaches it (so several processes open their
sessions in the same second), open a session with both flavors, print its id, close it.

``hold OUTPUT_DIR SESSION_ID BACKEND``: open a v2 session with that id and backend, print
``ready``, keep it open until a line arrives on stdin (at most 30 s), close it.
"""

from __future__ import annotations

import select
import sys
import time

import daqhub.plugins.arrow as arrow_plugin
import daqhub.plugins.hdf5 as hdf5_plugin
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.storage import FlavorStorage, StorageSession

CHANNELS = {"meter": [ChannelSpec("x", "scalar", "W")]}


def _host() -> PluginHost:
    host = PluginHost()
    host.register(hdf5_plugin, "daqhub:hdf5")
    host.register(arrow_plugin, "daqhub:arrow")
    return host


def race(out: str) -> None:
    host = _host()
    print("armed", flush=True)
    ready, _, _ = select.select([sys.stdin], [], [], 30.0)
    if not ready:
        raise SystemExit("no start time on stdin within 30 s")
    start_at = float(sys.stdin.readline())
    deadline = time.time() + 30
    while time.time() < min(start_at, deadline):
        time.sleep(0.001)
    session = StorageSession.open(host, out, {"v2": FlavorStorage("hdf5", CHANNELS),
                                              "v4": FlavorStorage("arrow", CHANNELS)})
    print(session.session_id, flush=True)
    session.close()


def hold(out: str, session_id: str, backend: str) -> None:
    session = StorageSession.open(_host(), out, {"v2": FlavorStorage(backend, CHANNELS)},
                                  session_id=session_id)
    print("ready", flush=True)
    select.select([sys.stdin], [], [], 30.0)
    session.close()


if __name__ == "__main__":
    if sys.argv[1] == "race":
        race(sys.argv[2])
    else:
        hold(sys.argv[2], sys.argv[3], sys.argv[4])
