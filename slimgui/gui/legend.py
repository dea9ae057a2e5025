"""The model view's legend: the colour bar of the active criterion and the marks for removed/locked units."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QLinearGradient, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from . import colors


def padlock_path(rect: QRectF) -> tuple[QPainterPath, QPainterPath]:
    """A small padlock drawn in ``rect`` (body and shackle), for locked units."""
    w, h = rect.width(), rect.height()
    body = QRectF(rect.left(), rect.top() + h * 0.45, w, h * 0.55)
    path = QPainterPath()
    path.addRoundedRect(body, w * 0.12, w * 0.12)
    shackle = QPainterPath()
    sw = w * 0.62
    sx = rect.left() + (w - sw) / 2
    shackle.moveTo(sx, body.top())
    shackle.lineTo(sx, rect.top() + h * 0.25)
    shackle.arcTo(QRectF(sx, rect.top(), sw, h * 0.5), 180, -180)
    shackle.lineTo(sx + sw, body.top())
    return path, shackle


def draw_padlock(painter: QPainter, rect: QRectF, colour: QColor) -> None:
    body, shackle = padlock_path(rect)
    painter.save()
    painter.setPen(QPen(colour, max(1.2, rect.width() * 0.14)))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawPath(shackle)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colour)
    painter.drawPath(body)
    painter.restore()


def removed_brush() -> QBrush:
    return QBrush(colors.REMOVED_HATCH, Qt.BrushStyle.BDiagPattern)


class ColorLegend(QWidget):
    """A horizontal colour bar (least → most important) with the criterion and its value range.

    The same bar shows any other values the view is coloured by (:meth:`set_range` with ``title`` and
    ``words``, e.g. the per-layer sensitivity of an export)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.criterion: str | None = None
        self.low: float | None = None
        self.high: float | None = None
        self.scale = "linear"
        self.title: str | None = None
        self.words = ("least important", "most important")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(54)

    def sizeHint(self) -> QSize:
        return QSize(420, 54)

    def set_range(self, criterion: str | None, low: float | None, high: float | None, scale: str = "linear",
                  *, title: str | None = None, words: tuple[str, str] | None = None) -> None:
        """``criterion`` names what colours the view (None: nothing); ``title`` replaces "Importance by …" and
        ``words`` the two ends' "least/most important" for values that are not importance scores."""
        self.criterion, self.low, self.high, self.scale = criterion, low, high, scale
        self.title = title
        self.words = tuple(words) if words else ("least important", "most important")
        if title and criterion:
            self.setToolTip(f"colour = {title} ({scale} scale): dark = {self.words[0]}, yellow = {self.words[1]}")
        else:
            self.setToolTip(f"colour = importance by '{criterion}' ({scale} scale): dark = least important, "
                            "yellow = most important" if criterion else "run an analysis to colour the blocks")
        self.update()

    @staticmethod
    def _fmt(v: float | None) -> str:
        if v is None:
            return ""
        a = abs(v)
        if a != 0 and (a >= 1e5 or a < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}"

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt override)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = p.fontMetrics()
        text = self.palette().windowText().color()
        hint = QColor("#6b7280")
        x0, top = 8.0, 2.0
        title = ((self.title or f"Importance by {self.criterion}") + {"log": " (log scale)", "rank": " (by rank)"}.get(self.scale, "")
                 if self.criterion else "No scores yet — run an analysis")
        p.setPen(text)
        p.drawText(QPointF(x0, top + fm.ascent()), title)
        # the colour bar with its value range; words under its two ends
        low, high = (self._fmt(self.low), self._fmt(self.high)) if self.criterion else ("", "")
        words = self.words
        bar_w = max(150.0, fm.horizontalAdvance(words[0]) + fm.horizontalAdvance(words[1]) + 16)
        y_bar = top + fm.height() + 3
        x_bar = x0 + (fm.horizontalAdvance(low) + 6 if low else 0)
        bar = QRectF(x_bar, y_bar, bar_w, 12)
        if self.criterion:
            grad = QLinearGradient(bar.topLeft(), bar.topRight())
            for i in range(11):
                grad.setColorAt(i / 10, colors.colour_at(i / 10))
            p.fillRect(bar, grad)
        else:
            p.fillRect(bar, colors.UNSCORED)
        p.setPen(QPen(hint, 1))
        p.drawRect(bar)
        p.setPen(text)
        mid = bar.center().y() + fm.ascent() / 2 - 1
        if low:
            p.drawText(QPointF(x0, mid), low)
            p.drawText(QPointF(bar.right() + 6, mid), high)
        p.setPen(hint)
        y_words = bar.bottom() + fm.ascent() + 1
        p.drawText(QPointF(bar.left(), y_words), words[0])
        p.drawText(QPointF(bar.right() - fm.horizontalAdvance(words[1]), y_words), words[1])
        # marks: after the bar when there is room, else on the title line's right
        marks = (("removed", "selected for removal"), ("locked", "locked (keep-set)"), ("fixed", "not prunable"))
        x = bar.right() + (fm.horizontalAdvance(high) + 24 if high else 24)
        need = sum(30 + fm.horizontalAdvance(label) + 14 for _, label in marks)
        y_mark = bar.top()
        if x + need > self.width():
            x, y_mark = max(x0 + fm.horizontalAdvance(title) + 24, self.width() - need), top + 1
        p.setPen(text)
        for kind, label in marks:
            box = QRectF(x, y_mark - 2, 22, 15)
            if kind == "removed":
                p.fillRect(box, colors.REMOVED_FILL)
                p.fillRect(box, removed_brush())
                p.setPen(QPen(colors.REMOVED_EDGE, 1.5, Qt.PenStyle.DashLine))
                p.drawRect(box)
            elif kind == "locked":
                draw_padlock(p, QRectF(x + 5, y_mark - 3, 12, 16), text)  # the legend sits on the window: its text colour
            else:
                p.fillRect(box, colors.FIXED)
            p.setPen(text)
            p.drawText(QPointF(box.right() + 6, box.center().y() + fm.ascent() / 2 - 1), label)
            x = box.right() + 6 + fm.horizontalAdvance(label) + 14
        p.end()
