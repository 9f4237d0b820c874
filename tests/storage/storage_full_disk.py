"""A storage session whose disk fills for a while, run as a subprocess by test_storage_failures.

Usage: ``python storage_full_disk.py OUTPUT_DIR BACKEND``

No root and no mount: the "disk" is full while ``RLIMIT_FSIZE`` (with SIGXFSZ ignored)
refuses every write past the session file's size, so HDF5 and pyarrow get real write
errors (EFBIG) from the kernel, part-way through a write as on a full disk; lifting the
limit gives the room back. Every sample's value is its running index, so the files
alone show whether what they hold is intact. The last stdout line is JSON: samples
given, samples the session said it lost (``WriteFailed.lost``; a batch's rows for any
other error) and the session directory.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from pathlib import Path

import numpy as np

import daqhub.plugins.arrow as arrow_plugin
import daqhub.plugins.hdf5 as hdf5_plugin
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.schema import build_batch
from daqhub.storage import FlavorStorage, StorageSession

SCALAR = ChannelSpec("x", "scalar", "W")
ROWS = 100  # per batch: Arrow coalesces them (10 000 rows a batch by default)
FLUSH_EVERY = 10  # batches
#: batches with room, with the disk full, with room again; HDF5 needs new space (and fails)
#: once the rows pass its first chunk (16 384 rows)
BEFORE, DURING, AFTER = 150, 40, 40
#: bytes a write may still add once the disk is "full": a write crossing the limit is cut
#: there, as on a real full disk
ROOM = {"hdf5": 0, "arrow": 300}
OPTIONS = {"hdf5": {"flush_interval": 3600, "block_bytes": 1024},
           "arrow": {"flush_interval": 3600}}


def main(argv: list[str]) -> int:
    out, backend = Path(argv[0]), argv[1]
    host = PluginHost()
    host.register(hdf5_plugin, "daqhub:hdf5")
    host.register(arrow_plugin, "daqhub:arrow")
    session = StorageSession.open(host, out, {"v2": FlavorStorage(
        backend, {"meter": [SCALAR]}, options=OPTIONS[backend])}, lab_config="# full disk\n")
    session_dir = out / "v2" / session.session_id
    given = lost = 0

    def write(batches: int) -> None:
        nonlocal given, lost
        for i in range(batches):
            values = np.arange(given, given + ROWS, dtype=np.float64)
            batch = build_batch("meter", SCALAR, 1_700_000_000_000_000_000 + values.astype(
                np.int64), values, source="v2")
            given += ROWS
            try:
                session.write(batch)
            except Exception as exc:  # what a sink counts (daqhub.runtime.dual.SinkThread)
                lost += getattr(exc, "lost", batch.num_rows)
            if (i + 1) % FLUSH_EVERY == 0:
                try:
                    session.flush()
                except Exception:  # its loss comes with the next write or the close
                    pass

    write(BEFORE)
    [data] = [p for p in session_dir.rglob("*") if p.suffix in (".h5", ".arrows")]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (data.stat().st_size + ROOM[backend], hard))
    write(DURING)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    write(AFTER)
    try:
        session.close()
    except Exception as exc:
        lost += getattr(exc, "lost", 0)
    print(json.dumps({"given": given, "lost": lost, "stored_before": BEFORE * ROWS,
                      "session_dir": str(session_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
