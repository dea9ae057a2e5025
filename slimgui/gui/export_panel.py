"""The Export tab: write the original, slimmed or healed model as a transformers folder or a checked ONNX file.

It gathers settings and shows what the core reports; the work is :func:`slimgui.core.jobs.export_task` on the
runner's ``"model"`` lane (it traces the loaded model).  An ONNX export is compared with torch before it is
kept, so the tab shows the parity (max abs diff, cosine) and, for INT8 and mixed precision, the size ratio
and the output error.  A mixed export's per-layer sensitivity colours the model view (an overlay keyed by
unit: each block and part shows the largest sensitivity of its layers) and fills a table where any layer
can be flipped between INT8 and FP32; *Export again* re-exports with the ticked layers kept FP32.  Every
export (its check report's path), the sensitivity and the flips are kept in the session.
"""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.io import cache_dir, onnx_data_file
from slimgui.core.jobs import Job, export_task, format_eta
from slimgui.core.model import LoadedModel
from slimgui.core.ops import graph_of
from slimgui.core.session import ExportSettings, human_bytes, unit_correspondence
from slimgui.gui.widgets import browse_row, thin_progress

from . import colors
from .document import Document, Overlay
from .notify import Notifier
from .workers import JobRunner

TARGETS = (("original", "Original model"), ("slimmed", "Slimmed model"), ("healed", "Healed model"))
FORMATS = (("onnx", "ONNX file (onnxruntime)"), ("hf", "Transformers folder (from_pretrained)"))
MODES = (("fp32", "FP32", "The float32 graph, checked against torch"),
         ("int8", "INT8", "Dynamic INT8: every weight MatMul quantised (about a quarter of the size)"),
         ("mixed", "Mixed", "INT8 except the layers a per-layer sensitivity scan marks sensitive (kept FP32)"))
OVERLAY = "INT8 sensitivity"
RECORD_KEYS = ("format", "mode", "file", "report", "bytes", "fp32_bytes", "cosine", "max_abs_diff", "size_ratio",
               "output_rel_error", "fp32_layers", "with_past", "fp32_parity", "incremental", "source", "seconds",
               "int8_kernel", "warnings")
COLUMNS = ("FP32", "Layer", "Unit", "Sensitivity", "Exported as")


def _int8_probe(progress=None, cancel=None) -> dict[str, Any]:
    from slimgui.core import int8

    return {"kernel": int8.kernel().to_json(), "speed": int8.matmul_speedup(), "warning": int8.speed_warning()}


def exports_dir() -> Path:
    """Where the tab proposes to write exports (per user, under the cache; ``SLIMGUI_CACHE_DIR`` moves it).
    Created by the first export that goes there."""
    return cache_dir() / "exports"


class _Number(QTableWidgetItem):
    """A table cell that sorts by its number, not its text."""

    def __init__(self, value: float, text: str):
        super().__init__(text)
        self.value = value
        self.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)

    def __lt__(self, other) -> bool:
        return self.value < getattr(other, "value", 0.0)


class _Stat(QFrame):
    """A small titled value box (parity, size, ...)."""

    def __init__(self, title: str, tip: str = ""):
        super().__init__()
        self.setObjectName("MediaSlot")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(title)
        self.title.setObjectName("Hint")
        self.value = QLabel("—")
        self.value.setObjectName("Value")
        self.value.setStyleSheet("font-size: 15px;")
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for w in (self.title, self.value):
            w.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 3, 6, 3)
        lay.setSpacing(0)
        lay.addWidget(self.title)
        lay.addWidget(self.value)
        self.setToolTip(tip)

    def set(self, text: str, colour: str | None = None) -> None:
        self.value.setText(text)
        self.value.setStyleSheet(f"font-size: 15px; color: {colour};" if colour else "font-size: 15px;")


