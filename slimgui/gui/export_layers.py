"""The Export tab's per-layer table: an export that scanned each layer's sensitivity (``result["layers"]``: layer,
unit, sensitivity, precision) is shown here, one row per layer, and as an overlay on the model view.

What the precisions are is read from the layers themselves: the one with the most bits in its name is
the one a tick keeps, the others are what the export lowered them to.  A tick flips a layer; *Export again*
re-exports with exactly the ticked layers kept, through the option the exporter names for that
(``ExporterSpec.layers_option``), reusing the scan.  The sensitivity colours the table's cells with the model
view's own colour scale (:func:`slimgui.core.colors.normalized` of the units' values), so a layer that is its
unit's most sensitive shows its unit's colour.  The table, the flips and the overlay are kept in the session.

:class:`ExportLayers` is a mixin of :class:`~slimgui.gui.export_panel.ExportPanel`.
"""

from __future__ import annotations

import bisect
import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from slimgui.core.colors import color_scale, normalized
from slimgui.core.errors import SlimError
from slimgui.core.jobs import Job
from slimgui.core.session import aggregate_up

from . import colors
from .document import Overlay

OVERLAY = "Export sensitivity"  # the model view's overlay of the last per-layer scan


class _Number(QTableWidgetItem):
    """A table cell that sorts by its number, not its text."""

    def __init__(self, value: float, text: str):
        super().__init__(text)
        self.value = value
        self.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)

    def __lt__(self, other) -> bool:
        return self.value < getattr(other, "value", 0.0)


def _bits(precision: str) -> int:
    m = re.search(r"(\d+)$", str(precision))
    return int(m.group(1)) if m else -1


def precisions(layers: list[dict[str, Any]]) -> tuple[str, str]:
    """(lowered, kept): the precisions of a scanned export, by the bits in their names."""
    kinds = sorted({str(x.get("precision")) for x in layers if x.get("precision")}, key=_bits)
    if not kinds:
        return "lowered", "kept"
    return (kinds[0], kinds[-1]) if len(kinds) > 1 else (kinds[0], "kept")


def unit_scale(unit_values: dict[str, float]):
    """A layer's value -> [0, 1] on the model view's scale of ``unit_values`` (the same colour for equal values)."""
    if not unit_values:
        return lambda v: 0.5
    scale = color_scale(unit_values)
    norm = normalized(unit_values, scale)
    ordered = sorted((float(v), norm[k]) for k, v in unit_values.items())
    xs = [v for v, _ in ordered]

    def at(v: float) -> float:
        i = bisect.bisect_left(xs, v)
        if i < len(xs) and xs[i] == v:
            return ordered[i][1]
        if scale == "rank":  # between two units' ranks
            if i == 0:
                return 0.0
            if i >= len(xs):
                return 1.0
            lo, hi = ordered[i - 1], ordered[i]
            return lo[1] + (hi[1] - lo[1]) * (v - lo[0]) / (hi[0] - lo[0])
        clamped = min(max(v, xs[0]), xs[-1])
        return normalized({**unit_values, "\0layer": clamped}, scale)["\0layer"]

    return at


