"""What exists when a lab starts running is kept out of the garbage collector's full passes.

A full (oldest-generation) collection walks every object the collector tracks: with pyarrow,
pandas, the plugins and the lab loaded that is 60,000 objects or more, walked again each time
the objects a run makes and keeps for a while (v2 ``Measurement`` rows queued for the bridge,
batches queued for storage) have added a quarter as many to that generation. In
``bench/pipeline.py``'s v2 phase those walks were about 40 % of the CPU: 273,000 rows/s, and
487,000 with the baseline frozen. ``gc.freeze()`` moves every tracked object into a permanent
generation that collections skip; nothing is freed or copied. The first runtime to start
freezes, the last to stop unfreezes, so a script that opens labs one after another keeps
nothing frozen between them (garbage frozen with the baseline is collected after the run).
A process that froze objects itself (``gc.get_freeze_count()`` not 0) is left as it is.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_holders = 0
_ours = False  # whether the freeze in force is the one this module made


def hold() -> None:
    """A runtime starts running: freeze the baseline if it is the first."""
    global _holders, _ours
    with _lock:
        _holders += 1
        if _holders == 1 and gc.get_freeze_count() == 0:
            gc.freeze()
            _ours = True


def release() -> None:
    """A runtime stopped: the last one gives the baseline back to the collector."""
    global _holders, _ours
    with _lock:
        _holders -= 1
        if _holders == 0 and _ours:
            gc.unfreeze()
            _ours = False
