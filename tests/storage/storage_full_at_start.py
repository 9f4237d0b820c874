"""Opening a storage session on a disk with no room, run as a subprocess by
test_storage_disk_full.

Usage: ``python storage_full_at_start.py OUTPUT_DIR BACKEND ROOM``

No root and no mount: ``RLIMIT_FSIZE`` (with SIGXFSZ ignored) refuses every write past
ROOM bytes of a file, as a full disk refuses it (with EFBIG rather than ENOSPC): 0 fails
the lock file's record of its holder, 50 the data file's first bytes, 200 the data
file's layout (HDF5) or its schema (Arrow). The last stdout line is JSON: the error the
open raised (type and text) and every path left under OUTPUT_DIR.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from pathlib import Path

import daqhub.plugins.arrow as arrow_plugin
import daqhub.plugins.hdf5 as hdf5_plugin
from daqhub.host import PluginHost
from daqhub.measurement import ChannelSpec
from daqhub.storage import FlavorStorage, StorageSession


def main(argv: list[str]) -> int:
    out, backend, room = Path(argv[0]), argv[1], int(argv[2])
    host = PluginHost(strict=True)
    host.register(hdf5_plugin, "daqhub:hdf5", "daqhub", "test")
    host.register(arrow_plugin, "daqhub:arrow", "daqhub", "test")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE,
                       (room, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    error: dict[str, str] = {}
    try:
        StorageSession.open(host, out, {"v2": FlavorStorage(
            backend, {"meter": [ChannelSpec("x", "scalar", "W")]})}, lab_config="# full\n")
    except Exception as exc:  # what `daqhub run` prints: "could not start the lab: <exc>"
        error = {"type": type(exc).__name__, "text": str(exc)}
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    print(json.dumps({"error": error, "left": left}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
