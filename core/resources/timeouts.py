"""How long anything in the resource managers may wait: bounded, always."""

from __future__ import annotations

DEFAULT_TIMEOUT_S = 2.0
# Waits are bounded: "forever" (None, -1, inf) is refused rather than silently allowed.
MAX_TIMEOUT_S = 3600.0


def checked_timeout(timeout: float) -> float:
    """Waits are bounded: "forever" (None, -1, inf) is refused rather than silently allowed."""
    if not 0.0 <= timeout <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout must be between 0 and {MAX_TIMEOUT_S} s, not {timeout!r}")
    return timeout
