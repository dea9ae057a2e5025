"""The Benchmark tab: latency and throughput of the original, slimmed and healed models, exported files and a
width-pruned model of the slimmed model's size, side by side on this machine.

It gathers settings and draws what :func:`slimgui.core.jobs.bench_task` (which runs
:func:`slimgui.core.bench.benchmark`: warm-up, repeated runs, median and p90, peak memory, a fixed thread
count) returns, on the runner's ``"model"`` lane.  What is timed is the family's: its benchmark options are a
form generated from ``AdapterSpec.bench_options``, and each row says which runs it timed (``row["runs"]``: name,
label, and what a time per item is counted in) and what its throughput counts (``row["items"]``, the family's
items word).  The table's columns and the two plots (latency of the first run, and of the second when there is
one, per item when it reports that) come from those, so no column is written for a family.  The width variant is
offered when the family declares the "width" capability.  The result is kept in the session.
"""

from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QRegularExpression, Qt
from PySide6.QtGui import QBrush, QColor, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.bench import exported_file_spec
from slimgui.core.errors import SlimError
from slimgui.core.jobs import Job, bench_task, format_eta
from slimgui.core.options import fields_of, to_dict
from slimgui.core.session import BenchSettings, human_count
from slimgui.core.settings import put, values_for
from slimgui.gui.widgets import thin_progress

from .bench_table import PALETTE, WIDTH_LABEL, _fmt, _title, columns_for, parse_batches, runs_of
from .document import Document
from .forms import OptionsForm, replace_form
from .notify import Notifier
from .plot_export import PlotExport
from .workers import JobRunner


def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setToolTip(tip)
    s.setMaximumWidth(84)
    return s


