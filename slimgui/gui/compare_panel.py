"""The Compare panel: the same preview (same greedy settings) from the original and the slimmed model,
side by side, and the perplexity of both on a chosen text file."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.jobs import Job, evaluate_task, preview_task
from slimgui.core.session import default_data, human_count, previewers_for

from .document import Document
from .notify import Notifier
from .viewers import MediaViewer, viewer_class
from .workers import JobRunner

SIDES = ("original", "slimmed")


class MediaSlot(QFrame):
    """A titled place for one model's preview; swaps in the viewer that fits the media type."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("MediaSlot")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(f"<b>{title}</b>")
        self.placeholder = QLabel()
        self.placeholder.setObjectName("Hint")
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.metric_label = QLabel()
        self.viewer: MediaViewer | None = None
        self._lay = QVBoxLayout(self)
        self._lay.addWidget(self.title)
        self._lay.addWidget(self.placeholder, 1)
        self._lay.addWidget(self.metric_label)

    def show_media(self, media: Any) -> None:
        if media is None:
            if self.viewer is not None:
                self.viewer.clear()
                self.viewer.hide()
            self.placeholder.show()
            return
        cls = viewer_class(media)
        if self.viewer is None or type(self.viewer) is not cls:
            if self.viewer is not None:
                self.viewer.setParent(None)
                self.viewer.deleteLater()
            self.viewer = cls(self)
            self._lay.insertWidget(1, self.viewer, 1)
        self.viewer.show_media(media)
        self.viewer.show()
        self.placeholder.hide()

    @property
    def text(self) -> str:
        return getattr(self.viewer, "text", "") if self.viewer is not None and not self.viewer.isHidden() else ""


