"""daqhub: one process drives every instrument of a lab through installable driver plugins."""

import logging


def __getattr__(name: str) -> str:
    """``__version__`` is looked up on first use: importing importlib.metadata takes long
    enough that a Ctrl-C right after ``daqhub run`` would land in it, before the command
    can handle it."""
    if name != "__version__":
        raise AttributeError(f"module 'daqhub' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("daqhub")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0"
    globals()["__version__"] = found
    return found

# A library does not print log records by itself: the CLI shows alarms in its live view,
# and an application that wants the records attaches its own handler.
logging.getLogger("daqhub").addHandler(logging.NullHandler())
