"""The Retrain panel: heal the slimmed model by retraining it with one of the healing methods its family declares.

It gathers settings (:mod:`.retrain_form`: the method, the data, the generic numbers and a form generated from
the options the family's methods declare), runs the job (:mod:`.retrain_run`: check, train, curves, cancel,
resume) and shows what the core reports.  The run folder is kept in the session, and the app remembers each
model's last run so Resume survives a restart.  When a run is done the original, the slimmed and the healed
model are measured with the family's evaluator in the background and shown side by side: its headline metric,
formatted as the evaluator declares it, with how it moved against the original in words that know which
direction is better.  The healed model is shown under its method's ``role`` (e.g. "few-step").
"""

from __future__ import annotations

import hashlib
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.io import cache_dir
from slimgui.core.jobs import Job, JobStatus, evaluate_healed_task, evaluate_task, run_state
from slimgui.core.model import LoadedModel
from slimgui.core.options import to_dict
from slimgui.core.progress import check
from slimgui.core.session import default_eval_data, human_count
from slimgui.core.settings import owner_key, values_for
from slimgui.core.train import TrainConfig, checkpoints, export_job
from slimgui.gui.widgets import thin_progress

from . import metric_view as mv
from .curves import LossCurves
from .document import Document
from .notify import Notifier
from .retrain_form import RetrainForm
from .retrain_run import RetrainRun
from .settings import Settings
from .workers import JobRunner

SIDES = ("original", "slimmed", "healed")
STATUS_HZ = 10
RUN_MIN_HEIGHT = 460  # buttons, estimate, progress, status, curves (150) and the result boxes
SETTINGS_MAX_HEIGHT = 520  # settings taller than this (a family with many options) scroll on their own


