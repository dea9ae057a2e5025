"""The Benchmark tab: latency and throughput of the original, slimmed and healed models, exported ONNX files and
a width-pruned model of the slimmed model's size, side by side on this machine.

It gathers settings and draws what :func:`slimgui.core.jobs.bench_task` (which runs
:func:`slimgui.core.bench.benchmark`: warm-up, repeated runs, median and p90, peak memory, a fixed thread
count) returns, on the runner's ``"model"`` lane.  Two plots show latency against the batch size (log
axis), one curve per model: prefill (a forward pass over batch × sequence tokens) and decode (ms per new
token with the KV cache).  The table adds p90, throughput, peak memory, the measured speedup over the first
model and the ideal one (the parameter ratio).  The result is kept in the session.

A family whose rows count images (a diffusion U-Net: ``items == "images"``, ``images_per_s``, one U-Net forward
pass per batch of latents, no decoding) gets a forward-latency plot, an "images/s" column and no decode
columns or settings (:func:`columns_for`).
"""

from __future__ import annotations

import math
import os
import re
from functools import partial
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QRegularExpression, Qt
from PySide6.QtGui import QBrush, QColor, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
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

from slimgui.core.jobs import Job, bench_task, format_eta
from slimgui.core.session import BenchSettings, human_count
from slimgui.gui.widgets import thin_progress

from .document import Document
from .family import traits
from .notify import Notifier
from .workers import JobRunner

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#4b5563")
WIDTH_LABEL = "width-pruned"
COLUMNS = (("model", "Model", ""), ("runtime", "Runtime", ""), ("batch", "Batch", ""),
           ("params", "Params", "parameters (torch models)"),
           ("prefill_median_ms", "Prefill ms", "median latency of a forward pass over batch × sequence tokens"),
           ("prefill_p90_ms", "p90 ms", "90th percentile of the prefill latency"),
           ("prefill_tokens_per_s", "Prefill tok/s", "prompt tokens processed per second"),
           ("decode_ms_per_token", "Decode ms/tok", "median time per generated token (greedy, KV cache)"),
           ("decode_tokens_per_s", "Decode tok/s", "generated tokens per second over the batch"),
           ("peak_mem_mib", "Peak MiB", "peak memory the runs added (process high-water mark)"),
           ("speedup", "Speedup", "measured speedup over the first model (decode when measured, else prefill)"),
           ("ideal_speedup", "Ideal", "the parameter ratio: what removing parameters promises"),
           ("speedup_over_ideal", "Of ideal", "measured speedup / ideal speedup"))


DECODE_KEYS = ("decode_ms_per_token", "decode_tokens_per_s")


def row_items(row: dict[str, Any]) -> str:
    """What a benchmark row's throughput counts: "tokens" (language models, ONNX files) or e.g. "images"."""
    return str(row.get("items") or "tokens")


def throughput(row: dict[str, Any]) -> float | None:
    """Items per second of a row: prompt tokens per second, or images (or other items) per second."""
    items = row_items(row)
    value = row.get("prefill_tokens_per_s") if items == "tokens" else row.get(f"{items}_per_s")
    return value if isinstance(value, (int, float)) else None


