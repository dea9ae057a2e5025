"""Colours shared by the model view, its legend and the heatmap (one colour map for everything)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor

COLORMAP_NAME = "viridis"  # perceptually uniform, readable by colour-blind users, prints in grey
UNSCORED = QColor("#e5e7eb")
FIXED = QColor("#cbd5e1")  # units that cannot be removed (embeddings, head)
CHILD = QColor("#f1f5f9")
REMOVED_EDGE = QColor("#dc2626")
REMOVED_FILL = QColor("#fff5f5")
REMOVED_HATCH = QColor(220, 38, 38, 70)
LOCKED_EDGE = QColor("#1f2937")
SELECTED_TEXT = QColor("#dc2626")
TEXT_DARK = QColor("#111827")
TEXT_LIGHT = QColor("#ffffff")

_cmap: pg.ColorMap | None = None


def colormap() -> pg.ColorMap:
    global _cmap  # a cache of an immutable object, not configuration
    if _cmap is None:
        _cmap = pg.colormap.get(COLORMAP_NAME)
    return _cmap


def colour_at(fraction: float) -> QColor:
    """Colour for a normalised score in [0, 1] (0 = least important)."""
    f = min(1.0, max(0.0, float(fraction)))
    return colormap().map(f, mode=pg.ColorMap.QCOLOR)


def text_colour_on(background: QColor) -> QColor:
    r, g, b = background.redF(), background.greenF(), background.blueF()
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return TEXT_DARK if luminance > 0.45 else TEXT_LIGHT
