"""Saving the app's plots: a right-click on a plot offers "Save Plot as PNG…" and "Save Data as CSV…".

The plots keep pyqtgraph's own view-box menu off (its zoom/axis entries confuse more than they help in a panel);
this menu gives back what a person needs from a plot: the picture for a slide, the numbers for a script.
PNG is the widget as drawn (``QWidget.grab``); CSV is every curve the plot holds, one ``series,x,y`` row per point.
Both files are written atomically (a temporary file in the same folder, then renamed).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPoint, Qt
from PySide6.QtGui import QAction, QCursor
from PySide6.QtWidgets import QMenu, QWidget

from slimgui.core.io import atomic_write_text

from .forms import choose_save_path


def plot_rows(plot: pg.PlotWidget) -> list[tuple[str, float, float]]:
    """Every point of every named curve of ``plot`` (and of the view boxes linked into its scene), in order."""
    rows: list[tuple[str, float, float]] = []
    main = list(plot.getPlotItem().listDataItems())
    others = [i for i in plot.getPlotItem().scene().items() if isinstance(i, pg.PlotDataItem) and i not in main]
    for i, item in enumerate(main + others):
        xs, ys = item.getData()
        if xs is None or ys is None:
            continue
        name = item.name() or f"series {i + 1}"
        rows += [(name, float(x), float(y)) for x, y in zip(np.asarray(xs), np.asarray(ys))]
    return rows


def save_plot_csv(plot: pg.PlotWidget, path: str | os.PathLike) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    item = plot.getPlotItem()
    w.writerow(["series", item.getAxis("bottom").labelText or "x", item.getAxis("left").labelText or "y"])
    w.writerows(plot_rows(plot))
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def save_plot_png(widget: QWidget, path: str | os.PathLike) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        if not widget.grab().save(tmp, "PNG"):
            raise OSError(f"could not write {path}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class PlotExport(QObject):
    """The right-click menu of one plot.  ``name`` is the default file name's stem.  (A right-click reaches it as
    the plot scene's click signal: no Python event filter, which Qt would call while widgets are destroyed.)"""

    def __init__(self, plot: pg.PlotWidget, name: str, notifier=None, *, csv_data: bool = True):
        super().__init__(plot)
        self.plot, self.name, self.notifier = plot, name, notifier
        self.png_action = QAction("Save Plot as PNG…", plot)
        self.png_action.triggered.connect(lambda: self.save_png())
        self.actions = [self.png_action]
        if csv_data:
            self.csv_action = QAction("Save Data as CSV…", plot)
            self.csv_action.triggered.connect(lambda: self.save_csv())
            self.actions.append(self.csv_action)
        plot.scene().sigMouseClicked.connect(self._clicked)
        tip = plot.toolTip()
        plot.setToolTip((tip + "\n" if tip else "") + "Right-click: save the plot as PNG or its data as CSV")

    def _clicked(self, event) -> None:
        if event.button() == Qt.MouseButton.RightButton:
            event.accept()
            pos = event.screenPos()
            self.show_menu(QPoint(int(pos.x()), int(pos.y())))

    def show_menu(self, at: QPoint | None = None) -> QMenu:
        menu = QMenu(self.plot)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)  # gone when closed, on the GUI thread
        menu.addActions(self.actions)
        menu.popup(at if at is not None else QCursor.pos())
        return menu

    def _done(self, path: Path) -> None:
        if self.notifier is not None:
            self.notifier.info(f"Saved {path}")

    def _failed(self, path, exc: OSError) -> None:
        if self.notifier is not None:
            self.notifier.error(f"Could not save {path}: {exc.strerror or exc}")

    def save_png(self, path: str | None = None) -> Path | None:
        path = path or choose_save_path(self.plot, "Save plot", str(Path.home() / f"{self.name}.png"),
                                        "PNG files (*.png)")
        if not path:
            return None
        try:
            out = save_plot_png(self.plot, path)
        except OSError as exc:
            self._failed(path, exc)
            return None
        self._done(out)
        return out

    def save_csv(self, path: str | None = None) -> Path | None:
        path = path or choose_save_path(self.plot, "Save plot data", str(Path.home() / f"{self.name}.csv"),
                                        "CSV files (*.csv)")
        if not path:
            return None
        try:
            out = save_plot_csv(self.plot, path)
        except OSError as exc:
            self._failed(path, exc)
            return None
        self._done(out)
        return out
