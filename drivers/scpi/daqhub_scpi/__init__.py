"""daqhub-scpi: SCPI instruments over VISA (``scpi.dmm``, ``scpi.psu`` and the lab-defined
``scpi.custom``), each in both flavors; see the README for their keys and behaviour."""
