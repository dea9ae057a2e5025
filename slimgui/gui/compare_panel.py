"""The Compare panel: the same preview from the original and the slimmed model, and an evaluation of both.

What it shows follows the family's previewer (:func:`~slimgui.core.session.previewers_for`):

- **text** (language models): one prompt continued by both models with the same greedy decoding, side by
  side, and the perplexity of both on a chosen text file;
- **image** (diffusion models): one prompt drawn from the same seeds by the original, the slimmed and —
  when the session has them — the healed and the few-step model, each model's row of images stacked into
  one grid (its labels say which model and which seed); "Save grid…" writes the grid as a PNG.  Evaluate
  runs the family's evaluator (the demo's digit classifier and Fréchet distance).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.jobs import Job, evaluate_task, open_models, preview_task
from slimgui.core.media import ImageMedia, stack_images
from slimgui.core.model import LoadedModel
from slimgui.core.session import default_data, human_count, previewers_for

from .document import Document
from .family import traits
from .notify import Notifier
from .viewers import ImageViewer, MediaViewer, viewer_class
from .workers import JobRunner

SIDES = ("original", "slimmed")
IMAGE_SIDES = ("original", "slimmed", "healed", "few-step")  # the rows of an image comparison, in order


class MediaSlot(QFrame):
    """A titled place for one model's preview; swaps in the viewer that fits the media type."""

    def __init__(self, title: str, parent: QWidget | None = None,
                 on_viewer: Callable[[MediaViewer], None] | None = None):
        super().__init__(parent)
        self.setObjectName("MediaSlot")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(f"<b>{title}</b>")
        self.placeholder = QLabel()
        self.placeholder.setObjectName("Hint")
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.metric_label = QLabel()
        self.metric_label.setWordWrap(True)
        self.viewer: MediaViewer | None = None
        self.on_viewer = on_viewer
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
            if self.on_viewer is not None:
                self.on_viewer(self.viewer)
        self.viewer.show_media(media)
        self.viewer.show()
        self.placeholder.hide()

    @property
    def text(self) -> str:
        return getattr(self.viewer, "text", "") if self.viewer is not None and not self.viewer.isHidden() else ""


def _spin(lo: int, hi: int, value: int, tip: str, special: str | None = None) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setToolTip(tip)
    if special:
        s.setSpecialValueText(special)
    return s


def describe_evaluation(result: dict[str, Any] | None) -> str:
    """One line of an evaluator's result: perplexity, or accuracy and Fréchet distance, or its first numbers."""
    if not result:
        return ""
    if isinstance(result.get("perplexity"), (int, float)):
        return f"perplexity {result['perplexity']:.3f} on {result.get('tokens', '?')} tokens"
    parts = []
    if isinstance(result.get("accuracy"), (int, float)):
        parts.append(f"accuracy <b>{100 * result['accuracy']:.1f}%</b>")
    if isinstance(result.get("fid"), (int, float)):
        parts.append(f"FID <b>{result['fid']:.2f}</b>")
    if not parts:
        parts = [f"{k} {v:.4g}" for k, v in result.items() if isinstance(v, float)][:3]
    if isinstance(result.get("n"), int):
        parts.append(f"{result['n']} images")
    return " · ".join(parts)


