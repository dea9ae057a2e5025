"""One unit of the model view: a box with its label, its capacity bar and its state (score colour, removed,
locked, implied by another unit), drawn by :class:`UnitItem`; the row of :class:`CellItem` a unit asking for
it (``attrs["cells"] == "children"``, see :class:`slimgui.core.graph.Unit`) shows its children as; and the
small geometry the view's edges share."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem

from slimgui.core.graph import Unit, UnitGraph
from slimgui.core.session import human_count

from . import colors
from .graph_layouts import BLOCK_H, BLOCK_W, Route
from .legend import draw_padlock, removed_brush

BAR_GAP, BAR_W = 14.0, 110.0
ARROW_W = 22.0
CELL_PITCH, CELL_H = 15.0, 14.0  # the widest a cell (with its gap) and the tallest it gets


def cell_children(graph: UnitGraph, unit: Unit) -> list[Unit]:
    """The children ``unit`` shows as cells inside its box (``attrs["cells"] == "children"``), else none."""
    return graph.children(unit.id) if unit.attrs.get("cells") == "children" else []


def partners_of(graph: UnitGraph, unit: Unit) -> list[str]:
    """The units ``unit`` is removed together with (either direction of the graph's pairing hints)."""
    out = [p for p in unit.attrs.get("removes_with") or () if p in graph]
    named = unit.attrs.get("removed_with")
    out += [n for n in ([named] if isinstance(named, str) else list(named or ())) if n in graph]
    return out


# -- items -----------------------------------------------------------------------------------
class UnitItem(QGraphicsItem):
    """One unit: a rounded box with its label, parameters and score, plus (in a stack) a parameter bar.

    ``removed`` marks a unit selected for removal or going with one; ``implied`` says it is the latter (a
    partner or a part of a removed unit), drawn with a lighter, dotted border."""

    def __init__(self, unit: Unit, has_children: bool, param_share: float, bar: bool = True):
        super().__init__()
        self.unit = unit
        self.has_children = has_children
        self.param_share = param_share  # of the largest top-level unit, for the capacity bar
        self.bar = bar
        self.subtitle = ""  # a second line (parameters and MACs) in boxes tall enough for it
        self.rect = QRectF(0, 0, BLOCK_W, BLOCK_H)
        self.depth = 0
        self.fill = colors.FIXED if not unit.prunable else colors.UNSCORED
        self.score_text = ""
        self.removed = False
        self.implied = False
        self.locked = False
        self.expanded = False
        self.cells: list[CellItem] = []  # the children drawn as cells inside the box, if the unit asks for it
        self._label_right: float | None = None  # where the label stops when cells sit right of it
        self.setAcceptHoverEvents(True)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._hover = False

    def add_cells(self, sources: list[UnitItem]) -> None:
        """Show these children's items as cells in this box; each mirrors its child's state (:meth:`CellItem.sync`)."""
        self.cells = [CellItem(self, src) for src in sources]
        self._place_cells()

    def _small_font(self) -> QFont:
        font = QFont()
        font.setPointSizeF((9.5 if self.depth == 0 else 8.5) - (0.5 if not self.subtitle else 1.5))
        return font

    def _right_text(self) -> str:
        return self.score_text or (human_count(self.unit.params) + " params" if self.depth > 0 else "")

    def _place_cells(self) -> None:
        """Cells in a row, right-aligned before the score (or parameters) text; the label keeps the left."""
        if not self.cells:
            self._label_right = None
            return
        r, n = self.rect, len(self.cells)
        text = self._right_text()
        right = r.right() - (24 if self.locked else 8)
        right -= QFontMetricsF(self._small_font()).horizontalAdvance(text) + 14 if text else 0
        left = (ARROW_W if self.has_children else 8.0) + min(110.0, 0.3 * r.width())
        pitch = max(2.0, min(CELL_PITCH, (right - left) / n))
        gap = min(2.0, pitch * 0.25)
        h = max(4.0, min(CELL_H, r.height() - 10))
        x0 = right - n * pitch + gap
        top = r.center().y() - h / 2
        for i, cell in enumerate(self.cells):
            cell.set_rect(QRectF(x0 + i * pitch, top, pitch - gap, h))
        self._label_right = x0 - 6

    def boundingRect(self) -> QRectF:  # noqa: N802
        extra = BAR_GAP + BAR_W + 60 if self.bar and self.depth == 0 else 0
        return QRectF(-2, -2, self.rect.width() + extra + 4, self.rect.height() + 4)

    def set_geometry(self, rect: QRectF, depth: int) -> None:
        self.prepareGeometryChange()
        self.rect = QRectF(0, 0, rect.width(), rect.height())
        self.depth = depth
        self.setPos(rect.topLeft())
        self._place_cells()

    def set_state(self, fill: QColor, score_text: str, removed: bool, locked: bool, tooltip: str,
                  implied: bool = False) -> None:
        new = (fill.rgba(), score_text, removed, locked, implied)
        if new != (self.fill.rgba(), self.score_text, self.removed, self.locked, self.implied):
            self.fill, self.score_text, self.removed, self.locked = QColor(fill), score_text, removed, locked
            self.implied = implied
            self._place_cells()
            self.update()
        self.setToolTip(tooltip)

    def arrow_hit(self, local: QPointF) -> bool:
        return self.has_children and local.x() < ARROW_W

    def hoverEnterEvent(self, event) -> None:  # noqa: N802
        self._hover = True
        self.update()

    def hoverLeaveEvent(self, event) -> None:  # noqa: N802
        self._hover = False
        self.update()

    def paint(self, p: QPainter, option, widget=None) -> None:
        r = self.rect
        fill = QColor(self.fill) if not self.removed else colors.REMOVED_FILL
        radius = 5.0 if self.depth == 0 else 3.0
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        path = QPainterPath()
        path.addRoundedRect(r, radius, radius)
        p.fillPath(path, fill)
        if self.removed:
            p.fillPath(path, removed_brush())
            strip = QPainterPath()  # keep the importance colour visible as a strip on the left
            strip.addRoundedRect(QRectF(r.left(), r.top(), 6, r.height()), 2, 2)
            p.fillPath(strip, self.fill)
        if self.removed and self.implied:
            pen = QPen(colors.REMOVED_EDGE.lighter(130), 1.6, Qt.PenStyle.DotLine)
        elif self.removed:
            pen = QPen(colors.REMOVED_EDGE, 2.0, Qt.PenStyle.DashLine)
        elif self.locked:
            pen = QPen(colors.LOCKED_EDGE, 2.2)
        elif self._hover and self.unit.prunable:
            pen = QPen(QColor("#2563eb"), 2.0)
        else:
            pen = QPen(QColor("#94a3b8"), 1.0)
        p.setPen(pen)
        p.drawPath(path)
        text_col = colors.text_colour_on(fill) if not self.removed else colors.SELECTED_TEXT
        font = QFont(p.font())
        font.setPointSizeF(9.5 if self.depth == 0 else 8.5)
        font.setBold(self.depth == 0 and self.unit.prunable)
        font.setStrikeOut(self.removed)
        p.setFont(font)
        p.setPen(text_col)
        x = 8.0
        if self.has_children:
            tri = QPolygonF()
            cy = r.center().y() if not self.subtitle else r.top() + 12
            if self.expanded:
                tri.append(QPointF(6, cy - 3))
                tri.append(QPointF(16, cy - 3))
                tri.append(QPointF(11, cy + 4))
            else:
                tri.append(QPointF(8, cy - 5))
                tri.append(QPointF(15, cy))
                tri.append(QPointF(8, cy + 5))
            p.setBrush(text_col)
            p.setPen(Qt.PenStyle.NoPen)
            p.drawPolygon(tri)
            p.setPen(text_col)
            x = ARROW_W
        small = QFont(font)
        small.setBold(False)
        small.setStrikeOut(False)
        small.setPointSizeF(font.pointSizeF() - (0.5 if not self.subtitle else 1.5))
        right = r.right() - (24 if self.locked else 8)
        right_text = self._right_text()
        right_w = QFontMetricsF(small).horizontalAdvance(right_text) + 10 if right_text else 0.0
        two_lines = bool(self.subtitle) and r.height() >= 34
        label_end = right - right_w if self._label_right is None else self._label_right
        line = QRectF(x, r.top() + 2, max(10.0, label_end - x), r.height() / 2 - 1) if two_lines else \
            QRectF(x, r.top(), max(10.0, label_end - x), r.height())
        elided = QFontMetricsF(font).elidedText(self.unit.label, Qt.TextElideMode.ElideRight, line.width())
        p.drawText(line, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, elided)
        p.setFont(small)
        if right_text:
            p.drawText(QRectF(right - right_w, r.top(), right_w, r.height() if not two_lines else r.height() / 2 + 1),
                       Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, right_text)
        if two_lines:
            sub = QColor(text_col)
            sub.setAlpha(190)
            p.setPen(sub)
            p.drawText(QRectF(x, r.center().y(), right - x, r.height() / 2 - 2),
                       Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                       QFontMetricsF(small).elidedText(self.subtitle, Qt.TextElideMode.ElideRight, right - x))
            p.setPen(text_col)
        if self.locked:
            draw_padlock(p, QRectF(r.right() - 18, r.center().y() - 7, 11, 14),
                         colors.text_colour_on(fill))
        # capacity bar: where the parameters sit
        if self.depth == 0 and self.bar:
            bx = r.right() + BAR_GAP
            bw = max(1.0, BAR_W * self.param_share)
            bar = QRectF(bx, r.center().y() - 4, bw, 8)
            p.fillRect(QRectF(bx, bar.top(), BAR_W, 8), QColor("#eef2f7"))
            p.fillRect(bar, QColor("#94a3b8") if not self.removed else QColor("#fca5a5"))
            p.setPen(QColor("#4b5563") if not self.removed else colors.SELECTED_TEXT)
            p.setFont(small)
            p.drawText(QRectF(bx + BAR_W + 6, r.top(), 60, r.height()),
                       Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, human_count(self.unit.params))


class CellItem(QGraphicsItem):
    """One child drawn as a small cell inside its parent's box: the child's score colour, its tooltip, and
    its removed / locked marks drawn as the boxes draw them.  A click on it is a click on the child."""

    def __init__(self, parent: UnitItem, source: UnitItem):
        super().__init__(parent)
        self.source = source  # the child's own item, whose state the cell mirrors
        self.unit_id = source.unit.id
        self.rect = QRectF()
        self.fill = QColor(source.fill)
        self.removed = self.locked = self.implied = False
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self.rect.adjusted(-1.5, -1.5, 1.5, 1.5)

    def set_rect(self, rect: QRectF) -> None:
        if rect != self.rect:
            self.prepareGeometryChange()
            self.rect = QRectF(rect)

    def sync(self) -> None:
        """Take the child's colour, marks and tooltip (after the view set the child's state)."""
        s = self.source
        new = (s.fill.rgba(), s.removed, s.locked, s.implied)
        if new != (self.fill.rgba(), self.removed, self.locked, self.implied):
            self.fill, self.removed, self.locked, self.implied = QColor(s.fill), s.removed, s.locked, s.implied
            self.update()
        self.setToolTip(s.toolTip())

    def paint(self, p: QPainter, option, widget=None) -> None:
        r = self.rect
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        path = QPainterPath()
        path.addRoundedRect(r, 1.5, 1.5)
        p.fillPath(path, self.fill)
        if self.removed:
            p.fillPath(path, removed_brush())
            p.setPen(QPen(colors.REMOVED_EDGE, 1.4))
            p.drawLine(r.topLeft(), r.bottomRight())
            pen = QPen(colors.REMOVED_EDGE.lighter(130), 1.2, Qt.PenStyle.DotLine) if self.implied else \
                QPen(colors.REMOVED_EDGE, 1.6)
        elif self.locked:
            pen = QPen(colors.LOCKED_EDGE, 1.8)
        else:
            pen = QPen(QColor("#64748b"), 0.8)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(path)


def _arrowhead(route: Route, size: float = 7.0) -> QPainterPath:
    d = route.direction
    length = math.hypot(d.x(), d.y()) or 1.0
    ux, uy = d.x() / length, d.y() / length
    tip = route.end
    base = QPointF(tip.x() - ux * size, tip.y() - uy * size)
    side = QPointF(-uy * size * 0.5, ux * size * 0.5)
    head = QPainterPath(tip)
    head.lineTo(base + side)
    head.lineTo(base - side)
    head.closeSubpath()
    return head