def columns_for(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The table's columns for these rows: the decode columns only when some row was decoded; for rows that count
    something other than tokens a forward-latency column and an items/s column ("images/s")."""
    kinds = {row_items(r) for r in rows} or {"tokens"}
    decoded = any(isinstance(r.get("decode_ms_per_token"), (int, float)) for r in rows)
    out = []
    for key, title, tip in COLUMNS:
        if key in DECODE_KEYS and not decoded:
            continue
        if kinds != {"tokens"}:
            items = next(iter(kinds)) if len(kinds) == 1 else "items"
            if key == "prefill_median_ms":
                title, tip = "Forward ms", "median latency of one forward pass over the batch"
            elif key == "prefill_p90_ms":
                tip = "90th percentile of the forward latency"
            elif key == "prefill_tokens_per_s":
                key, title, tip = "throughput", f"{items}/s", f"{items} processed per second (batch / latency)"
            elif key == "speedup":
                tip = "measured speedup over the first model (forward pass)"
        out.append((key, title, tip))
    return out


def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setToolTip(tip)
    s.setMaximumWidth(84)
    return s


def parse_batches(text: str) -> list[int]:
    """``"1, 8,32"`` -> ``[1, 8, 32]`` (sorted, unique); raises ValueError when something is not a size ≥ 1."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    sizes = sorted({int(p) for p in parts})
    if not sizes or sizes[0] < 1:
        raise ValueError(text)
    return sizes


def _fmt(key: str, v: Any) -> str:
    if v is None or v == "":
        return "—"
    if key == "params":
        return human_count(v)
    if key in ("speedup", "ideal_speedup", "speedup_over_ideal"):
        return f"×{v:.2f}" if key != "speedup_over_ideal" else f"{100 * v:.0f}%"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(v)


class BenchPanel(QWidget):
    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier = document, runner, notifier
        self.job: Job | None = None
        self.prefill_curves: dict[str, pg.PlotDataItem] = {}
        self.decode_curves: dict[str, pg.PlotDataItem] = {}
        self._filling = False
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
        return plot

    def _build(self) -> None:
        self.models = QListWidget()
        self.models.setToolTip("The models to measure; speedups are relative to the first ticked one")
        self.models.setMaximumHeight(104)
        self.models.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.models.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.models.itemChanged.connect(self._model_ticked)
        add = QPushButton("Add ONNX file…")
        add.setToolTip("Measure another exported .onnx file (onnxruntime, forward pass)")
        add.clicked.connect(self._browse_onnx)
        side = QVBoxLayout()
        side.addWidget(add)
        side.addStretch(1)
        mrow = QHBoxLayout()
        mrow.addWidget(self.models, 1)
        mrow.addLayout(side)
        self.batches = QLineEdit("1,8,32")
        self.batches.setValidator(QRegularExpressionValidator(QRegularExpression(r"^[\d,\s]*$")))
        self.batches.setToolTip("Batch sizes, comma-separated")
        self.batches.setMaximumWidth(120)
        self.seq = _spin(2, 32768, 128, "tokens per sequence (the prompt length)")
        self.new_tokens = _spin(1, 4096, 16, "tokens generated per decode run")
        self.threads = _spin(1, os.cpu_count() or 1, min(2, os.cpu_count() or 1),
                             "threads for torch and onnxruntime (fixed, and recorded with the result)")
        self.repeats = _spin(1, 200, 5, "timed runs after the warm-up (median and p90 over them)")
        self.decode = QCheckBox("decode")
        self.decode.setChecked(True)
        self.decode.setToolTip("Also measure greedy decoding with the KV cache (torch models)")
        self.run_button = QPushButton("Run benchmark")
        self.run_button.setObjectName("Primary")
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        row1 = QHBoxLayout()
        self.shape_labels: dict[str, QLabel] = {}
        for label, w in (("batch sizes", self.batches), ("sequence", self.seq), ("new tokens", self.new_tokens)):
            self.shape_labels[label] = QLabel(label)
            row1.addWidget(self.shape_labels[label])
            row1.addWidget(w)
        row1.addStretch(1)
        row2 = QHBoxLayout()
        for label, w in (("threads", self.threads), ("repeats", self.repeats)):
            row2.addWidget(QLabel(label))
            row2.addWidget(w)
        row2.addWidget(self.decode)
        row2.addStretch(1)
        row2.addWidget(self.run_button)
        row2.addWidget(self.cancel_button)
        form = QFormLayout()
        form.addRow("Models", mrow)
        form.addRow("Shape", row1)
        form.addRow("Runs", row2)
        settings = QGroupBox("Settings")
        settings.setLayout(form)
        self.progress = thin_progress()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.prefill_plot = self._plot("Prefill latency", "ms")
        self.decode_plot = self._plot("Decode latency", "ms / token")
        self.legend = QLabel()  # one legend for both plots, above them (inside, it would hide points)
        self.legend.setWordWrap(True)
        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.prefill_plot)
        plots.addWidget(self.decode_plot)
        self.caption = QLabel("Run a benchmark to see latency against the batch size.")
        self.caption.setObjectName("Hint")
        self.caption.setWordWrap(True)
        self.columns: list[tuple[str, str, str]] = list(COLUMNS)  # of the result shown (see columns_for)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c[1] for c in COLUMNS])
        for i, (_, _, tip) in enumerate(COLUMNS):
            if tip:
                self.table.horizontalHeaderItem(i).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(110)
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
        s.seq, s.new_tokens = self.seq.value(), self.new_tokens.value()
        s.threads, s.repeats, s.decode = self.threads.value(), self.repeats.value(), self.decode.isChecked()
        s.models = self.checked()
        return s

    def apply_settings(self) -> None:
        s = self.settings
        self.batches.setText(",".join(str(b) for b in s.batches))
        self.seq.setValue(s.seq)
        self.new_tokens.setValue(s.new_tokens)
        self.threads.setValue(s.threads)
        self.repeats.setValue(s.repeats)
        self.decode.setChecked(s.decode)
        self.fill_models()

    # -- the models to measure -------------------------------------------------------------------
    def _onnx_files(self) -> list[tuple[str, str]]:
        """(path, description) of the session's ONNX exports that still exist, and files the user added."""
        out: dict[str, str] = {}
        runs = (self.doc.session.results.get("export") or {}).get("runs") or []
        for r in runs:
            if r.get("format") == "onnx" and r.get("file") and Path(r["file"]).is_file():
                out[str(r["file"])] = f"ONNX {str(r.get('mode', 'fp32')).upper()} of the {r.get('target', '?')} model"
        for key in self.settings.models:
            if key.lower().endswith(".onnx") and key not in out and Path(key).is_file():
                out[key] = "ONNX file"
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
        entries.append(("healed", f"Healed — {Path(healed).parent.name}" if healed else "Healed — retrain first",
                        healed is not None, healed or ""))
        can_width = (m is not None and slim is not None and m.has_weights and slim.has_weights
                     and hasattr(m.impl, "width_variant"))
        entries.append(("width", "Width-pruned original of equal size"
                        + (f" ({human_count(slim_params)} params)" if can_width else ""), can_width,
                        "Heads and MLP neurons cut uniformly in every block to the slimmed model's parameter count: "
                        "depth against width pruning at equal size"))
        for path, what in self._onnx_files():
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

    def _browse_onnx(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add an ONNX file", str(Path.home()), "ONNX (*.onnx)")
        if path:
            self.add_onnx(path)

    def add_onnx(self, path: str) -> None:
        if path not in self.settings.models:
            self.settings.models = [*self.checked(), path]
        self.fill_models()

    # -- the document ----------------------------------------------------------------------------
    def _family_shown(self) -> None:
        """Settings that apply to the family: sequence length and decoding only where there are tokens."""
        t = traits(self.doc.registry, self.doc.model, self.doc.graph)
        tokens = not t.images
        for label, w in (("sequence", self.seq), ("new tokens", self.new_tokens)):
            self.shape_labels[label].setVisible(tokens)
            w.setVisible(tokens)
        self.decode.setVisible(tokens)
        self.batches.setToolTip("Batch sizes, comma-separated" + ("" if tokens else " (latents per U-Net forward pass)"))

    def _model_changed(self) -> None:
        self._family_shown()
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
        s = self.store_settings()
        doc = self.doc
        decode = s.decode and not traits(doc.registry, doc.model, doc.graph).images
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
            elif key.lower().endswith(".onnx"):
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
            f"Benchmark {n} models (batch {','.join(map(str, batches))}, sequence {s.seq})",
            partial(bench_task, entries, registry=doc.registry, batches=batches, seq=s.seq, new_tokens=s.new_tokens,
                    threads=s.threads, repeats=s.repeats, decode=decode, width=width, adapter=original.adapter),
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
        self.status.setText(f"<b>Done</b>: {len(result['rows'])} measurements with {result['threads']} "
                            f"thread{'s' if result['threads'] != 1 else ''}.")
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

    def show_results(self) -> None:
        res = self.result()
        for plot in (self.prefill_plot, self.decode_plot):
            plot.getPlotItem().clear()
        self.legend.setText("")
        self.prefill_curves, self.decode_curves = {}, {}
        self.table.setRowCount(0)
        if res is None:
            self.caption.setText("Run a benchmark to see latency against the batch size.")
            return
        rows = res["rows"]
        labels = list(dict.fromkeys(str(r["model"]) for r in rows))
        batches = sorted({int(r["batch"]) for r in rows})
        for label in labels:
            mine = sorted((r for r in rows if str(r["model"]) == label), key=lambda r: r["batch"])
            colour = self.colour_of(label, labels)
            style = dict(pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=7, symbolPen=pg.mkPen(colour),
                         symbolBrush=pg.mkBrush(colour), name=label)
            xs = [float(r["batch"]) for r in mine]
            pre = [r.get("prefill_median_ms") for r in mine]
            if all(isinstance(v, (int, float)) for v in pre):
                self.prefill_curves[label] = self.prefill_plot.plot(xs, pre, **style)
            dec = [(float(r["batch"]), r["decode_ms_per_token"]) for r in mine
                   if isinstance(r.get("decode_ms_per_token"), (int, float))]
            if dec:
                self.decode_curves[label] = self.decode_plot.plot([x for x, _ in dec], [y for _, y in dec],
                                                                  **{**style, "name": None})
        ticks = [[(math.log10(b), str(b)) for b in batches]]
        for plot in (self.prefill_plot, self.decode_plot):
            item = plot.getPlotItem()
            item.getAxis("bottom").setTicks(ticks)
            item.enableAutoRange()
            lo, hi = math.log10(batches[0]), math.log10(batches[-1])
            pad = max(0.08, 0.06 * (hi - lo))
            item.setXRange(lo - pad, hi + pad, padding=0)
        counts = {row_items(r) for r in rows}
        tokens = counts == {"tokens"}
        self.prefill_plot.getPlotItem().setTitle("Prefill latency" if tokens else "Forward latency (one pass per batch)",
                                                 color="#111827", size="10pt")
        self.decode_plot.setVisible(bool(self.decode_curves) or tokens)
        if not self.decode_curves:
            self.decode_plot.getPlotItem().setTitle("Decode latency (not measured)", color="#6b7280", size="10pt")
        else:
            self.decode_plot.getPlotItem().setTitle("Decode latency", color="#111827", size="10pt")
        self.legend.setText("  ".join(f"<span style='color:{self.colour_of(x, labels)}; font-size: 14px'>●</span> {x}"
                                     for x in labels))
        self._fill_table(rows, labels)
        first = labels[0] if labels else "?"
        shape = (f"sequence {res.get('seq')} · {res.get('new_tokens', '?')} new tokens per decode" if tokens else
                 f"one forward pass over a batch of {'/'.join(sorted(counts))} per run")
        self.caption.setText(
            f"threads <b>{res.get('threads')}</b> (torch and onnxruntime) · {shape} · {res.get('repeats', '?')} timed "
            f"runs after warm-up (medians; p90 in the table) · speedups relative to <b>{first}</b>, ideal = parameter "
            "ratio" + (f" · measured {res['time']}" if res.get("time") else ""))

    def _fill_table(self, rows: list[dict[str, Any]], labels: list[str]) -> None:
        columns = columns_for(rows)
        self.columns = columns
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels([c[1] for c in columns])
        for i, (_, _, tip) in enumerate(columns):
            self.table.horizontalHeaderItem(i).setToolTip(tip)
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            values = {**r, "speedup": r.get("decode_speedup", r.get("prefill_speedup")), "throughput": throughput(r)}
            for j, (key, _, _) in enumerate(columns):
                v = values.get(key)
                item = QTableWidgetItem(Path(str(v)).name if key == "model" else _fmt(key, v))
                if key == "model":
                    item.setForeground(QBrush(QColor(self.colour_of(str(r["model"]), labels))))
                    item.setToolTip(str(v))
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                else:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if key == "speedup" and "decode_speedup" in r:
                    item.setToolTip(f"decode ×{r['decode_speedup']:.2f}, prefill ×{r.get('prefill_speedup', 0):.2f}")
                self.table.setItem(i, j, item)
