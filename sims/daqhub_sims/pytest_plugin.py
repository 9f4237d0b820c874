"""pytest fixtures for simulated daqhub hardware (entry point ``pytest11``)."""

from __future__ import annotations
