"""Browser tests need Debian's chromium; .ci/run installs it when missing.

They skip without it on a developer's machine, never in CI (``CI`` set): there a missing
browser is a failure, not a quiet gap in the acceptance tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from chromium import chromium_path  # noqa: E402

needs_chromium = pytest.mark.skipif(
    chromium_path() is None and not os.environ.get("CI"),
    reason="chromium is not installed (apt-get install chromium; .ci/run does it)")