class ComparePanel(QWidget):
    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier = document, runner, notifier
        self.previewer = QComboBox()
        self.previewer.setToolTip("What to preview (the family's previewers)")
        self.previewer.currentIndexChanged.connect(lambda _i: self._mode_changed())
        # text previews
        self.prompt = QLineEdit("def ")
        self.prompt.setToolTip("Prompt: both models continue it with the same greedy decoding")
        self.max_new = _spin(1, 2048, 40, "New tokens to generate")
        self.text_options = QWidget()
        tl = QHBoxLayout(self.text_options)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.prompt, 1)
        tl.addWidget(QLabel("tokens"))
        tl.addWidget(self.max_new)
        # image previews
        self.image_prompt = QLineEdit()
        self.image_prompt.setPlaceholderText("prompt (empty: unconditional)")
        self.image_prompt.setToolTip("Every model draws this prompt from the same seeds")
        self.seed = _spin(0, 2**31 - 1, 0, "First seed: the images use seeds seed, seed+1, …")
        self.images = _spin(1, 64, 4, "Images per model (one per seed)")
        self.steps = _spin(0, 1000, 25, "Denoising steps (a few-step model uses its own 1–8 unless this is ≤ 8)",
                           "own")
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(1)
        self.guidance.setSpecialValueText("default")
        self.guidance.setToolTip("Classifier-free guidance scale (default: the pipeline's; a few-step model's own)")
        self.image_options = QWidget()  # the prompt here, the sampling settings on a row of their own
        il = QHBoxLayout(self.image_options)
        il.setContentsMargins(0, 0, 0, 0)
        il.addWidget(self.image_prompt, 1)
        self.sampling = QWidget()
        sl = QHBoxLayout(self.sampling)
        sl.setContentsMargins(0, 0, 0, 0)
        for label, w in (("seed", self.seed), ("images", self.images), ("steps", self.steps),
                         ("guidance", self.guidance)):
            sl.addWidget(QLabel(label))
            sl.addWidget(w)
        sl.addStretch(1)
        self.generate_button = QPushButton("Generate both")
        self.generate_button.setObjectName("Primary")
        self.generate_button.clicked.connect(lambda: self.generate())
        row = QHBoxLayout()
        row.addWidget(self.previewer)
        row.addWidget(self.text_options, 1)
        row.addWidget(self.image_options, 1)
        row.addWidget(self.generate_button)
        self.slots = {side: MediaSlot(side.capitalize()) for side in SIDES}
        self.side_by_side = QSplitter(Qt.Orientation.Horizontal)
        for side in SIDES:
            self.side_by_side.addWidget(self.slots[side])
        self.grid_slot = MediaSlot("Same prompt, same seeds", on_viewer=self._viewer_made)
        self.results_area = QStackedWidget()
        self.results_area.addWidget(self.side_by_side)
        self.results_area.addWidget(self.grid_slot)
        # evaluation
        self.eval_file = QLineEdit()
        self.eval_file.setPlaceholderText("text file to measure perplexity on")
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse)
        self.eval_seq = _spin(2, 8192, 128, "window length in tokens")
        self.eval_max = _spin(0, 10_000_000, 4096, "evaluate only the first N tokens (0 = the whole file)",
                              "whole file")
        self.eval_max.setSingleStep(1024)
        self.eval_button = QPushButton("Perplexity of both")
        self.eval_button.clicked.connect(lambda: self.evaluate())
        frow = QHBoxLayout()
        frow.addWidget(self.eval_file, 1)
        frow.addWidget(browse)
        self.token_options = QWidget()
        tk = QHBoxLayout(self.token_options)
        tk.setContentsMargins(0, 0, 0, 0)
        tk.addWidget(QLabel("window"))
        tk.addWidget(self.eval_seq)
        tk.addWidget(QLabel("tokens"))
        tk.addWidget(self.eval_max)
        erow = QHBoxLayout()
        erow.addWidget(self.token_options)
        erow.addStretch(1)
        erow.addWidget(self.eval_button)
        self.ppl_summary = QLabel()
        self.ppl_summary.setWordWrap(True)
        self.form = form = QFormLayout()
        form.addRow("Preview", row)
        form.addRow("Sampling", self.sampling)
        form.addRow("Evaluate on", frow)
        form.addRow("", erow)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.ppl_summary)
        lay.addWidget(self.results_area, 1)
        self.job: Job | None = None
        self.eval_job: Job | None = None
        document.modelChanged.connect(self._model_changed)
        document.slimmedChanged.connect(self._titles)
        document.resultsChanged.connect(self.show_results)
        self._model_changed()

    # -- what kind of preview ------------------------------------------------------------------
    @property
    def image_mode(self) -> bool:
        return self.previewer.currentData() == "image"

    @property
    def grid_viewer(self) -> ImageViewer | None:
        v = self.grid_slot.viewer
        return v if isinstance(v, ImageViewer) else None

    def _viewer_made(self, viewer: MediaViewer) -> None:
        if isinstance(viewer, ImageViewer):
            viewer.save_button.setText("Save grid…")
            viewer.save_button.setToolTip("Write the whole grid (every model's row) as a PNG")
            viewer.saved.connect(lambda path: self.notifier.info(f"Grid saved to {path}"))
            viewer.failed.connect(lambda why: self.notifier.error(f"Could not save the grid: {why}"))

    def _mode_changed(self) -> None:
        image = self.image_mode
        self.text_options.setVisible(not image)
        self.image_options.setVisible(image)
        self.form.setRowVisible(1, image)
        self.token_options.setVisible(not image)
        self.results_area.setCurrentWidget(self.grid_slot if image else self.side_by_side)
        t = traits(self.doc.registry, self.doc.model, self.doc.graph)
        if image:
            self.generate_button.setText("Generate")
            self.generate_button.setToolTip("Draw the prompt with every model from the same seeds (original, slimmed, "
                                            "and the healed and few-step models when there are)")
            self.eval_button.setText(f"Evaluate ({t.evaluator})" if t.evaluator else "Evaluate")
            self.eval_file.setPlaceholderText("optional: the data the evaluator needs (default: the demo's own)")
        else:
            self.generate_button.setText("Generate both")
            self.generate_button.setToolTip("Continue the prompt with both models (same greedy decoding)")
            self.eval_button.setText("Perplexity of both")
            fallback = default_data(self.doc.model) if self.doc.model is not None else None
            self.eval_file.setPlaceholderText(f"default: {Path(fallback).name}" if fallback
                                              else "text file to measure perplexity on")
        self.eval_button.setToolTip(f"Measure the models with the '{t.evaluator}' evaluator" if t.evaluator else
                                    "This model family has no evaluator")
        self.show_results()

    def _browse(self) -> None:
        if self.image_mode:
            path = QFileDialog.getExistingDirectory(self, "Evaluation data", self.eval_file.text() or str(Path.home()))
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Evaluation text", self.eval_file.text() or str(Path.home()),
                                                  "Text files (*.txt *.md *.py);;All files (*)")
        if path:
            self.eval_file.setText(path)

    # -- settings <-> session ------------------------------------------------------------------
    def _model_changed(self) -> None:
        m = self.doc.model
        self.previewer.blockSignals(True)
        self.previewer.clear()
        if m is not None:
            for name, media, desc in previewers_for(self.doc.registry, m.family):
                self.previewer.addItem(name, media)
                self.previewer.setItemData(self.previewer.count() - 1, f"{desc} ({media})", Qt.ItemDataRole.ToolTipRole)
        self.previewer.blockSignals(False)
        ok = m is not None and m.has_weights
        self.generate_button.setEnabled(ok and self.previewer.count() > 0)
        t = traits(self.doc.registry, m, self.doc.graph)
        self.eval_button.setEnabled(ok and (t.evaluator is not None or m is None))
        self.apply_settings()
        self._mode_changed()
        self._titles()

    def apply_settings(self) -> None:
        p = self.doc.session.preview
        if p.previewer:
            self.previewer.setCurrentText(p.previewer)
        self.prompt.setText(p.prompt)
        self.max_new.setValue(p.max_new_tokens)
        self.image_prompt.setText(p.image_prompt)
        self.seed.setValue(p.seed)
        self.images.setValue(p.images)
        self.steps.setValue(p.steps or 0)
        self.guidance.setValue(p.guidance or 0.0)
        self.eval_file.setText(p.eval_file or "")
        self.eval_seq.setValue(p.eval_seq_len)
        self.eval_max.setValue(p.eval_max_tokens or 0)

    def _store_settings(self) -> None:
        p = self.doc.session.preview
        p.previewer = self.previewer.currentText() or p.previewer
        p.prompt = self.prompt.text()
        p.max_new_tokens = self.max_new.value()
        p.image_prompt = self.image_prompt.text()
        p.seed, p.images = self.seed.value(), self.images.value()
        p.steps = self.steps.value() or None
        p.guidance = self.guidance.value() or None
        p.eval_file = self.eval_file.text().strip() or None
        p.eval_seq_len = self.eval_seq.value()
        p.eval_max_tokens = self.eval_max.value() or None

    def _titles(self) -> None:
        g, slim = self.doc.graph, self.doc.slimmed
        word = traits(self.doc.registry, self.doc.model, g).unit_word
        if g is None:
            self.slots["original"].title.setText("<b>Original</b>")
        else:
            self.slots["original"].title.setText(
                f"<b>Original</b> — {len(g.prunable())} {word}s, {human_count(g.total_params)} params")
        if slim is None:
            self.slots["slimmed"].title.setText("<b>Slimmed</b>")
        else:
            sg = slim.extra.get("graph")
            size = f", {human_count(sg.total_params)} params" if sg is not None else ""
            n = len(sg.prunable()) if sg is not None else "?"
            self.slots["slimmed"].title.setText(f"<b>Slimmed</b> — {n} {word}s{size}")
        self.show_results()

    # -- results -------------------------------------------------------------------------------
    def grid_media(self) -> ImageMedia | None:
        """Every model's image row of the last image preview, stacked (original first), or None."""
        gen = self.doc.session.results.get("generation") or {}
        rows = [gen[side] for side in IMAGE_SIDES if isinstance(gen.get(side), ImageMedia)]
        if not rows:
            return None
        try:
            return stack_images(rows, title=rows[0].title, meta={"models": [s for s in IMAGE_SIDES
                                                                             if isinstance(gen.get(s), ImageMedia)]})
        except SlimError as exc:
            self.notifier.error(f"Cannot show the images: {exc.one_line()}")
            return None

    def show_results(self) -> None:
        results = self.doc.session.results
        gen = results.get("generation") or {}
        if self.image_mode:
            self.grid_slot.show_media(self.grid_media())
            m = self.doc.model
            self.grid_slot.placeholder.setText(
                "Open a model." if m is None else "Config-only model: nothing to generate." if not m.has_weights
                else "Press “Generate”: every model draws the prompt from the same seeds, one row each.")
            evaluation = results.get("evaluation") or {}
            lines = [f"<b>{side}</b>: {describe_evaluation(evaluation[side])}" for side in IMAGE_SIDES
                     if isinstance(evaluation.get(side), dict)]
            self.grid_slot.metric_label.setText("<br>".join(lines))
            name = next((r.get("kind") for r in evaluation.values() if isinstance(r, dict) and r.get("kind")), None)
            self.ppl_summary.setText((f"Evaluation ({name})" if name else "") if lines else "")
            return
        for side in SIDES:
            media = gen.get(side)
            self.slots[side].show_media(None if isinstance(media, ImageMedia) else media)
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
            ok = isinstance(r, dict) and isinstance(r.get("perplexity"), (int, float))
            self.slots[side].metric_label.setText(describe_evaluation(r) if ok else "")
            if ok:
                parts.append(f"{side}: <b>{r['perplexity']:.3f}</b>")
        a, b = (ppl.get("original") or {}).get("perplexity"), (ppl.get("slimmed") or {}).get("perplexity")
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a:
            parts.append(f"change: <b>{100 * (b - a) / a:+.1f}%</b>")
        file = (ppl.get("original") or {}).get("file")
        self.ppl_summary.setText(("Perplexity — " + " · ".join(parts) + (f"  <span style='color:#6b7280'>on "
                                  f"{Path(file).name}</span>" if file else "")) if parts else "")

    def _models(self) -> list:
        models = [self.doc.model]
        if self.doc.slimmed is not None:
            models.append(self.doc.slimmed)
        return models

    def image_models(self) -> list[tuple[str, LoadedModel | str]]:
        """(row name, model or folder) of the image comparison: original, slimmed, and the healed and few-step
        models when the document knows them (a healed model not loaded yet is opened by the job)."""
        doc = self.doc
        out: list[tuple[str, LoadedModel | str]] = [("original", doc.model)]
        if doc.slimmed is not None:
            out.append(("slimmed", doc.slimmed))
        seen = {id(m) for _, m in out}
        paths = {getattr(m, "source", None) for _, m in out}
        healed: LoadedModel | str | None = doc.healed if doc.healed is not None else doc.healed_path()
        if healed is not None and id(healed) not in seen and (healed if isinstance(healed, str) else healed.source) \
                not in paths:
            fewstep = healed is doc.fewstep or (doc.session.results.get("retrain") or {}).get("method") == "lcm"
            out.append(("few-step" if fewstep else "healed", healed))
            seen.add(id(healed))
        if doc.fewstep is not None and id(doc.fewstep) not in seen and doc.fewstep.source not in paths:
            out.append(("few-step", doc.fewstep))
        return out

    # -- actions -------------------------------------------------------------------------------
    def generate(self) -> Job | None:
        if self.doc.model is None:
            self.notifier.warning("Open a model first.")
            return None
        self._store_settings()
        p = self.doc.session.preview
        name = p.previewer or "generate"
        media_type = self.previewer.currentData() or "text"
        options = p.options(media_type)
        if media_type == "image":
            pairs = self.image_models()
            labels, models = [lbl for lbl, _ in pairs], [m for _, m in pairs]
        else:
            models = self._models()
            labels = list(SIDES[:len(models)])
        original, slimmed = self.doc.model, self.doc.slimmed

        def done(media: list) -> None:
            if self.doc.model is not original or self.doc.slimmed is not slimmed:
                self.notifier.info("a preview of models that are no longer open was discarded")
                return
            self.doc.set_results("generation", dict(zip(labels, media)))

        what = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        self.job = self.runner.submit(f"Preview ({name}) of {what}",
                                      partial(preview_task, models, name, registry=self.doc.registry, options=options,
                                              labels=labels, adapter=original.adapter),
                                      kind="preview", lane="model", on_done=done)
        return self.job

    def evaluate(self) -> Job | None:
        if self.doc.model is None:
            self.notifier.warning("Open a model first.")
            return None
        self._store_settings()
        if self.image_mode:
            return self._evaluate_images()
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

    def _evaluate_images(self) -> Job | None:
        t = traits(self.doc.registry, self.doc.model, self.doc.graph)
        if t.evaluator is None:
            self.notifier.warning(f"The {t.family} family has no evaluator: compare the images by eye.")
            return None
        p = self.doc.session.preview
        data = p.eval_file or ""
        if data and not Path(data).exists():
            self.notifier.error(f"evaluation data {data} does not exist")
            return None
        pairs = self.image_models()
        labels = [lbl for lbl, _ in pairs]
        original = self.doc.model
        registry = self.doc.registry

        def task(progress=None, cancel=None):
            models = open_models([m for _, m in pairs], registry=registry, adapter=original.adapter, cancel=cancel)
            options: dict[str, Any] = {"evaluator": t.evaluator, "seed": p.seed}
            if p.steps:
                options["steps"] = p.steps
            if p.guidance:
                options["guidance"] = p.guidance
            return evaluate_task(models, data, registry=registry, progress=progress, cancel=cancel, **options)

        def done(results: list) -> None:
            if self.doc.model is not original:
                return
            self.doc.set_results("evaluation", dict(zip(labels, results)))

        self.eval_job = self.runner.submit(f"Evaluate {len(pairs)} model(s) ({t.evaluator})", task, kind="evaluate",
                                           lane="model", on_done=done)
        return self.eval_job
