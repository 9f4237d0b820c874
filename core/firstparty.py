"""What the first-party distributions provide, to name the one a lab file is missing.

A lab file written on another PC names types like ``newport.esp300`` and ports like
``sim://esp300``; on a PC without the distribution behind them, "unknown type" is true
but unhelpful, so validation names what to install. So do the commands those distributions
add (``daqhub check``, ``daqhub scan``), which argparse called an "invalid choice", and the
commands that need a part of pyarrow a PC may lack (:func:`flight_missing`).
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

#: distribution -> (what it provides, its folder in a daqhub checkout)
DISTRIBUTIONS: dict[str, str] = {
    "daqhub-newport": "drivers/newport",
    "daqhub-elliptec": "drivers/elliptec",
    "daqhub-scpi": "drivers/scpi",
    "daqhub-sims": "sims",
}
TYPE_PREFIXES: dict[str, str] = {
    "newport.": "daqhub-newport", "elliptec.": "daqhub-elliptec", "scpi.": "daqhub-scpi",
}
URL_SCHEMES: dict[str, str] = {"sim": "daqhub-sims"}
#: ``daqhub <command>`` -> the distribution that adds it
COMMANDS: dict[str, str] = {"check": "daqhub-sims", "sim": "daqhub-sims",
                            "new-plugin": "daqhub-sims", "scan": "daqhub-elliptec"}
PACKAGES: dict[str, str] = {d.replace("-", "_"): d for d in DISTRIBUTIONS}


def is_installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def module_exists(name: str) -> bool:
    """Whether ``name`` can be found to import, without importing it (nor, for a top-level
    name, anything else): what a check that runs for every lab file can afford."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing; one made None
        return False


def install_command(distribution: str) -> str:
    """``pip install <dist>`` (and the checkout's folder)."""
    return (f"pip install {distribution} "
            f"(from a daqhub checkout: pip install ./{DISTRIBUTIONS[distribution]})")


def install_hint(what: str, distribution: str) -> str:
    """``<what> is provided by <dist>: pip install <dist>`` (and the checkout's folder)."""
    return f"{what} is provided by {distribution}: {install_command(distribution)}"


def missing_provider(distribution: str | None, what: str) -> str:
    """The install hint when ``distribution`` is first-party and not installed, else ''."""
    if distribution is None or is_installed(distribution):
        return ""
    return install_hint(what, distribution)


def type_provider(type_name: str) -> str | None:
    return next((d for p, d in TYPE_PREFIXES.items() if type_name.startswith(p)), None)


#: the modules of pyarrow's Flight, which a pyarrow built without it lacks
FLIGHT_MODULES = ("pyarrow.flight", "pyarrow._flight")


def flight_missing(exc: ImportError) -> str | None:
    """What to install when ``exc`` is a pyarrow without Flight, else None. The live data
    service (``run --serve``, ``[daqhub.serve]``), its clients (``tail``, ``record``,
    ``view``, ``daqhub.connect``) need ``pyarrow.flight``: PyPI's wheels ship it, conda-forge's
    ``pyarrow-core`` and source builds may not, and the service's start ended in a
    traceback."""
    if exc.name not in FLIGHT_MODULES:
        return None
    return ("this pyarrow has no Flight (pyarrow.flight is missing): install pyarrow's wheel "
            "from PyPI (pip install --force-reinstall pyarrow) or conda-forge's full pyarrow "
            "(not pyarrow-core)")


def flight_absent() -> str | None:
    """What to install when this pyarrow has no Flight, else None: ``validate`` says it for a
    lab with ``[daqhub.serve]``, which ``run`` refuses on such a PC. Found as ``run`` finds it,
    by importing ``pyarrow.flight`` (a few ms once pyarrow is loaded): a ``pyarrow/flight.py``
    can be there without the compiled module it needs."""
    try:
        import pyarrow.flight  # noqa: F401
    except ImportError as exc:
        return flight_missing(exc) or str(exc)
    return None
