"""daqhub-acme: the ACME TC-1 temperature controller for daqhub (an example plugin).

The driver is :class:`daqhub_acme.driver.Tc1` (the protocol table, once); daqhub's driver toolkit
makes both flavors of it, registered by :mod:`daqhub_acme.plugin`.
:mod:`daqhub_acme.sim` is a simulated TC-1 for tests; nothing here imports it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("daqhub-acme")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"
