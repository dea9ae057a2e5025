"""One viewer per media type that previewers return (plugins return data, the GUI draws it).

A family that returns a new media type adds a viewer class to :data:`VIEWERS`; the compare panel
picks the viewer with :func:`viewer_for` and needs no other change.  The base class and the sound and
video viewers live in :mod:`slimgui.gui.media_viewers` (re-exported here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QFontMetrics, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.media import AudioMedia, ImageMedia, TableMedia, TextMedia, VideoMedia, image_array, save_png

from .media_viewers import AudioViewer, MediaViewer, VideoViewer, qimage_of

__all__ = ["VIEWERS", "AudioViewer", "FallbackViewer", "ImageViewer", "MediaViewer", "TableViewer", "TextViewer",
           "VideoViewer", "media_class", "qimage_of", "viewer_class", "viewer_for"]


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
        for key, value in meta.items():  # whatever facts the previewer adds (lengths, time, rate, ...)
            if isinstance(value, (int, float, str)) and not isinstance(value, bool) and not key.startswith("_"):
                name = key.replace("_per_s", "/s").replace("_", " ")
                bits.append(f"{name} {value:,.4g}" if isinstance(value, float) else f"{name} {value}")
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


class ImageViewer(MediaViewer):
    """An image or a grid of images, scaled without smoothing (every generated pixel stays a sharp square).

    A grid's ``tiles`` are shown with their labels: each row of tiles gets a strip above it with the row's
    name (e.g. "slimmed (25 steps)") and each tile's own label (e.g. "seed 3").  "Fit" shows the whole image in
    the space available (whole multiples when enlarging); 1×, 2×, 4×, 8× show it at that scale.  "Save image…"
    writes the image itself (not the labels) as a PNG, atomically, through :func:`slimgui.core.media.save_png`.
    """

    media_type = ImageMedia
    saved = Signal(str)  # where the PNG went
    failed = Signal(str)  # why it could not be written (one line)
    LABEL_H = 18

    def __init__(self, parent: QWidget | None = None, save_text: str = "Save image…"):
        super().__init__(parent)
        self.zoom = QComboBox()
        self.zoom.addItems(["Fit", "1×", "2×", "4×", "8×"])
        self.zoom.setToolTip("Scale (no smoothing): Fit fills the width")
        self.zoom.currentIndexChanged.connect(lambda _i: self._render())
        self.save_button = QPushButton(save_text)
        self.save_button.setToolTip("Write the image as a PNG file")
        self.save_button.clicked.connect(self._save_clicked)
        self.save_button.setEnabled(False)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.picture.setStyleSheet("background: #ffffff;")
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.picture)
        self.scroll.setWidgetResizable(False)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        bar = QHBoxLayout()
        bar.addWidget(self.caption, 1)
        bar.addWidget(self.zoom)
        bar.addWidget(self.save_button)
        self._layout.addLayout(bar)
        self._layout.addWidget(self.scroll, 1)
        self.scale = 1.0
        self.array: Any = None
        self.last_dir: str | None = None

    # -- showing -----------------------------------------------------------------------------------
    def show_media(self, media: ImageMedia) -> None:
        super().show_media(media)
        try:
            self.array = image_array(media)
        except SlimError as exc:
            self.media = None
            self.picture.clear()
            self.caption.setText(f"cannot show this image: {exc.one_line()}")
            self.save_button.setEnabled(False)
            return
        meta = media.meta or {}
        bits = [media.title] if media.title else []
        if meta.get("seeds"):
            seeds = meta["seeds"]
            bits.append(f"seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}")
        h, w = self.array.shape[:2]
        bits.append(f"{w}×{h} px")
        self.caption.setText(" · ".join(str(b) for b in bits))
        self.save_button.setEnabled(True)
        self._render()

    def clear(self) -> None:
        super().clear()
        self.picture.clear()
        self.caption.clear()
        self.save_button.setEnabled(False)

    def bands(self) -> list[tuple[int, int, str, list[tuple[int, int, str]]]]:
        """The image cut into rows of tiles: ``(top, bottom, row label, [(x, width, tile label)])``; one band of
        the whole image when it names no tiles."""
        media = self.media
        h, w = self.array.shape[:2]
        groups: dict[tuple, list[dict]] = {}
        for tile in media.tiles or []:
            box = tile.get("box")
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                continue
            key = ("row", str(tile["row"])) if tile.get("row") is not None else ("y", int(box[1]))
            groups.setdefault(key, []).append(tile)
        if not groups:
            return [(0, h, media.title or "", [])]
        out = []
        for key, tiles in groups.items():
            top = max(0, min(int(t["box"][1]) for t in tiles))
            bottom = min(h, max(int(t["box"][1]) + int(t["box"][3]) for t in tiles))
            row = key[1] if key[0] == "row" else ""
            cells = []
            for t in sorted(tiles, key=lambda t: t["box"][0]):
                label = str(t.get("label", ""))
                if row and label.startswith(row):
                    label = label[len(row):].lstrip(" ·:-")
                cells.append((int(t["box"][0]), int(t["box"][2]), label))
            out.append((top, bottom, row, cells))
        return sorted(out, key=lambda b: b[0])

    def _fit_scale(self) -> float:
        """The largest scale showing the whole image (labels included) in the viewer; whole multiples from 1×."""
        bands = self.bands()
        pixels = sum(b - t for t, b, _, _ in bands) or self.array.shape[0]
        labels = (self.LABEL_H + 4) * len(bands) + self.LABEL_H
        avail_w = max(40, self.scroll.viewport().width() - 4)
        avail_h = max(40, self.scroll.viewport().height() - 4 - labels)
        s = min(avail_w / max(1, self.array.shape[1]), avail_h / max(1, pixels))
        return float(int(s)) if s >= 1 else max(0.1, s)

    def _render(self) -> None:
        if self.media is None or getattr(self, "array", None) is None:
            return
        text = self.zoom.currentText()
        self.scale = self._fit_scale() if text == "Fit" else float(text.rstrip("×"))
        self.picture.setPixmap(self.compose(self.scale))
        self.picture.adjustSize()

    def compose(self, scale: float) -> QPixmap:
        """The image at ``scale`` (nearest neighbour) with labels: above each row of tiles a strip with the row's
        name, and a strip with the tiles' own labels (e.g. seeds) where they differ from the row above's."""
        image = qimage_of(self.array)
        h, w = self.array.shape[:2]
        bands = self.bands()
        strips = []
        previous: list[str] | None = None
        for _, _, row, cells in bands:
            names = [c[2] for c in cells]
            show_cells = any(names) and names != previous
            strips.append((bool(row), show_cells))
            previous = names
        out_w = max(1, round(w * scale))
        out_h = sum(self.LABEL_H * (a + b) + max(1, round((bottom - top) * scale)) + (4 if a else 0)
                    for (top, bottom, _, _), (a, b) in zip(bands, strips))
        pixmap = QPixmap(out_w, max(1, out_h))
        pixmap.fill(QColor("#ffffff"))
        p = QPainter(pixmap)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        font = QFont(self.font())
        font.setPointSizeF(8.5)
        bold = QFont(font)
        bold.setBold(True)
        small = QFontMetrics(font)
        y = 0
        for (top, bottom, row, cells), (with_row, with_cells) in zip(bands, strips):
            if with_row:
                p.setPen(QColor("#111827"))
                p.setFont(bold)
                p.drawText(QRectF(4, y, out_w - 8, self.LABEL_H), Qt.AlignmentFlag.AlignBottom,
                           QFontMetrics(bold).elidedText(row, Qt.TextElideMode.ElideRight, out_w - 8))
                y += self.LABEL_H
            if with_cells:
                p.setFont(font)
                p.setPen(QColor("#4b5563"))
                for x, cw, label in cells:
                    text = small.elidedText(label, Qt.TextElideMode.ElideRight, max(10, int(cw * scale) - 4))
                    p.drawText(QRectF(x * scale, y, cw * scale, self.LABEL_H),
                               Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter, text)
                y += self.LABEL_H
            height = max(1, round((bottom - top) * scale))
            p.drawImage(QRectF(0, y, out_w, height), image, QRectF(0, top, w, bottom - top))
            y += height + (4 if with_row else 0)
        p.end()
        return pixmap

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.zoom.currentText() == "Fit":
            self._render()

    # -- saving ------------------------------------------------------------------------------------
    def _save_clicked(self) -> None:
        if self.media is None:
            return
        name = (str(self.media.title or "image").strip() or "image")[:40]
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or "image"
        start = str(Path(self.last_dir or Path.home()) / f"{safe}.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save the image as PNG", start, "PNG images (*.png)")
        if path:
            self.save(path)

    def save(self, path: str) -> Path | None:
        """Write the image to ``path`` (".png" added when missing); emits ``saved`` or ``failed``."""
        if self.media is None:
            self.failed.emit("nothing to save yet")
            return None
        if not str(path).lower().endswith(".png"):
            path = f"{path}.png"
        try:
            out = save_png(self.media, path)
        except SlimError as exc:
            self.failed.emit(exc.one_line())
            return None
        self.last_dir = str(out.parent)
        self.saved.emit(str(out))
        return out


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


VIEWERS: dict[type, type[MediaViewer]] = {TextMedia: TextViewer, TableMedia: TableViewer, ImageMedia: ImageViewer,
                                          AudioMedia: AudioViewer, VideoMedia: VideoViewer}


def media_class(name: str | None) -> type | None:
    """The media class a previewer's declared media type names ("text" -> TextMedia, ...), or None."""
    wanted = f"{name or ''}media".lower()
    return next((kind for kind in VIEWERS if kind.__name__.lower() == wanted), None)


def viewer_class(media: Any) -> type[MediaViewer]:
    for kind, cls in VIEWERS.items():
        if isinstance(media, kind):
            return cls
    return FallbackViewer


def viewer_for(media: Any, parent: QWidget | None = None) -> MediaViewer:
    viewer = viewer_class(media)(parent)
    viewer.show_media(media)
    return viewer
