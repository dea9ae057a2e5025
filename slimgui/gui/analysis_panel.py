"""The Analysis panel: pick a criterion and calibration data, score every prunable unit in the background.

The criteria are the registry's for the model's family (its own first); the default is the family's declared
``default_criterion`` when there is data for it (:func:`~slimgui.core.session.default_criterion`).  What the
calibration data is (a file or a folder, its label and help) comes from the family's ``AdapterSpec.data``, and how
it is cut from a form generated from its ``calibration_options``; the values are kept per family in
``AnalysisSettings.options``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt, Signal
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
from slimgui.core.options import to_dict
from slimgui.core.scores import Scores
from slimgui.core.session import criteria_for, default_criterion, default_data
from slimgui.core.settings import put, values_for
from slimgui.gui.widgets import browse_row

from .document import Document
from .forms import OptionsForm, replace_form
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
        self.description.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.data = QLineEdit()
        self.data.setPlaceholderText("calibration text file (UTF-8)")
        data_row = browse_row(self.data, self._browse, "Choose a calibration text file")
        self.samples = self._spin(1, 4096, 32, "number of calibration samples")
        self.batch_size = self._spin(1, 512, 8, "samples per forward pass")
        sizes = QHBoxLayout()
        self.size_labels: dict[str, QLabel] = {}
        for label, spin in (("samples", self.samples), ("batch", self.batch_size)):
            self.size_labels[label] = QLabel(label)
            sizes.addWidget(self.size_labels[label])
            sizes.addWidget(spin)
        sizes.addStretch(1)
        self.form = OptionsForm()  # the family's calibration options (rebuilt for each family)
        self._schema: type | None = None
        self._schema_family: str | None = "?"
        self.run_button = QPushButton("Analyse")
        self.run_button.setObjectName("Primary")
        self.run_button.setToolTip("Score every prunable block with the criterion (runs in the background)")
        self.run_button.clicked.connect(lambda: self.run())
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setObjectName("Hint")
        self.settings_form = form = QFormLayout()
        form.addRow("Criterion", self.criterion)
        form.addRow("", self.description)
        form.addRow("Calibration", data_row)
        form.addRow("", sizes)
        form.addRow("", self.form)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.status, 1)
        lay.addLayout(row)
        self.job: Job | None = None
        self._settled = True  # no analysis of this panel queued or running
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
        spec = self.doc.spec
        data = spec.data if spec is not None else None
        start = self.data.text() or str(Path.home())
        if data is not None and data.kind == "folder":
            path = QFileDialog.getExistingDirectory(self, data.label, start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, data.label if data else "Calibration data", start,
                                                  (data.filter if data else "") or "All files (*)")
        if path:
            self.data.setText(path)

    def _fill_form(self) -> None:
        """The family's calibration options (``AdapterSpec.calibration_options``) as a form."""
        spec = self.doc.spec
        family = spec.family if spec is not None else None
        if family == self._schema_family:
            return
        self._schema_family = family
        try:
            self._schema = self.doc.registry.options(spec, "calibration_options") if spec is not None else None
        except SlimError as exc:
            self.notifier.error(exc.one_line())
            self._schema = None
        self.form = replace_form(self.settings_form, self.form, self._schema)

    def _describe(self) -> None:
        self.description.setText(self.criterion.currentData() or "")
        self._reserve_description()

    def _reserve_description(self) -> None:
        """Room for the longest criterion description at the label's width, so that choosing another criterion
        never moves the rows and the Analyse button below it."""
        width = self.description.width()
        if width < 50:
            return
        label = self.description
        shown = label.text()
        texts = [str(self.criterion.itemData(i) or "") for i in range(self.criterion.count())]
        need = 0
        label.blockSignals(True)
        try:
            for t in texts:  # the label's own measure of each text (margins, font, wrapping as drawn)
                label.setText(t)
                need = max(need, label.heightForWidth(width), label.sizeHint().height())  # (a form row uses the hint)
        finally:
            label.setText(shown)
            label.blockSignals(False)
        if need > 0 and need != label.minimumHeight():
            label.setMinimumHeight(need)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._reserve_description()

    def _model_changed(self) -> None:
        m = self.doc.model
        self.criterion.clear()
        self.run_button.setEnabled((m is not None and m.has_weights) and not self.busy)
        if m is None:
            self.status.setText("Open a model to analyse it.")
            return
        for name, desc in criteria_for(self.doc.registry, m.family):
            self.criterion.addItem(name, desc)
        self._fill_form()
        self.form.set_context_limit(self.doc.context_limit())
        self._show_options()
        fallback = default_data(m, self.doc.registry)
        data = self.doc.spec.data if self.doc.spec is not None else None
        self.data.setToolTip(f"{data.label}: {data.help}" if data is not None and data.help else "")
        if fallback:
            self.data.setPlaceholderText(f"default: {Path(fallback).name} (the model's own data)")
        elif data is not None:
            self.data.setPlaceholderText(f"{data.label}: {data.help}" if data.help else data.label)
        best = default_criterion(self.doc.registry, m, self.data.text() or None)
        if best:
            self.criterion.setCurrentText(best)
        preferred = spec.default_criterion if (spec := self.doc.spec) is not None else None
        if not m.has_weights:
            self.status.setText("This model has no weights (config only): it can be inspected and a plan drawn, but "
                                "not analysed.")
        elif best and preferred and best != preferred:
            # the family's trusted criterion needs data this model does not bring: say why another is offered
            self.status.setText(f"{best} is offered because there is no calibration data: give "
                                f"{data.label if data is not None else 'data'} to score by {preferred}, the "
                                f"criterion this family trusts ({best} only reads the weights and can rank a "
                                f"crucial {self.doc.unit_word()} least important).")
        else:
            self.status.setText("")

    def _show_options(self) -> None:
        spec = self.doc.spec
        s = self.doc.session.analysis
        self.samples.setValue(s.samples)
        self.batch_size.setValue(s.batch_size)
        if spec is not None and self._schema is not None:
            self.form.set_values(values_for(s.options, spec.family, self._schema, where="calibration "), emit=False)

    def apply_settings(self) -> None:
        """Show the session's analysis settings (after a session is reopened)."""
        s = self.doc.session.analysis
        if s.criterion:
            self.criterion.setCurrentText(s.criterion)
        self.data.setText(s.data or "")
        self._show_options()

    def calibration(self) -> CalibrationData | None:
        """The calibration data the analysis uses (None: the criterion needs none or the family decides); raises
        SlimError when an option is bad."""
        path = self.data.text().strip() or (default_data(self.doc.model, self.doc.registry) if self.doc.model else None)
        if not path:
            return None
        options = to_dict(self.form.values(0)) if self._schema is not None else {}
        return CalibrationData(path, samples=self.samples.value(), batch_size=self.batch_size.value(), options=options)

    @property
    def busy(self) -> bool:
        """Whether an analysis of this panel is queued or running (its button is disabled meanwhile)."""
        return not self._settled

    def _settle(self) -> None:
        self._settled = True
        m = self.doc.model
        self.run_button.setEnabled(m is not None and m.has_weights)
        self.run_button.setText("Analyse")

    def run(self, criterion: str | None = None) -> Job | None:
        model = self.doc.model
        if model is None:
            self.notifier.warning("Open a model first, then analyse it.")
            return None
        if self.busy:  # one analysis at a time: a second press would queue a duplicate
            self.notifier.info("An analysis is already running: wait for it, or cancel it in the Jobs dock.")
            return self.job
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
        s.samples, s.batch_size = self.samples.value(), self.batch_size.value()
        if self.doc.spec is not None and self._schema is not None:
            put(s.options, self.doc.spec.family, self.form.values(0))
        label = Path(model.source).name or model.source
        self.status.setText(f"Analysing with {name}…")

        def done(scores: Scores, m=model) -> None:
            self._settle()
            if self.doc.model is not m:
                self.notifier.info(f"{name} scores of a model that is no longer open were discarded")
                return
            self.doc.add_scores(scores)
            secs = scores.meta.get("seconds")
            n = len(scores.values)
            word = self.doc.unit_word(plural=n != 1)
            warnings = [str(w) for w in (scores.meta.get("warnings") or [])]
            self.status.setText(f"{name}: {n} {word} scored" + (f" in {secs:.1f}s" if secs else "")
                                + (f" ({len(warnings)} warning{'s' if len(warnings) > 1 else ''})" if warnings else ""))
            for text in warnings:  # e.g. a calibration text too short for the samples asked for
                self.notifier.warning(f"{name}: {text}")
            self.analysisFinished.emit(scores)

        def failed(job: Job) -> None:
            self._settle()
            self.status.setText(f"{name} failed: {job.error}")

        def cancelled(_job: Job) -> None:
            self._settle()
            self.status.setText(f"{name}: cancelled")

        self._settled = False
        self.run_button.setEnabled(False)
        self.run_button.setText("Analysing…")
        self.job = self.runner.submit(
            f"Analyse {label} with {name}",
            partial(analyze_task, model, name, registry=self.doc.registry, data=data, keep=self.doc.keep),
            kind="analysis", lane="model", on_done=done, on_failed=failed,
            on_cancelled=cancelled)
        return self.job
