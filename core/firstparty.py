"""What the first-party distributions provide, to name the one a lab file is missing.

A lab file written on another PC names types like ``newport.esp300`` and ports like
``sim://esp300``; on a PC without the distribution behind them, "unknown type" is true
but unhelpful, so validation names what to install.
"""

from __future__ import annotations

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
PACKAGES: dict[str, str] = {d.replace("-", "_"): d for d in DISTRIBUTIONS}


def is_installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def install_hint(what: str, distribution: str) -> str:
    """``<what> is provided by <dist>: pip install <dist>`` (and the checkout's folder)."""
    return (f"{what} is provided by {distribution}: pip install {distribution} "
            f"(from a daqhub checkout: pip install ./{DISTRIBUTIONS[distribution]})")


def missing_provider(distribution: str | None, what: str) -> str:
    """The install hint when ``distribution`` is first-party and not installed, else ''."""
    if distribution is None or is_installed(distribution):
        return ""
    return install_hint(what, distribution)


def type_provider(type_name: str) -> str | None:
    return next((d for p, d in TYPE_PREFIXES.items() if type_name.startswith(p)), None)
