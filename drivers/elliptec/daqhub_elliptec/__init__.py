"""daqhub driver for Thorlabs Elliptec (ELLx) modules on a shared serial bus.

Layout, bottom up: ``status`` (GS codes), ``frames`` (commands and reply lines),
``models`` (`IN` reply, scaling), ``router`` (one reply router per port),
``steps`` + ``axis`` (every operation written once as a plan), ``runners``
(plans run blocking for v2, awaited for v4), ``v2``/``v4`` (thin flavor
shells), ``discovery`` (which addresses answer) and ``plugin``
(registration). See README.md beside the package.
"""