class ExportLayers:
    """The per-layer half of the Export tab (a mixin: see the module docstring)."""

    def _build_layers(self) -> QGroupBox:
        self.table = QTableWidget(0, 5)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        head.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(150)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.itemChanged.connect(self._item_changed)
        self.layers_hint = QLabel()
        self.layers_hint.setObjectName("Hint")
        self.layers_hint.setWordWrap(True)
        self.show_button = QPushButton("Show on model")
        self.show_button.setToolTip("Colour the model view by the largest sensitivity in each unit")
        self.show_button.clicked.connect(lambda: self.doc.show_overlay(OVERLAY) if OVERLAY in self.doc.overlays else None)
        self.again_button = QPushButton("Export again")
        self.again_button.setToolTip("Re-export with exactly the ticked layers kept at the higher precision")
        self.again_button.clicked.connect(lambda: self.export_again())
        lrow = QHBoxLayout()
        lrow.addWidget(self.layers_hint, 1)
        lrow.addWidget(self.show_button)
        lrow.addWidget(self.again_button)
        self.layers_box = QGroupBox("Per-layer sensitivity")
        ll = QVBoxLayout(self.layers_box)
        ll.setSpacing(4)
        ll.addLayout(lrow)
        ll.addWidget(self.table, 1)
        self.layers_box.hide()
        return self.layers_box

    # -- what the last scan says ------------------------------------------------------------------
    def _layers(self) -> list[dict[str, Any]]:
        return self._export_results().get("layers") or []

    def _chosen(self, layer: dict[str, Any]) -> str:
        flips = self._export_results().get("flips") or {}
        low, _ = precisions(self._layers())
        return flips.get(layer["layer"], layer.get("precision", low))

    def _layers_option(self) -> str | None:
        """The exporter's option that takes the layers to keep (declared: ``ExporterSpec.layers_option``)."""
        res = self._export_results()
        try:
            spec = self.doc.registry.exporter_spec(res.get("layers_format") or "", self._family())
        except SlimError:
            return None
        return spec.layers_option or None

    def _unit_values(self, res: dict[str, Any]) -> dict[str, float]:
        """Each unit's largest layer sensitivity, aggregated up the graph as the model view shows it."""
        values: dict[str, float] = {}
        for x in res.get("layers") or []:
            uid = x.get("view_unit")
            if uid and self.doc.graph is not None and uid in self.doc.graph:
                values[uid] = max(values.get(uid, float("-inf")), float(x.get("sensitivity", 0.0)))
        return aggregate_up(self.doc.graph, values, "max") if values and self.doc.graph is not None else values

    # -- the table ---------------------------------------------------------------------------------
    def _show_layers(self, res: dict[str, Any]) -> None:
        layers = res.get("layers") or []
        self.layers_box.setVisible(bool(layers))
        low, high = precisions(layers)
        self.table.setHorizontalHeaderLabels([high.upper(), "Layer", "Unit", "Sensitivity", "Exported as"])
        self.layers_box.setTitle(f"Per-layer {low.upper()} sensitivity — tick a layer to keep it {high.upper()}")
        self._filling = True
        self.table.setSortingEnabled(False)
        try:
            self.table.setRowCount(len(layers))
            scale = unit_scale(self._unit_values(res))
            for row, x in enumerate(layers):
                check = QTableWidgetItem()
                check.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsSelectable)
                check.setCheckState(Qt.CheckState.Checked if self._chosen(x) == high else Qt.CheckState.Unchecked)
                check.setData(Qt.ItemDataRole.UserRole, x["layer"])
                check.setToolTip(f"ticked: keep this layer {high.upper()} in the next export")
                name = QTableWidgetItem(x["layer"])
                name.setToolTip(f"{x['layer']}" + (f"\nnode {x['node']}" if x.get("node") else ""))
                unit = QTableWidgetItem(str(x.get("view_unit") or x.get("unit") or "—"))
                sens = float(x.get("sensitivity", 0.0))
                value = _Number(sens, f"{sens:.3g}")
                fill = colors.colour_at(scale(sens))
                value.setBackground(QBrush(fill))
                value.setForeground(QBrush(colors.text_colour_on(fill)))
                value.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                done = QTableWidgetItem(str(x.get("precision", "?")).upper())
                for col, item in enumerate((check, name, unit, value, done)):
                    if col:
                        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                    self.table.setItem(row, col, item)
                self._mark_row(row)
        finally:
            self.table.setSortingEnabled(True)
            self._filling = False
        if layers:
            self.table.sortItems(3, Qt.SortOrder.DescendingOrder)
        self._register_overlay(res)
        self._describe_layers()

    def _mark_row(self, row: int) -> None:
        check = self.table.item(row, 0)
        layer = check.data(Qt.ItemDataRole.UserRole)
        layers = self._layers()
        low, high = precisions(layers)
        exported = next((x.get("precision") for x in layers if x["layer"] == layer), None)
        chosen = high if check.checkState() == Qt.CheckState.Checked else low
        flipped = chosen != exported
        for col in (1, 4):
            item = self.table.item(row, col)
            if item is None:
                continue
            font = QFont(item.font())
            font.setBold(flipped)
            item.setFont(font)
        done = self.table.item(row, 4)
        if done is not None and exported:
            done.setText(exported.upper() + (f" → {chosen.upper()}" if flipped else ""))

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 0:
            return
        res = self._export_results()
        layer = item.data(Qt.ItemDataRole.UserRole)
        layers = res.get("layers", [])
        low, high = precisions(layers)
        exported = next((x.get("precision") for x in layers if x["layer"] == layer), None)
        chosen = high if item.checkState() == Qt.CheckState.Checked else low
        flips = res.setdefault("flips", {})
        if chosen == exported:
            flips.pop(layer, None)
        else:
            flips[layer] = chosen
        self._filling = True
        try:
            self._mark_row(item.row())
        finally:
            self._filling = False
        self._describe_layers()

    def set_layer_kept(self, layer: str, keep: bool = True) -> None:
        """Tick or untick a layer's box (keep it at the higher precision): what a click on it does."""
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item.data(Qt.ItemDataRole.UserRole) == layer:
                item.setCheckState(Qt.CheckState.Checked if keep else Qt.CheckState.Unchecked)
                return
        raise SlimError(f"no layer named '{layer}' in the table")

    def _describe_layers(self) -> None:
        res = self._export_results()
        layers = res.get("layers") or []
        if not layers:
            return
        _, high = precisions(layers)
        chosen = [x for x in layers if self._chosen(x) == high]
        flips = res.get("flips") or {}
        self.layers_hint.setText(f"{len(layers)} layers · {len(chosen)} {high.upper()} in the next export"
                                 + (f" · <b>{len(flips)} changed</b> by you" if flips else "")
                                 + f" · {Path(str(res.get('layers_file'))).name}")
        self.again_button.setText(f"Export again ({len(chosen)} {high.upper()})")
        can = self._layers_option() is not None
        self.again_button.setVisible(can)

    def _register_overlay(self, res: dict[str, Any]) -> None:
        """The sensitivity as an overlay on the model view: each unit gets its layers' largest sensitivity."""
        layers = [x for x in res.get("layers") or [] if x.get("view_unit")]
        if not layers or self.doc.graph is None:
            if OVERLAY in self.doc.overlays:
                self.doc.set_overlay(OVERLAY, None)
            return
        low, high = precisions(res.get("layers") or [])
        values: dict[str, float] = {}
        top: dict[str, dict[str, Any]] = {}
        for x in layers:
            uid, s = x["view_unit"], float(x.get("sensitivity", 0.0))
            if uid not in self.doc.graph:
                continue
            if s >= values.get(uid, -1.0):
                values[uid], top[uid] = s, x
        notes = {uid: f"most sensitive layer: {x['layer']} ({str(x.get('precision', '?')).upper()} in "
                      f"{Path(str(res.get('layers_file'))).name})" for uid, x in top.items()}
        overlay = Overlay(title=f"{low.upper()} sensitivity (max per unit)", values=values,
                          words=(f"robust to {low.upper()}", "sensitive"), aggregate="max", notes=notes)
        old = self.doc.overlays.get(OVERLAY)
        if old is None or old.values != overlay.values or old.notes != overlay.notes or old.title != overlay.title:
            self.doc.set_overlay(OVERLAY, overlay, show=False)

    # -- export again --------------------------------------------------------------------------------
    def export_again(self) -> Job | None:
        """Re-export the scanned export with the ticked layers (and only those) kept at the higher precision,
        reusing its scan."""
        res = self._export_results()
        layers = res.get("layers") or []
        option = self._layers_option()
        if not layers or option is None:
            self.notifier.info("Export with a per-layer scan first: Export again uses its layer table.")
            return None
        _, high = precisions(layers)
        keep = [x["layer"] for x in layers if self._chosen(x) == high]
        scanned = {x["layer"]: x["sensitivity"] for x in layers if "sensitivity" in x}
        options = {**(res.get("layers_options") or {}), option: keep}
        return self.export(target=res.get("layers_target") or "original", out=res.get("layers_file"),
                           fmt=res.get("layers_format"), options=options, context={"sensitivity": scanned})
