"""``python -m daqhub`` is the ``daqhub`` command."""

import sys

from .cli import main

sys.exit(main())
