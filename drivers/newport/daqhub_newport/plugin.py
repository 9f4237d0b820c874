"""daqhub plugin entry point of daqhub-newport: registers the instrument types that work."""

from __future__ import annotations
