"""``python -m daqhub_sims``: see :mod:`daqhub_sims.cli`."""

import sys

from daqhub_sims.cli import main

if __name__ == "__main__":
    sys.exit(main())
