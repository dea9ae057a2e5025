"""The Retrain panel's settings: the healing method, the training data, the run's generic numbers and a form of
the options the family's methods and its training data declare.

The methods come from the registry (:meth:`~slimgui.core.plugins.Registry.method_specs`: label, description,
default learning rate, whether it learns from the original, what the healed model is called); each method's
options schema is one part of an :class:`~slimgui.gui.forms.OptionsForm` (only the chosen method's part is
shown) and the family's ``train_options`` one more part, so no option is laid out by hand.  What is common to
every family (steps, batch, learning rate, warm-up, checkpoint and validation intervals) are plain widgets.
Values are kept in :class:`~slimgui.core.settings.RetrainSettings`: the generic ones as fields, a method's
options under its name and the family's training-data options under ``"data:" + family``, so switching methods
or reopening a session keeps them.

:class:`RetrainForm` is a mixin of :class:`~slimgui.gui.retrain_panel.RetrainPanel` (which owns ``doc``,
``notifier`` and the run state).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.io import cache_dir
from slimgui.core.plugins import AdapterSpec, MethodSpec
from slimgui.core.session import RetrainSettings, default_data, new_run_dir
from slimgui.core.settings import owner_key, put, values_for
from slimgui.core.train import TrainConfig, checkpoints
from slimgui.gui.widgets import browse_row

from .forms import OptionsForm, SciSpinBox

SPIN_WIDTH = 84
DEFAULT_LR = 1e-4  # without a method (no model open)


def _spin(lo: int, hi: int, value: int, tip: str, step: int = 1) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setSingleStep(step)
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


def data_owner(family: str) -> str:
    """Where the family's training-data options are kept in ``RetrainSettings.options``."""
    return f"data:{family}"


