"""The Compare panel: the same preview from the original, the slimmed and the healed model, and one evaluation
of all of them.

Everything it offers comes from the family's declarations: the previewers (:class:`~slimgui.core.plugins.
PreviewerSpec`, one form part each, generated from its options schema) and the evaluators (:class:`~slimgui.core.
plugins.EvaluatorSpec`: an options form, a data chooser when it declares ``data``, and the metrics it reports).
Each model's preview is shown by the viewer of its media type (text, image, table, audio, video; see
:mod:`.viewers`); previews that are images are stacked into one grid, one row per model, so the same seeds line
up ("Save grid…" writes it as a PNG).  An evaluation is a table of the evaluator's metrics, each formatted as
declared, with how it moved against the original in words that know which direction is better.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.jobs import Job, evaluate_task, open_models, preview_task
from slimgui.core.media import ImageMedia, stack_images
from slimgui.core.metrics import change
from slimgui.core.model import LoadedModel
from slimgui.core.options import to_dict
from slimgui.core.session import default_eval_data, human_count
from slimgui.core.settings import owner_key, put, values_for

from . import metric_view as mv
from .document import Document
from .forms import OptionsForm
from .notify import Notifier
from .viewers import ImageViewer, MediaViewer, media_class, viewer_class
from .workers import JobRunner

SIDES = ("original", "slimmed", "healed")  # the slots; the healed one is titled by its role


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


class ComparePanel(QWidget):
    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier = document, runner, notifier
        self.previewers: list = []
        self.evaluators: list = []
        self._family: str | None = None
        self.job: Job | None = None
        self.eval_job: Job | None = None
        self._build()
        document.modelChanged.connect(self._model_changed)
        document.slimmedChanged.connect(self._titles)
        document.resultsChanged.connect(self.show_results)
        self._model_changed()

    # -- building --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.previewer = QComboBox()
        self.previewer.setToolTip("What to preview (the family's previewers)")
        self.previewer.currentIndexChanged.connect(lambda _i: self._mode_changed())
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("Primary")
        self.generate_button.setToolTip("Run the previewer with the same settings on every model")
        self.generate_button.clicked.connect(lambda: self.generate())
        prow = QHBoxLayout()
        prow.addWidget(self.previewer, 1)
        prow.addWidget(self.generate_button)
        self.evaluator = QComboBox()
        self.evaluator.setToolTip("How to measure the models (the family's evaluators)")
        self.evaluator.currentIndexChanged.connect(lambda _i: self._evaluator_changed())
        self.eval_button = QPushButton("Evaluate")
        self.eval_button.setToolTip("Measure every model with the evaluator, on the same data")
        self.eval_button.clicked.connect(lambda: self.evaluate())
        erow = QHBoxLayout()
        erow.addWidget(self.evaluator, 1)
        erow.addWidget(self.eval_button)
        self.eval_file = QLineEdit()
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse)
        self.data_row = QWidget()
        drow = QHBoxLayout(self.data_row)
        drow.setContentsMargins(0, 0, 0, 0)
        drow.addWidget(self.eval_file, 1)
        drow.addWidget(browse)
        self.form = OptionsForm()  # the previewers' options (rebuilt for each family)
        self.eval_form = OptionsForm()  # the evaluators' options
        self.layout_form = QFormLayout()
        self.layout_form.addRow("Preview", prow)
        self.layout_form.addRow("", self.form)
        self.layout_form.addRow("Evaluate", erow)
        self.layout_form.addRow("", self.eval_form)
        self.layout_form.addRow("Data", self.data_row)
        self.eval_summary = QLabel()
        self.eval_summary.setWordWrap(True)
        self.eval_table = QTableWidget(0, 0)
        self.eval_table.verticalHeader().setVisible(False)
        self.eval_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.eval_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.eval_table.horizontalHeader().setStretchLastSection(True)
        self.eval_table.setMaximumHeight(130)
        self.eval_table.verticalHeader().setDefaultSectionSize(22)
        self.eval_table.hide()
        self.slots = {side: MediaSlot(side.capitalize()) for side in SIDES}
        self.side_by_side = QSplitter(Qt.Orientation.Horizontal)
        for side in SIDES:
            self.side_by_side.addWidget(self.slots[side])
        self.grid_slot = MediaSlot("Same settings, one row per model", on_viewer=self._viewer_made)
        self.results_area = QStackedWidget()
        self.results_area.addWidget(self.side_by_side)
        self.results_area.addWidget(self.grid_slot)
        lay = QVBoxLayout(self)
        lay.addLayout(self.layout_form)
        lay.addWidget(self.eval_summary)
        lay.addWidget(self.eval_table)
        lay.addWidget(self.results_area, 1)

    def _replace_form(self, old: OptionsForm, parts: list) -> OptionsForm:
        form = OptionsForm(parts)
        self.layout_form.replaceWidget(old, form)
        old.setParent(None)
        old.deleteLater()
        return form

    def _model_family(self) -> str | None:
        return self.doc.model.family if self.doc.model is not None else None

    def _schema(self, spec: Any) -> type | None:
        try:
            return self.doc.registry.options(spec)
        except SlimError as exc:  # a broken plugin: its options cannot be shown
            self.notifier.error(exc.one_line())
            return None

    # -- what the family offers ------------------------------------------------------------------
    def previewer_spec(self):
        i = self.previewer.currentIndex()
        return self.previewers[i] if 0 <= i < len(self.previewers) else None

    def evaluator_spec(self):
        i = self.evaluator.currentIndex()
        return self.evaluators[i] if 0 <= i < len(self.evaluators) else None

    def media_type(self) -> str | None:
        spec = self.previewer_spec()
        return spec.media if spec is not None else None

    @property
    def grid_mode(self) -> bool:
        """Whether previews are stacked into one grid (images: the same seeds line up row under row)."""
        spec = self.previewer_spec()
        return spec is not None and media_class(spec.media) is ImageMedia

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

    def _fill_family(self) -> None:
        m = self.doc.model
        family = m.family if m is not None else None
        if family == self._family and family is not None:
            return
        self._family = family
        reg = self.doc.registry
        self.previewers = list(reg.previewer_specs(family)) if family else []
        self.evaluators = list(reg.evaluator_specs(family)) if family else []
        self.form = self._replace_form(self.form, [(None, self._schema(s)) for s in self.previewers])
        self.eval_form = self._replace_form(self.eval_form, [(None, self._schema(s)) for s in self.evaluators])
        for combo, specs, what in ((self.previewer, self.previewers, "media"), (self.evaluator, self.evaluators, "")):
            combo.blockSignals(True)
            combo.clear()
            for s in specs:
                combo.addItem(getattr(s, "label", "") or s.name, s.name)
                tip = s.description + (f" ({s.media})" if what else "")
                combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            combo.blockSignals(False)

    def _mode_changed(self) -> None:
        shown = self.previewer.currentIndex()
        for i in range(len(self.previewers)):
            self.form.set_part_visible(i, i == shown)
        grid = self.grid_mode
        self.results_area.setCurrentWidget(self.grid_slot if grid else self.side_by_side)
        spec = self.previewer_spec()
        self.generate_button.setToolTip(f"{spec.description}: every model with the same settings" if spec is not None
                                        else "This model family declares no previewer")
        self.show_results()

    def _evaluator_changed(self) -> None:
        shown = self.evaluator.currentIndex()
        for i in range(len(self.evaluators)):
            self.eval_form.set_part_visible(i, i == shown)
        spec = self.evaluator_spec()
        data = spec.data if spec is not None else None
        self.layout_form.setRowVisible(self.data_row, data is not None)
        if data is not None:
            fallback = default_eval_data(self.doc.model, self.doc.registry) \
                if self.doc.model is not None and data.required else None
            self.eval_file.setPlaceholderText(f"default: {Path(fallback).name}" if fallback and self._fits(fallback)
                                              else (data.help or data.label))
            self.eval_file.setToolTip(f"{data.label}: {data.help}" if data.help else data.label)
        self.eval_button.setToolTip(f"Measure the models: {spec.description}" if spec is not None else
                                    "This model family declares no evaluator")
        self._enable()

    def _fits(self, path: str) -> bool:
        spec = self.evaluator_spec()
        kind = spec.data.kind if spec is not None and spec.data is not None else "file"
        p = Path(path)
        return p.is_file() if kind == "file" else p.is_dir() if kind == "folder" else p.exists()

    def _browse(self) -> None:
        spec = self.evaluator_spec()
        data = spec.data if spec is not None else None
        start = self.eval_file.text() or str(Path.home())
        if data is not None and data.kind == "folder":
            path = QFileDialog.getExistingDirectory(self, data.label, start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, data.label if data else "Evaluation data", start,
                                                  (data.filter if data else "") or "All files (*)")
        if path:
            self.eval_file.setText(path)

    def _enable(self) -> None:
        m = self.doc.model
        ok = m is not None and m.has_weights
        self.generate_button.setEnabled(ok and bool(self.previewers))
        self.eval_button.setEnabled(ok and bool(self.evaluators))

    # -- settings <-> session ------------------------------------------------------------------
    def _model_changed(self) -> None:
        self._fill_family()
        for form in (self.form, self.eval_form):
            form.set_context_limit(self.doc.context_limit())
        self.apply_settings()
        self._titles()

    def apply_settings(self) -> None:
        p = self.doc.session.preview
        for combo, chosen in ((self.previewer, p.previewer), (self.evaluator, p.evaluator)):
            combo.blockSignals(True)
            combo.setCurrentIndex(max(0, combo.findData(chosen)) if combo.count() else -1)
            combo.blockSignals(False)
        for form, specs, store in ((self.form, self.previewers, p.options), (self.eval_form, self.evaluators,
                                                                            p.eval_options)):
            for spec in specs:
                schema = self._schema(spec)
                if schema is not None:
                    form.set_values(values_for(store, owner_key(self._model_family(), spec.name), schema,
                                               where=f"{spec.name} "), emit=False)
        self.eval_file.setText(p.eval_file or "")
        self._evaluator_changed()
        self._mode_changed()

    def store_settings(self) -> None:
        """The panel's settings into the session; options that fail their checks are not stored."""
        p = self.doc.session.preview
        p.previewer = self.previewer.currentData() or p.previewer
        p.evaluator = self.evaluator.currentData() or p.evaluator
        p.eval_file = self.eval_file.text().strip() or None
        for form, specs, store in ((self.form, self.previewers, p.options), (self.eval_form, self.evaluators,
                                                                            p.eval_options)):
            for i, spec in enumerate(specs):
                try:
                    values = form.values(i)
                except SlimError:
                    continue
                if values is not None:
                    put(store, owner_key(self._model_family(), spec.name), values)

    def _titles(self) -> None:
        g, slim = self.doc.graph, self.doc.slimmed
        word = self.doc.unit_word(True)
        if g is None:
            self.slots["original"].title.setText("<b>Original</b>")
        else:
            self.slots["original"].title.setText(
                f"<b>Original</b> — {len(g.prunable())} {word}, {human_count(g.total_params)} params")
        if slim is None:
            self.slots["slimmed"].title.setText("<b>Slimmed</b>")
        else:
            sg = slim.extra.get("graph")
            size = f", {human_count(sg.total_params)} params" if sg is not None else ""
            n = len(sg.prunable()) if sg is not None else "?"
            self.slots["slimmed"].title.setText(f"<b>Slimmed</b> — {n} {word}{size}")
        self.slots["healed"].title.setText(f"<b>{self.doc.healed_role.capitalize()}</b>")
        self.show_results()

    # -- the models ------------------------------------------------------------------------------
    def compared(self) -> list[tuple[str, LoadedModel | str]]:
        """(label, model or folder) of every model compared: the original, the slimmed and the healed model (by
        its role, e.g. "few-step") when the session has them; a healed model not loaded yet is opened by the job."""
        doc = self.doc
        out: list[tuple[str, LoadedModel | str]] = [("original", doc.model)]
        if doc.slimmed is not None:
            out.append(("slimmed", doc.slimmed))
        paths = {getattr(m, "source", None) for _, m in out}
        healed: LoadedModel | str | None = doc.healed if doc.healed is not None else doc.healed_path()
        if healed is not None and (healed if isinstance(healed, str) else healed.source) not in paths \
                and all(m is not healed for _, m in out):
            out.append((doc.healed_role, healed))
        return out


    def _slot_of(self, label: str) -> MediaSlot | None:
        return self.slots.get(label) or (self.slots["healed"] if label == self.doc.healed_role else None)

    # -- results -------------------------------------------------------------------------------
    def grid_media(self) -> ImageMedia | None:
        """Every model's image row of the last preview, stacked (original first), or None."""
        gen = self.doc.session.results.get("generation") or {}
        labels = [label for label, m in gen.items() if isinstance(m, ImageMedia)]
        if not labels:
            return None
        try:
            return stack_images([gen[x] for x in labels], title=gen[labels[0]].title, meta={"models": labels})
        except SlimError as exc:
            self.notifier.error(f"Cannot show the images: {exc.one_line()}")
            return None

    def _placeholders(self) -> None:
        m = self.doc.model
        if m is None:
            hint = "Open a model."
        elif not m.has_weights:
            hint = "Config-only model: nothing to preview."
        elif not self.previewers:
            hint = f"The {m.family} family declares no previewer."
        else:
            hint = f"Press “{self.generate_button.text()}”: every model gets the same settings."
        self.grid_slot.placeholder.setText(hint)
        for side in SIDES:
            self.slots[side].placeholder.setText(hint if side == "original" or (m is not None and m.has_weights)
                                                 else "")
        if m is not None and m.has_weights and self.doc.slimmed is None:
            self.slots["slimmed"].placeholder.setText("Apply a plan (Plan tab) to get a slimmed model to compare.")

    def show_results(self) -> None:
        results = self.doc.session.results
        gen = results.get("generation") or {}
        evaluation = {k: v for k, v in (results.get("evaluation") or {}).items() if isinstance(v, dict)}
        self._placeholders()
        healed_label = self.doc.healed_role
        has_healed = any(label == healed_label for label, _ in self.compared()) or healed_label in gen
        self.slots["healed"].setVisible(has_healed)
        if self.grid_mode:
            self.grid_slot.show_media(self.grid_media())
        else:
            for side in SIDES:
                label = healed_label if side == "healed" else side
                media = gen.get(label)
                self.slots[side].show_media(None if isinstance(media, ImageMedia) else media)
        self._show_evaluation(evaluation)

    def _show_evaluation(self, evaluation: dict[str, dict[str, Any]]) -> None:
        family = self.doc.model.family if self.doc.model is not None else None
        name = next((r.get("evaluator") for r in evaluation.values() if r.get("evaluator")), None)
        declared = mv.declared(self.doc.registry, "evaluator", name, family)
        found = {label: mv.metrics_for(r, declared) for label, r in evaluation.items()}
        for side in SIDES:
            self.slots[side].metric_label.setText("")
        for label, f in found.items():
            slot = self._slot_of(label)
            if slot is not None:
                slot.metric_label.setText(mv.summary(f))
        labels = list(found)
        metrics = next((f for f in found.values() if f), [])
        table = self.eval_table
        table.setVisible(bool(metrics))
        table.setColumnCount(1 + len(labels))
        table.setHorizontalHeaderLabels(["metric", *labels])
        table.setRowCount(len(metrics))
        base = found.get("original") or []
        for row, (m, _) in enumerate(metrics):
            item = QTableWidgetItem(m.title + (f" ({'lower' if m.better == 'lower' else 'higher'} is better)"
                                               if m.better else ""))
            item.setToolTip(m.help)
            table.setItem(row, 0, item)
            before = mv.value_of(base, m.name)
            for col, label in enumerate(labels, start=1):
                value = mv.value_of(found[label], m.name)
                moved = change(m, before, value) if label != "original" else ""
                cell = QTableWidgetItem(mv.format_value(m, value) + (f"  {moved}" if moved else ""))
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(row, col, cell)
        top = mv.headline(base) or mv.headline(metrics)
        if top is None:
            self.eval_summary.setText("")
            return
        metric = top[0]
        parts = [f"{label}: <b>{mv.format_value(metric, mv.value_of(f, metric.name))}</b>" for label, f in found.items()
                 if mv.value_of(f, metric.name) is not None]
        slim = mv.value_of(found.get("slimmed") or [], metric.name)
        moved = change(metric, mv.value_of(base, metric.name), slim)
        if moved:
            parts.append(f"change: <b>{moved}</b>")
        data = next((r.get("file") for r in evaluation.values() if isinstance(r.get("file"), str)), None)
        self.eval_summary.setText(f"{metric.title} — " + " · ".join(parts) + (
            f"  <span style='color:#6b7280'>on {Path(data).name}</span>" if data else ""))

    # -- actions -------------------------------------------------------------------------------
    def generate(self) -> Job | None:
        if self.doc.model is None:
            self.notifier.warning("Open a model first.")
            return None
        spec = self.previewer_spec()
        if spec is None:
            self.notifier.warning(f"The {self.doc.model.family} family declares no previewer.")
            return None
        self.store_settings()
        try:
            options = to_dict(self.form.values(self.previewer.currentIndex()))
        except SlimError as exc:
            self.notifier.error(f"Preview: {exc.one_line()}")
            return None
        pairs = self.compared()
        labels, models = [lbl for lbl, _ in pairs], [m for _, m in pairs]
        original, slimmed = self.doc.model, self.doc.slimmed

        def done(media: list) -> None:
            if self.doc.model is not original or self.doc.slimmed is not slimmed:
                self.notifier.info("a preview of models that are no longer open was discarded")
                return
            self.doc.set_results("generation", dict(zip(labels, media)))

        what = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        self.job = self.runner.submit(f"Preview ({spec.name}) of {what}",
                                      partial(preview_task, models, spec.name, registry=self.doc.registry,
                                              options=options, labels=labels, adapter=original.adapter),
                                      kind="preview", lane="model", on_done=done)
        return self.job

    def evaluate(self) -> Job | None:
        if self.doc.model is None:
            self.notifier.warning("Open a model first.")
            return None
        spec = self.evaluator_spec()
        if spec is None:
            self.notifier.warning(f"The {self.doc.model.family} family declares no evaluator: compare by eye.")
            return None
        self.store_settings()
        try:
            options = to_dict(self.eval_form.values(self.evaluator.currentIndex()))
        except SlimError as exc:
            self.notifier.error(f"Evaluate: {exc.one_line()}")
            return None
        data: str | None = None
        if spec.data is not None:
            data = self.eval_file.text().strip() or None
            if data is None and spec.data.required:  # an evaluator that brings its own data gets None
                fallback = default_eval_data(self.doc.model, self.doc.registry)  # held-out data first
                data = fallback if fallback and self._fits(fallback) else None
            elif not Path(data).exists():
                self.notifier.error(f"{spec.data.label} {data} does not exist")
                return None
        pairs = self.compared()
        labels = [lbl for lbl, _ in pairs]
        original = self.doc.model
        registry = self.doc.registry

        def task(progress=None, cancel=None):
            models = open_models([m for _, m in pairs], registry=registry, adapter=original.adapter, cancel=cancel)
            return evaluate_task(models, data, registry=registry, evaluator=spec.name, options=options,
                                 progress=progress, cancel=cancel)

        def done(results: list) -> None:
            if self.doc.model is not original:
                return
            self.doc.set_results("evaluation", dict(zip(labels, results)))

        where = f" on {Path(data).name}" if data else ""
        self.eval_job = self.runner.submit(f"Evaluate {len(pairs)} model(s) ({spec.name}){where}", task,
                                           kind="evaluate", lane="model", on_done=done)
        return self.eval_job
