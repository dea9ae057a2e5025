"""The Retrain panel: heal the slimmed model by retraining it — the methods the family offers (a language
model: LoRA, continued pretraining, distillation; a diffusion U-Net: BK-SDM distillation with λ_task / λ_out /
λ_feat, continued training, few-step latent consistency distillation; see :mod:`.family`).

It only gathers settings and shows what the core reports.  Start first runs
:func:`~slimgui.core.jobs.retrain_check_task` (the job is checked and its time and memory estimated on
this machine; a config that cannot work is refused with the core's message) and then
:func:`~slimgui.core.jobs.retrain_task` on the runner's ``"train"`` lane.  The training loop's events
arrive on the worker thread and reach the GUI thread through a queued signal; the curves and the
status line redraw at a bounded rate, so the window never waits on the job.  Checkpoints make Cancel,
closing the app and even a killed process resumable; the run folder is kept in the session.  When a
run is done the original, the slimmed and the healed model are measured with the family's evaluator
(perplexity on one text file; the digit classifier for the diffusion demo) in the background and shown side
by side.  Events of a run that counts images (``"items": "images"``) carry a validation loss but no
perplexity: the panel shows what an event has and never needs a key it lacks.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.io import cache_dir
from slimgui.core.jobs import (
    Job,
    evaluate_healed_task,
    format_eta,
    retrain_check_task,
    retrain_task,
    run_state,
)
from slimgui.core.model import LoadedModel
from slimgui.core.session import RetrainSettings, default_data, human_bytes, human_count, new_run_dir
from slimgui.core.train import DEFAULT_LR, TrainConfig, checkpoints, export_job
from slimgui.gui.widgets import browse_row, thin_progress

from .curves import LossCurves
from .document import Document
from .family import TOKEN_METHODS, Traits, traits
from .notify import Notifier
from .settings import Settings
from .workers import JobRunner

METHODS = TOKEN_METHODS  # a language model's; a family's own come from family.traits
STANDARD_KEYS = {"event", "step", "total", "train_loss", "lr", "tokens_per_s", "items_per_s", "items", "eta_s",
                 "val_loss", "val_ppl", "val_metric"}
SIDES = (("original", "Original"), ("slimmed", "Pruned"), ("healed", "Healed"))
STATUS_HZ = 10
RUN_MIN_HEIGHT = 460  # buttons, estimate, progress, status, curves (150) and the perplexity boxes
_runs = itertools.count(1)


def _validation_text(ev: dict[str, Any], html: bool = True) -> str:
    """"validation loss 0.1234 (perplexity 3.4)" — perplexity only when the event has one (language models)."""
    loss = ev.get("val_loss")
    if not isinstance(loss, (int, float)):
        return "no validation yet"
    b = ("<b>", "</b>") if html else ("", "")
    text = f"validation loss {b[0]}{loss:.4f}{b[1]}"
    extra = []
    if isinstance(ev.get("val_ppl"), (int, float)):
        extra.append(f"perplexity {ev['val_ppl']:.3f}")
    if ev.get("event") == "step" and "step" in ev:
        extra.append(f"step {ev['step']}")
    return text + (f" ({', '.join(extra)})" if extra else "")


def _metric_title(evaluator: str | None) -> str:
    return {"perplexity": "Perplexity", "digits": "Digit quality"}.get(str(evaluator), str(evaluator or "Evaluation")
                                                                       .capitalize())


def _headline(result: dict[str, Any]) -> tuple[str, Any]:
    """The number an evaluation is judged by and how it is written: perplexity, or accuracy (digits)."""
    if "perplexity" in result or not result:
        return "perplexity", lambda v: f"{v:.3f}"
    if "accuracy" in result:
        return "accuracy", lambda v: f"{100 * v:.1f}%"
    key = next((k for k, v in result.items() if isinstance(v, float)), "perplexity")
    return key, lambda v: f"{v:.4g}"


class SciSpinBox(QDoubleSpinBox):
    """A float spin box that shows and accepts ``1e-3`` style numbers (learning rates)."""

    def __init__(self, lo: float, hi: float, value: float, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(12)
        self.setRange(lo, hi)
        self.setValue(value)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:  # noqa: N802
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        from PySide6.QtGui import QValidator

        try:
            float(text)
            return QValidator.State.Acceptable, text, pos
        except ValueError:
            ok = all(c in "0123456789.eE+-" for c in text)
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        self.setValue(self.value() * (2.0 ** steps))


SPIN_WIDTH = 84


def _spin(lo: int, hi: int, value: int, tip: str, step: int = 1) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setSingleStep(step)
    s.setToolTip(tip)
    s.setMaximumWidth(SPIN_WIDTH)
    return s


def _fspin(lo: float, hi: float, value: float, tip: str, step: float = 0.1, decimals: int = 2) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(step)
    s.setValue(value)
    s.setToolTip(tip)
    s.setMaximumWidth(SPIN_WIDTH)
    return s


def _labelled(*pairs) -> QHBoxLayout:
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    for label, widget in pairs:
        if label:
            row.addWidget(QLabel(label))
        row.addWidget(widget)
    row.addStretch(1)
    return row


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


class RetrainPanel(QWidget):
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
        self.result: dict[str, Any] | None = None
        self.healed: LoadedModel | None = None
        self.events: list[dict[str, Any]] = []  # the current run's events (this app session)
        self.worker_step = 0  # the latest step the training loop reported (written on the worker thread)
        self._run_id = 0
        self._run_models: tuple[LoadedModel | None, LoadedModel | None] = (None, None)
        self._last_step: dict[str, Any] | None = None
        self._last_val: dict[str, Any] | None = None
        self._proposed_out: str | None = None
        self._state_cache: tuple[tuple, dict] | None = None
        self._build()
        self.trainEvent.connect(self._on_event, Qt.ConnectionType.QueuedConnection)
        self._status_timer = QTimer(self, singleShot=True, interval=int(1000 / STATUS_HZ))
        self._status_timer.timeout.connect(self._show_progress)
        document.modelChanged.connect(self._model_changed)
        document.slimmedChanged.connect(self._describe_student)
        document.resultsChanged.connect(self.show_results)
        runner.jobFinished.connect(lambda _job: self.update_buttons())
        self._model_changed()

    # -- building --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.student_label = QLabel()
        self.student_label.setWordWrap(True)
        self.method = QComboBox()
        self.traits = Traits()
        self._fill_methods()
        self.method.setToolTip("How to heal the slimmed model (a preset: choosing one sets its learning rate)")
        self.method.currentIndexChanged.connect(self._method_changed)
        self.method_hint = QLabel()
        self.method_hint.setWordWrap(True)
        self.method_hint.setObjectName("Hint")
        # data
        self.data = QLineEdit()
        self.data.setToolTip("Training data: text files, folders of text files, JSONL or a saved dataset; "
                             f"several separated by '{os.pathsep}'")
        data_file = QToolButton()
        data_file.setText("File…")
        data_file.setToolTip("Choose a text or JSONL file")
        data_file.clicked.connect(self._browse_data_file)
        data_dir = QToolButton()
        data_dir.setText("Folder…")
        data_dir.setToolTip("Choose a folder of text files or a saved dataset")
        data_dir.clicked.connect(self._browse_data_dir)
        data_row = QHBoxLayout()
        data_row.addWidget(self.data, 1)
        data_row.addWidget(data_file)
        data_row.addWidget(data_dir)
        # hyperparameters
        self.steps = _spin(1, 10_000_000, 100, "optimizer steps", 10)
        self.batch_size = _spin(1, 4096, 8, "sequences per step")
        self.seq_len = _spin(2, 32768, 128, "tokens per sequence", 32)
        self.lr = SciSpinBox(1e-7, 1.0, DEFAULT_LR["lora"])
        self.lr.setMaximumWidth(SPIN_WIDTH)
        self.lr.setToolTip("peak learning rate (cosine schedule after the warm-up); the preset sets the method's default")
        self.warmup = _spin(0, 1_000_000, 10, "warm-up steps (linear ramp of the learning rate)")
        self.save_every = _spin(1, 1_000_000, 50, "write a checkpoint every N steps (Resume continues from the last)")
        self.eval_every = _spin(1, 1_000_000, 50, "measure the validation loss every N steps")
        self.seq_len_label = QLabel("length")
        hyper = _labelled(("steps", self.steps), ("batch", self.batch_size), ("", self.seq_len_label),
                          ("", self.seq_len), ("lr", self.lr))
        sched = _labelled(("warm-up", self.warmup), ("save every", self.save_every),
                          ("validate every", self.eval_every))
        # LoRA
        self.lora_r = _spin(1, 1024, 8, "LoRA rank")
        self.lora_alpha = _spin(1, 4096, 16, "LoRA alpha (scaling = alpha / rank)")
        self.lora_dropout = _fspin(0.0, 0.9, 0.05, "dropout on the LoRA input", 0.05)
        self.lora_merge = QCheckBox("merge into the weights")
        self.lora_merge.setChecked(True)
        self.lora_merge.setToolTip("Save a plain model with the adapters merged (off: save the peft adapter)")
        lora = _labelled(("rank", self.lora_r), ("alpha", self.lora_alpha), ("dropout", self.lora_dropout))
        self.lora_targets = QLineEdit()
        self.lora_targets.setPlaceholderText("every linear layer in the blocks")
        self.lora_targets.setToolTip("comma-separated module names, e.g. q_proj,v_proj")
        targets = QHBoxLayout()
        targets.addWidget(self.lora_targets, 1)
        targets.addWidget(self.lora_merge)
        # distillation
        self.kd_ce = _fspin(0.0, 100.0, 1.0, "weight of the next-token loss")
        self.kd_kl = _fspin(0.0, 100.0, 1.0, "weight of the KL divergence to the original's logits")
        self.kd_hidden = _fspin(0.0, 100.0, 1.0, "weight of the MSE between matching block outputs")
        self.kd_labels = [QLabel(text) for text, _ in self.traits.kd_labels()]
        self.teacher_label = QLabel()
        self.teacher_label.setObjectName("Hint")
        kd = _labelled(*(("", w) for pair in zip(self.kd_labels, (self.kd_ce, self.kd_kl, self.kd_hidden))
                          for w in pair), ("", self.teacher_label))
        # few-step (latent consistency distillation)
        self.lcm_ddim_steps = _spin(1, 1000, 50, "steps of the teacher's ODE solver (DDIM) the consistency targets "
                                    "are computed with", 5)
        self.lcm_guidance = _fspin(0.0, 30.0, 3.0, "classifier-free guidance of the teacher", 0.5, 1)
        lcm = _labelled(("teacher solver steps", self.lcm_ddim_steps), ("guidance", self.lcm_guidance))
        # run folder
        self.out = QLineEdit()
        self.out.setToolTip("Run folder: checkpoints, the job's config and the healed model (OUT/model)")
        self.out.editingFinished.connect(self._out_edited)
        out_row = browse_row(self.out, self._browse_out, "Choose the run folder (an existing run there can be resumed)")
        method_row = QHBoxLayout()
        method_row.addWidget(self.method)
        method_row.addWidget(self.method_hint, 1)
        self.form = QFormLayout()
        self.form.addRow("Method", method_row)
        self.form.addRow("Training data", data_row)
        self.form.addRow("Training", hyper)
        self.form.addRow("Schedule", sched)
        self.form.addRow("LoRA", lora)
        self.form.addRow("LoRA targets", targets)
        self.form.addRow("Distillation", kd)
        self.form.addRow("Few-step", lcm)
        self.form.addRow("Run folder", out_row)
        settings = QGroupBox("Settings")
        settings.setLayout(self.form)
        settings_scroll = QScrollArea()  # a short window: the settings scroll, the curves keep their room
        settings_scroll.setWidget(settings)
        settings_scroll.setWidgetResizable(True)
        settings_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        settings_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        settings_scroll.setMinimumHeight(90)
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
        # results
        self.eval_file = QLineEdit()
        self.eval_file.setToolTip("Text file on which the original, pruned and healed models are measured after a run")
        eval_browse = QToolButton()
        eval_browse.setText("…")
        eval_browse.clicked.connect(self._browse_eval)
        self.evaluate_button = QPushButton("Measure again")
        self.evaluate_button.setToolTip("Measure the perplexity of the three models on this file")
        self.evaluate_button.clicked.connect(lambda: self.evaluate())
        erow = QHBoxLayout()
        erow.addWidget(QLabel("Evaluate on"))
        erow.addWidget(self.eval_file, 1)
        erow.addWidget(eval_browse)
        erow.addWidget(self.evaluate_button)
        grid = QGridLayout()
        self.ppl_values: dict[str, QLabel] = {}
        self.ppl_notes: dict[str, QLabel] = {}
        for col, (side, title) in enumerate(SIDES):
            box = QFrame()
            box.setObjectName("MediaSlot")
            box.setFrameShape(QFrame.Shape.StyledPanel)
            bl = QVBoxLayout(box)
            bl.setContentsMargins(8, 4, 8, 4)
            bl.setSpacing(0)
            head = QLabel(f"<b>{title}</b>")
            value = QLabel("—")
            value.setObjectName("Value")
            value.setStyleSheet("font-size: 18px;")
            note = QLabel()
            note.setObjectName("Hint")
            for w in (head, value, note):
                w.setAlignment(Qt.AlignmentFlag.AlignCenter)
                bl.addWidget(w)
            grid.addWidget(box, 0, col)
            self.ppl_values[side], self.ppl_notes[side] = value, note
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

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._split_done:  # first show: the settings get what the run area leaves, the run area the rest
            self._split_done = True
            total = self.splitter.height()
            top = max(90, min(self._settings_box.sizeHint().height(), total - RUN_MIN_HEIGHT))
            self.splitter.setSizes([top, max(RUN_MIN_HEIGHT, total - top)])

    # -- browsing ----------------------------------------------------------------------------------
    def _browse_data_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Training data", self.data.text() or str(Path.home()),
                                              "Text or JSONL (*.txt *.md *.py *.jsonl *.json);;All files (*)")
        if path:
            self.data.setText(path)

    def _browse_data_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Training data folder (text files, a saved dataset or images)")
        if path:
            self.data.setText(path)

    def _browse_eval(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Evaluation text", self.eval_file.text() or str(Path.home()),
                                              "Text files (*.txt *.md *.py);;All files (*)")
        if path:
            self.eval_file.setText(path)

    def _browse_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Run folder", self.out.text() or str(cache_dir()))
        if path:
            self.out.setText(path)
            self._out_edited()

    def _out_edited(self) -> None:
        self._state_cache = None
        text = self.out.text().strip()
        if text and not self.busy and checkpoints(text):
            self._show_run(text)
        self.update_buttons()

    # -- settings <-> session ----------------------------------------------------------------------
    @property
    def settings(self) -> RetrainSettings:
        return self.doc.session.retrain

    def store_settings(self) -> RetrainSettings:
        """The widgets' values into the session (the run folder is stored when a run uses it)."""
        s = self.settings
        s.method = self.method.currentData()
        s.data = [p.strip() for p in self.data.text().split(os.pathsep) if p.strip()]
        s.eval_file = self.eval_file.text().strip() or None
        s.steps, s.batch_size, s.seq_len = self.steps.value(), self.batch_size.value(), self.seq_len.value()
        s.lr = self.lr.value()
        s.warmup, s.save_every, s.eval_every = self.warmup.value(), self.save_every.value(), self.eval_every.value()
        s.lora_r, s.lora_alpha, s.lora_dropout = self.lora_r.value(), self.lora_alpha.value(), self.lora_dropout.value()
        s.lora_targets = [t.strip() for t in self.lora_targets.text().replace(" ", ",").split(",") if t.strip()] or None
        s.lora_merge = self.lora_merge.isChecked()
        s.kd_ce, s.kd_kl, s.kd_hidden = self.kd_ce.value(), self.kd_kl.value(), self.kd_hidden.value()
        s.lcm_ddim_steps, s.lcm_guidance = self.lcm_ddim_steps.value(), self.lcm_guidance.value()
        return s

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

    def _show_settings(self) -> None:
        s = self.settings
        if self.method.findData(s.method) < 0 and self.method.count():  # another family's method: this one's first
            s.method, s.lr = self.method.itemData(0), None
        self.method.blockSignals(True)
        self.method.setCurrentIndex(max(0, self.method.findData(s.method)))
        self.method.blockSignals(False)
        self._method_shown()
        self.data.setText(os.pathsep.join(s.data))
        self.eval_file.setText(s.eval_file or "")
        self.steps.setValue(s.steps)
        self.batch_size.setValue(s.batch_size)
        self.seq_len.setValue(s.seq_len)
        self.lr.setValue(s.lr if s.lr is not None else DEFAULT_LR.get(s.method, 1e-3))
        self.warmup.setValue(s.warmup)
        self.save_every.setValue(s.save_every)
        self.eval_every.setValue(s.eval_every)
        self.lora_r.setValue(s.lora_r)
        self.lora_alpha.setValue(s.lora_alpha)
        self.lora_dropout.setValue(s.lora_dropout)
        self.lora_targets.setText(",".join(s.lora_targets or []))
        self.lora_merge.setChecked(s.lora_merge)
        self.kd_ce.setValue(s.kd_ce)
        self.kd_kl.setValue(s.kd_kl)
        self.kd_hidden.setValue(s.kd_hidden)
        self.lcm_ddim_steps.setValue(s.lcm_ddim_steps)
        self.lcm_guidance.setValue(s.lcm_guidance)

    def _fill_methods(self) -> None:
        """The family's retraining methods in the method chooser (keeping the current one when it is offered)."""
        current = self.method.currentData()
        self.method.blockSignals(True)
        self.method.clear()
        for key in self.traits.methods:
            name, desc = self.traits.method_text(key)
            self.method.addItem(name, key)
            self.method.setItemData(self.method.count() - 1, desc, Qt.ItemDataRole.ToolTipRole)
        self.method.setCurrentIndex(max(0, self.method.findData(current)))
        self.method.blockSignals(False)

    def _family_shown(self) -> None:
        """Labels that depend on the family: the distillation weights, the teacher, the sequence length."""
        for label, (text, tip), spin in zip(self.kd_labels, self.traits.kd_labels(),
                                            (self.kd_ce, self.kd_kl, self.kd_hidden)):
            label.setText(text)
            spin.setToolTip(tip)
            label.setToolTip(tip)
        m = self.doc.model
        self.teacher_label.setText(f"teacher: the original ({Path(m.source).name})" if m is not None else "")
        self.teacher_label.setToolTip(m.source if m is not None else "")
        images = self.traits.images
        self.seq_len.setVisible(not images)  # an image is one sample: no sequence length
        self.seq_len_label.setVisible(not images)
        self.batch_size.setToolTip("images per step" if images else "sequences per step")

    def _method_changed(self) -> None:
        key = self.method.currentData()
        self.lr.setValue(DEFAULT_LR.get(key, 1e-4))  # the preset's learning rate
        if self.out.text().strip() == self._proposed_out:
            self._propose_out()
        self._method_shown()

    def _method_shown(self) -> None:
        key = self.method.currentData()
        self.method_hint.setText(self.traits.method_text(key)[1] if key else "")
        for row, visible in ((4, key == "lora"), (5, key == "lora"), (6, key == "kd"), (7, key == "lcm")):
            self.form.setRowVisible(row, visible)

    def _propose_out(self) -> None:
        m = self.doc.model
        name = (Path(m.source).name or "model") if m is not None else "model"
        if self.doc.slimmed is not None:
            name += "-slim"
        self._proposed_out = str(new_run_dir(name, self.method.currentData() or "lora"))
        self.out.setText(self._proposed_out)
        self._state_cache = None

    # -- the document ------------------------------------------------------------------------------
    def _model_changed(self) -> None:
        m = self.doc.model
        if not self.busy:
            self.traits = traits(self.doc.registry, m, self.doc.graph)
            self._fill_methods()
            self._family_shown()
        fallback = default_data(m) if m is not None else None
        if self.traits.images:
            self.data.setPlaceholderText(f"default: {Path(fallback).name} (the demo's images)" if fallback
                                         else "an image folder (imagefolder layout: images + metadata.jsonl captions)")
        else:
            self.data.setPlaceholderText(f"default: {Path(fallback).name} (the demo's text)" if fallback
                                         else "text, JSONL, a folder of text files or a saved dataset")
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
            word = self.traits.unit_word + "s"
            n = len(sg.prunable()) if sg is not None else 0
            size = f"{n} {word if n != 1 else self.traits.unit_word}, {human_count(sg.total_params)} params" \
                if sg is not None else ""
            text = (f"Retrains the <b>slimmed model</b> ({size}); distillation learns from the original "
                    f"({len(g.prunable())} {word})." if g is not None else "Retrains the <b>slimmed model</b>.")
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

    def _data(self) -> list[str]:
        s = self.settings
        if s.data:
            return list(s.data)
        fallback = default_data(self.doc.model) if self.doc.model is not None else None
        if not fallback:
            raise SlimError("choose the training data",
                            hint="a text file, a folder of text files, JSONL or a saved dataset")
        return [fallback]

    def config(self, out: str | None = None) -> TrainConfig:
        """The job the settings on screen describe (raises SlimError when something is missing)."""
        s = self.store_settings()
        student, _ = self._student()
        out = out or self.out.text().strip() or self._proposed_out or str(new_run_dir("model", s.method))
        return s.to_config(model=student, teacher=self.doc.model.source, data=self._data(), out=out)

    # -- state -------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return any(j is not None and not j.status.finished for j in (self.check_job, self.train_job))

    def _run_state(self, out: str | None = None) -> dict[str, Any]:
        out = out or self.out.text().strip()
        root = Path(out) if out else None
        key = (out, tuple(p.name for p in checkpoints(out)) if out else (),
               bool(root and (root / "slimgui_train.json").exists()))
        if self._state_cache is None or self._state_cache[0] != key:
            self._state_cache = (key, run_state(out) if out else run_state(cache_dir() / ".none"))
        return self._state_cache[1]

    def can_resume(self) -> bool:
        if self.busy or not self.out.text().strip():
            return False
        state = self._run_state()
        if not state["checkpoints"]:
            return False
        return not state["finished"] or self.steps.value() > state["step"]

    def update_buttons(self) -> None:
        m = self.doc.model
        ready = m is not None and m.has_weights and not (self.doc.slimmed is not None
                                                         and not self.doc.session.slimmed_path)
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
                                        and (self.eval_job is None or self.eval_job.status.finished))

    def _show_run(self, out: str) -> None:
        """Show a run folder: its own settings, its curves up to the last checkpoint, and where it stands."""
        cfg = self._run_config(out)
        if cfg is not None:
            self.settings.take(cfg)
            self._show_settings()
        state = self._run_state(out)
        self.curves.set_history(state["history"], state["val_history"])
        total = state["steps"] or self.steps.value()
        if state["finished"]:
            r = state["result"] or {}
            ppl = r.get("val_ppl")
            self.status.setText(f"Finished run: {state['step']} steps" +
                                (f", validation perplexity {ppl:.3f}" if isinstance(ppl, (int, float)) else "") +
                                f". Healed model in {Path(out) / 'model'}")
            self.progress.setValue(1000)
        elif state["checkpoints"]:
            self.status.setText(f"Run stopped at step {state['step']} of {total}: Resume continues from the checkpoint.")
            self.progress.setValue(int(1000 * state["step"] / max(1, total)))
        else:
            self.progress.setValue(0)

    # -- estimate / start / resume / cancel ---------------------------------------------------------
    def run_estimate(self) -> Job | None:
        """Check the job and show its time and memory estimate (errors go to the notifier)."""
        return self._check(resume=False, then_train=False)

    def start(self) -> Job | None:
        """Check the job, show its estimate, then train from the beginning in the background."""
        return self._check(resume=False, then_train=True)

    def resume(self) -> Job | None:
        """Continue the run in the run folder from its last checkpoint (the run's own settings)."""
        return self._check(resume=True, then_train=True)

    def _check(self, *, resume: bool, then_train: bool) -> Job | None:
        if self.busy:
            self.notifier.warning("A retraining job is already running: cancel it first.")
            return None
        try:
            if resume:
                cfg = self._resume_config()
            else:
                cfg = self.config()
                if then_train and (checkpoints(cfg.out) or (Path(cfg.out) / "slimgui_train.json").exists()
                                   or (Path(cfg.out) / "job.json").exists()):
                    old = cfg.out
                    self._propose_out()
                    cfg.out = self.out.text()
                    self.notifier.info(f"{old} already holds a run (Resume continues it): this run goes to {cfg.out}")
        except SlimError as exc:
            self.notifier.error(f"Retrain: {exc.one_line()}")
            return None
        student_name = Path(cfg.model).name
        what = "Resume" if resume else ("Check" if then_train else "Estimate")
        self.estimate_label.setText(f"Checking the job and timing one step of {student_name}…")
        if then_train:
            self.status.setText("")
        models = (self.doc.model, self.doc.slimmed)

        def checked(result, job_ref: list) -> None:
            est, task = result
            job_ref[0].result = est  # the prepared task lives on only in the training job
            self.estimate = est
            self._show_estimate(est, cfg, resume)
            if then_train:
                self._train(cfg, task, resume, models)

        def failed(job: Job) -> None:
            self.estimate_label.setText(f"<span style='color:#b91c1c'>Refused: {job.error}</span>")

        ref: list = [None]
        self.check_job = self.runner.submit(
            f"{what} retraining of {student_name} ({cfg.method})",
            partial(retrain_check_task, cfg, registry=self.doc.registry, resume=resume, check_out=then_train),
            kind="retrain-check", lane="train", on_done=lambda r: checked(r, ref), on_failed=failed,
            on_cancelled=lambda _j: self.estimate_label.setText("Check cancelled."))
        ref[0] = self.check_job
        self.update_buttons()
        return self.check_job

    @staticmethod
    def _run_config(out: str) -> TrainConfig | None:
        """The configuration a run folder was started with (None when it has none or it is unreadable)."""
        job_file = Path(out) / "job.json"
        if not job_file.is_file():
            return None
        try:
            cfg = TrainConfig.load(job_file)
        except SlimError:
            return None
        cfg.out = out  # the folder may have moved with its session
        return cfg

    def _resume_config(self) -> TrainConfig:
        """The run's own configuration; a step count raised on screen extends the run."""
        out = self.out.text().strip()
        if not out or not checkpoints(out):
            raise SlimError(f"the run folder {out or '(none)'} holds no checkpoint to resume from",
                            hint="Start a run first, or choose the folder of an earlier run")
        steps = self.steps.value()
        cfg = self._run_config(out) or self.config(out)
        cfg.steps = max(cfg.steps, steps)
        self.settings.take(cfg)
        self._show_settings()
        return cfg

    def _show_estimate(self, est: dict[str, Any], cfg: TrainConfig, resume: bool) -> None:
        left = est.get("steps_left", cfg.steps)
        secs = est.get("seconds_left", est["seconds"])
        mem, machine = est["memory_bytes"], est["machine_memory_bytes"]
        items = str(est.get("items") or "tokens")  # what the run counts: tokens, or images
        samples = "images" if items == "images" else "sequences"
        parts = [f"<b>≈ {format_eta(secs) if secs >= 1 else '&lt; 1s'}</b> for {left:,} step{'s' if left != 1 else ''}"
                 + (" left" if resume else "") + f" ({est['step_seconds']:.3g} s/step)",
                 f"memory <b>≈ {human_bytes(mem)}</b>" + (f" of {human_bytes(machine)}" if machine else ""),
                 f"{est.get('tokens', 0):,} {items}"
                 + (f" ({est['epochs']:g} epochs of {est['train_sequences']:,} {samples})"
                    if "epochs" in est and "train_sequences" in est else ""),
                 f"{human_count(est['trainable_params'])} of {human_count(est['params'])} parameters train"]
        self.estimate_label.setText("Estimate on this machine: " + " · ".join(parts))
        self.estimate_label.setToolTip(f"{est['memory_bytes']:,} bytes of memory; {est['params']:,} parameters, "
                                       f"{est['trainable_params']:,} trainable")

    def _train(self, cfg: TrainConfig, task, resume: bool, models) -> Job:
        self._run_id = next(_runs)
        run_id = self._run_id
        self.settings.out = cfg.out
        self._remember_run(cfg.out)
        self._state_cache = None
        self._run_models = models
        self.events = []
        self.result = None
        self._last_step = self._last_val = None
        self.worker_step = 0
        if resume:
            state = self._run_state(cfg.out)
            self.curves.set_history(state["history"], state["val_history"])
            self.worker_step = state["step"]
        else:
            self.curves.clear()
        self.progress.setValue(int(1000 * self.worker_step / max(1, cfg.steps)))
        self.status.setText(("Resuming" if resume else "Starting") + f" — run folder {cfg.out}")

        def events(ev: dict[str, Any]) -> None:  # worker thread: record the step, hand the event over
            if ev.get("event") == "step":
                self.worker_step = int(ev["step"])
            self.trainEvent.emit(run_id, ev)

        name = Path(cfg.model).name
        self.train_job = self.runner.submit(
            f"Retrain {name} ({cfg.method}, {cfg.steps} steps)",
            partial(retrain_task, cfg, registry=self.doc.registry, task=task, resume=resume, events=events),
            kind="retrain", lane="train", on_done=lambda r: self._trained(r, run_id),
            on_failed=lambda j: self._train_failed(j, run_id), on_cancelled=lambda j: self._train_cancelled(j, run_id))
        self.update_buttons()
        return self.train_job

    def cancel(self) -> None:
        """Cancel the check, the training (stops after the current step, with a checkpoint) or the evaluation."""
        for job in (self.check_job, self.train_job, self.eval_job):
            if job is not None and not job.status.finished:
                self.runner.cancel(job)
        if self.train_job is not None and not self.train_job.status.finished:
            self.status.setText(f"Cancelling after step {self.worker_step + 1}…")
        self.cancel_button.setEnabled(False)

    # -- events (GUI thread) -----------------------------------------------------------------------
    def _on_event(self, run_id: int, ev: dict[str, Any]) -> None:
        if run_id != self._run_id:
            return
        self.events.append(ev)
        kind = ev.get("event")
        if kind == "start":
            self.curves.truncate_after(ev.get("step", 0))
        elif kind == "step":
            self.curves.add_train(ev["step"], ev["train_loss"])
            if "val_loss" in ev:
                self.curves.add_val(ev["step"], ev["val_loss"])
                self._last_val = ev
            self._last_step = ev
            if not self._status_timer.isActive():
                self._status_timer.start()
        elif kind == "cancelled":
            self._show_progress()

    def _show_progress(self) -> None:
        self._status_timer.stop()  # a final call (done, cancelled) must not be overwritten by a pending one
        ev = self._last_step
        if ev is None:
            return
        total = max(1, int(ev.get("total") or 1))
        step = int(ev.get("step", 0))
        self.progress.setValue(int(1000 * step / total))
        parts = [f"step <b>{step:,}</b>/{total:,}"]
        if isinstance(ev.get("train_loss"), (int, float)):
            parts.append(f"train loss <b>{ev['train_loss']:.4f}</b>")
        if self._last_val is not None:
            parts.append(_validation_text(self._last_val))
        if "kl" in ev and "ce" in ev:  # a language model's distillation terms
            parts.append(f"CE {ev['ce']:.3f} · KL {ev['kl']:.3f} · hidden MSE {ev.get('hidden_mse', math.nan):.4f}")
        else:  # a family's own loss terms (e.g. BK-SDM's task / out / feat)
            terms = [f"{k} {v:.4g}" for k, v in ev.items() if k not in STANDARD_KEYS and isinstance(v, (int, float))]
            if terms:
                parts.append(" · ".join(terms[:4]))
        items = str(ev.get("items") or "tokens")
        rate = ev.get("items_per_s", ev.get("tokens_per_s"))
        if isinstance(rate, (int, float)):
            parts.append(f"{rate:,.0f} {items}/s" if rate >= 10 else f"{rate:.2f} {items}/s")
        if isinstance(ev.get("lr"), (int, float)):
            parts.append(f"lr {ev['lr']:.2e}")
        if step < total and isinstance(ev.get("eta_s"), (int, float)):
            parts.append(f"ETA {format_eta(ev['eta_s']) or '0s'}")
        self.status.setText(" · ".join(parts))

    def _trained(self, result: dict[str, Any], run_id: int) -> None:
        if run_id != self._run_id:
            return
        self._show_progress()
        self.curves.refresh()
        self.result = result
        self._state_cache = None
        self.progress.setValue(1000)
        healed = str(Path(result["out"]) / "model")
        seconds = result.get("seconds")
        took = f" in {seconds:.1f}s" if isinstance(seconds, (int, float)) else ""
        self.status.setText(f"<b>Done</b>: {int(result.get('step', 0)):,} steps{took} · {_validation_text(result)}"
                            f" · healed model in {healed}")
        self.notifier.info(f"Retraining done: {_validation_text(result, html=False)}; healed model in {healed}")
        self._run_method = str(result.get("method") or self.settings.method)
        self.update_buttons()
        self.evaluate(healed)

    def _train_cancelled(self, job: Job, run_id: int) -> None:
        if run_id != self._run_id:
            return
        self._state_cache = None
        self._show_progress()
        self.curves.refresh()
        step = next((e["step"] for e in reversed(self.events) if e.get("event") == "cancelled"), self.worker_step)
        self.status.setText(f"<b>Cancelled</b> at step {step:,}: Resume continues from the checkpoint.")
        self.update_buttons()

    def _train_failed(self, job: Job, run_id: int) -> None:
        if run_id != self._run_id:
            return
        self._state_cache = None
        self._status_timer.stop()
        self.status.setText(f"<span style='color:#b91c1c'>Failed: {job.error}</span>")
        self.update_buttons()

    # -- evaluation of the three models -------------------------------------------------------------
    def _eval_path(self) -> str | None:
        s, p = self.settings, self.doc.session.preview
        candidates = [self.eval_file.text().strip(), p.eval_file]
        if self.doc.model is not None:
            candidates.append(default_data(self.doc.model))
        candidates += list(s.data)
        if self.traits.images:  # the evaluator's data (e.g. the demo's folder) is optional
            return next((c for c in candidates[:2] if c and Path(c).exists()), "")
        return next((c for c in candidates if c and Path(c).is_file()), None)

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
        evaluator = self.traits.evaluator or "perplexity"
        if self.traits.images and self.traits.evaluator is None:
            self.notifier.info(f"The {self.traits.family} family has no evaluator: compare the healed model's images "
                               "on the Compare tab.")
            return None
        path = self._eval_path()
        if path is None:
            self.notifier.warning("Choose a text file to measure perplexity on (Evaluate on).")
            return None
        self.store_settings()
        models = {"original": original}
        if slimmed is not None and slimmed.source != healed_path:
            models["slimmed"] = slimmed
        p = self.doc.session.preview
        out = self.out.text().strip()
        method = getattr(self, "_run_method", None) or self.settings.method
        lcm = method == "lcm"

        def done(result, ms=(original, slimmed)) -> None:
            healed, values = result
            if self.doc.model is not ms[0]:
                return
            self.healed = self.doc.healed = healed  # the Export and Benchmark tabs use it without loading it again
            if lcm:
                self.doc.fewstep = healed  # the Compare tab runs it with its own few steps
            self.doc.set_results("retrain", {**values, "file": path, "healed_path": healed_path, "out": out,
                                             "evaluator": evaluator, "method": method})
            self.update_buttons()

        def failed(job: Job, m=original) -> None:  # the healed model is there all the same: keep it reachable
            if self.doc.model is m:
                self.doc.set_results("retrain", {"healed_path": healed_path, "out": out, "evaluator": evaluator,
                                                 "method": method, "error": job.error})
            self.results_box.setTitle(f"{_metric_title(evaluator)}: not measured ({job.error})")

        options = {} if self.traits.images else {"seq_len": p.eval_seq_len, "max_tokens": p.eval_max_tokens}
        where = f" on {Path(path).name}" if path else ""
        self.eval_job = self.runner.submit(
            f"Evaluate original, pruned and healed ({evaluator}){where}",
            partial(evaluate_healed_task, models, healed_path, path, registry=self.doc.registry, evaluator=evaluator,
                    **options),
            kind="evaluate", lane="model", on_done=done, on_failed=failed)
        self.results_box.setTitle(f"{_metric_title(evaluator)}: measuring the three models{where}…")
        self.update_buttons()
        return self.eval_job

    def show_results(self) -> None:
        r = self.doc.session.results.get("retrain") or {}
        key, fmt = _headline(r.get("original") or {})
        base = (r.get("original") or {}).get(key)
        for side, _ in SIDES:
            entry = r.get(side) or {}
            value = entry.get(key)
            self.ppl_values[side].setText(fmt(value) if isinstance(value, (int, float)) else "—")
            note = ""
            if isinstance(value, (int, float)) and isinstance(base, (int, float)) and side != "original" and base:
                note = f"{100 * (value - base) / base:+.1f}% vs original"
            elif side == "slimmed" and r and not entry:
                note = "no slimmed model"
            elif side == "original" and isinstance(entry.get("tokens"), int):
                note = f"{entry['tokens']:,} tokens"
            if isinstance(entry.get("fid"), (int, float)):
                note = f"FID {entry['fid']:.2f}" + (f" · {note}" if note else "")
            self.ppl_notes[side].setText(note)
        title = _metric_title(r.get("evaluator") or ("perplexity" if key == "perplexity" else self.traits.evaluator))
        if r.get("error"):
            self.results_box.setTitle(f"{title}: not measured ({r['error']})")
            self.results_box.setToolTip(f"healed model {r.get('healed_path', '')}")
        elif r.get("file") or (r and r.get("healed_path")):
            on = f" on {Path(r['file']).name}" if r.get("file") else ""
            self.results_box.setTitle(f"{title}{on}: original, pruned and healed")
            self.results_box.setToolTip(f"measured{on or ''}; healed model {r.get('healed_path', '')}")
        elif self.eval_job is None or self.eval_job.status.finished:
            title = _metric_title(self.traits.evaluator or "perplexity")
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
            cfg = self.config()
            job_dir, cmd = export_job(cfg, Path(folder))
        except SlimError as exc:
            self.notifier.error(f"Export job: {exc.one_line()}")
            return None
        self.settings.out = cfg.out
        self.notifier.info(f"Job written to {job_dir}. Run it with: {cmd}")
        return job_dir, cmd
