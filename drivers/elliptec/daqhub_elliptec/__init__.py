"""daqhub driver for Thorlabs Elliptec (ELLx) modules on a shared serial bus.

Layout, bottom up: ``status`` (GS codes), ``frames`` (commands and reply lines),
``models`` (`IN` reply, scaling), ``router`` (the toolkit's bus router with Elliptec's
lines), ``axis`` (every operation written once as a plan), ``driver`` (the session class
both flavors are generated from), ``discovery`` (which addresses answer) and ``plugin``
(registration). See README.md beside the package.
"""
