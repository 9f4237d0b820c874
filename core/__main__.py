"""The ``daqhub`` command: ``python -m daqhub`` and the ``daqhub`` script both start here.

Ctrl-C must end in one line and exit 130 even while the command is still loading, so this
module imports nothing heavy: it installs that handling first, then loads the command and
hands SIGINT back (the command turns ``KeyboardInterrupt`` into the same exit, and ``daqhub
run`` installs its phased shutdown). What happens before this module runs belongs to the
interpreter's start-up; docs/lab-guide.md says how long that is.
"""

import atexit
import os
import sys

from .interrupt import exit_on_interrupt, hand_over, ignore_at_exit, interrupted, quit_on_interrupt


def main() -> int:
    previous = quit_on_interrupt()
    atexit.register(ignore_at_exit)  # first registered, last run
    try:
        from .cli import main as command

        hand_over(previous)
        code = command()
    except KeyboardInterrupt:  # between giving SIGINT back and the command's own handling
        interrupted()
    exit_on_interrupt(code)
    served = sys.modules.get("daqhub.flight_service")
    storage = sys.modules.get("daqhub.storage")
    if (served is not None and served.held_open()) or (
            storage is not None and storage.opens_running()):
        # the command is over (files closed, report printed), but a data service client that
        # stopped reading holds its server, which pyarrow's exit would wait for (for ever, if
        # that client never reads again), or a storage open() given up on still runs and may
        # hold h5py's lock, which the interpreter's exit would wait for
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # its reader went away: nothing more to say there
                pass
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
