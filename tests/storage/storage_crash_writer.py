"""A storage writer run as a subprocess by the crash tests: it writes at full rate until killed.

Usage: ``python storage_crash_writer.py OUTPUT_DIR FLUSH_INTERVAL [--swmr]``

It stops by itself after ``MAX_SECONDS`` so a test that fails to kill it cannot
fill the disk.

v2 goes to HDF5 and v4 to Arrow at the same time. Every sample carries the
wall-clock time it was generated as its timestamp and a running index as its
value, so the test can tell from the files alone what survived the kill: a
prefix of 0, 1, 2 ... whose last timestamp is at most a flush interval before
the moment of the kill. The line ``ready <session id>`` on stdout says the
first samples were written.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import daqhub.plugins.arrow as arrow_plugin
import daqhub.plugins.hdf5 as hdf5_plugin
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.schema import build_batch
from daqhub.storage import FlavorStorage, StorageSession

SCALAR = ChannelSpec("x", "scalar", "W")
IMAGE = ChannelSpec("frame", "image", "counts", "uint16", (32, 48))
SPECTRUM = ChannelSpec("spec", "spectrum", "V", "float32", (None,), "nm")
CHANNELS = {"meter": [SCALAR], "cam": [IMAGE, SPECTRUM]}
ROWS_PER_BATCH = 100
FRAME_EVERY = 10
MAX_SECONDS = 20.0


def main(argv: list[str]) -> int:
    out, interval, swmr = argv[0], float(argv[1]), "--swmr" in argv
    host = PluginHost()
    host.register(hdf5_plugin, "daqhub:hdf5")
    host.register(arrow_plugin, "daqhub:arrow")
    session = StorageSession.open(host, out, {
        "v2": FlavorStorage("hdf5", CHANNELS, options={"flush_interval": interval, "swmr": swmr}),
        "v4": FlavorStorage("arrow", CHANNELS, options={"flush_interval": interval}),
    }, lab_config="# crash test\n")
    i = 0
    frame = 0
    deadline = time.monotonic() + MAX_SECONDS
    while time.monotonic() < deadline:
        now = time.time_ns()
        ts = now + np.arange(ROWS_PER_BATCH, dtype=np.int64)
        values = np.arange(i, i + ROWS_PER_BATCH, dtype=np.float64)
        for source in ("v2", "v4"):
            session.write(build_batch("meter", SCALAR, ts, values, source=source))
        i += ROWS_PER_BATCH
        if i % (ROWS_PER_BATCH * FRAME_EVERY) == 0:
            pixels = np.full((1, 32, 48), frame % 65536, dtype=np.uint16)
            length = frame % 7 + 1
            spectrum = np.full(length, frame, dtype=np.float32)
            axis = np.arange(length, dtype=np.float64)
            for source in ("v2", "v4"):
                session.write(build_batch("cam", IMAGE, [now], pixels, source=source))
                session.write(build_batch("cam", SPECTRUM, [now], [spectrum], axes=[axis],
                                          source=source))
            frame += 1
            if frame == 1:
                session.flush()
                print(f"ready {session.session_id}", flush=True)
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
