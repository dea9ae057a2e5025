"""Live loss curves of a retraining job (train and validation), smooth with 100k points and more.

The points live in preallocated numpy buffers that grow by doubling (:class:`GrowingSeries`), so a new
step costs an array store, never a copy of the history.  The plot is not redrawn per step: appends mark
it dirty and a timer hands views of the buffers to ``setData`` at most ``REFRESH_HZ`` times a second.
The curves draw with ``clipToView`` and peak auto-downsampling, so only about one point per pixel of
what is visible reaches the painter, however long the run.  The y axis can be logarithmic.

Whatever other validation metrics a run's events carry (``val_*`` besides the loss) are
drawn too, one dashed curve each against a second axis on the right (:meth:`LossCurves.add_metric`): the
curves know no metric by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .plot_export import PlotExport

REFRESH_HZ = 15
TRAIN_COLOUR = "#2563eb"
VAL_COLOUR = "#dc2626"
METRIC_COLOURS = ("#16a34a", "#9333ea", "#ea580c", "#0891b2")


class GrowingSeries:
    """x/y points in float64 buffers that double when full; :meth:`view` returns the filled part (no copy)."""

    def __init__(self, capacity: int = 1024):
        self.x = np.empty(max(1, capacity), dtype=np.float64)
        self.y = np.empty(max(1, capacity), dtype=np.float64)
        self.n = 0
        self.grows = 0  # how many times the buffers were reallocated (for tests and curiosity)

    def __len__(self) -> int:
        return self.n

    @property
    def capacity(self) -> int:
        return len(self.x)

    def _reserve(self, need: int) -> None:
        if need <= len(self.x):
            return
        cap = len(self.x)
        while cap < need:
            cap *= 2
        for name in ("x", "y"):
            old = getattr(self, name)
            new = np.empty(cap, dtype=np.float64)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)
        self.grows += 1

    def append(self, x: float, y: float) -> None:
        if self.n == len(self.x):
            self._reserve(self.n + 1)
        self.x[self.n] = x
        self.y[self.n] = y
        self.n += 1

    def extend(self, xs: Sequence[float] | np.ndarray, ys: Sequence[float] | np.ndarray) -> None:
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        if xs.shape != ys.shape or xs.ndim != 1:
            raise ValueError("x and y must be 1-d and of the same length")
        self._reserve(self.n + len(xs))
        self.x[self.n: self.n + len(xs)] = xs
        self.y[self.n: self.n + len(ys)] = ys
        self.n += len(xs)

    def truncate_after(self, x: float) -> None:
        """Drop the points past ``x`` (x is increasing: a run resumed from an earlier checkpoint)."""
        self.n = int(np.searchsorted(self.x[: self.n], x, side="right"))

    def clear(self) -> None:
        self.n = 0

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.n], self.y[: self.n]

    @property
    def last_x(self) -> float | None:
        return float(self.x[self.n - 1]) if self.n else None


class LossCurves(QWidget):
    """Train and validation loss against the step, with a legend and an optional log scale."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.train = GrowingSeries()
        self.val = GrowingSeries(64)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMinimumHeight(150)
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.15)
        item.setLabel("bottom", "step")
        item.setLabel("left", "loss")
        item.setMenuEnabled(False)
        for axis in ("left", "bottom"):
            item.getAxis(axis).setTextPen("#374151")
            item.getAxis(axis).setPen("#9ca3af")
        self.legend = item.addLegend(offset=(-8, 8), labelTextColor="#111827", brush=pg.mkBrush(255, 255, 255, 210),
                                     pen=pg.mkPen("#d1d5db"))
        self.train_item = item.plot(name="train loss", pen=pg.mkPen(TRAIN_COLOUR, width=1.5))
        self.val_item = item.plot(name="validation loss", pen=pg.mkPen(VAL_COLOUR, width=2), symbol="o",
                                  symbolSize=6, symbolPen=pg.mkPen(VAL_COLOUR), symbolBrush=pg.mkBrush("#fee2e2"))
        for curve in (self.train_item, self.val_item):
            curve.setClipToView(True)
            curve.setDownsampling(auto=True, method="peak")
            curve.setSkipFiniteCheck(True)
        # other validation metrics: a second view box sharing the x axis, on the right axis
        self.metric_box = pg.ViewBox()
        item.scene().addItem(self.metric_box)
        item.getAxis("right").linkToView(self.metric_box)
        item.getAxis("right").setTextPen("#374151")
        item.getAxis("right").setPen("#9ca3af")
        self.metric_box.setXLink(item)
        item.vb.sigResized.connect(self._fit_metric_box)
        self.metrics: dict[str, GrowingSeries] = {}
        self.metric_items: dict[str, pg.PlotDataItem] = {}
        self.log_y = QCheckBox("log scale")
        self.log_y.setToolTip("Logarithmic loss axis")
        self.log_y.toggled.connect(self.set_log_y)
        self.caption = QLabel()
        self.caption.setObjectName("Hint")
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.caption, 1)
        top.addWidget(self.log_y)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addWidget(self.plot, 1)
        self.plot_export = PlotExport(self.plot, "loss-curves")
        self._timer = QTimer(self, singleShot=True, interval=int(1000 / REFRESH_HZ))
        self._timer.timeout.connect(self.refresh)
        self.refreshes = 0
        self._caption()

    def _fit_metric_box(self) -> None:
        vb = self.plot.getPlotItem().vb
        self.metric_box.setGeometry(vb.sceneBoundingRect())
        self.metric_box.linkedViewChanged(vb, self.metric_box.XAxis)

    # -- data ------------------------------------------------------------------------------------
    def add_metric(self, name: str, step: float, value: float, label: str | None = None) -> None:
        """One point of another validation metric (``name``, shown as ``label``), against the right axis."""
        series = self.metrics.get(name)
        if series is None:
            series = self.metrics[name] = GrowingSeries(64)
            colour = METRIC_COLOURS[(len(self.metrics) - 1) % len(METRIC_COLOURS)]
            curve = pg.PlotDataItem(pen=pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DashLine), symbol="t",
                                    symbolSize=6, symbolPen=pg.mkPen(colour), symbolBrush=pg.mkBrush(colour))
            self.metric_box.addItem(curve)
            self.legend.addItem(curve, f"{label or name} (right axis)")
            self.metric_items[name] = curve
            item = self.plot.getPlotItem()
            item.showAxis("right")
            item.getAxis("right").setLabel(label or name if len(self.metrics) == 1 else "validation metrics")
            self._fit_metric_box()
        series.append(step, value)
        self._schedule()

    def add_train(self, step: float, loss: float) -> None:
        self.train.append(step, loss)
        self._schedule()

    def add_val(self, step: float, loss: float) -> None:
        self.val.append(step, loss)
        self._schedule()

    def extend_train(self, steps: Iterable[float], losses: Iterable[float]) -> None:
        self.train.extend(np.fromiter(steps, dtype=np.float64), np.fromiter(losses, dtype=np.float64))
        self._schedule()

    def set_history(self, history: Sequence[Sequence[float]], val_history: Sequence[Sequence[float]] = ()) -> None:
        """Replace the curves with a run's saved history (``[[step, loss], ...]``) and redraw now."""
        self.train.clear()
        self.val.clear()
        self._clear_metrics()  # a run folder keeps the losses only
        if len(history):
            arr = np.asarray(history, dtype=np.float64)
            self.train.extend(arr[:, 0], arr[:, 1])
        if len(val_history):
            arr = np.asarray(val_history, dtype=np.float64)
            self.val.extend(arr[:, 0], arr[:, 1])
        self.refresh()

    def truncate_after(self, step: float) -> None:
        self.train.truncate_after(step)
        self.val.truncate_after(step)
        for series in self.metrics.values():
            series.truncate_after(step)
        self._schedule()

    def _clear_metrics(self) -> None:
        for curve in self.metric_items.values():
            self.metric_box.removeItem(curve)
            self.legend.removeItem(curve)
        self.metrics, self.metric_items = {}, {}
        self.plot.getPlotItem().hideAxis("right")

    def clear(self) -> None:
        self.train.clear()
        self.val.clear()
        self._clear_metrics()
        self.refresh()

    # -- drawing ---------------------------------------------------------------------------------
    def _schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def refresh(self) -> None:
        """Hand the buffers' filled parts to the plot (pyqtgraph clips and downsamples them to the view)."""
        self._timer.stop()
        self.train_item.setData(*self.train.view())
        self.val_item.setData(*self.val.view())
        for name, series in self.metrics.items():
            self.metric_items[name].setData(*series.view())
        self.refreshes += 1
        self._caption()

    def set_log_y(self, on: bool) -> None:
        if self.log_y.isChecked() != on:
            self.log_y.setChecked(on)  # calls back here
            return
        positive = not len(self.train) or bool(np.all(self.train.view()[1] > 0))
        self.plot.getPlotItem().setLogMode(y=bool(on and positive))

    def _caption(self) -> None:
        n = len(self.train)
        if not n:
            self.caption.setText("Loss curves appear here while a job runs.")
            return
        v = len(self.val)
        self.caption.setText(f"{n:,} steps · {v:,} validation{'s' if v != 1 else ''}")

    def displayed_points(self) -> int:
        """How many train points the plot actually draws after clipping and downsampling."""
        x, _ = self.train_item.getData()
        return 0 if x is None else len(x)
