"""daqhub: one process drives every instrument of a lab through installable driver plugins."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("daqhub")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
