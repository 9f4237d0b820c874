"""daqhub: one process drives every instrument of a lab through installable driver plugins."""

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("daqhub")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# A library does not print log records by itself: the CLI shows alarms in its live view,
# and an application that wants the records attaches its own handler.
logging.getLogger("daqhub").addHandler(logging.NullHandler())


def connect(url: str, **kwargs: object) -> "Connection":
    """A client of a run's data service (``daqhub run --serve``): live subscriptions, stored
    sessions, remote commands. Arguments and API: :mod:`daqhub.flight_client`."""
    from .flight_client import connect as connect_to

    return connect_to(url, **kwargs)  # type: ignore[arg-type]


if TYPE_CHECKING:
    from .flight_client import Connection

__all__ = ["__version__", "connect"]