class BenchPanel(QWidget):
    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier = document, runner, notifier
        self.job: Job | None = None
        self.curves: list[dict[str, pg.PlotDataItem]] = [{}, {}]  # per plot: label -> curve
        self._filling = False
        self._schema: type | None = None
        self._schema_family: str | None = "?"
        self._build()
        document.modelChanged.connect(self._model_changed)
        document.slimmedChanged.connect(self.fill_models)
        document.resultsChanged.connect(self._results_changed)
        runner.jobChanged.connect(self._job_changed)
        runner.jobFinished.connect(lambda _job: self.update_buttons())
        self._model_changed()

    # -- building --------------------------------------------------------------------------------
    def _plot(self, title: str, y_label: str) -> pg.PlotWidget:
        plot = pg.PlotWidget(background="w")
        plot.setMinimumHeight(170)
        item = plot.getPlotItem()
        item.setTitle(title, color="#111827", size="10pt")
        item.showGrid(x=True, y=True, alpha=0.15)
        item.setLabel("bottom", "batch size")
        item.setLabel("left", y_label)
        item.setMenuEnabled(False)
        item.setLogMode(x=True, y=False)
        for axis in ("left", "bottom"):
            item.getAxis(axis).setTextPen("#374151")
            item.getAxis(axis).setPen("#9ca3af")
        plot.plot_export = PlotExport(plot, "benchmark-" + "-".join(y_label.lower().replace("/", " per ").split()),
                                      self.notifier)
        return plot

    def _build(self) -> None:
        self.models = QListWidget()
        self.models.setToolTip("The models to measure; speedups are relative to the first ticked one")
        self.models.setMaximumHeight(104)
        self.models.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.models.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.models.itemChanged.connect(self._model_ticked)
        self.add_button = QPushButton("Add exported file…")
        self.add_button.setToolTip("Measure another exported file (one a format of this family can time)")
        self.add_button.clicked.connect(self._browse_file)
        side = QVBoxLayout()
        side.addWidget(self.add_button)
        side.addStretch(1)
        mrow = QHBoxLayout()
        mrow.addWidget(self.models, 1)
        mrow.addLayout(side)
        self.batches = QLineEdit("1,8,32")
        self.batches.setValidator(QRegularExpressionValidator(QRegularExpression(r"^[\d,\s]*$")))
        self.batches.setToolTip("Batch sizes, comma-separated")
        self.batches.setMaximumWidth(120)
        self.threads = _spin(1, os.cpu_count() or 1, min(2, os.cpu_count() or 1),
                             "threads for torch and the exported files' runtimes (fixed, and recorded with the result)")
        self.repeats = _spin(1, 200, 5, "timed runs after the warm-up (median and p90 over them)")
        self.form = OptionsForm()  # the family's benchmark options (rebuilt for each family)
        self.run_button = QPushButton("Run benchmark")
        self.run_button.setObjectName("Primary")
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        row2 = QHBoxLayout()
        for label, w in (("batch sizes", self.batches), ("threads", self.threads), ("repeats", self.repeats)):
            row2.addWidget(QLabel(label))
            row2.addWidget(w)
        row2.addStretch(1)
        actions = QHBoxLayout()  # a row of their own: never squeezed by the settings beside them
        actions.addStretch(1)
        actions.addWidget(self.run_button)
        actions.addWidget(self.cancel_button)
        self.settings_form = QFormLayout()
        self.settings_form.addRow("Models", mrow)
        self.settings_form.addRow("Runs", row2)
        self.settings_form.addRow("Options", self.form)
        self.settings_form.addRow("", actions)
        settings = QGroupBox("Settings")
        settings.setLayout(self.settings_form)
        self.progress = thin_progress()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.plots = [self._plot("Latency", "ms"), self._plot("Latency per item", "ms")]
        self.legend = QLabel()  # one legend for both plots, above them (inside, it would hide points)
        self.legend.setWordWrap(True)
        plots = QSplitter(Qt.Orientation.Horizontal)
        for plot in self.plots:
            plots.addWidget(plot)
        self.caption = QLabel("Run a benchmark to see latency against the batch size.")
        self.caption.setObjectName("Hint")
        self.caption.setWordWrap(True)
        self.columns: list[tuple[str, str, str, Any]] = list(columns_for([]))  # of the result shown
        self.table = QTableWidget(0, len(self.columns))
        self.table.setHorizontalHeaderLabels([c[1] for c in self.columns])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        results = QWidget()
        rl = QVBoxLayout(results)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(2)
        rl.addWidget(self.legend)
        rl.addWidget(plots, 3)
        rl.addWidget(self.caption)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        split.addWidget(results)
        split.addWidget(self.table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        results.setMinimumHeight(250)
        self.table.setMinimumHeight(140)
        self.table.verticalHeader().setDefaultSectionSize(22)
        lay = QVBoxLayout(self)
        lay.addWidget(settings)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(split, 1)

    def _fill_form(self) -> None:
        """The family's benchmark options (``AdapterSpec.bench_options``) as a form."""
        spec = self.doc.spec
        family = spec.family if spec is not None else None
        if family == self._schema_family:
            return
        self._schema_family = family
        try:
            self._schema = self.doc.registry.options(spec, "bench_options") if spec is not None else None
        except SlimError as exc:
            self.notifier.error(exc.one_line())
            self._schema = None
        self.form = replace_form(self.settings_form, self.form, self._schema)

    # -- settings --------------------------------------------------------------------------------
    @property
    def settings(self) -> BenchSettings:
        return self.doc.session.bench

    def store_settings(self) -> BenchSettings:
        s = self.settings
        try:
            s.batches = parse_batches(self.batches.text())
        except ValueError:
            pass
        s.threads, s.repeats = self.threads.value(), self.repeats.value()
        s.models = self.checked()
        spec = self.doc.spec
        if spec is not None and self._schema is not None:
            try:
                put(s.options, spec.family, self.form.values(0))
            except SlimError:
                pass
        return s

    def apply_settings(self) -> None:
        s = self.settings
        self.batches.setText(",".join(str(b) for b in s.batches))
        self.threads.setValue(s.threads)
        self.repeats.setValue(s.repeats)
        spec = self.doc.spec
        if spec is not None and self._schema is not None:
            self.form.set_values(values_for(s.options, spec.family, self._schema, where="bench "), emit=False)
        self.fill_models()

    # -- the models to measure -------------------------------------------------------------------
    def _file_spec(self, path: str):
        return exported_file_spec(path, self.doc.registry)

    def _exported_files(self) -> list[tuple[str, str]]:
        """(path, description) of the session's exports that can be timed and still exist, and files the user added."""
        out: dict[str, str] = {}
        runs = (self.doc.session.results.get("export") or {}).get("runs") or []
        for r in runs:
            f = r.get("file")
            spec = self._file_spec(f) if f else None
            if spec is not None and Path(f).is_file():
                out[str(f)] = f"{spec.label or spec.name} of the {r.get('target', '?')} model"
        for key in self.settings.models:
            spec = self._file_spec(key)
            if spec is not None and key not in out and Path(key).is_file():
                out[key] = f"{spec.label or spec.name} file"
        return list(out.items())

    def fill_models(self) -> None:
        """List what can be measured now; the session's choice is ticked."""
        doc = self.doc
        wanted = set(self.settings.models)
        entries: list[tuple[str, str, bool, str]] = []  # key, text, available, tooltip
        m, slim = doc.model, doc.slimmed
        if m is not None:
            params = doc.graph.total_params if doc.graph else 0
            entries.append(("original", f"Original — {Path(m.source).name or m.source} ({human_count(params)} params)",
                            m.has_weights, m.source))
        slim_params = sum(p.numel() for p in slim.module.parameters()) if slim is not None and slim.has_weights else 0
        entries.append(("slimmed", f"Slimmed — {human_count(slim_params)} params" if slim is not None else
                        "Slimmed — apply a plan first", slim is not None and slim.has_weights,
                        doc.session.slimmed_path or "in memory"))
        healed = doc.healed_path()
        role = doc.healed_role.capitalize()
        entries.append(("healed", f"{role} — {Path(healed).parent.name}" if healed else f"{role} — retrain first",
                        healed is not None, healed or ""))
        can_width = (m is not None and slim is not None and m.has_weights and slim.has_weights
                     and doc.spec is not None and doc.spec.can("width"))
        entries.append(("width", "Width-pruned original of equal size"
                        + (f" ({human_count(slim_params)} params)" if can_width else ""), can_width,
                        "The original pruned in width (its family's way) to the slimmed model's parameter count: "
                        "depth against width pruning at equal size"))
        for path, what in self._exported_files():
            entries.append((path, f"{Path(path).name} — {what}", True, path))
        self._filling = True
        try:
            self.models.clear()
            for key, text, available, tip in entries:
                item = QListWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, key)
                item.setToolTip(tip)
                flags = Qt.ItemFlag.ItemIsUserCheckable | (Qt.ItemFlag.ItemIsEnabled if available else Qt.ItemFlag.NoItemFlags)
                item.setFlags(flags)
                item.setCheckState(Qt.CheckState.Checked if (key in wanted and available) else Qt.CheckState.Unchecked)
                self.models.addItem(item)
        finally:
            self._filling = False
        self.update_buttons()

    def checked(self) -> list[str]:
        keys = []
        for i in range(self.models.count()):
            item = self.models.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                keys.append(item.data(Qt.ItemDataRole.UserRole))
        return keys

    def set_checked(self, keys: list[str]) -> None:
        """Tick exactly these models (what clicking their boxes does)."""
        for i in range(self.models.count()):
            item = self.models.item(i)
            on = item.data(Qt.ItemDataRole.UserRole) in keys and bool(item.flags() & Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def _model_ticked(self, _item) -> None:
        if not self._filling:
            self.settings.models = self.checked()
            self.update_buttons()

    def _browse_file(self) -> None:
        family = self.doc.model.family if self.doc.model is not None else None
        specs = [s for s in self.doc.registry.exporter_specs(family) if s.runner and s.suffix]
        flt = ";;".join(f"{s.label or s.name} (*{s.suffix})" for s in specs) or "All files (*)"
        path, _ = QFileDialog.getOpenFileName(self, "Add an exported file", str(Path.home()), flt)
        if path:
            self.add_file(path)

    def add_file(self, path: str) -> None:
        if path not in self.settings.models:
            self.settings.models = [*self.checked(), path]
        self.fill_models()

    # -- the document ----------------------------------------------------------------------------
    def _model_changed(self) -> None:
        self._fill_form()
        self.form.set_context_limit(self.doc.context_limit())
        if not self.busy:
            self.status.setText("")
            self.progress.setValue(0)
        self.apply_settings()
        self.show_results()

    def _results_changed(self) -> None:
        self.fill_models()  # new exports to offer; the ticks come from the session
        self.show_results()

    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.status.finished

    def update_buttons(self) -> None:
        self.run_button.setEnabled(not self.busy and self.doc.model is not None and bool(self.checked()))
        self.cancel_button.setEnabled(self.busy)

    # -- running ---------------------------------------------------------------------------------
    def run(self) -> Job | None:
        if self.busy or self.doc.model is None:
            return None
        try:
            batches = parse_batches(self.batches.text())
        except ValueError:
            self.notifier.warning(f"Batch sizes must be whole numbers of at least 1, e.g. 1,8,32 (got "
                                  f"'{self.batches.text()}')")
            return None
        try:
            options = to_dict(self.form.values(0)) if self._schema is not None else {}
        except SlimError as exc:
            self.notifier.error(f"Benchmark: {exc.one_line()}")
            return None
        s = self.store_settings()
        doc = self.doc
        entries: list[tuple[str, Any]] = []
        width = None
        names: dict[str, str] = {}
        for key in s.models:
            if key == "original":
                entries.append(("original", doc.model))
            elif key == "slimmed" and doc.slimmed is not None:
                entries.append(("slimmed", doc.slimmed))
            elif key == "healed" and doc.healed_path():
                path = doc.healed_path()
                entries.append(("healed", doc.healed if doc.healed is not None and doc.healed.source == path else path))
            elif key == "width" and doc.slimmed is not None:
                width = (WIDTH_LABEL, doc.model, doc.slimmed)
            elif self._file_spec(key) is not None:
                label = Path(key).name
                if label in names.values() or label in ("original", "slimmed", "healed", WIDTH_LABEL):
                    label = f"{Path(key).parent.name}/{label}"
                names[key] = label
                entries.append((label, key))
        order = {"original": 0, "slimmed": 1, "healed": 2}
        entries.sort(key=lambda e: order.get(e[0], 3))  # the original first: speedups are relative to it
        if not entries and width is None:
            self.notifier.warning("Tick at least one model to measure.")
            return None
        original = doc.model
        n = len(entries) + (width is not None)
        self.status.setText(f"Measuring {n} model{'s' if n != 1 else ''} at batch sizes "
                            f"{', '.join(map(str, batches))}…")
        self.progress.setValue(0)
        self.job = self.runner.submit(
            f"Benchmark {n} models (batch {','.join(map(str, batches))})",
            partial(bench_task, entries, registry=doc.registry, batches=batches, options=options, threads=s.threads,
                    repeats=s.repeats, width=width, adapter=original.adapter),
            kind="bench", lane="model", on_done=lambda r: self._measured(r, original),
            on_failed=lambda j: self.status.setText(f"<span style='color:#b91c1c'>Failed: {j.error}</span>"),
            on_cancelled=lambda _j: self.status.setText("Cancelled."))
        self.update_buttons()
        return self.job

    def cancel(self) -> None:
        if self.busy:
            self.runner.cancel(self.job)
            self.status.setText("Cancelling after the current measurement…")
            self.cancel_button.setEnabled(False)

    def _job_changed(self, job: Job) -> None:
        if job is not self.job or job.status.finished:
            return
        if job.fraction is not None:
            self.progress.setValue(int(1000 * job.fraction))
        eta = format_eta(job.eta)
        self.status.setText((job.message or "measuring") + (f" · ETA {eta}" if eta else ""))

    def _measured(self, result: dict[str, Any], original) -> None:
        self.progress.setValue(1000)
        if self.doc.model is not original:
            self.status.setText("Measured a model that is no longer open: not shown.")
            return
        busy = (result.get("machine_load") or {}).get("warning")
        self.status.setText(f"<b>Done</b>: {len(result['rows'])} measurements with {result['threads']} "
                            f"thread{'s' if result['threads'] != 1 else ''}."
                            + (f" <span style='color:#b45309'>⚠ {busy}</span>" if busy else ""))
        if busy:
            self.notifier.warning(f"Benchmark: {busy}")
        self.doc.set_results("bench", result)
        self.notifier.info(f"Benchmark done: {len(result['models'])} models at batch sizes "
                           f"{', '.join(map(str, result.get('batches', [])))}")
        self.update_buttons()

    # -- results ---------------------------------------------------------------------------------
    def result(self) -> dict[str, Any] | None:
        res = self.doc.session.results.get("bench")
        return res if isinstance(res, dict) and res.get("rows") else None

    def colour_of(self, label: str, labels: list[str]) -> str:
        return PALETTE[labels.index(label) % len(PALETTE)] if label in labels else PALETTE[-1]

    def _swept(self, res: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        """(name, label) of the options the rows were swept over (several values)."""
        labels = {f.name: f.label for f in fields_of(self._schema)}
        opts = res.get("options") if isinstance(res.get("options"), dict) else {}
        return tuple((k, labels.get(k, k.replace("_", " "))) for k, v in opts.items()
                     if isinstance(v, list) and len(v) > 1)

    def _options_text(self, res: dict[str, Any]) -> str:
        """The benchmark's options in words, labelled as its family declares them."""
        opts = res.get("options") if isinstance(res.get("options"), dict) else {}
        fields = {f.name: f for f in fields_of(self._schema)}
        bits = []
        for k, v in opts.items():
            label = fields[k].label if k in fields else k.replace("_", " ")
            if isinstance(v, bool):
                v = "on" if v else "off"
            elif isinstance(v, list):
                v = ",".join(str(x) for x in v)
            bits.append(f"{label} {v}")
        return " · ".join(bits)

    def show_results(self) -> None:
        res = self.result()
        for plot in self.plots:
            plot.getPlotItem().clear()
        self.legend.setText("")
        self.curves = [{}, {}]
        self.table.setRowCount(0)
        if res is None:
            self.caption.setText("Run a benchmark to see latency against the batch size.")
            self.plots[1].setVisible(False)
            return
        rows = res["rows"]
        labels = list(dict.fromkeys(str(r["model"]) for r in rows))
        batches = sorted({int(r["batch"]) for r in rows})
        runs = runs_of(rows)
        keys = []  # what each plot draws: (key, title, y label)
        if runs:
            keys.append((f"{runs[0]['name']}_median_ms", f"{_title(runs[0]['label'])} latency", "ms"))
        if len(runs) > 1:
            r1 = runs[1]
            per = r1["per"]
            keys.append((f"{r1['name']}_ms_per_{per}" if per else f"{r1['name']}_median_ms",
                         f"{_title(r1['label'])} latency", f"ms / {per}" if per else "ms"))
        for label in labels:
            mine = sorted((r for r in rows if str(r["model"]) == label), key=lambda r: r["batch"])
            colour = self.colour_of(label, labels)
            style = dict(pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=7, symbolPen=pg.mkPen(colour),
                         symbolBrush=pg.mkBrush(colour), name=label)
            for i, (key, _, _) in enumerate(keys):
                pts = [(float(r["batch"]), r[key]) for r in mine if isinstance(r.get(key), (int, float))]
                if pts:
                    self.curves[i][label] = self.plots[i].plot([x for x, _ in pts], [y for _, y in pts],
                                                               **{**style, "name": None if i else label})
        ticks = [[(math.log10(b), str(b)) for b in batches]]
        for i, plot in enumerate(self.plots):
            item = plot.getPlotItem()
            item.getAxis("bottom").setTicks(ticks)
            item.enableAutoRange()
            lo, hi = math.log10(batches[0]), math.log10(batches[-1])
            pad = max(0.08, 0.06 * (hi - lo))
            item.setXRange(lo - pad, hi + pad, padding=0)
            if i < len(keys):
                item.setTitle(keys[i][1], color="#111827", size="10pt")
                item.setLabel("left", keys[i][2])
        self.plots[1].setVisible(len(keys) > 1 and bool(self.curves[1]))
        self.legend.setText("  ".join(f"<span style='color:{self.colour_of(x, labels)}; font-size: 14px'>●</span> {x}"
                                     for x in labels))
        self._fill_table(rows, labels, self._swept(res))
        first = labels[0] if labels else "?"
        shape = self._options_text(res)
        self.caption.setText(
            f"threads <b>{res.get('threads')}</b> · {shape + ' · ' if shape else ''}{res.get('repeats', '?')} timed "
            f"runs after warm-up (medians; p90 in the table) · speedups relative to <b>{first}</b>, ideal = parameter "
            "ratio" + (f" · measured {res['time']}" if res.get("time") else ""))

    def _fill_table(self, rows: list[dict[str, Any]], labels: list[str], swept=()) -> None:
        columns = columns_for(rows, swept)
        self.columns = columns
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels([c[1] for c in columns])
        for i, (_, _, tip, _) in enumerate(columns):
            self.table.horizontalHeaderItem(i).setToolTip(tip)
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            for j, (key, _, _, value_of) in enumerate(columns):
                v = value_of(r)
                item = QTableWidgetItem(Path(str(v)).name if key == "model" else _fmt(key, v))
                if key == "model":
                    item.setForeground(QBrush(QColor(self.colour_of(str(r["model"]), labels))))
                    item.setToolTip(str(v))
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                else:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if key == "speedup":
                    per_run = []
                    for run in r.get("runs") or []:
                        v = r.get(f"{run.get('name')}_speedup")
                        if isinstance(v, (int, float)):
                            per_run.append(f"{run.get('label') or run.get('name')} ×{v:.2f}")
                    item.setToolTip(", ".join(per_run))
                self.table.setItem(i, j, item)
