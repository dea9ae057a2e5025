"""The Roofline view: where time goes on this machine (or on a device described by a profile file).

It runs :func:`slimgui.core.profiling.profile_task` in the background (the family's benchmark pass, each unit timed
by hooks, FLOPs counted by torch) and draws every timed layer as a point — arithmetic intensity (FLOP/byte) against
the FLOP/s it attained — under the device's roofline ``min(peak, intensity × bandwidth)``, both axes logarithmic,
coloured by the top-level unit it belongs to.  Hovering a point shows its numbers; clicking it selects the unit in
the model view.  With "ABConv before/after" the same layers of an in-memory ABConv copy are drawn as hollow
diamonds (measured, not retrained).  The profile colours the model view too: three overlays (measured time,
arithmetic intensity, roofline efficiency) join its "Colour by" list, and the Plan panel reads the per-unit
latency table for its latency budget and expected latency.  Nothing is computed here: the numbers are the core's.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.costmodel import fmt_flops, load_profile
from slimgui.core.errors import SlimError
from slimgui.core.jobs import Job
from slimgui.core.profiling import leaf_rows, profile_task

from .document import Document, Overlay
from .notify import Notifier
from .workers import JobRunner

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#4b5563"]
THIS_MACHINE = "This machine (measured)"
LOAD_FILE = "Load a device profile…"
RESULT_KEY = "profile"
OVERLAYS = ("measured time (ms)", "arithmetic intensity (FLOP/byte)", "roofline efficiency")


class RooflinePanel(QWidget):
    unitChosen = Signal(str)  # a point was clicked: its unit id

    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, graph_view: Any = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier, self.graph_view = document, runner, notifier, graph_view
        self.job: Job | None = None
        self.spots: list[dict[str, Any]] = []  # what is drawn: unit, x (intensity), y (FLOP/s), row
        self.device = QComboBox()
        self.device.addItems([THIS_MACHINE, LOAD_FILE])
        self.device.setToolTip("The device whose roofline the layers are drawn under: this machine (peak FLOP/s of a "
                               "large matmul, bandwidth of a large copy; measured once and cached) or a JSON device "
                               "profile (name, peak_flops, bandwidth, dtype_bytes) of another device, e.g. an NPU")
        self.device.activated.connect(self._device_chosen)
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.batch.setValue(1)
        self.batch.setToolTip("Batch size of the profiled pass")
        self.abconv = QCheckBox("ABConv before/after")
        self.abconv.setToolTip("Also profile an in-memory copy whose weight-bound small-spatial convolutions are "
                               "ABConv (timed, not retrained): hollow diamonds")
        self.run_button = QPushButton("Profile")
        self.run_button.setObjectName("Primary")
        self.run_button.setToolTip("Time every layer of the open model and place it under the roofline")
        self.run_button.clicked.connect(lambda: self.run())
        self.status = QLabel("Open a model, then Profile: every layer as a point under this machine's roofline.")
        self.status.setWordWrap(True)
        self.status.setObjectName("Hint")
        row = QHBoxLayout()
        row.addWidget(QLabel("Device"))
        row.addWidget(self.device, 1)
        row.addWidget(QLabel("Batch"))
        row.addWidget(self.batch)
        row.addWidget(self.abconv)
        row.addWidget(self.run_button)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMinimumHeight(260)
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.15)
        item.setLabel("bottom", "arithmetic intensity (FLOP/byte)")
        item.setLabel("left", "attained FLOP/s")
        item.setMenuEnabled(False)
        for axis in ("left", "bottom"):
            item.getAxis(axis).setLogMode(True)  # values are log10: ticks read 10^x
            item.getAxis(axis).enableAutoSIPrefix(False)
            item.getAxis(axis).setTextPen("#374151")
            item.getAxis(axis).setPen("#9ca3af")
        self.roof = pg.PlotDataItem(pen=pg.mkPen("#111827", width=2))
        self.scatter = pg.ScatterPlotItem(size=11, hoverable=True, tip=self._tip, hoverSize=15,
                                          hoverPen=pg.mkPen("#111827", width=2))
        self.after = pg.ScatterPlotItem(size=12, symbol="d", hoverable=True, tip=self._tip)
        item.addItem(self.roof)
        item.addItem(self.scatter)
        item.addItem(self.after)
        self.scatter.sigClicked.connect(self._clicked)
        self.after.sigClicked.connect(self._clicked)
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.legend.setObjectName("Hint")
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.legend)
        self._files: list[str] = []
        document.modelChanged.connect(self._model_changed)
        runner.jobFinished.connect(lambda _j: self.update_buttons())
        self._model_changed()

    # -- device ----------------------------------------------------------------------------------
    def _device_chosen(self, index: int) -> None:
        if self.device.itemText(index) == LOAD_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Device profile", "", "Device profile (*.json)")
            if path:
                self.add_device_file(path)
            else:
                self.device.setCurrentIndex(0)

    def add_device_file(self, path: str) -> bool:
        """Use the device profile in ``path`` (checked now: a bad file is one notification, and the choice stays)."""
        try:
            prof = load_profile(path)
        except SlimError as exc:
            self.notifier.error(f"Device profile: {exc.one_line()}")
            self.device.setCurrentIndex(0)
            return False
        if path not in self._files:
            self._files.append(path)
            self.device.insertItem(self.device.count() - 1, prof.name, path)
        self.device.setCurrentIndex(self.device.findData(path))
        return True

    def device_file(self) -> str | None:
        data = self.device.currentData()
        return data if isinstance(data, str) else None

    # -- running ---------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.status.finished

    def update_buttons(self) -> None:
        self.run_button.setEnabled(not self.busy and self.doc.model is not None)

    def run(self) -> Job | None:
        model = self.doc.model
        if self.busy or model is None:
            return None
        self.status.setText("Profiling: timing every layer…")
        self.job = self.runner.submit(
            "Profile layers", partial(profile_task, model, registry=self.doc.registry, batch=self.batch.value(),
                                      device_file=self.device_file(), with_abconv=self.abconv.isChecked()),
            kind="profile", lane="model", on_done=lambda r: self._profiled(r, model),
            on_failed=lambda j: self.status.setText(f"<span style='color:#b91c1c'>Failed: {j.error}</span>"))
        self.update_buttons()
        return self.job

    def _profiled(self, result: dict[str, Any], model: Any) -> None:
        if self.doc.model is not model:
            self.status.setText("Profiled a model that is no longer open: not shown.")
            return
        self.doc.set_results(RESULT_KEY, result)
        self.set_overlays(result)
        self.show_result(result)
        self.notifier.info(f"Profiled {result['timed_units']} units: {result['total_ms']:.3g} ms per pass on "
                           f"{result['device']['name']}")
        self.update_buttons()

    # -- drawing ---------------------------------------------------------------------------------
    def _model_changed(self) -> None:
        self.update_buttons()
        res = self.doc.session.results.get(RESULT_KEY) if self.doc.model is not None else None
        if isinstance(res, dict) and res.get("model") == getattr(self.doc.model, "source", None):
            self.set_overlays(res, show=False)  # a session's stored profile: the colourings are offered again
            self.show_result(res)
        else:
            self.show_result(None)

    def set_overlays(self, result: dict[str, Any], show: bool = True) -> None:
        """The profile as three ways to colour the model view (``show``: coloured by measured time now)."""
        rows = [r for r in result["units"] if r.get("measured_ms") is not None]
        time_ms = {r["unit"]: r["measured_ms"] for r in rows}
        intensity = {r["unit"]: r["intensity"] for r in rows if r.get("intensity")}
        eff = {r["unit"]: r["efficiency"] for r in rows if r.get("efficiency") is not None}
        notes = {r["unit"]: self._note(r) for r in rows}
        self.doc.set_overlay(OVERLAYS[1], Overlay("arithmetic intensity (FLOP/byte)", intensity,
                                                  ("memory-bound", "compute-bound"), "mean", notes), show=False)
        self.doc.set_overlay(OVERLAYS[2], Overlay("roofline efficiency (attained / bound)", eff,
                                                  ("far below its bound", "at its bound"), "mean", notes), show=False)
        self.doc.set_overlay(OVERLAYS[0], Overlay(f"measured time per pass (ms, batch {result['batch']})", time_ms,
                                                  ("fast", "slow"), "sum", notes), show=show)

    @staticmethod
    def _note(r: dict[str, Any]) -> str:
        if not r.get("flops"):
            return f"{r['measured_ms']:.4f} ms"
        by = "memory-bound" if r.get("memory_bound") else "compute-bound"
        eff = f", {r['efficiency']:.0%} of its bound" if r.get("efficiency") is not None else ""
        return (f"{r['flops'] / 1e6:.3g} MFLOP, {r['bytes'] / 1e3:.3g} KB moved, {r['intensity']:.3g} FLOP/byte "
                f"({by}); {r['measured_ms']:.4f} ms{eff}")

    def _tip(self, x: float, y: float, data: Any) -> str:
        r = data or {}
        head = f"{r.get('label') or r.get('unit')} ({r.get('unit')})"
        if r.get("abconv_fold"):
            head += f" · ABConv fold {r['abconv_fold']}"
        return "\n".join([head, f"{r.get('flops', 0) / 1e6:.4g} MFLOP · {r.get('bytes', 0) / 1e3:.4g} KB moved",
                          f"intensity {10 ** x:.3g} FLOP/byte · attained {fmt_flops(10 ** y)}FLOP/s",
                          f"roofline bound {fmt_flops(r.get('bound_flops'))}FLOP/s · "
                          f"efficiency {r.get('efficiency', 0):.0%}",
                          f"measured {r.get('measured_ms', 0):.4f} ms (bound {r.get('bound_ms') or 0:.4f} ms)",
                          "click: select it in the model view"])

    def show_result(self, result: dict[str, Any] | None) -> None:
        self.spots = []
        self.scatter.setData([])
        self.after.setData([])
        self.roof.setData([], [])
        if not result:
            self.legend.setText("")
            return
        dev = result["device"]
        drawable = [r for r in leaf_rows(result) if r.get("attained_flops") and r.get("intensity")]
        tops = []
        graph = self.doc.graph
        for r in drawable:
            top = r["unit"]
            if graph is not None and top in graph:
                chain = graph.ancestors(top)
                top = chain[-1] if chain else top
            if top not in tops:
                tops.append(top)
            self.spots.append({"unit": r["unit"], "x": math.log10(r["intensity"]),
                               "y": math.log10(r["attained_flops"]), "row": r, "top": top})
        spots = [{"pos": (s["x"], s["y"]), "data": s["row"], "brush": pg.mkBrush(PALETTE[tops.index(s["top"]) %
                                                                                        len(PALETTE)]),
                  "pen": pg.mkPen("#ffffff", width=1)} for s in self.spots]
        self.scatter.setData(spots)
        ab = result.get("abconv") or {}
        after = []
        for r in ab.get("units") or []:
            if r.get("attained_flops") and r.get("intensity"):
                row = {**r, "abconv_fold": (ab.get("replaced") or {}).get(r["unit"])}
                after.append({"pos": (math.log10(r["intensity"]), math.log10(r["attained_flops"])), "data": row,
                              "brush": pg.mkBrush(None), "pen": pg.mkPen("#111827", width=2)})
        self.after.setData(after)
        xs = [s["x"] for s in self.spots] + [a["pos"][0] for a in after]
        lo = min(xs + [math.log10(dev["ridge"])]) - 0.5 if xs else -1.0
        hi = max(xs + [math.log10(dev["ridge"])]) + 0.5 if xs else 3.0
        ridge = math.log10(dev["ridge"])
        peak = math.log10(dev["peak_flops"])
        bw = math.log10(dev["bandwidth"])
        self.roof.setData([lo, ridge, hi], [lo + bw, peak, peak])
        words = ", ".join(f"<span style='color:{PALETTE[i % len(PALETTE)]}'>●</span> {t}" for i, t in enumerate(tops))
        extra = ""
        if ab.get("error"):
            extra = f"<br>ABConv: {ab['error']}"
        elif ab.get("replaced"):
            extra = (f"<br>◇ ABConv copy ({len(ab['replaced'])} layers, not retrained): {ab['total_ms']:.3g} ms per "
                     f"pass vs {result['total_ms']:.3g} ms")
        self.legend.setText(f"{words}<br>roofline of <b>{dev['name']}</b>: peak {fmt_flops(dev['peak_flops'])}FLOP/s, "
                            f"{dev['bandwidth'] / 1e9:.3g} GB/s, ridge {dev['ridge']:.3g} FLOP/byte{extra}")
        self.status.setText(f"{result['runtime']}, batch {result['batch']}: {result['total_ms']:.3g} ms per pass, "
                            f"{len(self.spots)} layers drawn (a point above the line: its data stayed in cache)")

    # -- clicks ----------------------------------------------------------------------------------
    def _clicked(self, _item, points, _ev=None) -> None:
        if points is not None and len(points):
            row = points[0].data() or {}
            if row.get("unit"):
                self.choose(row["unit"])

    def choose(self, unit_id: str) -> None:
        """Select ``unit_id`` in the model view (what a click on its point does)."""
        if self.graph_view is not None and hasattr(self.graph_view, "focus_unit"):
            self.graph_view.focus_unit(unit_id)
        self.unitChosen.emit(unit_id)

    def click_point(self, unit_id: str) -> None:
        """Click the point of ``unit_id`` (tests, shortcuts): through the scatter's own click signal."""
        pts = [p for p in self.scatter.points() if (p.data() or {}).get("unit") == unit_id]
        if not pts:
            raise KeyError(unit_id)
        self.scatter.sigClicked.emit(self.scatter, pts, None)