class ComparePanel(QWidget):
    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier = document, runner, notifier
        self.previewer = QComboBox()
        self.previewer.setToolTip("What to preview (the family's previewers)")
        self.prompt = QLineEdit("def ")
        self.prompt.setToolTip("Prompt: both models continue it with the same greedy decoding")
        self.max_new = QSpinBox()
        self.max_new.setRange(1, 2048)
        self.max_new.setValue(40)
        self.max_new.setToolTip("New tokens to generate")
        self.generate_button = QPushButton("Generate both")
        self.generate_button.setObjectName("Primary")
        self.generate_button.clicked.connect(lambda: self.generate())
        row = QHBoxLayout()
        row.addWidget(self.previewer)
        row.addWidget(self.prompt, 1)
        row.addWidget(QLabel("tokens"))
        row.addWidget(self.max_new)
        row.addWidget(self.generate_button)
        self.slots = {side: MediaSlot(side.capitalize()) for side in SIDES}
        split = QSplitter(Qt.Orientation.Horizontal)
        for side in SIDES:
            split.addWidget(self.slots[side])
        # evaluation
        self.eval_file = QLineEdit()
        self.eval_file.setPlaceholderText("text file to measure perplexity on")
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse)
        self.eval_seq = QSpinBox()
        self.eval_seq.setRange(2, 8192)
        self.eval_seq.setValue(128)
        self.eval_seq.setToolTip("window length in tokens")
        self.eval_max = QSpinBox()
        self.eval_max.setRange(0, 10_000_000)
        self.eval_max.setSingleStep(1024)
        self.eval_max.setValue(4096)
        self.eval_max.setSpecialValueText("whole file")
        self.eval_max.setToolTip("evaluate only the first N tokens (0 = the whole file)")
        self.eval_button = QPushButton("Perplexity of both")
        self.eval_button.clicked.connect(lambda: self.evaluate())
        frow = QHBoxLayout()
        frow.addWidget(self.eval_file, 1)
        frow.addWidget(browse)
        erow = QHBoxLayout()
        erow.addWidget(QLabel("window"))
        erow.addWidget(self.eval_seq)
        erow.addWidget(QLabel("tokens"))
        erow.addWidget(self.eval_max)
        erow.addStretch(1)
        erow.addWidget(self.eval_button)
        self.ppl_summary = QLabel()
        self.ppl_summary.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Preview", row)
        form.addRow("Evaluate on", frow)
        form.addRow("", erow)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.ppl_summary)
        lay.addWidget(split, 1)
        self.job: Job | None = None
        self.eval_job: Job | None = None
        document.modelChanged.connect(self._model_changed)
        document.slimmedChanged.connect(self._titles)
        document.resultsChanged.connect(self.show_results)
        self._model_changed()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Evaluation text", self.eval_file.text() or str(Path.home()),
                                              "Text files (*.txt *.md *.py);;All files (*)")
        if path:
            self.eval_file.setText(path)

    # -- settings <-> session ------------------------------------------------------------------
    def _model_changed(self) -> None:
        m = self.doc.model
        self.previewer.clear()
        if m is not None:
            for name, media, desc in previewers_for(self.doc.registry, m.family):
                self.previewer.addItem(name, media)
                self.previewer.setItemData(self.previewer.count() - 1, f"{desc} ({media})", Qt.ItemDataRole.ToolTipRole)
            fallback = default_data(m)
            self.eval_file.setPlaceholderText(f"default: {Path(fallback).name}" if fallback
                                              else "text file to measure perplexity on")
        ok = m is not None and m.has_weights
        self.generate_button.setEnabled(ok and self.previewer.count() > 0)
        self.eval_button.setEnabled(ok)
        self.apply_settings()
        self._titles()
        self.show_results()

    def apply_settings(self) -> None:
        p = self.doc.session.preview
        if p.previewer:
            self.previewer.setCurrentText(p.previewer)
        self.prompt.setText(p.prompt)
        self.max_new.setValue(p.max_new_tokens)
        self.eval_file.setText(p.eval_file or "")
        self.eval_seq.setValue(p.eval_seq_len)
        self.eval_max.setValue(p.eval_max_tokens or 0)

    def _store_settings(self) -> None:
        p = self.doc.session.preview
        p.previewer = self.previewer.currentText() or p.previewer
        p.prompt = self.prompt.text()
        p.max_new_tokens = self.max_new.value()
        p.eval_file = self.eval_file.text().strip() or None
        p.eval_seq_len = self.eval_seq.value()
        p.eval_max_tokens = self.eval_max.value() or None

    def _titles(self) -> None:
        g, slim = self.doc.graph, self.doc.slimmed
        if g is None:
            self.slots["original"].title.setText("<b>Original</b>")
        else:
            self.slots["original"].title.setText(
                f"<b>Original</b> — {len(g.prunable())} blocks, {human_count(g.total_params)} params")
        if slim is None:
            self.slots["slimmed"].title.setText("<b>Slimmed</b>")
        else:
            sg = slim.extra.get("graph")
            size = f", {human_count(sg.total_params)} params" if sg is not None else ""
            n = len(sg.prunable()) if sg is not None else "?"
            self.slots["slimmed"].title.setText(f"<b>Slimmed</b> — {n} blocks{size}")
        self.show_results()

    # -- results -------------------------------------------------------------------------------
    def show_results(self) -> None:
        results = self.doc.session.results
        gen = results.get("generation") or {}
        for side in SIDES:
            self.slots[side].show_media(gen.get(side))
        if self.doc.model is None:
            hint = {"original": "Open a model.", "slimmed": ""}
        elif not self.doc.model.has_weights:
            hint = {"original": "Config-only model: nothing to generate.", "slimmed": ""}
        else:
            hint = {"original": "Press “Generate both”.",
                    "slimmed": "Apply a plan (Plan tab) to get a slimmed model to compare." if self.doc.slimmed is None
                    else "Press “Generate both”."}
        for side in SIDES:
            self.slots[side].placeholder.setText(hint[side])
        ppl = results.get("perplexity") or {}
        parts = []
        for side in SIDES:
            r = ppl.get(side)
            text = f"perplexity {r['perplexity']:.3f} on {r.get('tokens', '?')} tokens" if r else ""
            self.slots[side].metric_label.setText(text)
            if r:
                parts.append(f"{side}: <b>{r['perplexity']:.3f}</b>")
        if ppl.get("original") and ppl.get("slimmed"):
            a, b = ppl["original"]["perplexity"], ppl["slimmed"]["perplexity"]
            parts.append(f"change: <b>{100 * (b - a) / a:+.1f}%</b>")
        file = (ppl.get("original") or {}).get("file")
        self.ppl_summary.setText(("Perplexity — " + " · ".join(parts) + (f"  <span style='color:#6b7280'>on "
                                  f"{Path(file).name}</span>" if file else "")) if parts else "")

    def _models(self) -> list:
        models = [self.doc.model]
        if self.doc.slimmed is not None:
            models.append(self.doc.slimmed)
        return models

    # -- actions -------------------------------------------------------------------------------
    def generate(self) -> Job | None:
        if self.doc.model is None:
            self.notifier.warning("Open a model first.")
            return None
        self._store_settings()
        p = self.doc.session.preview
        name = p.previewer or "generate"
        options = {"prompt": p.prompt, "max_new_tokens": p.max_new_tokens}
        models = self._models()

        def done(media: list, ms=tuple(models)) -> None:
            if self.doc.model is not ms[0] or (len(ms) > 1 and self.doc.slimmed is not ms[1]):
                self.notifier.info("a preview of models that are no longer open was discarded")
                return
            self.doc.set_results("generation", dict(zip(SIDES, media)))

        self.job = self.runner.submit(f"Preview ({name}) of {len(models)} model(s)",
                                      partial(preview_task, models, name, registry=self.doc.registry, options=options),
                                      kind="preview", lane="model", on_done=done)
        return self.job

    def evaluate(self) -> Job | None:
        if self.doc.model is None:
            self.notifier.warning("Open a model first.")
            return None
        self._store_settings()
        p = self.doc.session.preview
        path = p.eval_file or default_data(self.doc.model)
        if not path:
            self.notifier.warning("Choose a text file to measure perplexity on.")
            return None
        if not Path(path).is_file():
            self.notifier.error(SlimError(f"evaluation file {path} does not exist").one_line())
            return None
        models = self._models()

        def done(results: list, ms=tuple(models)) -> None:
            if self.doc.model is not ms[0]:
                return
            self.doc.set_results("perplexity", dict(zip(SIDES, results)))

        self.eval_job = self.runner.submit(
            f"Perplexity of {len(models)} model(s) on {Path(path).name}",
            partial(evaluate_task, models, path, registry=self.doc.registry, seq_len=p.eval_seq_len,
                    max_tokens=p.eval_max_tokens),
            kind="evaluate", lane="model", on_done=done)
        return self.eval_job
