"""The Scores panel: criteria × blocks heatmap (pyqtgraph ImageItem + ColorBarItem) and rank agreement."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.session import agreement, color_scale, score_matrix

from . import colors
from .document import Document
from .plot_export import PlotExport

MAX_TICKS = 24


def tick_label(graph, unit_id: str) -> str:
    """A short axis label: a block's number ("3"), a stage or the mid block ("Down 3", "Mid block"), a stage's
    layer ("Down 1 L1")."""
    unit = graph.get(unit_id)
    if unit.label.startswith("Block "):
        return unit.label.replace("Block ", "")
    short = unit.label.split(" · ")[0]
    if unit.parent is None or unit.parent not in graph:
        return short
    index = unit.attrs.get("layer", unit.attrs.get("index"))
    if not isinstance(index, int) and unit_id.rsplit(".", 1)[-1].isdigit():
        index = int(unit_id.rsplit(".", 1)[-1])  # "down_blocks.1.layers.1": layer 1
    parent = graph.get(unit.parent).label.split(" · ")[0]
    return f"{parent} L{index}" if isinstance(index, int) else f"{parent} · {short}"


class ScoresPanel(QWidget):
    unitChosen = Signal(str)  # noqa: N815 — a heatmap cell was clicked: show this unit in the model view

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = document
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.hideButtons()
        item = self.plot.getPlotItem()
        item.setTitle("Importance per block (each criterion normalised to 0–1)", color="#111827", size="10pt")
        for axis in ("left", "bottom"):
            ax = item.getAxis(axis)
            ax.setPen(pg.mkPen("#6b7280"))
            ax.setTextPen(pg.mkPen("#111827"))
        item.invertY(True)  # criteria read top-down in the order they were run
        self.image = pg.ImageItem(axisOrder="row-major")
        item.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=colors.colormap(), label="importance",
                                        interactive=False, width=14)
        self.colorbar.setImageItem(self.image, insert_in=item)
        self.matrix = np.zeros((0, 0))
        self.unit_ids: list[str] = []
        self.criteria: list[str] = []
        self.row_scales: list[str] = []
        self.table = QTableWidget()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip("Rank agreement between criteria over the blocks: Spearman ρ / Kendall τ "
                              "(1 = same order, 0 = unrelated, −1 = reversed)")
        caption = QLabel("Agreement between criteria — Spearman ρ / Kendall τ over the block ranking")
        caption.setObjectName("Hint")
        self.empty = QLabel("Run an analysis: each criterion adds a row to the heatmap; "
                            "two or more give their agreement.")
        self.empty.setObjectName("Hint")
        self.empty.setWordWrap(True)
        lower = QWidget()
        ll = QVBoxLayout(lower)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(caption)
        ll.addWidget(self.table)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.plot)
        split.addWidget(lower)
        split.setSizes([300, 160])
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Write every criterion's raw scores and ranks, one row per unit, as CSV "
                                      "(the CLI's twin: slimgui analyze --out scores.json)")
        self.export_button.clicked.connect(lambda: self.export_csv())
        lay = QVBoxLayout(self)
        lay.addWidget(self.empty)
        lay.addWidget(split, 1)
        lay.addWidget(self.export_button, 0, Qt.AlignmentFlag.AlignRight)
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        self.plot_export = PlotExport(self.plot, "scores-heatmap", csv_data=False)  # the CSV: Export CSV…
        document.modelChanged.connect(self.refresh)
        document.scoresChanged.connect(self.refresh)
        self.refresh()

    def export_csv(self, path: str | None = None) -> str | None:
        """Write the scores as CSV to ``path`` (asked for when None); returns the path written, or None."""
        from pathlib import Path

        from slimgui.core.io import atomic_write_text
        from slimgui.core.scores import scores_csv

        if not self.doc.scores or not self.unit_ids:
            return None
        if path is None:
            from .forms import choose_save_path

            path = choose_save_path(self, "Export scores", str(Path.home() / "scores.csv"), "CSV files (*.csv)")
            if not path:
                return None
        atomic_write_text(path, scores_csv(self.doc.scores, self.unit_ids))
        return str(path)

    def refresh(self) -> None:
        g = self.doc.graph
        scores = self.doc.scores
        self.unit_ids = [u.id for u in g.prunable()] if g is not None else []
        self.criteria = list(scores)
        self.empty.setVisible(not scores)
        item = self.plot.getPlotItem()
        if not scores or not self.unit_ids:
            self.matrix = np.zeros((0, 0))
            self.image.clear()
            self._fill_table()
            return
        self.matrix = np.array(score_matrix(scores, self.unit_ids), dtype=float)
        self.image.setImage(np.nan_to_num(self.matrix, nan=0.0), levels=(0, 1), autoLevels=False)
        self.image.setRect(0, 0, len(self.unit_ids), len(self.criteria))
        labels = [tick_label(g, u) for u in self.unit_ids]
        step = max(1, math.ceil(len(labels) / MAX_TICKS))
        item.getAxis("bottom").setTicks([[(i + 0.5, labels[i]) for i in range(0, len(labels), step)]])
        word = self.doc.unit_word()
        item.getAxis("bottom").setLabel(word, color="#374151")
        item.setTitle(f"Importance per {word} (each criterion mapped to 0–1 on its own scale)", color="#111827",
                      size="10pt")
        # each row says its scale: linear, log (orders of magnitude) or rank (one outlier would flatten the rest)
        self.row_scales = [color_scale({u: v for u, v in scores[c].values.items() if u in set(self.unit_ids)})
                           for c in self.criteria]
        item.getAxis("left").setTicks([[(j + 0.5, f"{c} ({sc})") for j, (c, sc) in
                                        enumerate(zip(self.criteria, self.row_scales))]])
        item.setLimits(xMin=0, xMax=len(self.unit_ids), yMin=0, yMax=len(self.criteria))
        item.setRange(xRange=(0, len(self.unit_ids)), yRange=(0, len(self.criteria)), padding=0)
        self._fill_table()

    def _fill_table(self) -> None:
        scores = self.doc.scores
        names = list(scores)
        self.table.clear()
        self.table.setRowCount(len(names))
        self.table.setColumnCount(len(names))
        self.table.setHorizontalHeaderLabels(names)
        self.table.setVerticalHeaderLabels(names)
        if not names:
            return
        agr = agreement(scores, self.unit_ids)
        self.agreement = agr
        for i in range(len(names)):
            for j in range(len(names)):
                rho, tau = agr.spearman[i][j], agr.kendall[i][j]
                text = "—" if math.isnan(rho) else f"{rho:+.2f} / {tau:+.2f}"
                cell = QTableWidgetItem(text)
                cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if not math.isnan(rho):
                    shade = QColor.fromHsvF(0.58 if rho >= 0 else 0.0, min(1.0, abs(rho)) * 0.45, 1.0)
                    cell.setBackground(shade)
                cell.setToolTip(f"{names[i]} vs {names[j]}: Spearman ρ = {rho:.4f}, Kendall τ = {tau:.4f}")
                self.table.setItem(i, j, cell)

    def cell_at(self, scene_pos) -> tuple[str, str] | None:
        """(criterion, unit id) of the heatmap cell under a scene position, or None."""
        if not self.matrix.size:
            return None
        p = self.plot.getPlotItem().vb.mapSceneToView(scene_pos)
        x, y = int(math.floor(p.x())), int(math.floor(p.y()))
        if 0 <= x < len(self.unit_ids) and 0 <= y < len(self.criteria):
            return self.criteria[y], self.unit_ids[x]
        return None

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        cell = self.cell_at(event.scenePos())
        if cell is not None:
            self.select_cell(*cell)

    def select_cell(self, criterion: str, unit_id: str) -> None:
        """A click on a cell: its criterion colours the model view and its unit is shown there, ringed."""
        self.doc.set_active(criterion)
        self.unitChosen.emit(unit_id)

    def _hover(self, pos) -> None:
        if not self.matrix.size:
            return
        p = self.plot.getPlotItem().vb.mapSceneToView(pos)
        x, y = int(math.floor(p.x())), int(math.floor(p.y()))
        if 0 <= x < len(self.unit_ids) and 0 <= y < len(self.criteria):
            crit, uid = self.criteria[y], self.unit_ids[x]
            raw = self.doc.scores[crit].values.get(uid)
            change = self.doc.scores[crit].versus_baseline(uid)
            self.plot.setToolTip(f"{crit} · {uid}: {raw:.6g} (normalised {self.matrix[y, x]:.2f})"
                                 + (f"\nwithout it: {change}" if change else "") + "\nclick: show it in the model view")
