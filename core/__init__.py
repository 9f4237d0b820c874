"""daqhub: one process drives every instrument of a lab through installable driver plugins."""

import logging

__version__: str  # found on first use, see _version(); an annotation alone costs no import

# A library does not print log records by itself: the CLI shows alarms in its live view,
# and an application that wants the records attaches its own handler.
logging.getLogger("daqhub").addHandler(logging.NullHandler())

# The public face: what scripts and plugin authors import from ``daqhub``. Loaded on first
# use, so ``import daqhub`` (and the CLI's start) stays cheap; everything else is internal.
_PUBLIC = {
    "open_lab": "lab", "open_lab_async": "lab", "Lab": "lab", "Instrument": "lab",
    "LiveData": "lab", "CommandNotSent": "lab", "CommandOutcomeUnknown": "instrument",
    "ScanError": "scan",
    "ConfigError": "config", "DriverError": "instrument", "V2Instrument": "instrument",
    "V4Actor": "instrument", "Measurement": "measurement", "Columns": "measurement",
    "ChannelSpec": "measurement",
    "ShutdownReport": "runtime.dual", "read_session": "readback",
    "connect": "flight_client", "Connection": "flight_client",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    if name == "__version__":
        return _version()
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'daqhub' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"daqhub.{module}"), name)


def _version() -> str:
    """``__version__`` is looked up on first use: importing importlib.metadata takes long
    enough that a Ctrl-C right after ``daqhub run`` would land in it, before the command
    can handle it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("daqhub")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0"
    globals()["__version__"] = found
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