class RetrainForm:
    """The settings half of the Retrain panel (a mixin: see the module docstring)."""

    # -- building --------------------------------------------------------------------------------
    def _build_settings(self) -> QGroupBox:
        self.method = QComboBox()
        self.method.setToolTip("How to heal the slimmed model (choosing one sets its learning rate)")
        self.method.currentIndexChanged.connect(self._method_changed)
        self.method_hint = QLabel()
        self.method_hint.setWordWrap(True)
        self.method_hint.setObjectName("Hint")
        self.methods: list[MethodSpec] = []
        self._form_family: str | None = None
        # data
        self.data = QLineEdit()
        self.data.setToolTip(f"Training data: files or folders; several separated by '{os.pathsep}'")
        data_file = QToolButton()
        data_file.setText("File…")
        data_file.setToolTip("Choose a file of training data")
        data_file.clicked.connect(self._browse_data_file)
        data_dir = QToolButton()
        data_dir.setText("Folder…")
        data_dir.setToolTip("Choose a folder of training data")
        data_dir.clicked.connect(self._browse_data_dir)
        data_row = QHBoxLayout()
        data_row.addWidget(self.data, 1)
        data_row.addWidget(data_file)
        data_row.addWidget(data_dir)
        # what every family's retraining shares
        self.steps = _spin(1, 10_000_000, 100, "optimizer steps", 10)
        self.batch_size = _spin(1, 4096, 8, "samples per step")
        self.lr = SciSpinBox()
        self.lr.setRange(1e-7, 1.0)
        self.lr.setValue(DEFAULT_LR)
        self.lr.setMaximumWidth(SPIN_WIDTH)
        self.lr.setToolTip("peak learning rate (cosine schedule after the warm-up); a method sets its default")
        self.warmup = _spin(0, 1_000_000, 10, "warm-up steps (linear ramp of the learning rate)")
        self.save_every = _spin(1, 1_000_000, 50, "write a checkpoint every N steps (Resume continues from the last)")
        self.eval_every = _spin(1, 1_000_000, 50, "measure the validation loss every N steps")
        hyper = _labelled(("steps", self.steps), ("batch", self.batch_size), ("lr", self.lr))
        sched = _labelled(("warm-up", self.warmup), ("save every", self.save_every),
                          ("validate every", self.eval_every))
        # the options the family's methods and data declare (rebuilt for each family)
        self.form = OptionsForm()
        self.form_holder = QWidget()
        self._form_layout = QVBoxLayout(self.form_holder)
        self._form_layout.setContentsMargins(0, 0, 0, 0)
        self._form_layout.addWidget(self.form)
        self.teacher_label = QLabel()
        self.teacher_label.setObjectName("Hint")
        self.teacher_label.setWordWrap(True)
        # run folder
        self.out = QLineEdit()
        self.out.setToolTip("Run folder: checkpoints, the job's config and the healed model (OUT/model)")
        self.out.editingFinished.connect(self._out_edited)
        out_row = browse_row(self.out, self._browse_out, "Choose the run folder (an existing run there can be resumed)")
        method_row = QHBoxLayout()
        method_row.addWidget(self.method)
        method_row.addWidget(self.method_hint, 1)
        self.settings_form = QFormLayout()
        self.settings_form.addRow("Method", method_row)
        self.settings_form.addRow("Training data", data_row)
        self.settings_form.addRow("Training", hyper)
        self.settings_form.addRow("Schedule", sched)
        self.settings_form.addRow("Options", self.form_holder)
        self.settings_form.addRow("Teacher", self.teacher_label)
        self.settings_form.addRow("Run folder", out_row)
        box = QGroupBox("Settings")
        box.setLayout(self.settings_form)
        return box

    # -- the family's methods and options -----------------------------------------------------------
    def _family(self) -> tuple[str | None, AdapterSpec | None]:
        spec = self.doc.spec
        return (spec.family if spec is not None else None), spec

    def _rebuild_form(self) -> None:
        """The method chooser and the options form for the open model's family (kept when it is the same)."""
        family, spec = self._family()
        if family == self._form_family and self.form is not None and family is not None:
            return
        registry = self.doc.registry
        self.methods = list(registry.method_specs(family)) if family else []
        parts: list[tuple[str | None, type | None]] = []
        for m in self.methods:
            parts.append((m.label or m.name, self._schema(m, "options")))
        parts.append(("Data", self._schema(spec, "train_options") if spec is not None else None))
        form = OptionsForm(parts)
        self._form_layout.replaceWidget(self.form, form)
        self.form.setParent(None)
        self.form.deleteLater()
        self.form = form
        form.changed.connect(self._settings_changed)
        self._form_family = family
        current = self.method.currentData()
        self.method.blockSignals(True)
        self.method.clear()
        for m in self.methods:
            self.method.addItem(m.label or m.name, m.name)
            self.method.setItemData(self.method.count() - 1, m.description, Qt.ItemDataRole.ToolTipRole)
        self.method.setCurrentIndex(max(0, self.method.findData(current)))
        self.method.blockSignals(False)
        self.settings_form.setRowVisible(self.form_holder, True)

    def _settings_changed(self) -> None:
        """A setting changed: the panel's estimate follows it (the run panel defines how)."""
        refresh = getattr(self, "refresh_estimate", None)
        if refresh is not None:
            refresh()

    def _schema(self, spec: Any, attr: str) -> type | None:
        try:
            return self.doc.registry.options(spec, attr)
        except SlimError as exc:  # a broken plugin: its options cannot be shown, the rest still works
            self.notifier.error(exc.one_line())
            return None

    def method_spec(self, name: str | None = None) -> MethodSpec | None:
        name = name or self.method.currentData()
        return next((m for m in self.methods if m.name == name), None)

    def _method_index(self, name: str | None = None) -> int:
        name = name or self.method.currentData()
        return next((i for i, m in enumerate(self.methods) if m.name == name), -1)

    @property
    def _data_part(self) -> int:
        return len(self.methods)

    def _method_changed(self) -> None:
        spec = self.method_spec()
        self.lr.setValue(spec.default_lr if spec is not None else DEFAULT_LR)  # the method's own learning rate
        if self.out.text().strip() == self._proposed_out:
            self._propose_out()
        self._method_shown()

    def _method_shown(self) -> None:
        spec = self.method_spec()
        self.method_hint.setText(spec.description if spec is not None else "")
        shown = self._method_index()
        for i in range(len(self.methods)):
            self.form.set_part_visible(i, i == shown)
        m = self.doc.model
        teacher = spec is not None and spec.teacher == "original"
        self.settings_form.setRowVisible(self.teacher_label, teacher)
        self.teacher_label.setText(f"the original ({Path(m.source).name})" if m is not None and teacher else "")
        self.teacher_label.setToolTip(m.source if m is not None else "")
        fit = getattr(self, "fit_settings", None)  # the method's options change the settings' height
        if fit is not None and getattr(self, "_split_done", False):
            fit()

    # -- settings <-> session ----------------------------------------------------------------------
    @property
    def settings(self) -> RetrainSettings:
        return self.doc.session.retrain

    def store_settings(self) -> RetrainSettings:
        """The widgets' values into the session (the run folder is stored when a run uses it).  Options that do
        not pass their checks are not stored (the run refuses them with the check's message)."""
        s = self.settings
        s.method = self.method.currentData() or s.method
        s.data = [p.strip() for p in self.data.text().split(os.pathsep) if p.strip()]
        s.eval_file = self.eval_file.text().strip() or None
        s.steps, s.batch_size, s.lr = self.steps.value(), self.batch_size.value(), self.lr.value()
        s.warmup, s.save_every, s.eval_every = self.warmup.value(), self.save_every.value(), self.eval_every.value()
        family, _ = self._family()
        owners = [owner_key(family, m.name) for m in self.methods] + ([data_owner(family)] if family else [])
        for i, owner in enumerate(owners):
            try:
                values = self.form.values(i)
            except SlimError:
                continue
            if values is not None:
                put(s.options, owner, values)
        return s

    def _show_settings(self) -> None:
        s = self.settings
        if self.method.findData(s.method) < 0 and self.method.count():  # another family's method: this one's own
            fam = self.doc.spec
            default = fam.default_method if fam is not None and self.method.findData(fam.default_method) >= 0 else None
            s.method, s.lr = default or self.method.itemData(0), None
        self.method.blockSignals(True)
        self.method.setCurrentIndex(max(0, self.method.findData(s.method)))
        self.method.blockSignals(False)
        self._method_shown()
        self.data.setText(os.pathsep.join(s.data))
        self.eval_file.setText(s.eval_file or "")
        self.steps.setValue(s.steps)
        self.batch_size.setValue(s.batch_size)
        spec = self.method_spec()
        self.lr.setValue(s.lr if s.lr is not None else (spec.default_lr if spec is not None else DEFAULT_LR))
        self.warmup.setValue(s.warmup)
        self.save_every.setValue(s.save_every)
        self.eval_every.setValue(s.eval_every)
        family, fam = self._family()
        for m in self.methods:
            schema = self._schema(m, "options")
            if schema is not None:
                self.form.set_values(values_for(s.options, owner_key(family, m.name), schema, where=f"{m.name} "),
                                     emit=False)
        schema = self._schema(fam, "train_options") if fam is not None else None
        if schema is not None and family:
            self.form.set_values(values_for(s.options, data_owner(family), schema), emit=False)

    def _method_values(self) -> tuple[Any, Any]:
        """(the chosen method's options, the family's training-data options), checked; raises SlimError."""
        i = self._method_index()
        return (self.form.values(i) if i >= 0 else None), self.form.values(self._data_part)

    # -- browsing ----------------------------------------------------------------------------------
    def _browse_data_file(self) -> None:
        spec = self.doc.spec
        filter = spec.data.filter if spec is not None and spec.data.filter else "All files (*)"
        path, _ = QFileDialog.getOpenFileName(self, "Training data", self.data.text() or str(Path.home()), filter)
        if path:
            self.data.setText(path)

    def _browse_data_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Training data folder")
        if path:
            self.data.setText(path)

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

    def _propose_out(self) -> None:
        m = self.doc.model
        name = (Path(m.source).name or "model") if m is not None else "model"
        if self.doc.slimmed is not None:
            name += "-slim"
        self._proposed_out = str(new_run_dir(name, self.method.currentData() or "run"))
        self.out.setText(self._proposed_out)
        self._state_cache = None

    def _data_placeholder(self) -> None:
        m, spec = self.doc.model, self.doc.spec
        fallback = default_data(m, self.doc.registry) if m is not None else None
        if fallback:
            self.data.setPlaceholderText(f"default: {Path(fallback).name} (the model's own data)")
        elif spec is not None:
            self.data.setPlaceholderText(f"files or folders of training data for {spec.family} models")
        else:
            self.data.setPlaceholderText("")

    # -- the job -----------------------------------------------------------------------------------
    def _data(self) -> list[str]:
        s = self.settings
        if s.data:
            return list(s.data)
        fallback = default_data(self.doc.model, self.doc.registry) if self.doc.model is not None else None
        if fallback:
            return [fallback]
        spec = self.doc.spec
        if spec is not None and spec.data.required is False:
            return []  # the family trains on data it brings (DataSpec.required False)
        raise SlimError("choose the training data", hint=(spec.data.help if spec is not None else "") or None)

    def config(self, out: str | None = None) -> TrainConfig:
        """The job the settings on screen describe (raises SlimError when something is missing or wrong)."""
        s = self.store_settings()
        student, _ = self._student()
        spec = self.method_spec()
        if spec is None:
            raise SlimError("this model family declares no retraining method")
        method_values, data_values = self._method_values()
        out = out or self.out.text().strip() or self._proposed_out or str(new_run_dir("model", spec.name))
        return s.to_config(model=student, teacher=self.doc.model.source if spec.teacher == "original" else None,
                           data=self._data(), out=out, method=spec.name, method_values=method_values,
                           data_values=data_values, adapter=self.doc.model.adapter)
