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
