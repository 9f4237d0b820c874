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

# The public face: what scripts and plugin authors import from ``daqhub``. Loaded on first
# use, so ``import daqhub`` (and the CLI's start) stays cheap; everything else is internal.
_PUBLIC = {
    "open_lab": "lab", "open_lab_async": "lab", "Lab": "lab", "Instrument": "lab",
    "LiveData": "lab", "CommandNotSent": "lab", "ScanError": "scan",
    "ConfigError": "config", "DriverError": "instrument", "V2Instrument": "instrument",
    "V4Actor": "instrument", "Measurement": "measurement", "Columns": "measurement",
    "ChannelSpec": "measurement",
    "ShutdownReport": "runtime.dual", "read_session": "readback",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'daqhub' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"daqhub.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
