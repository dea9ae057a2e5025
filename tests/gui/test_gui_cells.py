"""A unit whose graph asks for it (``attrs["cells"] == "children"``) shows its children as small cells in its box,
coloured on the boxes' scale; a click on a cell selects that child for removal, as a click on its box would."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.graph import Unit, UnitGraph  # noqa: E402
from slimgui.core.scores import Scores  # noqa: E402
from slimgui.core.session import normalized  # noqa: E402
from slimgui.gui import colors  # noqa: E402
from slimgui.gui.document import Document  # noqa: E402
from slimgui.gui.model_view import CellItem, ModelPanel  # noqa: E402
from slimgui.gui.notify import Notifier  # noqa: E402

PARTS = 4


def small_graph(cells: bool = True) -> UnitGraph:
    """Two blocks, each a group of four removable parts (drawn as cells when ``cells``) and a fixed layer."""
    units = [Unit("embed", "embedding", "Embedding", params=1000)]
    edges = []
    for b in range(2):
        blk = f"block.{b}"
        units.append(Unit(blk, "block", f"Block {b}", params=5000, prunable=True))
        units.append(Unit(f"{blk}.group", "group", "Group", parent=blk, params=4000,
                          attrs={"cells": "children"} if cells else {}))
        units += [Unit(f"{blk}.part.{p}", "part", f"Part {p}", parent=f"{blk}.group", params=1000, prunable=True)
                  for p in range(PARTS)]
        units.append(Unit(f"{blk}.ff", "layer", "Feed-forward", parent=blk, params=1000))
        edges.append(("embed" if b == 0 else f"block.{b - 1}", blk))
    return UnitGraph(family="test", units=units, edges=edges)


SCORES = {"block.0": 9.0, "block.1": 8.0,
          **{f"block.0.part.{p}": v for p, v in enumerate([3.0, 0.5, 6.0, 2.0])},
          **{f"block.1.part.{p}": v for p, v in enumerate([4.0, 5.0, 1.0, 7.0])}}


@pytest.fixture
def panel(qtbot, registry):
    def make(graph: UnitGraph) -> ModelPanel:
        doc = Document(registry)
        p = ModelPanel(doc, Notifier())
        qtbot.addWidget(p)
        p.resize(900, 560)
        p.show()
        doc.graph = graph
        doc.modelChanged.emit()
        doc.add_scores(Scores("test-criterion", dict(SCORES)))
        p.view.set_expanded({"block.0", "block.1"})
        QApplication.processEvents()
        return p

    return make


def test_children_drawn_as_cells_coloured_on_the_boxes_scale(panel):
    p = panel(small_graph())
    view = p.view
    cells = view.cells_of("block.0.group")
    assert [c.unit_id for c in cells] == [f"block.0.part.{i}" for i in range(PARTS)]
    assert all(c.isVisible() for c in cells)  # shown while the group is collapsed
    assert not view.unit_items["block.0.part.0"].isVisible()
    norm = normalized(SCORES)  # the one scale of every box and cell
    for uid in SCORES:
        if ".part." in uid:
            cell = next(c for c in view.cells_of(uid.rsplit(".part.", 1)[0] + ".group") if c.unit_id == uid)
            assert cell.fill.rgba() == colors.colour_at(norm[uid]).rgba() == view.unit_items[uid].fill.rgba()
    assert view.unit_items["block.0"].fill.rgba() == colors.colour_at(norm["block.0"]).rgba()
    least = cells[1]  # block.0.part.1 scores lowest of all: the scale's low end
    assert least.fill.rgba() == colors.colour_at(0.0).rgba()
    assert "Part 1" in least.toolTip() and "0.5" in least.toolTip()
    # the cells sit inside the group's box, side by side, clear of its label
    box = view.unit_items["block.0.group"]
    for a, b in zip(cells, cells[1:]):
        assert a.rect.right() < b.rect.left()
    assert all(box.rect.contains(c.rect) for c in cells)
    # expanding the group keeps its cells in its row and shows the children's own boxes too
    view.toggle_expanded("block.0.group")
    assert all(c.isVisible() for c in cells) and view.unit_items["block.0.part.0"].isVisible()
    # collapsing the block hides its group and the group's cells
    view.toggle_expanded("block.0")
    assert not any(c.isVisible() for c in cells)


def test_clicking_a_cell_toggles_its_child_like_its_box(qtbot, panel):
    p = panel(small_graph())
    view, doc = p.view, p.doc
    cell = view.cells_of("block.1.group")[2]
    # a real mouse click on the cell
    pos = view.mapFromScene(cell.mapToScene(cell.rect.center()))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert doc.remove == ["block.1.part.2"]
    assert cell.removed and not cell.implied and view.unit_items["block.1.part.2"].removed
    assert "selected for removal" in cell.toolTip()
    view.click_cell("block.1.part.2")  # a second click keeps it
    assert doc.remove == [] and not cell.removed
    # a locked child is drawn locked in its cell and a click does not select it
    doc.set_keep("block.0.part.3")
    locked = view.cells_of("block.0.group")[3]
    assert locked.locked
    view.click_cell("block.0.part.3")
    assert doc.remove == []
    # removing the whole block marks its cells removed (implied, as the children's boxes are)
    view.click_unit("block.0")
    assert doc.remove == ["block.0"]
    assert all(c.removed and c.implied for c in view.cells_of("block.0.group"))
    image = p.grab().toImage()
    assert not image.isNull()


def test_a_graph_without_the_hint_draws_no_cells(panel):
    p = panel(small_graph(cells=False))
    view = p.view
    assert all(not item.cells for item in view.unit_items.values())
    assert not [i for i in view.scene().items() if isinstance(i, CellItem)]
    group = view.unit_items["block.0.group"]
    assert group._label_right is None  # the label has the whole box, as before
    # a click in the group's box is a click on the group (not a part)
    view.click_at(view.mapFromScene(group.mapToScene(group.rect.center() + QPointF(60, 0))))
    assert p.doc.remove == []
