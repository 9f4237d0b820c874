"""``python -m daqhub`` is the ``daqhub`` command."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the command is still being loaded
    sys.stderr.write("daqhub: interrupted\n")
    sys.exit(130)

sys.exit(main())
