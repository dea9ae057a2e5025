"""The Analysis panel: pick a criterion and calibration data, score every prunable unit in the background.

The criteria are the registry's for the model's family (its own first); the default is the family's own
first criterion (:func:`~slimgui.core.session.default_criterion`): ``ppl`` for a language model with
calibration text, ``ldpruner`` for a diffusion U-Net, whose calibration data (an image folder or a prompts
file) is optional."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.data import CalibrationData
from slimgui.core.errors import SlimError
from slimgui.core.jobs import Job, analyze_task
from slimgui.core.scores import Scores
from slimgui.core.session import criteria_for, default_criterion, default_data
from slimgui.gui.widgets import browse_row

from .document import Document
from .family import traits
from .notify import Notifier
from .workers import JobRunner


class AnalysisPanel(QWidget):
    analysisFinished = Signal(object)  # Scores

    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier = document, runner, notifier
        self.criterion = QComboBox()
        self.criterion.setToolTip("Importance criterion (higher score = more important block)")
        self.criterion.currentIndexChanged.connect(self._describe)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setObjectName("Hint")
        self.data = QLineEdit()
        self.data.setPlaceholderText("calibration text file (UTF-8)")
        data_row = browse_row(self.data, self._browse, "Choose a calibration text file")
        self.seq_len = self._spin(2, 8192, 128, "tokens per calibration segment")
        self.samples = self._spin(1, 4096, 32, "number of calibration segments")
        self.batch_size = self._spin(1, 512, 8, "segments per forward pass")
        sizes = QHBoxLayout()
        self.size_labels: dict[str, QLabel] = {}
        for label, spin in (("length", self.seq_len), ("samples", self.samples), ("batch", self.batch_size)):
            self.size_labels[label] = QLabel(label)
            sizes.addWidget(self.size_labels[label])
            sizes.addWidget(spin)
        sizes.addStretch(1)
        self.run_button = QPushButton("Analyse")
        self.run_button.setObjectName("Primary")
        self.run_button.setToolTip("Score every prunable block with the criterion (runs in the background)")
        self.run_button.clicked.connect(lambda: self.run())
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setObjectName("Hint")
        form = QFormLayout()
        form.addRow("Criterion", self.criterion)
        form.addRow("", self.description)
        form.addRow("Calibration", data_row)
        form.addRow("", sizes)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.status, 1)
        lay.addLayout(row)
        self.job: Job | None = None
        document.modelChanged.connect(self._model_changed)
        self._model_changed()

    @staticmethod
    def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setValue(value)
        s.setToolTip(tip)
        return s

    def _browse(self) -> None:
        if traits(self.doc.registry, self.doc.model, self.doc.graph).images:
            path = QFileDialog.getExistingDirectory(self, "Calibration images (an image folder)",
                                                    self.data.text() or str(Path.home()))
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Calibration text", self.data.text() or str(Path.home()),
                                                  "Text files (*.txt *.md *.py *.json);;All files (*)")
        if path:
            self.data.setText(path)

    def _describe(self) -> None:
        self.description.setText(self.criterion.currentData() or "")

    def _model_changed(self) -> None:
        m = self.doc.model
        self.criterion.clear()
        self.run_button.setEnabled(m is not None and m.has_weights)
        if m is None:
            self.status.setText("Open a model to analyse it.")
            return
        for name, desc in criteria_for(self.doc.registry, m.family):
            self.criterion.addItem(name, desc)
        settings = self.doc.session.analysis
        if settings.seq_len:
            self.seq_len.setValue(settings.seq_len)
            self.samples.setValue(settings.samples)
            self.batch_size.setValue(settings.batch_size)
        fallback = default_data(m)
        images = traits(self.doc.registry, m, self.doc.graph).images
        self.seq_len.setVisible(not images)  # a sample is an image: no sequence length
        self.size_labels["length"].setVisible(not images)
        self.samples.setToolTip("number of calibration images (noisy latents)" if images else
                                "number of calibration segments")
        self.batch_size.setToolTip("images per forward pass" if images else "segments per forward pass")
        if images:
            self.data.setPlaceholderText(f"default: {Path(fallback).name} (the demo's images)" if fallback else
                                         "optional: an image folder (metadata.jsonl captions) or a prompts file; "
                                         "empty = task-agnostic noise")
        else:
            self.data.setPlaceholderText(f"default: {Path(fallback).name} (the demo's text)" if fallback
                                         else "calibration text file (UTF-8) — needed by ppl, bi, taylor")
        best = default_criterion(self.doc.registry, m, self.data.text() or None)
        if best:
            self.criterion.setCurrentText(best)
        self.status.setText("" if m.has_weights else "This model has no weights (config only): it can be "
                            "inspected and a plan drawn, but not analysed.")

    def apply_settings(self) -> None:
        """Show the session's analysis settings (after a session is reopened)."""
        s = self.doc.session.analysis
        if s.criterion:
            self.criterion.setCurrentText(s.criterion)
        self.data.setText(s.data or "")
        self.seq_len.setValue(s.seq_len)
        self.samples.setValue(s.samples)
        self.batch_size.setValue(s.batch_size)

    def calibration(self) -> CalibrationData | None:
        """The calibration data the analysis uses (None: the criterion needs none or the family decides)."""
        path = self.data.text().strip() or (default_data(self.doc.model) if self.doc.model else None)
        if not path:
            return None
        return CalibrationData(path, seq_len=self.seq_len.value(), samples=self.samples.value(),
                               batch_size=self.batch_size.value())

    def run(self, criterion: str | None = None) -> Job | None:
        model = self.doc.model
        if model is None:
            self.notifier.warning("Open a model first, then analyse it.")
            return None
        name = criterion or self.criterion.currentText()
        if not name:
            return None
        if criterion and self.criterion.findText(criterion) >= 0:
            self.criterion.setCurrentText(criterion)
        try:
            data = self.calibration()
        except SlimError as exc:
            self.notifier.error(exc.one_line())
            return None
        s = self.doc.session.analysis
        s.criterion, s.data = name, (self.data.text().strip() or None)
        s.seq_len, s.samples, s.batch_size = self.seq_len.value(), self.samples.value(), self.batch_size.value()
        label = Path(model.source).name or model.source
        self.status.setText(f"Analysing with {name}…")

        def done(scores: Scores, m=model) -> None:
            if self.doc.model is not m:
                self.notifier.info(f"{name} scores of a model that is no longer open were discarded")
                return
            self.doc.add_scores(scores)
            secs = scores.meta.get("seconds")
            word = traits(self.doc.registry, m, self.doc.graph).unit_word
            warnings = [str(w) for w in (scores.meta.get("warnings") or [])]
            self.status.setText(f"{name}: {len(scores.values)} {word}s scored" + (f" in {secs:.1f}s" if secs else "")
                                + (f" ({len(warnings)} warning{'s' if len(warnings) > 1 else ''})" if warnings else ""))
            for text in warnings:  # e.g. a calibration text too short for the samples asked for
                self.notifier.warning(f"{name}: {text}")
            self.analysisFinished.emit(scores)

        def failed(job: Job) -> None:
            self.status.setText(f"{name} failed: {job.error}")

        self.job = self.runner.submit(
            f"Analyse {label} with {name}",
            partial(analyze_task, model, name, registry=self.doc.registry, data=data, keep=self.doc.keep),
            kind="analysis", lane="model", on_done=done, on_failed=failed,
            on_cancelled=lambda _j: self.status.setText(f"{name}: cancelled"))
        return self.job
