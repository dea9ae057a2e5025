"""Where the model view puts a graph's units, and how it routes the edges between them.

A graph may say how it wants to be drawn in ``attrs["layout"]``; :func:`layout_for` picks the layout from
:data:`LAYOUTS`, a registry of the shapes this view draws — the named one, else the first whose structure the
graph has, else the stack:

- :class:`StackLayout` — a block stack: top-level units one under another in edge order, an expanded
  unit's children indented below it.
- :class:`UNetLayout` — a U (any graph naming its down and up stages): the down stages descend on the left
  (the input conv and time embedding at the top), the mid block sits at the bottom, the up stages climb on
  the right (the output conv at the top right), and each level's skip connection is an arrow from the down stage across
  to the up stage at the same height.  Stages expand into their layers and the layers into their ResNet
  and attention blocks; down-stage children are indented from the left and up-stage children from the
  right, so the data-flow arrows run past them in the clear margin.

A layout is pure geometry: ``place`` gives a rectangle per shown unit, ``routes`` the edge paths; the
view (:mod:`.model_view`) owns the items, colours and clicks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QPainterPath

from slimgui.core.graph import Unit, UnitGraph

BLOCK_W, BLOCK_H, CHILD_H, GAP, INDENT = 340.0, 34.0, 24.0, 10.0, 26.0


@dataclass
class Placement:
    unit: Unit
    rect: QRectF
    depth: int


@dataclass
class Route:
    """One edge as drawn: its path, ``kind`` ("flow" or "skip"), whether it ends in an arrowhead (pointing
    along ``direction`` at the path's end) and an optional ``label`` drawn at ``label_at``."""

    path: QPainterPath
    kind: str = "flow"
    arrow: bool = False
    end: QPointF = field(default_factory=QPointF)
    direction: QPointF = field(default_factory=lambda: QPointF(0, 1))
    label: str = ""
    label_at: QPointF = field(default_factory=QPointF)


def _shown_rects(placed: list[Placement]) -> dict[str, QRectF]:
    return {pl.unit.id: pl.rect for pl in placed}


# -- the block stack ---------------------------------------------------------------------------------
class StackLayout:
    """Top-level units one under another in edge order; an expanded unit's children are indented below it."""

    name = "stack"
    capacity_bars = True  # a parameter bar beside each top-level block
    two_line = False
    macs_per = "token"  # what a unit's MACs are counted per, in this kind of graph

    def fits(self, graph: UnitGraph) -> bool:
        """Whether this layout can draw ``graph`` (a stack draws anything)."""
        return True

    def order(self, graph: UnitGraph) -> list[Unit]:
        top = [u for u in graph.units if u.parent is None]
        ids = {u.id for u in top}
        nxt: dict[str, str] = {}
        incoming: set[str] = set()
        for a, b in graph.edges:
            if a in ids and b in ids and a not in nxt:
                nxt[a] = b
                incoming.add(b)
        starts = [u for u in top if u.id not in incoming and u.id in nxt]
        if not starts:
            return top
        seen: list[str] = []
        cur: str | None = starts[0].id
        while cur is not None and cur not in seen:
            seen.append(cur)
            cur = nxt.get(cur)
        rest = [u.id for u in top if u.id not in seen]
        return [graph.get(i) for i in seen + rest]

    def default_expanded(self, graph: UnitGraph) -> set[str]:
        return set()

    def place(self, graph: UnitGraph, expanded: set[str]) -> list[Placement]:
        out: list[Placement] = []
        y = 0.0

        def add(unit: Unit, depth: int) -> None:
            nonlocal y
            h = BLOCK_H if depth == 0 else CHILD_H
            out.append(Placement(unit, QRectF(depth * INDENT, y, BLOCK_W - depth * INDENT, h), depth))
            y += h + (GAP if depth == 0 else 4)
            if unit.id in expanded:
                for child in graph.children(unit.id):
                    add(child, depth + 1)
                y += 4

        for unit in self.order(graph):
            add(unit, 0)
        return out

    def routes(self, graph: UnitGraph, placed: list[Placement], expanded: set[str]) -> list[Route]:
        rects = _shown_rects(placed)
        out = []
        for a, b in graph.edges:
            if a not in rects or b not in rects:
                continue
            ra, rb = rects[a], rects[b]
            start = QPointF(ra.center().x(), ra.bottom())
            end = QPointF(rb.center().x(), rb.top())
            path = QPainterPath(start)
            if a in expanded:  # route around the children on the left
                left = -10.0
                path.lineTo(start.x(), start.y() + 3)
                path.lineTo(left, start.y() + 3)
                path.lineTo(left, end.y() - 4)
                path.lineTo(end.x(), end.y() - 4)
            path.lineTo(end)
            out.append(Route(path, "flow", False, end))
        return out


# -- the U-Net -----------------------------------------------------------------------------------------
COL_W = 300.0  # width of the down (left) and up (right) columns
CENTRE = 190.0  # the gap between them: the skip arrows, the time embedding at the top
STAGE_H = 40.0  # a stage box: label and, under it, parameters and MACs
STEM_H = 30.0
U_CHILD_H = 22.0
U_INDENT = 16.0
ROW_GAP = 14.0
MARGIN = 9.0  # the flow arrows run this far inside a column's outer edge, past indented children


class UNetLayout:
    """A U: down stages on the left, the mid block at the bottom, up stages on the right, skips across."""

    name = "u"  # a shape: any graph with down and up stages (graph.attrs["stages"]) is drawn so
    capacity_bars = False  # parameters are written in each stage box instead (the bars would cross the skips)
    two_line = True
    macs_per = "sample"

    def fits(self, graph: UnitGraph) -> bool:
        """A U needs its stages (``graph.attrs["stages"]``)."""
        return bool(self.stages(graph)[0])

    @staticmethod
    def stages(graph: UnitGraph) -> tuple[list[str], str | None, list[str]]:
        st = graph.attrs.get("stages") or {}
        down = [s for s in st.get("down") or [] if s in graph]
        up = [s for s in st.get("up") or [] if s in graph]
        mid = st.get("mid") if st.get("mid") in graph else None
        return down, mid, up

    @staticmethod
    def level(graph: UnitGraph, uid: str, fallback: int) -> int:
        lv = graph.get(uid).attrs.get("level")
        return int(lv) if isinstance(lv, int) else fallback

    def default_expanded(self, graph: UnitGraph) -> set[str]:
        """The stages whose layers can go (or go with a removable layer): their layers are shown, coloured."""
        down, mid, up = self.stages(graph)
        out = set()
        for sid in down + up:
            if graph.get(sid).attrs.get("cells") == "children":
                continue  # its children are drawn as cells in its box already: rows would repeat them
            kids = graph.children(sid)
            if any(k.prunable or k.attrs.get("removed_with") for k in kids):
                out.add(sid)
        return out

    def _sides(self, graph: UnitGraph) -> tuple[list[Unit], list[Unit], list[Unit], list[Unit]]:
        """Top-level units besides the stages: (above the left column, left of the top row, centre of the top
        row, right of the top row)."""
        down, mid, up = self.stages(graph)
        staged = set(down + up + ([mid] if mid else []))
        others = [u for u in graph.units if u.parent is None and u.id not in staged]
        into_down = {a for a, b in graph.edges if down and b == down[0]}
        from_up = {b for a, b in graph.edges if up and a == up[-1]}
        left = [u for u in others if u.id in into_down]
        right = [u for u in others if u.id in from_up]
        linked = {x for e in graph.edges for x in e}
        centre = [u for u in others if u not in left and u not in right and u.id not in linked]
        extra = [u for u in others if u not in left and u not in right and u not in centre]
        return extra, left, centre, right

    def _column(self, graph: UnitGraph, unit: Unit, x: float, y: float, width: float, height: float,
                expanded: set[str], mirror: bool, out: list[Placement]) -> float:
        """Place ``unit`` and its expanded descendants one under another; returns the bottom."""
        out.append(Placement(unit, QRectF(x, y, width, height), 0))
        bottom = y + height

        def add(parent: Unit, depth: int) -> None:
            nonlocal bottom
            for child in graph.children(parent.id):
                w = width - depth * U_INDENT
                cx = x if mirror else x + depth * U_INDENT
                bottom += 3
                out.append(Placement(child, QRectF(cx, bottom, w, U_CHILD_H), depth))
                bottom += U_CHILD_H
                if child.id in expanded:
                    add(child, depth + 1)

        if unit.id in expanded:
            add(unit, 1)
        return bottom

    def place(self, graph: UnitGraph, expanded: set[str]) -> list[Placement]:
        down, mid, up = self.stages(graph)
        n = len(down)
        right_x = COL_W + CENTRE
        out: list[Placement] = []
        extra, left, centre, right = self._sides(graph)
        y = 0.0
        for unit in extra:  # anything the U does not explain: above the left column
            y = self._column(graph, unit, 0.0, y, COL_W, STEM_H, expanded, False, out) + ROW_GAP
        if left or centre or right:
            bottoms = [y]
            ly = ry = y
            for unit in left:
                ly = self._column(graph, unit, 0.0, ly, COL_W, STEM_H, expanded, False, out) + 6
            for unit in right:
                ry = self._column(graph, unit, right_x, ry, COL_W, STEM_H, expanded, True, out) + 6
            cy = y
            for unit in centre:
                cy = self._column(graph, unit, COL_W + 12, cy, CENTRE - 24, STEM_H, expanded, False, out) + 6
            bottoms += [ly, ry, cy]
            y = max(bottoms) - 6 + ROW_GAP
        by_level: dict[int, str] = {}
        for k, sid in enumerate(up):
            by_level[self.level(graph, sid, n - 1 - k)] = sid
        placed_up: set[str] = set()
        for i, sid in enumerate(down):
            lv = self.level(graph, sid, i)
            bottom = self._column(graph, graph.get(sid), 0.0, y, COL_W, STAGE_H, expanded, False, out)
            partner = by_level.get(lv)
            if partner is not None:
                placed_up.add(partner)
                bottom = max(bottom, self._column(graph, graph.get(partner), right_x, y, COL_W, STAGE_H, expanded,
                                                  True, out))
            y = bottom + ROW_GAP
        for sid in up:  # an up stage without a down partner (should not happen): in order on the right
            if sid not in placed_up:
                y = self._column(graph, graph.get(sid), right_x, y, COL_W, STAGE_H, expanded, True, out) + ROW_GAP
        if mid is not None:
            self._column(graph, graph.get(mid), (2 * COL_W + CENTRE - COL_W) / 2, y, COL_W, STAGE_H, expanded,
                         False, out)
        return out

    def routes(self, graph: UnitGraph, placed: list[Placement], expanded: set[str]) -> list[Route]:
        rects = _shown_rects(placed)
        skips = {tuple(s) for s in graph.attrs.get("skips") or [] if len(s) == 2}
        out: list[Route] = []
        for a, b in graph.edges:
            if a not in rects or b not in rects:
                continue
            ra, rb = rects[a], rects[b]
            a_open, b_open = a in expanded, b in expanded
            if (a, b) in skips:
                y = ra.center().y()
                start, end = QPointF(ra.right(), y), QPointF(rb.left(), y)
                path = QPainterPath(start)
                path.lineTo(end)
                unit = graph.get(a)
                res = unit.attrs.get("resolution")
                ch = unit.attrs.get("channels")
                bits = [f"{ch} ch" if ch else "", f"{res[0]}×{res[1]}" if isinstance(res, list) and len(res) == 2 else ""]
                label = "skip " + " · ".join(b for b in bits if b)
                out.append(Route(path, "skip", True, end, QPointF(1, 0), label.strip(),
                                 QPointF((start.x() + end.x()) / 2, y - 4)))
                continue
            same_column = abs(ra.left() - rb.left()) < 1 and abs(ra.width() - rb.width()) < 1
            if abs(ra.top() - rb.top()) < 1:  # side by side: straight across
                y = ra.center().y()
                start = QPointF(ra.right() if rb.left() > ra.left() else ra.left(), y)
                end = QPointF(rb.left() if rb.left() > ra.left() else rb.right(), y)
                path = QPainterPath(start)
                path.lineTo(end)
                out.append(Route(path, "flow", True, end, QPointF(1 if end.x() > start.x() else -1, 0)))
            elif rb.top() > ra.top():  # downwards: the down column, and into the mid block
                x = ra.left() + MARGIN if a_open else ra.center().x()
                start = QPointF(x, ra.bottom())
                path = QPainterPath(start)
                if same_column:
                    end = QPointF(x, rb.top())
                    path.lineTo(end)
                    out.append(Route(path, "flow", True, end, QPointF(0, 1)))
                else:
                    y = rb.center().y()
                    into_left = rb.left() > x
                    end = QPointF(rb.left() if into_left else rb.right(), y)
                    path.lineTo(x, y)
                    path.lineTo(end)
                    out.append(Route(path, "flow", True, end, QPointF(1 if into_left else -1, 0)))
            else:  # upwards: out of the mid block, the up column, to the output conv
                x = rb.right() - MARGIN if b_open else rb.center().x()
                end = QPointF(x, rb.bottom())
                if same_column:
                    start = QPointF(x, ra.top())
                    path = QPainterPath(start)
                else:
                    y = ra.center().y()
                    start = QPointF(ra.right() if x > ra.right() else ra.left(), y)
                    path = QPainterPath(start)
                    path.lineTo(x, y)
                path.lineTo(end)
                out.append(Route(path, "flow", True, end, QPointF(0, -1)))
        return out


# the registry of layouts, by the shape they draw; the most specific first
LAYOUTS: dict[str, StackLayout | UNetLayout] = {layout.name: layout for layout in (UNetLayout(), StackLayout())}
DEFAULT_LAYOUT = StackLayout.name


def layout_for(graph: UnitGraph, name: str | None = None) -> StackLayout | UNetLayout:
    """How to draw ``graph``: the layout named ``name`` (else the graph's ``attrs["layout"]`` hint) when that is a
    shape this view draws and the graph has what it needs; else the most specific layout the graph's structure
    fits (a graph that names its down and up stages is a U), else the stack."""
    named = LAYOUTS.get(str(name or graph.attrs.get("layout") or ""))
    if named is not None and named.fits(graph):
        return named
    return next((layout for layout in LAYOUTS.values() if layout.fits(graph)), LAYOUTS[DEFAULT_LAYOUT])
