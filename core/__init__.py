"""daqhub: one process drives every instrument of a lab through installable driver plugins."""

import logging
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("daqhub")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# A library does not print log records by itself: the CLI shows alarms in its live view,
# and an application that wants the records attaches its own handler.
logging.getLogger("daqhub").addHandler(logging.NullHandler())

from .readback import read_session  # noqa: E402  (needs __version__, defined above)

__all__ = ["__version__", "read_session"]
