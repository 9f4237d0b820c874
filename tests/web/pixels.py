"""Reading a dashboard screenshot: how much of each plot is drawn in a given colour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.image import imread


def colour_pixels(png: Path, rect: dict[str, Any], rgb: tuple[int, int, int],
                  min_cover: float = 0.35, spread: float = 0.12) -> int:
    """Pixels inside ``rect`` (a DOMRect as a dict) showing ``rgb`` over the white card.

    A pixel counts when it is the colour itself or the colour blended with white by
    antialiasing, at least ``min_cover`` of it: a 1-px line at a fractional height is drawn
    as two lighter rows and no pixel of the exact colour, which is all a flat line (a slider
    that has not moved yet) shows. ``spread`` bounds how far the three channels' coverages
    may differ (black text, grey grid lines and other colours differ by far more).
    """
    img = imread(png)[..., :3] * 255
    x0, y0 = max(0, int(rect["left"])), max(0, int(rect["top"]))
    x1, y1 = int(rect["right"]), int(rect["bottom"])
    region = img[y0:y1, x0:x1]
    colour = np.array(rgb, dtype=float)
    cover = (255 - region) / np.maximum(255 - colour, 1)  # per channel: the colour's share
    drawn = (cover.min(axis=-1) >= min_cover) & (np.ptp(cover, axis=-1) <= spread)
    return int(drawn.sum())


def distinct_colours(png: Path, rect: dict[str, Any]) -> int:
    """How many colours a region holds: a drawn heatmap has many, an empty card two or three."""
    img = (imread(png)[..., :3] * 255).astype(int)
    region = img[int(rect["top"]):int(rect["bottom"]), int(rect["left"]):int(rect["right"])]
    return len(np.unique(region.reshape(-1, 3), axis=0))