class ExportPanel(QWidget):
    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier = document, runner, notifier
        self.job: Job | None = None
        self.result: dict[str, Any] | None = None  # the record of the export shown
        self._proposed_out: str | None = None
        self._confirmed_out: str | None = None  # chosen in the save dialog, which asked before replacing
        self._filling = False
        self._build()
        document.modelChanged.connect(self._model_changed)
        document.slimmedChanged.connect(self._targets_changed)
        document.resultsChanged.connect(self.show_results)
        runner.jobChanged.connect(self._job_changed)
        runner.jobFinished.connect(lambda _job: self.update_buttons())
        self._model_changed()

    # -- building --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.target = QComboBox()
        for key, name in TARGETS:
            self.target.addItem(name, key)
        self.target.setToolTip("Which model to export: the one you opened, the slimmed one (Apply) or the healed "
                               "one (Retrain)")
        self.target.currentIndexChanged.connect(self._settings_changed)
        self.target_hint = QLabel()
        self.target_hint.setObjectName("Hint")
        self.target_hint.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.format = QComboBox()
        for key, name in FORMATS:
            self.format.addItem(name, key)
        self.format.setToolTip("ONNX: one file for onnxruntime, checked against torch; transformers: a folder "
                               "that from_pretrained loads")
        self.format.currentIndexChanged.connect(self._settings_changed)
        self.modes = QButtonGroup(self)
        mode_row = QHBoxLayout()
        mode_row.setContentsMargins(0, 0, 0, 0)
        self.mode_buttons: dict[str, QRadioButton] = {}
        for i, (key, name, tip) in enumerate(MODES):
            b = QRadioButton(name)
            b.setToolTip(tip)
            self.modes.addButton(b, i)
            self.mode_buttons[key] = b
            mode_row.addWidget(b)
        self.mode_buttons["fp32"].setChecked(True)
        self.modes.idToggled.connect(lambda _i, on: on and self._settings_changed())
        self.fp32_share = QDoubleSpinBox()
        self.fp32_share.setRange(0.0, 100.0)
        self.fp32_share.setDecimals(0)
        self.fp32_share.setSingleStep(5)
        self.fp32_share.setSuffix(" % FP32")
        self.fp32_share.setValue(10)
        self.fp32_share.setToolTip("Mixed: the share of layers (the most sensitive ones) kept in FP32")
        mode_row.addSpacing(8)
        mode_row.addWidget(self.fp32_share)
        mode_row.addStretch(1)
        self.int8_hint = QLabel()
        self.int8_hint.setObjectName("Hint")
        self.int8_hint.setWordWrap(True)
        self.int8_hint.setToolTip("What this machine's onnxruntime does with INT8, measured on a small MatMul when "
                                  "INT8 or mixed precision is chosen (make bench measures the model itself)")
        self.int8_hint.hide()
        self._int8_info: dict[str, Any] | None = None
        self._int8_job: Job | None = None
        self.with_past = QCheckBox("with past key/values (incremental decoding)")
        self.with_past.setToolTip("Add past key/value inputs and present outputs, so a runtime can decode token by "
                                  "token; the export is checked token by token against torch (FP32 ONNX only)")
        self.with_past.toggled.connect(self._settings_changed)
        self.sample = QLineEdit()
        self.sample.setPlaceholderText("optional: a text file to draw the comparison inputs from")
        self.sample.setToolTip("The parity check (and the sensitivity scan) run on tokens of this text; "
                               "empty: token ids drawn from the vocabulary")
        self.sample.setProperty("pathDrop", True)
        sample_row = browse_row(self.sample, self._browse_sample)
        self.out = QLineEdit()
        self.out.setToolTip("The .onnx file (its check report goes beside it as NAME.onnx.check.json; weights over 1 GiB go to "
                            "NAME.onnx.data) or the folder")
        out_row = browse_row(self.out, self._browse_out, "Choose where to write the export")
        target_row = QHBoxLayout()
        target_row.addWidget(self.target)
        target_row.addWidget(self.target_hint, 1)
        # actions
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("Primary")
        self.export_button.setToolTip("Export in the background; an ONNX file is kept only when it matches torch")
        self.export_button.clicked.connect(lambda: self.export())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        out_row.addSpacing(6)
        out_row.addWidget(self.export_button)
        out_row.addWidget(self.cancel_button)
        form = QFormLayout()
        form.addRow("Model", target_row)
        form.addRow("Format", self.format)
        form.addRow("Precision", mode_row)
        form.addRow("", self.int8_hint)
        form.addRow("", self.with_past)
        form.addRow("Check on", sample_row)
        form.addRow("Write to", out_row)
        settings = QGroupBox("Settings")
        settings.setLayout(form)
        self.progress = thin_progress()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # the check
        self.stats = {
            "max_abs_diff": _Stat("max abs diff", "Largest difference of the logits, onnxruntime vs torch"),
            "cosine": _Stat("cosine", "Cosine similarity of the logits, onnxruntime vs torch (≥ 0.999 to be kept)"),
            "size": _Stat("file size"),
            "size_ratio": _Stat("size vs FP32", "The quantised file's size over the FP32 file's"),
            "output_error": _Stat("output error", "Relative squared error of the logits against the FP32 graph"),
        }
        stat_row = QHBoxLayout()
        for s in self.stats.values():
            stat_row.addWidget(s)
        self.check_label = QLabel("Nothing exported yet.")
        self.check_label.setWordWrap(True)
        self.check_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.check_box = QGroupBox("Check")
        cl = QVBoxLayout(self.check_box)
        cl.setSpacing(4)
        cl.addWidget(self.check_label)
        cl.addLayout(stat_row)
        # mixed precision: per-layer sensitivity, with flips
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
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
        self.show_button.setToolTip("Colour the model view by the largest INT8 sensitivity in each block and part")
        self.show_button.clicked.connect(lambda: self.doc.show_overlay(OVERLAY) if OVERLAY in self.doc.overlays else None)
        self.again_button = QPushButton("Export again")
        self.again_button.setToolTip("Re-export mixed precision with exactly the ticked layers kept FP32")
        self.again_button.clicked.connect(lambda: self.export_again())
        lrow = QHBoxLayout()
        lrow.addWidget(self.layers_hint, 1)
        lrow.addWidget(self.show_button)
        lrow.addWidget(self.again_button)
        self.layers_box = QGroupBox("Per-layer INT8 sensitivity — tick a layer to keep it FP32")
        ll = QVBoxLayout(self.layers_box)
        ll.setSpacing(4)
        ll.addLayout(lrow)
        ll.addWidget(self.table, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(settings)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.check_box)
        lay.addWidget(self.layers_box, 1)
        self.layers_box.hide()
        lay.addStretch(0)

    # -- settings --------------------------------------------------------------------------------
    @property
    def settings(self) -> ExportSettings:
        return self.doc.session.export

    def _choice(self) -> tuple[str, str, str]:
        mode = next(k for k, b in self.mode_buttons.items() if b.isChecked())
        return self.target.currentData(), self.format.currentData(), mode

    def store_settings(self) -> ExportSettings:
        s = self.settings
        s.target, s.format, s.mode = self._choice()
        s.with_past = self.with_past.isChecked()
        s.fp32_fraction = self.fp32_share.value() / 100
        s.sample_text = self.sample.text().strip() or None
        s.out = self.out.text().strip() or None
        return s

    def apply_settings(self) -> None:
        """Show the session's export settings (after reopening)."""
        s = self.settings
        self._filling = True
        try:
            self.target.setCurrentIndex(max(0, self.target.findData(s.target)))
            self.format.setCurrentIndex(max(0, self.format.findData(s.format)))
            self.mode_buttons.get(s.mode, self.mode_buttons["fp32"]).setChecked(True)
            self.with_past.setChecked(s.with_past)
            self.fp32_share.setValue(100 * s.fp32_fraction)
            self.sample.setText(s.sample_text or "")
            self.out.setText(s.out or "")
        finally:
            self._filling = False
        self._settings_changed()

    def _settings_changed(self, *_args) -> None:
        if self._filling:
            return
        target, fmt, mode = self._choice()
        onnx = fmt == "onnx"
        for key, b in self.mode_buttons.items():
            b.setEnabled(onnx or key == "fp32")
        if not onnx and mode != "fp32":
            self.mode_buttons["fp32"].setChecked(True)  # calls back here
            return
        self.fp32_share.setEnabled(onnx and mode == "mixed")
        self.with_past.setEnabled(onnx and mode == "fp32")
        if not self.with_past.isEnabled():
            self.with_past.setChecked(False)
        self._show_int8_hint(onnx and mode in ("int8", "mixed"))
        model = self._target_source(target)
        self.target_hint.setText(Path(model).name if model else "")
        self.target_hint.setToolTip(model or "")
        current = self.out.text().strip()
        if not current or current == self._proposed_out:
            self._propose_out()
        elif onnx != current.lower().endswith(".onnx"):  # the user's path, in the other format's shape
            self.out.setText(current + ".onnx" if onnx else current[: -len(".onnx")])
        self.update_buttons()

    def _show_int8_hint(self, wanted: bool) -> None:
        """Say, before an INT8 export, which INT8 kernel this CPU runs and whether INT8 is faster here."""
        self.int8_hint.setVisible(wanted)
        if not wanted:
            return
        info = self._int8_info
        if info is None:
            self.int8_hint.setText("Measuring INT8 on this CPU…")
            if self._int8_job is None or self._int8_job.status.finished:
                self._int8_job = self.runner.submit("Measure INT8 on this CPU", _int8_probe, kind="probe", lane="io",
                                                    on_done=self._int8_measured, notify_failure=False)
            return
        kernel, speed = info["kernel"], info["speed"]
        sums = {"exact": "exact 32-bit sums", "u8s8-pair-saturation": "16-bit pair sums that can saturate"}.get(
            kernel["arithmetic"], "arithmetic not recognised: sensitivities measured in onnxruntime")
        if info["warning"]:
            self.int8_hint.setText(f"<span style='color:#b91c1c'>⚠ {info['warning']}</span>")
        else:
            self.int8_hint.setText(f"INT8 here: {kernel['instruction_set']} ({sums}); a 1024×1024 MatMul runs "
                                   f"{speed['speedup']:.1f}× faster in INT8 than in FP32 on one thread")

    def _int8_measured(self, info: dict[str, Any]) -> None:
        self._int8_info = info
        _, fmt, mode = self._choice()
        self._show_int8_hint(fmt == "onnx" and mode in ("int8", "mixed"))

    def _propose_out(self) -> None:
        target, fmt, mode = self._choice()
        m = self.doc.model
        name = (Path(m.source).name or "model") if m is not None else "model"
        stem = f"{name}-{target}" + (f"-{mode}" if fmt == "onnx" else "-hf") + ("-past" if self.with_past.isChecked() else "")
        suffix = ".onnx" if fmt == "onnx" else ""
        root = exports_dir()
        path, n = root / f"{stem}{suffix}", 1
        while path.exists() or onnx_data_file(path).exists():  # .data: the weights of a large export
            n += 1
            path = root / f"{stem}-{n}{suffix}"
        self._proposed_out = str(path)
        self.out.setText(self._proposed_out)

    def _browse_out(self) -> None:
        _, fmt, _ = self._choice()
        current = self.out.text().strip() or str(exports_dir())
        if fmt == "onnx":
            path, _ = QFileDialog.getSaveFileName(self, "Export to an ONNX file", current, "ONNX (*.onnx)")
            if path and not path.lower().endswith(".onnx"):
                path += ".onnx"
        else:
            path = QFileDialog.getExistingDirectory(self, "Export into an empty folder", str(Path(current).parent))
        if path:
            self.out.setText(path)
            self._confirmed_out = path if fmt == "onnx" else None  # the save dialog asked before replacing

    def _browse_sample(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Text for the comparison inputs", self.sample.text() or str(Path.home()),
                                              "Text files (*.txt *.md *.py);;All files (*)")
        if path:
            self.sample.setText(path)

    # -- the document ----------------------------------------------------------------------------
    def _target_source(self, target: str) -> str | None:
        if target == "original":
            return self.doc.model.source if self.doc.model is not None else None
        if target == "slimmed":
            return (self.doc.session.slimmed_path or "slimmed model (in memory)") if self.doc.slimmed is not None else None
        return self.doc.healed_path()

    def _targets_changed(self) -> None:
        available = {"original": self.doc.model is not None and self.doc.model.has_weights,
                     "slimmed": self.doc.slimmed is not None and self.doc.slimmed.has_weights,
                     "healed": self.doc.healed_path() is not None}
        model = self.target.model()
        for i, (key, _name) in enumerate(TARGETS):
            item = model.item(i)
            item.setEnabled(available[key])
            why = {"slimmed": "Apply a plan first", "healed": "Retrain the slimmed model first"}.get(key, "Open a model")
            item.setToolTip("" if available[key] else why)
        if not available.get(self.target.currentData(), False):
            self.target.setCurrentIndex(0)
        self._settings_changed()

    def _model_changed(self) -> None:
        if self.job is None or self.job.status.finished:
            self.status.setText("")
            self.progress.setValue(0)
        self.result = None
        self._proposed_out = None
        self._confirmed_out = None
        self.apply_settings()
        self._targets_changed()
        self.show_results()

    def update_buttons(self) -> None:
        busy = self.busy
        target = self.target.currentData()
        ok = self.doc.model is not None and self.target.model().item(self.target.currentIndex()).isEnabled()
        self.export_button.setEnabled(ok and not busy and target is not None)
        self.cancel_button.setEnabled(busy)
        layers = self._export_results().get("layers")
        self.again_button.setEnabled(bool(layers) and not busy)

    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.status.finished

    # -- running ---------------------------------------------------------------------------------
    def _target_model(self, target: str) -> LoadedModel | str:
        if target == "original":
            model = self.doc.model
        elif target == "slimmed":
            model = self.doc.slimmed
        else:
            path = self.doc.healed_path()
            if path is None:
                raise SlimError("there is no healed model yet", hint="retrain the slimmed model first")
            healed = self.doc.healed
            return healed if healed is not None and healed.source == path else path
        if model is None:
            raise SlimError(f"there is no {target} model", hint="apply a plan first" if target == "slimmed" else
                            "open a model first")
        return model

    def export(self, keep_fp32: list[str] | None = None, *, target: str | None = None, out: str | None = None,
               mode: str | None = None, sensitivity: dict[str, float] | None = None) -> Job | None:
        """Export with the tab's settings (or the given ones); ``keep_fp32``: the mixed export's FP32 layers;
        ``sensitivity``: an earlier scan of the same model, reused instead of scanning again."""
        if self.busy or self.doc.model is None:
            return None
        s = self.store_settings()
        target, fmt = target or s.target, s.format if mode is None else "onnx"
        mode = mode or s.mode
        out = (out or s.out or "").strip()
        if not out:
            self._propose_out()
            out = self.out.text()
        try:
            model = self._target_model(target)
        except SlimError as exc:
            self.notifier.warning(exc.one_line())
            return None
        previous = {str(r.get("file")) for r in self._export_results().get("runs", [])}
        force = out in previous or out == self._confirmed_out
        original = self.doc.model
        name = Path(out).name
        self.status.setText(f"Exporting the {target} model to {out}…")
        self.progress.setValue(0)
        self.job = self.runner.submit(
            f"Export {target} model as {name} ({'transformers' if fmt == 'hf' else mode.upper()})",
            partial(export_task, model, out, registry=self.doc.registry, fmt=fmt, mode=mode,
                    with_past=s.with_past and mode == "fp32" and fmt == "onnx", fp32_fraction=s.fp32_fraction,
                    keep_fp32=keep_fp32, sensitivity=sensitivity, sample_text=s.sample_text,
                    adapter=original.adapter, force=force),
            kind="export", lane="model", on_done=lambda r: self._exported(r, target, original),
            on_failed=self._failed, on_cancelled=self._cancelled)
        self.update_buttons()
        return self.job

    def export_again(self) -> Job | None:
        """Re-export the last mixed-precision export with the ticked layers (and only those) kept FP32."""
        res = self._export_results()
        layers = res.get("layers") or []
        if not layers:
            self.notifier.info("Export with mixed precision first: Export again uses its layer table.")
            return None
        keep = [x["layer"] for x in layers if self._chosen(x) == "fp32"]
        scanned = {x["layer"]: x["sensitivity"] for x in layers if "sensitivity" in x}
        return self.export(keep, target=res.get("layers_target") or "original", out=res.get("layers_file"),
                           mode="mixed", sensitivity=scanned)

    def cancel(self) -> None:
        if self.busy:
            self.runner.cancel(self.job)
            self.status.setText("Cancelling after the current step…")
            self.cancel_button.setEnabled(False)

    def _job_changed(self, job: Job) -> None:
        if job is not self.job or job.status.finished:
            return
        frac = job.fraction
        if frac is not None:
            self.progress.setValue(int(1000 * frac))
        eta = format_eta(job.eta)
        self.status.setText((job.message or "working") + (f" · ETA {eta}" if eta else ""))

    def _failed(self, job: Job) -> None:
        self.progress.setValue(0)
        self.status.setText(f"<span style='color:#b91c1c'>Failed: {job.error}</span> — nothing was written.")
        self.update_buttons()

    def _cancelled(self, _job: Job) -> None:
        self.progress.setValue(0)
        self.status.setText("Cancelled — nothing was written.")
        self.update_buttons()

    def _exported(self, outcome: tuple[dict[str, Any], LoadedModel], target: str, original: LoadedModel) -> None:
        result, model = outcome
        self.progress.setValue(1000)
        if self.doc.model is not original:
            self.status.setText(f"Exported to {result['file']} (a model that is no longer open).")
            return
        if target == "healed":
            self.doc.healed = model
        record = {k: result[k] for k in RECORD_KEYS if k in result}
        record.update({"target": target, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        res = dict(self._export_results())
        res["runs"] = [*res.get("runs", []), record]
        if result.get("mode") == "mixed" and result.get("layers"):
            mapping = self._view_units(target, model)
            res["layers"] = [{**x, "view_unit": mapping.get(x.get("unit"))} for x in result["layers"]]
            res["layers_file"], res["layers_target"], res["flips"] = result["file"], target, {}
        self.status.setText(f"<b>Done</b>: {result['file']}")
        self.doc.set_results("export", res)
        if result.get("mode") == "mixed" and OVERLAY in self.doc.overlays:
            self.doc.show_overlay(OVERLAY)
        what = {"fp32": "", "int8": " INT8", "mixed": " mixed precision"}[result.get("mode", "fp32")]
        ref = "FP32" if result.get("mode") in ("int8", "mixed") else "torch"
        extra = (f"; vs {ref}: cosine {result['cosine']:.6f}, max abs diff {result['max_abs_diff']:.3g}"
                 if result.get("format") == "onnx" else "")
        self.notifier.info(f"Exported the {target} model{what} to {result['file']} ({human_bytes(result['bytes'])}){extra}")
        for warning in result.get("warnings") or []:
            self.notifier.warning(warning)
        self.update_buttons()

    def _view_units(self, target: str, model: LoadedModel) -> dict[str, str]:
        """Which unit of the model on screen each unit of the exported model is."""
        g = self.doc.graph
        if g is None:
            return {}
        if target == "original":
            return {u.id: u.id for u in g.units}
        return unit_correspondence(g, graph_of(model, self.doc.registry), self.doc.session.slimmed_remove)

    # -- results ---------------------------------------------------------------------------------
    def _export_results(self) -> dict[str, Any]:
        res = self.doc.session.results.get("export")
        return res if isinstance(res, dict) else {}

    def show_results(self) -> None:
        res = self._export_results()
        runs = res.get("runs") or []
        self.result = runs[-1] if runs else None
        self._show_check(self.result)
        self._show_layers(res)
        self._targets_changed()

    def _show_check(self, r: dict[str, Any] | None) -> None:
        for s in self.stats.values():
            s.set("—")
        if r is None:
            self.check_label.setText("Nothing exported yet.")
            for key in ("size_ratio", "output_error"):
                self.stats[key].setVisible(False)
            return
        name = Path(str(r.get("file"))).name
        when = f" · {r['time']}" if r.get("time") else ""
        self.stats["size"].set(human_bytes(r.get("bytes") or 0))
        quant = r.get("mode") in ("int8", "mixed")
        for key in ("size_ratio", "output_error"):
            self.stats[key].setVisible(quant)
        if r.get("format") == "hf":
            self.check_label.setText(f"<b>{name}</b> — transformers folder of the {r.get('target', '?')} model{when}. "
                                     "Same weights as the model in memory; loads with from_pretrained.")
            self.stats["max_abs_diff"].set("—")
            self.stats["cosine"].set("—")
            self.check_box.setToolTip(str(r.get("file")))
            return
        base = r.get("fp32_parity") if quant and isinstance(r.get("fp32_parity"), dict) else r
        cos, diff = base.get("cosine"), base.get("max_abs_diff")
        good = isinstance(cos, (int, float)) and cos >= 0.999
        colour = "#15803d" if good else "#b91c1c"
        # the boxes: the file's own outputs (quantised: against the FP32 graph, which matched torch)
        shown_cos, shown_diff = (r.get("cosine"), r.get("max_abs_diff")) if quant else (cos, diff)
        ref = "FP32" if quant else "torch"
        self.stats["cosine"].title.setText(f"cosine vs {ref}")
        self.stats["max_abs_diff"].title.setText(f"max abs diff vs {ref}")
        ok_colour = "#15803d" if isinstance(shown_cos, (int, float)) and shown_cos >= 0.999 else "#b45309"
        self.stats["cosine"].set(f"{shown_cos:.6f}" if isinstance(shown_cos, (int, float)) else "—",
                                 colour if not quant else ok_colour)
        self.stats["max_abs_diff"].set(f"{shown_diff:.3g}" if isinstance(shown_diff, (int, float)) else "—")
        lines = [f"<b>{name}</b> — ONNX {str(r.get('mode', 'fp32')).upper()} of the {r.get('target', '?')} model{when}",
                 f"<span style='color:{colour}'>{'✔' if good else '✘'} ONNX checker passed; "
                 f"{'the FP32 graph' if quant else 'onnxruntime'} matches torch</span> (max abs diff {diff:.3g}, "
                 f"cosine {cos:.6f})" if isinstance(cos, (int, float)) and isinstance(diff, (int, float)) else ""]
        inc = r.get("incremental")
        if isinstance(inc, dict):
            lines.append(f"Past key/values: token-by-token decoding matches torch over {inc.get('tokens')} tokens "
                         f"(cosine {inc.get('cosine', 0):.6f})")
        if quant:
            ratio, err = r.get("size_ratio"), r.get("output_rel_error")
            self.stats["size_ratio"].set(f"{100 * ratio:.0f}%" if isinstance(ratio, (int, float)) else "—")
            self.stats["output_error"].set(f"{err:.2e}" if isinstance(err, (int, float)) else "—")
            lines.append(f"{str(r['mode']).upper()} vs FP32: cosine {r.get('cosine', 0):.6f}, max abs diff "
                         f"{r.get('max_abs_diff', 0):.3g}"
                         + (f" · FP32 layers: {len(r.get('fp32_layers') or [])}" if r.get("mode") == "mixed" else ""))
        self.check_label.setText("<br>".join(x for x in lines if x))
        self.check_box.setToolTip(f"{r.get('file')}\ncheck report: {r.get('report')}")

    def _chosen(self, layer: dict[str, Any]) -> str:
        flips = self._export_results().get("flips") or {}
        return flips.get(layer["layer"], layer.get("precision", "int8"))

    def _show_layers(self, res: dict[str, Any]) -> None:
        layers = res.get("layers") or []
        self.layers_box.setVisible(bool(layers))
        self._filling = True
        self.table.setSortingEnabled(False)
        try:
            self.table.setRowCount(len(layers))
            scale = self._colour_scale(res)
            for row, x in enumerate(layers):
                check = QTableWidgetItem()
                check.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsSelectable)
                check.setCheckState(Qt.CheckState.Checked if self._chosen(x) == "fp32" else Qt.CheckState.Unchecked)
                check.setData(Qt.ItemDataRole.UserRole, x["layer"])
                check.setToolTip("ticked: keep this layer FP32 in the next export")
                name = QTableWidgetItem(x["layer"])
                name.setToolTip(f"{x['layer']}\nONNX node {x.get('node', '?')}")
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

    def _colour_scale(self, res: dict[str, Any]):
        """Sensitivity -> [0, 1] on the model view's colour scale (the range of the units' values), so a
        cell and the unit it belongs to show the same colour."""
        values = [float(x.get("sensitivity", 0.0)) for x in res.get("layers") or []]
        per_unit: dict[str, float] = {}
        for x in res.get("layers") or []:
            if x.get("view_unit"):
                per_unit[x["view_unit"]] = max(per_unit.get(x["view_unit"], 0.0), float(x.get("sensitivity", 0.0)))
        ref = list(per_unit.values()) or values
        lo, hi = (min(ref), max(ref)) if ref else (0.0, 1.0)
        log = lo > 0 and hi / lo > 100

        def scale(v: float) -> float:
            if log:
                f = (math.log(max(v, 1e-300)) - math.log(lo)) / (math.log(hi) - math.log(lo))
            else:
                f = (v - lo) / (hi - lo) if hi > lo else 0.5
            return min(1.0, max(0.0, f))

        return scale

    def _mark_row(self, row: int) -> None:
        check = self.table.item(row, 0)
        layer = check.data(Qt.ItemDataRole.UserRole)
        exported = next((x.get("precision") for x in self._export_results().get("layers", []) if x["layer"] == layer),
                        None)
        chosen = "fp32" if check.checkState() == Qt.CheckState.Checked else "int8"
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
        exported = next((x.get("precision") for x in res.get("layers", []) if x["layer"] == layer), None)
        chosen = "fp32" if item.checkState() == Qt.CheckState.Checked else "int8"
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

    def set_layer_fp32(self, layer: str, fp32: bool = True) -> None:
        """Tick or untick a layer's FP32 box (what a click on it does)."""
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item.data(Qt.ItemDataRole.UserRole) == layer:
                item.setCheckState(Qt.CheckState.Checked if fp32 else Qt.CheckState.Unchecked)
                return
        raise SlimError(f"no layer named '{layer}' in the table")

    def _describe_layers(self) -> None:
        res = self._export_results()
        layers = res.get("layers") or []
        if not layers:
            return
        chosen = [x for x in layers if self._chosen(x) == "fp32"]
        flips = res.get("flips") or {}
        self.layers_hint.setText(f"{len(layers)} layers · {len(chosen)} FP32 in the next export"
                                 + (f" · <b>{len(flips)} changed</b> by you" if flips else "")
                                 + f" · {Path(str(res.get('layers_file'))).name}")
        self.again_button.setText(f"Export again ({len(chosen)} FP32)")

    def _register_overlay(self, res: dict[str, Any]) -> None:
        """The sensitivity as an overlay on the model view: each unit gets its layers' largest sensitivity."""
        layers = [x for x in res.get("layers") or [] if x.get("view_unit")]
        if not layers or self.doc.graph is None:
            if OVERLAY in self.doc.overlays:
                self.doc.set_overlay(OVERLAY, None)
            return
        values: dict[str, float] = {}
        top: dict[str, dict[str, Any]] = {}
        for x in layers:
            uid, s = x["view_unit"], float(x.get("sensitivity", 0.0))
            if uid not in self.doc.graph:
                continue
            if s >= values.get(uid, -1.0):
                values[uid], top[uid] = s, x
        notes = {uid: f"most sensitive layer: {x['layer']} ({x.get('precision', '?').upper()} in "
                      f"{Path(str(res.get('layers_file'))).name})" for uid, x in top.items()}
        overlay = Overlay(title=f"{OVERLAY} (max per unit)", values=values, words=("robust to INT8", "sensitive"),
                          aggregate="max", notes=notes)
        old = self.doc.overlays.get(OVERLAY)
        if old is None or old.values != overlay.values or old.notes != overlay.notes:
            self.doc.set_overlay(OVERLAY, overlay, show=False)
