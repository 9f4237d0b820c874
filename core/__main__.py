"""``python -m daqhub`` is the ``daqhub`` command."""

import os
import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the command is still being loaded (see cli.interrupted)
    sys.stderr.write("daqhub: interrupted\n")
    sys.stderr.flush()
    os._exit(130)

sys.exit(main())