class FitScrollArea(QScrollArea):
    """Shows its widget at the viewport's size, scrolling only below the widget's minimum size (small screens).

    (A plain resizable scroll area would give a panel with wrapped labels its height-for-width, which is
    taller than the screen, and so always scroll.)"""

    def __init__(self, widget: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWidgetResizable(False)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setWidget(widget)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.fit()

    def fit(self) -> None:
        widget = self.widget()
        if widget is None:
            return
        view, least = self.viewport().size(), widget.minimumSizeHint()
        widget.resize(max(view.width(), least.width()), max(view.height(), least.height()))


def _load_and_graph(path: str, *, registry, adapter: str | None, progress=None, cancel=None) -> LoadedModel:
    from slimgui.core.model import open_model
    from slimgui.core.ops import graph_of

    model = open_model(path, registry=registry, adapter=adapter, progress=progress, cancel=cancel)
    graph_of(model, registry)
    return model


def _fits(path: str | None, kind: str) -> bool:
    """Whether ``path`` is the kind of data a :class:`~slimgui.core.plugins.DataSpec` asks for."""
    if not path:
        return False
    p = Path(path)
    return p.is_file() if kind == "file" else p.is_dir() if kind == "folder" else p.exists()


class RetrainPanel(RetrainForm, RetrainRun, QWidget):
    openRequested = Signal(str)  # a model folder the window should open (the healed model)
    compareRequested = Signal()  # the healed model is on the Compare tab's slimmed side now
    trainEvent = Signal(int, object)  # (run id, event dict): from the worker thread, delivered queued

    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, app_settings: Settings | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier = document, runner, notifier
        self.app_settings = app_settings  # remembers each model's last run, so Resume survives a restart
        self.check_job: Job | None = None
        self.train_job: Job | None = None
        self.eval_job: Job | None = None
        self.open_job: Job | None = None
        self.estimate: dict[str, Any] | None = None
        self._estimate_done = 0  # the step the estimate counts from (a resumed run's checkpoint)
        self._run_cfg: TrainConfig | None = None
        self._first_step = 0
        self.result: dict[str, Any] | None = None
        self.healed: LoadedModel | None = None
        self.events: list[dict[str, Any]] = []  # the current run's events (this app session)
        self.worker_step = 0  # the latest step the training loop reported (written on the worker thread)
        self._run_id = 0
        self._run_models: tuple[LoadedModel | None, LoadedModel | None] = (None, None)
        self._last_step: dict[str, Any] | None = None
        self._last_val: dict[str, Any] | None = None
        self._val_labels: dict[str, str] = {}
        self._proposed_out: str | None = None
        self._state_cache: tuple[tuple, dict] | None = None
        self._build()
        self.trainEvent.connect(self._on_event, Qt.ConnectionType.QueuedConnection)
        self._status_timer = QTimer(self, singleShot=True, interval=int(1000 / STATUS_HZ))
        self._status_timer.timeout.connect(self._show_progress)
        document.modelChanged.connect(self._model_changed)
        # the estimate follows the settings: rescaled for the step count and validation interval, marked out of
        # date by anything else a step's time depends on
        for spin in (self.steps, self.eval_every, self.batch_size, self.lr, self.warmup):
            spin.valueChanged.connect(lambda _v: self.refresh_estimate())
        self.data.textChanged.connect(lambda _t: self.refresh_estimate())
        self.method.currentIndexChanged.connect(lambda _i: self.refresh_estimate())
        self.form.changed.connect(self.refresh_estimate)
        document.slimmedChanged.connect(self._describe_student)
        document.resultsChanged.connect(self.show_results)
        runner.jobFinished.connect(lambda _job: self.update_buttons())
        self._model_changed()

    # -- building --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.student_label = QLabel()
        self.student_label.setWordWrap(True)
        self.eval_file = QLineEdit()
        self.eval_file.setToolTip("The data the original, pruned and healed models are measured on after a run "
                                  "(the evaluator's; empty: the model's own or the training data)")
        settings = self._build_settings()
        settings_scroll = QScrollArea()  # a short window: the settings scroll, the curves keep their room
        settings_scroll.setWidget(settings)
        settings_scroll.setWidgetResizable(True)
        settings_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        settings_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)  # never clipped sideways
        settings_scroll.setMinimumHeight(90)
        self._settings_scroll = settings_scroll
        # actions
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setToolTip("Check the job and estimate its time and memory on this machine")
        self.estimate_button.clicked.connect(lambda: self.run_estimate())
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("Primary")
        self.start_button.setToolTip("Check the job, then train in the background")
        self.start_button.clicked.connect(lambda: self.start())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current step; a checkpoint is written so Resume continues")
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the run in the run folder from its last checkpoint")
        self.resume_button.clicked.connect(lambda: self.resume())
        self.export_button = QPushButton("Export job…")
        self.export_button.setToolTip("Write a folder (job JSON, accelerate config, README with the command) to run "
                                      "this job with `accelerate launch` on GPUs or other machines")
        self.export_button.clicked.connect(self._export_clicked)
        buttons = QHBoxLayout()
        for b in (self.estimate_button, self.start_button, self.cancel_button, self.resume_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = thin_progress()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.curves = LossCurves()
        results = self._build_results()
        run = QWidget()
        rlay = QVBoxLayout(run)
        rlay.setContentsMargins(0, 0, 0, 0)
        rlay.setSpacing(4)
        rlay.addLayout(buttons)
        rlay.addWidget(self.estimate_label)
        rlay.addWidget(self.progress)
        rlay.addWidget(self.status)
        rlay.addWidget(self.curves, 1)
        rlay.addWidget(results)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setHandleWidth(6)
        self.splitter.setStyleSheet("QSplitter::handle { background: #e5e7eb; margin: 2px 0; }"
                                    "QSplitter::handle:hover { background: #93c5fd; }")
        self.splitter.addWidget(settings_scroll)
        self.splitter.addWidget(run)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        run.setMinimumHeight(RUN_MIN_HEIGHT)  # wrapped labels report no height to the splitter: reserve it
        self._settings_box = settings
        self._split_done = False
        lay = QVBoxLayout(self)
        lay.addWidget(self.student_label)
        lay.addWidget(self.splitter, 1)

    def _build_results(self) -> QGroupBox:
        eval_browse = QToolButton()
        eval_browse.setText("…")
        eval_browse.clicked.connect(self._browse_eval)
        self.evaluate_button = QPushButton("Measure again")
        self.evaluate_button.setToolTip("Measure the three models with the family's evaluator on this data")
        self.evaluate_button.clicked.connect(lambda: self.evaluate())
        erow = QHBoxLayout()
        erow.addWidget(QLabel("Evaluate on"))
        erow.addWidget(self.eval_file, 1)
        erow.addWidget(eval_browse)
        erow.addWidget(self.evaluate_button)
        grid = QGridLayout()
        self.metric_values: dict[str, QLabel] = {}
        self.metric_notes: dict[str, QLabel] = {}
        self.side_titles: dict[str, QLabel] = {}
        for col, side in enumerate(SIDES):
            box = QFrame()
            box.setObjectName("MediaSlot")
            box.setFrameShape(QFrame.Shape.StyledPanel)
            bl = QVBoxLayout(box)
            bl.setContentsMargins(8, 4, 8, 4)
            bl.setSpacing(0)
            head = QLabel(f"<b>{'Pruned' if side == 'slimmed' else side.capitalize()}</b>")
            value = QLabel("—")
            value.setObjectName("Value")
            value.setStyleSheet("font-size: 18px;")
            note = QLabel()
            note.setObjectName("Hint")
            note.setWordWrap(True)
            for w in (head, value, note):
                w.setAlignment(Qt.AlignmentFlag.AlignCenter)
                bl.addWidget(w)
            grid.addWidget(box, 0, col)
            self.metric_values[side], self.metric_notes[side], self.side_titles[side] = value, note, head
        self.open_healed_button = QPushButton("Open healed model")
        self.open_healed_button.setToolTip("Open the healed model folder (OUT/model) as the main model")
        self.open_healed_button.clicked.connect(self.open_healed)
        self.compare_healed_button = QPushButton("Compare with original")
        self.compare_healed_button.setToolTip("Put the healed model on the Compare tab's slimmed side")
        self.compare_healed_button.clicked.connect(lambda: self.compare_healed())
        healed_buttons = QVBoxLayout()
        healed_buttons.addWidget(self.open_healed_button)
        healed_buttons.addWidget(self.compare_healed_button)
        boxes = QHBoxLayout()
        boxes.addLayout(grid, 1)
        boxes.addLayout(healed_buttons)
        self.results_box = results = QGroupBox()
        rl = QVBoxLayout(results)
        rl.setSpacing(4)
        rl.addLayout(erow)
        rl.addLayout(boxes)
        return results

    def fit_settings(self) -> None:
        """The settings are shown whole (up to SETTINGS_MAX_HEIGHT) above the run area's minimum: on a short
        window the tab scrolls as one page rather than squeezing the settings into a few rows of their own."""
        want = min(self._settings_box.sizeHint().height() + 4, SETTINGS_MAX_HEIGHT)
        self._settings_scroll.setMinimumHeight(max(90, want))
        self.splitter.setMinimumHeight(max(90, want) + RUN_MIN_HEIGHT + self.splitter.handleWidth())
        total = self.splitter.height()
        self.splitter.setSizes([want, max(RUN_MIN_HEIGHT, total - want)])
        parent = self.parentWidget()
        while parent is not None and not isinstance(parent, FitScrollArea):
            parent = parent.parentWidget()
        if parent is not None:
            parent.fit()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._split_done:  # first show: the settings whole, the run area the rest
            self._split_done = True
            self.fit_settings()

    def _browse_eval(self) -> None:
        spec = self._evaluator()
        kind = spec.data.kind if spec is not None and spec.data is not None else "file"
        start = self.eval_file.text() or str(Path.home())
        if kind == "folder":
            path = QFileDialog.getExistingDirectory(self, "Evaluation data", start)
        else:
            flt = spec.data.filter if spec is not None and spec.data is not None and spec.data.filter else "All files (*)"
            path, _ = QFileDialog.getOpenFileName(self, "Evaluation data", start, flt)
        if path:
            self.eval_file.setText(path)

    # -- session -----------------------------------------------------------------------------------
    def apply_settings(self) -> None:
        """Show the session's retraining settings, its run (curves, Resume) and results (after reopening)."""
        self._show_settings()
        if not self.busy:
            self._state_cache = None
            if self.settings.out:
                self.out.setText(self.settings.out)
                self._show_run(self.settings.out)
            else:
                self._propose_out()
        self.show_results()
        self.update_buttons()

    # -- the document ------------------------------------------------------------------------------
    def _model_changed(self) -> None:
        if not self.busy:
            self._rebuild_form()
            self.form.set_context_limit(self.doc.context_limit())
        self._data_placeholder()
        self.healed = None
        if not self.busy:
            self.result = None
            self.estimate = None
            self.estimate_label.setText("")
            self.status.setText("")
            self.progress.setValue(0)
            self.curves.clear()
            self.apply_settings()
            self._offer_last_run()
        self._describe_student()

    @staticmethod
    def _run_key(source: str) -> str:
        return "retrain/last_run/" + hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]

    def _remember_run(self, out: str) -> None:
        if self.app_settings is not None and self.doc.model is not None:
            self.app_settings.set_value(self._run_key(self.doc.model.source), out)

    def _offer_last_run(self) -> None:
        """A model opened again (no session): its last unfinished run is shown and Resume continues it."""
        m = self.doc.model
        if self.app_settings is None or m is None or self.settings.out:
            return
        out = self.app_settings.value(self._run_key(m.source))
        if not out or not checkpoints(str(out)) or run_state(str(out))["finished"]:
            return
        self.out.setText(str(out))
        self._state_cache = None
        self._show_run(str(out))

    def _describe_student(self) -> None:
        m, slim, s = self.doc.model, self.doc.slimmed, self.doc.session
        if m is None:
            text = "Open a model and Apply a plan: this tab heals the slimmed model by retraining it."
        elif not m.has_weights:
            text = "This model has no weights (config only): there is nothing to retrain."
        elif slim is not None and s.slimmed_path:
            sg, g = slim.extra.get("graph"), self.doc.graph
            n = len(sg.prunable()) if sg is not None else 0
            size = f"{n} {self.doc.unit_word(n != 1)}, {human_count(sg.total_params)} params" if sg is not None else ""
            text = (f"Retrains the <b>slimmed model</b> ({size}); a method that learns from the original uses the "
                    f"original ({len(g.prunable())} {self.doc.unit_word(True)})." if g is not None
                    else "Retrains the <b>slimmed model</b>.")
        elif slim is not None:
            text = "The slimmed model was not saved (config only): it cannot be retrained."
        else:
            text = ("No slimmed model yet: Start retrains the <b>open model</b> itself. Apply a plan first "
                    "(Analyse &amp; plan tab) to heal a slimmed one.")
        self.student_label.setText(text)
        if self.doc.slimmed is not None and self.out.text().strip() == self._proposed_out and not self.busy:
            self._propose_out()
        self.update_buttons()

    def _student(self) -> tuple[str, LoadedModel]:
        """The model that trains: the saved slimmed model, else the open model; raises SlimError."""
        m, slim, s = self.doc.model, self.doc.slimmed, self.doc.session
        if m is None:
            raise SlimError("open a model first")
        if not m.has_weights:
            raise SlimError(f"{m.source} has no weights (config only)", hint="open a folder with weights to retrain it")
        if slim is not None:
            if not s.slimmed_path:
                raise SlimError("the slimmed model was not saved, so it cannot be retrained")
            return s.slimmed_path, slim
        if not Path(m.source).exists():
            raise SlimError(f"{m.source} is not a folder on this machine", hint="save the model to a folder first")
        return m.source, m

    def update_buttons(self) -> None:
        m = self.doc.model
        ready = m is not None and m.has_weights and bool(self.methods) and not (
            self.doc.slimmed is not None and not self.doc.session.slimmed_path)
        busy = self.busy
        self.estimate_button.setEnabled(ready and not busy)
        self.start_button.setEnabled(ready and not busy)
        self.export_button.setEnabled(ready)
        self.cancel_button.setEnabled(busy or (self.eval_job is not None and not self.eval_job.status.finished))
        self.resume_button.setEnabled(ready and self.can_resume())
        healed = (self.doc.session.results.get("retrain") or {}).get("healed_path")
        exists = bool(healed) and Path(healed).is_dir()
        self.open_healed_button.setEnabled(exists)
        self.compare_healed_button.setEnabled(exists and m is not None)
        out_model = Path(self.out.text().strip() or ".") / "model"
        self.evaluate_button.setEnabled(m is not None and m.has_weights and out_model.is_dir()
                                        and self._evaluator() is not None
                                        and (self.eval_job is None or self.eval_job.status.finished))

    # -- evaluation of the three models -------------------------------------------------------------
    def _evaluator(self):
        """The evaluator the three models are measured with: the Compare tab's choice, else the family's first."""
        m = self.doc.model
        if m is None:
            return None
        try:
            specs = self.doc.registry.evaluator_specs(m.family)
        except SlimError:
            return None
        chosen = self.doc.session.preview.evaluator
        return next((s for s in specs if s.name == chosen), specs[0] if specs else None)

    def _eval_path(self, spec) -> str | None:
        """The data to measure on: what is given here or on the Compare tab, else the model's own data or the
        training data, the first that is the kind the evaluator asks for (None: it needs none, or it decides)."""
        if spec is None or spec.data is None:
            return None
        s, p = self.settings, self.doc.session.preview
        candidates = [self.eval_file.text().strip(), p.eval_file]
        if not spec.data.required:  # the evaluator brings its own held-out data unless some is given
            return next((c for c in candidates if _fits(c, spec.data.kind)), None)
        if self.doc.model is not None:
            candidates.append(default_eval_data(self.doc.model, self.doc.registry))  # held-out data first
        candidates += list(s.data)
        return next((c for c in candidates if _fits(c, spec.data.kind)), None)

    def evaluate(self, healed_path: str | None = None) -> Job | None:
        """Measure the original, pruned and healed models with the family's evaluator, in the background."""
        original, slimmed = self.doc.model, self.doc.slimmed
        if original is None:
            return None
        if self._run_models[0] is not None and self._run_models[0] is not original:
            self.notifier.info("The run's model is no longer open: its results were not measured.")
            return None
        healed_path = healed_path or str(Path(self.out.text().strip()) / "model")
        if not Path(healed_path).is_dir():
            self.notifier.warning(f"No healed model in {healed_path} yet: finish a run first.")
            return None
        spec = self._evaluator()
        if spec is None:
            self.notifier.info(f"The {original.family} family declares no evaluator: compare the healed model on the "
                               "Compare tab.")
            return None
        path = self._eval_path(spec)
        self.store_settings()
        models = {"original": original}
        if slimmed is not None and slimmed.source != healed_path:
            models["slimmed"] = slimmed
        out = self.out.text().strip()
        method = getattr(self, "_run_method", None) or self.settings.method
        mspec = self.method_spec(method)
        role = (mspec.role if mspec is not None else "") or "healed"
        schema = self._schema(spec, "options")
        family = self.doc.spec.family if self.doc.spec is not None else None
        options = to_dict(values_for(self.doc.session.preview.eval_options, owner_key(family, spec.name), schema)) \
            if schema else {}
        meta = {"file": path, "healed_path": healed_path, "out": out, "evaluator": spec.name, "method": method,
                "role": role}

        if (self.doc.session.results.get("retrain") or {}).get("healed_path") != healed_path:
            self.doc.set_results("retrain", dict(meta))  # the healed model is reachable while it is measured

        def done(result, ms=(original, slimmed)) -> None:
            healed, values = result
            if self.doc.model is not ms[0]:
                return
            self.healed = self.doc.healed = healed  # the other tabs use it without loading it again
            self.doc.set_results("retrain", {**values, **meta})
            self.update_buttons()

        def failed(job: Job, m=original) -> None:  # the healed model is there all the same: keep it reachable
            if self.doc.model is m:
                self.doc.set_results("retrain", {**meta, "error": job.error})
            self.results_box.setTitle(f"{spec.name}: not measured ({job.error})")
            self.update_buttons()

        def cancelled(job: Job, m=original) -> None:
            for part in parts:
                self.runner.cancel(part)
            if self.doc.model is m:
                self.doc.set_results("retrain", {**meta, "error": "cancelled"})
            self.results_box.setTitle(f"{spec.name}: not measured (cancelled)")
            self.update_buttons()

        # The open models are measured one job each on the model lane, one after the other, so that work queued
        # on them (an export, an analysis) waits for one model, not three; the healed model, which no other job
        # holds, is opened and measured on the eval lane meanwhile, and its job gathers the results.
        names, parts = list(models), []
        where = f" on {Path(path).name}" if path else ""

        def measure(i: int) -> None:
            name = names[i]
            job = self.runner.submit(
                f"Evaluate {name} ({spec.name}){where}",
                partial(evaluate_task, [models[name]], path, registry=self.doc.registry, evaluator=spec.name,
                        options=options),
                kind="evaluate", lane="model", notify_failure=False,
                on_done=lambda _r: measure(i + 1) if i + 1 < len(names) and not self._eval_cancelled() else None)
            parts.append(job)

        def measured(cancel=None) -> dict[str, dict]:  # worker thread: wait for the open models' jobs
            while True:
                check(cancel)
                over = [j for j in parts if j.status.finished]
                bad = next((j for j in over if j.status != JobStatus.DONE), None)
                if bad is not None:
                    raise SlimError(f"{bad.title}: {bad.error or bad.status.value}")
                if len(over) == len(names):
                    return {name: job.result[0] for name, job in zip(names, parts)}
                time.sleep(0.05)

        def run(progress=None, cancel=None):
            return evaluate_healed_task({}, healed_path, path, registry=self.doc.registry, evaluator=spec.name,
                                        options=options, adapter=original.adapter,
                                        measured=lambda: measured(cancel), progress=progress, cancel=cancel)

        self.eval_job = self.runner.submit(
            f"Evaluate original, pruned and {role} ({spec.name}){where}", run,
            kind="evaluate", lane="eval", on_done=done, on_failed=failed, on_cancelled=cancelled)
        measure(0)
        self.results_box.setTitle(f"{spec.name}: measuring the three models{where}…")
        self.update_buttons()
        return self.eval_job

    def _eval_cancelled(self) -> bool:
        return self.eval_job is not None and (self.eval_job.cancel_requested or self.eval_job.status.finished)

    def show_results(self) -> None:
        r = self.doc.session.results.get("retrain") or {}
        family = self.doc.model.family if self.doc.model is not None else None
        evaluator = r.get("evaluator") or (self._evaluator().name if self._evaluator() is not None else None)
        declared = mv.declared(self.doc.registry, "evaluator", evaluator, family)
        base_found = mv.metrics_for(r.get("original"), declared)
        top = mv.headline(base_found)
        role = self.doc.healed_role
        self.side_titles["healed"].setText(f"<b>{role.capitalize()}</b>")
        for side in SIDES:
            entry = r.get(side) or {}
            found = mv.metrics_for(entry, declared)
            value = mv.value_of(found, top[0].name) if top is not None else None
            self.metric_values[side].setText(mv.format_value(top[0], value) if top is not None and value is not None
                                             else "—")
            lines = []
            if top is not None and side != "original" and value is not None:
                lines.append(mv.change_vs(top[0], top[1], value))
            elif side == "slimmed" and r and not entry:
                lines.append("no slimmed model")
            if found:
                lines.append(mv.summary(found, limit=2, skip=top[0] if top is not None else None))
            self.metric_notes[side].setText("<br>".join(x for x in lines if x))
        first = next((m for m in declared if m.headline), declared[0] if declared else None)
        title = top[0].title if top is not None else (first.title if first is not None else evaluator or "Evaluation")
        if r.get("error"):
            self.results_box.setTitle(f"{title}: not measured ({r['error']})")
            self.results_box.setToolTip(f"{role} model {r.get('healed_path', '')}")
        elif r.get("file") or (r and r.get("healed_path")):
            on = f" on {Path(r['file']).name}" if r.get("file") else ""
            self.results_box.setTitle(f"{title}{on}: original, pruned and {role}")
            self.results_box.setToolTip(f"measured{on or ''}; {role} model {r.get('healed_path', '')}")
        elif self.eval_job is None or self.eval_job.status.finished:
            self.results_box.setTitle(f"{title}: original, pruned and healed (measured after a run)")
        self.update_buttons()

    # -- the healed model --------------------------------------------------------------------------
    def _healed_path(self) -> str | None:
        path = (self.doc.session.results.get("retrain") or {}).get("healed_path")
        return path if path and Path(path).is_dir() else None

    def open_healed(self) -> None:
        path = self._healed_path()
        if path:
            self.openRequested.emit(path)

    def compare_healed(self) -> Job | None:
        """Put the healed model on the Compare tab's slimmed side (loading it first when needed)."""
        path = self._healed_path()
        if path is None or self.doc.model is None:
            return None
        if self.healed is not None and self.healed.source == path:
            self._use_healed(self.healed, path)
            return None
        original = self.doc.model

        def done(model: LoadedModel) -> None:
            if self.doc.model is original:
                self.healed = self.doc.healed = model
                self._use_healed(model, path)

        self.open_job = self.runner.submit(f"Open healed model {Path(path).parent.name}",
                                           partial(_load_and_graph, path, registry=self.doc.registry,
                                                   adapter=original.adapter),
                                           kind="open", lane="io", on_done=done)
        return self.open_job

    def _use_healed(self, model: LoadedModel, path: str) -> None:
        self.doc.set_slimmed(model, path, list(self.doc.session.slimmed_remove))
        self.notifier.info(f"The healed model is on the Compare tab's slimmed side ({path})")
        self.compareRequested.emit()

    # -- export ------------------------------------------------------------------------------------
    def _export_clicked(self) -> None:
        out = self.out.text().strip() or "job"
        default = cache_dir() / "jobs" / Path(out).name
        folder = QFileDialog.getExistingDirectory(self, "Export the job into a folder", str(default.parent))
        if folder:
            self.export(folder)

    def export(self, folder: str | os.PathLike) -> tuple[Path, str] | None:
        """Write the job folder (JSON config, accelerate config, README with the command) and say how to run it."""
        try:
            cfg: TrainConfig = self.config()
            job_dir, cmd = export_job(cfg, Path(folder))
        except SlimError as exc:
            self.notifier.error(f"Export job: {exc.one_line()}")
            return None
        self.settings.out = cfg.out
        self.notifier.info(f"Job written to {job_dir}. Run it with: {cmd}")
        return job_dir, cmd
