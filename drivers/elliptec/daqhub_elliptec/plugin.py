"""daqhub plugin entry point of daqhub-elliptec: registers the instrument types that work."""

from __future__ import annotations
