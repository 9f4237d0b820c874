"""Reading a dashboard screenshot: how much of each plot is drawn in a given colour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.image import imread


def colour_pixels(png: Path, rect: dict[str, Any], rgb: tuple[int, int, int],
                  tolerance: int = 40) -> int:
    """Pixels inside ``rect`` (a DOMRect as a dict) within ``tolerance`` of ``rgb``."""
    img = (imread(png)[..., :3] * 255).astype(int)
    x0, y0 = max(0, int(rect["left"])), max(0, int(rect["top"]))
    x1, y1 = int(rect["right"]), int(rect["bottom"])
    region = img[y0:y1, x0:x1]
    return int((np.abs(region - np.array(rgb)).max(axis=-1) <= tolerance).sum())


def distinct_colours(png: Path, rect: dict[str, Any]) -> int:
    """How many colours a region holds: a drawn heatmap has many, an empty card two or three."""
    img = (imread(png)[..., :3] * 255).astype(int)
    region = img[int(rect["top"]):int(rect["bottom"]), int(rect["left"]):int(rect["right"])]
    return len(np.unique(region.reshape(-1, 3), axis=0))
