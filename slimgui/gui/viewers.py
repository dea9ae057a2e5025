"""One viewer per media type that previewers return (plugins return data, the GUI draws it).

A family that returns a new media type adds a viewer class to :data:`VIEWERS`; the compare panel
picks the viewer with :func:`viewer_for` and needs no other change.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QLabel,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.media import TableMedia, TextMedia


class MediaViewer(QWidget):
    """Shows one piece of media; ``show_media`` replaces what it shows."""

    media_type: type | None = None

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.media: Any = None
        self.caption = QLabel()
        self.caption.setObjectName("Hint")
        self.caption.setWordWrap(True)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)

    def show_media(self, media: Any) -> None:
        self.media = media

    def clear(self) -> None:
        self.media = None


class TextViewer(MediaViewer):
    media_type = TextMedia

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.edit = QPlainTextEdit()
        self.edit.setReadOnly(True)
        self.edit.setAcceptDrops(False)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.edit.setFont(font)
        self._layout.addWidget(self.edit, 1)
        self._layout.addWidget(self.caption)

    @property
    def text(self) -> str:
        return self.edit.toPlainText()

    def show_media(self, media: TextMedia) -> None:
        super().show_media(media)
        self.edit.setPlainText(media.text)
        meta = media.meta or {}
        bits = [media.title] if media.title else []
        if "new_tokens" in meta:
            bits.append(f"{meta['new_tokens']} new tokens")
        if "seconds" in meta:
            bits.append(f"{meta['seconds']} s")
        if "tokens_per_s" in meta:
            bits.append(f"{meta['tokens_per_s']} tokens/s")
        self.caption.setText(" · ".join(str(b) for b in bits))

    def clear(self) -> None:
        super().clear()
        self.edit.clear()
        self.caption.clear()


class TableViewer(MediaViewer):
    media_type = TableMedia

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.table = QTableWidget()
        self._layout.addWidget(self.table, 1)
        self._layout.addWidget(self.caption)

    def show_media(self, media: TableMedia) -> None:
        super().show_media(media)
        self.table.clear()
        self.table.setColumnCount(len(media.columns))
        self.table.setRowCount(len(media.rows))
        self.table.setHorizontalHeaderLabels([str(c) for c in media.columns])
        for r, row in enumerate(media.rows):
            for c, value in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(str(value)))
        self.caption.setText(media.title)


class FallbackViewer(MediaViewer):
    """Any media without a viewer yet: its description, so nothing is silently dropped."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self._layout.addWidget(self.label, 1)

    def show_media(self, media: Any) -> None:
        super().show_media(media)
        self.label.setText(f"No viewer for {type(media).__name__} yet:\n{media!r}"[:2000])


VIEWERS: dict[type, type[MediaViewer]] = {TextMedia: TextViewer, TableMedia: TableViewer}


def viewer_class(media: Any) -> type[MediaViewer]:
    for kind, cls in VIEWERS.items():
        if isinstance(media, kind):
            return cls
    return FallbackViewer


def viewer_for(media: Any, parent: QWidget | None = None) -> MediaViewer:
    viewer = viewer_class(media)(parent)
    viewer.show_media(media)
    return viewer
