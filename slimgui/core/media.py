"""What previewers return: plain media the GUI has one viewer for (plugins never draw)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TextMedia:
    text: str
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TableMedia:
    columns: list[str]
    rows: list[list[Any]]
    title: str = ""


@dataclass
class ImageMedia:
    """An image or a grid of images: ``image`` is an H×W (grey) or H×W×3 uint8 numpy array.

    ``tiles`` optionally names the cells of a grid: ``[{"label": "seed 0", "box": [x, y, w, h]}, ...]``.
    """

    image: Any
    title: str = ""
    tiles: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
