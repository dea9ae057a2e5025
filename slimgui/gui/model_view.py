"""The model view: the UnitGraph drawn as blocks, coloured by the active criterion (or by an overlay:
any ``{unit id: value}`` map with its own legend title, such as the per-layer sensitivity of an export).

How the graph is placed comes from its ``attrs["layout"]`` hint through :data:`LAYOUTS`
(:mod:`.graph_layouts`, a registry of the shapes it draws; the boxes are :mod:`.unit_item`); every other part of the view
(colours, locks, tooltips, clicks) is the same for all of them.  Click a block to select it for removal, click
its arrow (or double-click) to show its children; Ctrl+wheel zooms, drag pans.  Units that go with a selected
one (the graph's partners of a unit) are drawn removed too.  A unit with ``attrs["cells"] == "children"``
shows its children as a row of small cells in its box (:class:`.unit_item.CellItem`), coloured on the same
scale as the boxes; a click on a cell is a click on that child.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.graph import Unit, UnitGraph
from slimgui.core.session import aggregate_up, color_scale, human_count, normalized, removal_closure

from . import colors
from .document import Document
from .graph_layouts import LAYOUTS, Placement, Route, StackLayout, UNetLayout, layout_for
from .legend import ColorLegend
from .notify import Notifier
from .unit_item import CellItem, UnitItem, _arrowhead, cell_children, partners_of

__all__ = ["LAYOUTS", "CellItem", "GraphView", "ModelPanel", "Placement", "StackLayout", "UNetLayout", "UnitItem",
           "layout_for"]

FLOW_PEN = QColor("#94a3b8")
SKIP_PEN = QColor("#6366f1")


class GraphView(QGraphicsView):
    """Draws a UnitGraph; emits ``unitClicked`` for a click, handles expand, zoom, pan and fit."""

    unitClicked = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontSavePainterState, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setBackgroundBrush(QBrush(QColor("#fbfcfe")))
        self.setAcceptDrops(False)  # drops go to the window (open a model anywhere)
        self.graph: UnitGraph | None = None
        self.unit_items: dict[str, UnitItem] = {}
        self.expanded: set[str] = set()
        self._edges: list[QGraphicsItem] = []
        self._press: QPointF | None = None
        self.focused: str | None = None  # the unit another view chose (the Roofline view's click): ringed
        self._focus_ring: QGraphicsRectItem | None = None

    # -- building ------------------------------------------------------------------------------
    def set_graph(self, graph: UnitGraph | None, layout_name: str | None = None) -> None:
        scene = self.scene()
        scene.clear()
        self.unit_items, self._edges, self.expanded = {}, [], set()
        self.focused, self._focus_ring = None, None
        self.graph = graph
        if graph is None:
            return
        layout = layout_for(graph, layout_name)  # the family's declared layout (AdapterSpec.layout), if it fits
        with_children = {u.parent for u in graph.units if u.parent is not None}
        top = [u for u in graph.units if u.parent is None]
        biggest = max((u.params for u in top), default=1) or 1
        macs_of = graph.attrs.get("macs_per") or layout.macs_per  # the family's word, else the layout's
        for unit in graph.units:
            parent_params = graph.get(unit.parent).params if unit.parent else biggest
            item = UnitItem(unit, unit.id in with_children, unit.params / max(1, parent_params), layout.capacity_bars)
            if layout.two_line and unit.parent is None:
                item.subtitle = f"{human_count(unit.params)} params" + (
                    f" · {human_count(unit.macs)} MACs/{macs_of}" if unit.macs else "")
            item.setZValue(2 if unit.parent is None else 3)
            scene.addItem(item)
            self.unit_items[unit.id] = item
        for unit in graph.units:
            kids = cell_children(graph, unit)
            if kids:
                self.unit_items[unit.id].add_cells([self.unit_items[k.id] for k in kids])
        self.expanded = set(layout.default_expanded(graph))
        self.relayout()

    def relayout(self) -> None:
        if self.graph is None:
            return
        layout = layout_for(self.graph)
        placed = layout.place(self.graph, self.expanded)
        shown = set()
        for pl in placed:
            item = self.unit_items[pl.unit.id]
            item.set_geometry(pl.rect, pl.depth)
            expanded = pl.unit.id in self.expanded
            if item.expanded != expanded:
                item.expanded = expanded
                item.update()
            item.setVisible(True)
            shown.add(pl.unit.id)
        for uid, item in self.unit_items.items():
            if uid not in shown:
                item.setVisible(False)
        for edge in self._edges:
            self.scene().removeItem(edge)
        self._edges = []
        for route in layout.routes(self.graph, placed, self.expanded):
            self._draw_route(route)
        self._place_focus()
        bounds = self.scene().itemsBoundingRect().adjusted(-20, -20, 20, 20)
        self.scene().setSceneRect(bounds)

    def focus_unit(self, unit_id: str) -> None:
        """Select ``unit_id`` for the eye: its ancestors expanded so it shows, scrolled into view, a ring around it
        (another view chose it, e.g. a click on its point in the Roofline view).  An unknown id is ignored."""
        if self.graph is None or unit_id not in self.unit_items:
            return
        hidden = [a for a in self.graph.ancestors(unit_id) if a not in self.expanded]
        self.focused = unit_id
        if hidden:
            self.set_expanded(self.expanded | set(hidden))
        self._place_focus()
        self.ensureVisible(self.unit_items[unit_id])

    def _place_focus(self) -> None:
        item = self.unit_items.get(self.focused) if self.focused else None
        if item is None or not item.isVisible():
            if self._focus_ring is not None:
                self._focus_ring.setVisible(False)
            return
        if self._focus_ring is None:
            self._focus_ring = QGraphicsRectItem()
            self._focus_ring.setPen(QPen(QColor("#2563eb"), 3))
            self._focus_ring.setZValue(10)
            self._focus_ring.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self.scene().addItem(self._focus_ring)
        self._focus_ring.setRect(item.sceneBoundingRect().adjusted(-3, -3, 3, 3))
        self._focus_ring.setVisible(True)

    def _draw_route(self, route: Route) -> None:
        colour = SKIP_PEN if route.kind == "skip" else FLOW_PEN
        pen = QPen(colour, 1.4, Qt.PenStyle.DashLine if route.kind == "skip" else Qt.PenStyle.SolidLine)
        edge = QGraphicsPathItem(route.path)
        edge.setPen(pen)
        edge.setZValue(1)
        edge.setData(0, route.kind)
        self.scene().addItem(edge)
        self._edges.append(edge)
        if route.arrow:
            head = QGraphicsPathItem(_arrowhead(route))
            head.setPen(QPen(colour, 1.0))
            head.setBrush(colour)
            head.setZValue(1)
            head.setData(0, "arrowhead")
            self.scene().addItem(head)
            self._edges.append(head)
        if route.label:
            text = QGraphicsSimpleTextItem(route.label)
            font = QFont(text.font())
            font.setPointSizeF(7.5)
            text.setFont(font)
            text.setBrush(colour)
            w = text.boundingRect().width()
            h = text.boundingRect().height()
            text.setPos(route.label_at.x() - w / 2, route.label_at.y() - h)
            text.setZValue(1)
            text.setData(0, f"{route.kind}-label")
            self.scene().addItem(text)
            self._edges.append(text)

    def sync_cells(self) -> None:
        """Cells take their children's colours, marks and tooltips (after the view set the units' states)."""
        for item in self.unit_items.values():
            for cell in item.cells:
                cell.sync()

    def cells_of(self, unit_id: str) -> list[CellItem]:
        """The cells drawn in a unit's box (its children, when the graph asks for it), e.g. for tests."""
        return list(self.unit_items[unit_id].cells)

    def routes_of(self, kind: str) -> list[QGraphicsItem]:
        """The drawn edges of a kind ("flow", "skip", "arrowhead", "skip-label"), e.g. for tests."""
        return [e for e in self._edges if e.data(0) == kind]

    def toggle_expanded(self, unit_id: str) -> None:
        if unit_id in self.expanded:
            self.expanded.discard(unit_id)
        elif self.graph is not None and self.graph.children(unit_id):
            self.expanded.add(unit_id)
        self.relayout()

    def set_expanded(self, ids) -> None:
        self.expanded = {i for i in ids if i in self.unit_items}
        self.relayout()

    # -- navigation ----------------------------------------------------------------------------
    def zoom(self, factor: float) -> None:
        current = self.transform().m11()
        factor = min(max(factor, 0.05 / current), 8.0 / current)
        self.scale(factor, factor)

    def fit(self) -> None:
        """The whole graph in view."""
        if self.graph is None:
            return
        self.resetTransform()
        self.fitInView(self.scene().itemsBoundingRect().adjusted(-12, -12, 12, 12), Qt.AspectRatioMode.KeepAspectRatio)

    def fit_width(self) -> None:
        """Scale so the blocks fill the width (capped), scrolled to the top: readable for deep stacks."""
        if self.graph is None:
            return
        bounds = self.scene().itemsBoundingRect().adjusted(-12, -12, 12, 12)
        avail = max(50, self.viewport().width() - 4)
        s = min(1.0, max(0.3, avail / bounds.width()))
        whole = (self.viewport().height() - 4) / bounds.height()
        if whole >= 0.6:  # the whole graph is readable at once: show all of it
            s = min(s, whole)
        self.resetTransform()
        self.scale(s, s)
        self.centerOn(bounds.center().x(), bounds.top() + self.viewport().height() / (2 * s))

    def wheelEvent(self, event) -> None:  # noqa: N802
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom(1.15 ** (event.angleDelta().y() / 120))
            event.accept()
        else:
            super().wheelEvent(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(1.25)
        elif key == Qt.Key.Key_Minus:
            self.zoom(0.8)
        elif key == Qt.Key.Key_F:
            self.fit()
        else:
            super().keyPressEvent(event)

    # -- clicks (a press and release without dragging) ---------------------------------------
    def mousePressEvent(self, event) -> None:  # noqa: N802
        self._press = event.position()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        super().mouseReleaseEvent(event)
        if self._press is None or event.button() != Qt.MouseButton.LeftButton:
            return
        moved = (event.position() - self._press).manhattanLength()
        self._press = None
        if moved > 4:
            return
        self.click_at(event.position().toPoint())

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        item = self._item_at(event.position().toPoint())
        if item is not None and item.has_children:
            self.toggle_expanded(item.unit.id)

    def _item_at(self, pos) -> UnitItem | None:
        for item in self.items_at(pos):
            return item
        return None

    def items_at(self, pos) -> list[UnitItem]:
        return [i for i in QGraphicsView.items(self, pos) if isinstance(i, UnitItem)]

    def click_at(self, pos) -> None:
        cells = [i for i in QGraphicsView.items(self, pos) if isinstance(i, CellItem) and i.isVisible()]
        if cells:  # a cell in a box: the click is on that child
            self.unitClicked.emit(cells[0].unit_id)
            return
        hits = self.items_at(pos)
        if not hits:
            return
        item = max(hits, key=lambda i: i.zValue())
        local = item.mapFromScene(self.mapToScene(pos))
        if item.arrow_hit(local):
            self.toggle_expanded(item.unit.id)
        else:
            self.unitClicked.emit(item.unit.id)

    def click_cell(self, unit_id: str) -> None:
        """Click the cell that shows ``unit_id`` in its parent's box (what a user's click does)."""
        cell = next(c for item in self.unit_items.values() for c in item.cells if c.unit_id == unit_id)
        self.ensureVisible(cell)
        self.click_at(self.mapFromScene(cell.mapToScene(cell.rect.center())))

    def click_unit(self, unit_id: str) -> None:
        """Click the middle of a unit's box (what a user's click does; used by tests and shortcuts)."""
        item = self.unit_items[unit_id]
        self.ensureVisible(item)
        centre = item.mapToScene(item.rect.center() + QPointF(item.rect.width() * 0.2, 0))
        self.click_at(self.mapFromScene(centre))


# -- the panel -------------------------------------------------------------------------------
class ModelPanel(QWidget):
    """Header (model summary, colour-by, zoom), the graph view and the legend."""

    def __init__(self, document: Document, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.notifier = document, notifier
        self.title = QLabel("Drop a model folder here, or use File → Open")
        self.title.setObjectName("ModelTitle")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.title.setWordWrap(True)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.colour_by = QComboBox()
        self.colour_by.setToolTip("What colours the blocks: a criterion's scores, or other values such as the "
                                  "per-layer sensitivity of an export")
        self.colour_by.setMinimumWidth(120)
        self.colour_by.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.colour_by.currentIndexChanged.connect(self._colour_by_changed)
        self.view = GraphView()
        self.legend = ColorLegend()
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(QLabel("Colour by"))
        head.addWidget(self.colour_by)
        for text, tip, slot in (("−", "Zoom out (Ctrl+wheel)", lambda: self.view.zoom(0.8)),
                                ("+", "Zoom in (Ctrl+wheel)", lambda: self.view.zoom(1.25)),
                                ("Fit", "Show the whole model (F)", self.view.fit)):
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            head.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(head)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.legend)
        self.view.unitClicked.connect(self._clicked)
        document.modelChanged.connect(self._model_changed)
        document.scoresChanged.connect(self.refresh)
        document.selectionChanged.connect(self.refresh)
        document.overlaysChanged.connect(self.refresh)
        self._updating_combo = False
        self.overlay_values: dict[str, float] = {}  # the active overlay's values, aggregated up the graph

    @property
    def items(self) -> dict[str, UnitItem]:
        return self.view.unit_items

    def _model_changed(self) -> None:
        g, m = self.doc.graph, self.doc.model
        spec = self.doc.spec if m is not None else None
        self.view.set_graph(g, spec.layout if spec is not None else None)
        if g is not None and m is not None:
            name = m.source.rstrip("/").split("/")[-1] or m.source
            kind = g.attrs.get("architecture") or g.attrs.get("model_class") or g.family
            weights = "" if m.has_weights else "  ·  config only (no weights)"
            what = self.doc.unit_word(True)
            pipeline = g.attrs.get("pipeline_params")
            around = f" ({human_count(pipeline)} with the whole pipeline)" if pipeline and pipeline > g.total_params else ""
            self.title.setText(f"<b>{name}</b>  ·  {kind}  ·  {human_count(g.total_params)} params{around}  ·  "
                               f"{len(g.prunable())} prunable {what}{weights}")
            self.title.setToolTip(m.source)
        self.refresh()
        self.view.fit_width()

    def _colour_by_changed(self, index: int) -> None:
        if self._updating_combo or index < 0:
            return
        kind, _, name = (self.colour_by.itemData(index) or f"criterion:{self.colour_by.itemText(index)}").partition(":")
        try:
            if kind == "overlay":
                self.doc.show_overlay(name)
            else:
                self.doc.show_overlay(None)
                self.doc.set_active(name)
        except SlimError as exc:
            self.notifier.error(exc.one_line())

    def _clicked(self, unit_id: str) -> None:
        try:
            g = self.doc.graph
            unit = g.get(unit_id)
            target = unit_id
            if not unit.prunable:  # a partner (a mirrored up-stage layer): the click means its removable pair
                pair = [p for p in partners_of(g, unit) if g.get(p).prunable]
                if pair:
                    target = pair[0]
            if not self.doc.toggle(target):
                why = "is locked by the keep-set" if target in self.doc.locked else "cannot be removed"
                self.notifier.info(f"{unit.label} {why}")
        except SlimError as exc:
            self.notifier.warning(exc.one_line())

    def _fill_combo(self) -> None:
        self._updating_combo = True
        try:
            entries = [(name, f"criterion:{name}") for name in self.doc.scores]
            entries += [(key, f"overlay:{key}") for key in self.doc.overlays]
            shown = [(self.colour_by.itemText(i), self.colour_by.itemData(i)) for i in range(self.colour_by.count())]
            if shown != entries:
                self.colour_by.clear()
                for text, data in entries:
                    self.colour_by.addItem(text, data)
                    if data.startswith("overlay:"):
                        self.colour_by.setItemData(self.colour_by.count() - 1, self.doc.overlays[text].title,
                                                   Qt.ItemDataRole.ToolTipRole)
            want = (f"overlay:{self.doc.active_overlay}" if self.doc.overlay is not None else
                    f"criterion:{self.doc.active.criterion}" if self.doc.active is not None else None)
            if want is not None:
                self.colour_by.setCurrentIndex(self.colour_by.findData(want))
        finally:
            self._updating_combo = False

    def refresh(self) -> None:
        self._fill_combo()
        g = self.doc.graph
        if g is None:
            self.overlay_values = {}
            self.legend.set_range(None, None, None)
            return
        overlay = self.doc.overlay
        active = self.doc.active if overlay is None else None
        if overlay is not None:
            values = aggregate_up(g, overlay.values, overlay.aggregate)
            name = self.doc.active_overlay
        else:
            values = {u.id: active.values[u.id] for u in g.prunable() if active and u.id in active.values}
            name = active.criterion if active else None
        self.overlay_values = values if overlay is not None else {}
        norm = normalized(values) if values else {}
        finite = [v for v in values.values() if math.isfinite(v)]
        if name and finite:
            lo, hi = min(finite), max(finite)
            scale = color_scale(values)
            if overlay is not None:
                self.legend.set_range(name, lo, hi, scale, title=overlay.title, words=overlay.words)
            else:
                self.legend.set_range(name, lo, hi, scale)
        else:
            self.legend.set_range(None, None, None)
        ranks = {n: {u: i + 1 for i, u in enumerate(sc.ranking())} for n, sc in self.doc.scores.items()}
        removing = set(self.doc.remove)
        going = set(removal_closure(g, list(removing)))
        locked = set(self.doc.locked)
        total = max(1, g.total_params)
        for uid, item in self.view.unit_items.items():
            unit = item.unit
            pair = [q for q in partners_of(g, unit) if q in norm and not unit.prunable] if overlay is None else []
            if uid in norm and math.isnan(norm[uid]):
                fill = colors.UNSCORED  # a NaN score says nothing: not coloured as important
            elif uid in norm:
                fill = colors.colour_at(norm[uid])
            elif pair:  # a unit scored and removed together with its pair: its colour
                fill = colors.colour_at(norm[pair[0]])
            elif unit.prunable and overlay is None:
                fill = colors.UNSCORED
            else:
                fill = colors.FIXED if unit.parent is None else colors.CHILD
            score_text = _fmt(values[uid]) if uid in values else ""
            inside = uid in going or any(a in going for a in g.ancestors(uid))
            item.set_state(fill, score_text, inside, uid in locked,
                           self._tooltip(unit, total, ranks, removing, locked, going), implied=uid not in removing)
        self.view.sync_cells()

    def _tooltip(self, unit: Unit, total: int, ranks, removing, locked, going=frozenset()) -> str:
        g = self.doc.graph
        lines = [f"<b>{unit.label}</b> <span style='color:#6b7280'>({unit.id})</span>",
                 f"parameters: {unit.params:,} ({100 * unit.params / total:.2f}% of the model)"]
        if unit.macs:
            per = g.attrs.get("macs_per") or layout_for(g).macs_per
            lines.append(f"MACs per {per}: {unit.macs:,}")
        for key in ("type", "module", "block"):
            if unit.attrs.get(key):
                lines.append(f"{key}: {unit.attrs[key]}")
        if unit.attrs.get("channels") and unit.attrs.get("resolution"):
            res = unit.attrs["resolution"]
            lines.append(f"{unit.attrs['channels']} channels at {res[0]}×{res[1]}" if len(res) == 2 else "")
        for name, s in self.doc.scores.items():
            if unit.id in s.values:
                mark = " ◀" if self.doc.active is s else ""
                r = ranks[name].get(unit.id)
                lines.append(f"{name}: {s.values[unit.id]:.6g} (rank {r} of {len(s.values)}, 1 = least important){mark}")
                change = s.versus_baseline(unit.id)
                if change:
                    lines.append(f"&nbsp;&nbsp;without it: <b>{change}</b>")
        overlay = self.doc.overlay
        if overlay is not None and unit.id in self.overlay_values:
            own = unit.id in overlay.values
            how = "" if own else f" ({overlay.aggregate} of its parts)"
            lines.append(f"{overlay.title}: <b>{self.overlay_values[unit.id]:.4g}</b>{how} ◀")
            if overlay.notes.get(unit.id):
                lines.append(overlay.notes[unit.id])
        partners = partners_of(g, unit)
        if partners:
            names = ", ".join(f"{g.get(q).label} ({q})" for q in partners)
            lines.append(f"removed together with {names}")
        if unit.id in locked:
            lines.append("<i>locked by the keep-set</i>")
        elif unit.id in removing:
            lines.append("<b style='color:#dc2626'>selected for removal</b> — click to keep")
        elif unit.id in going or any(a in going for a in g.ancestors(unit.id)):
            lines.append("<b style='color:#dc2626'>removed</b> with the units selected for removal")
        elif unit.prunable:
            lines.append("click to select for removal")
        elif any(g.get(q).prunable for q in partners):
            lines.append("click to select its pair for removal")
        if unit.attrs.get("note"):
            lines.append(f"<i>{unit.attrs['note']}</i>")
        return "<br>".join(x for x in lines if x)


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if not math.isfinite(v):
        return "∞" if v > 0 else "−∞"
    a = abs(v)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:.3g}"
    return f"{v:.4g}"
