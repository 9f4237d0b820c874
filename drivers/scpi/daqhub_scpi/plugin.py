"""daqhub plugin entry point of daqhub-scpi: registers the instrument types that work."""

from __future__ import annotations
