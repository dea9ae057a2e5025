"""The Plan panel: keep-set, a family's named presets (its declared pruning plans), selection by budget, the
live estimate, and Apply (build the slimmed model)."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.io import cache_dir
from slimgui.core.jobs import Job, apply_task
from slimgui.core.ops import preset_plan, save
from slimgui.core.selection import latency_table, predicted_latency_ms, select_by_latency, width_layers
from slimgui.core.session import human_bytes, human_count, preset_choices, select_by_budget, unit_title
from slimgui.gui.graph_layouts import layout_for

from .document import Document
from .notify import Notifier
from .workers import JobRunner

BUDGET_PARAMS = "% of parameters"
BUDGET_BLOCKS = "blocks"
BUDGET_MACS = "% of MACs"  # offered when the model's graph counts MACs
BUDGET_LATENCY = "ms latency"  # offered when the Roofline view profiled the open model (a per-unit latency table)
PROFILE_KEY = "profile"  # where the Roofline view keeps its profile in the session's results


def workspace_dir() -> Path:
    """Where Apply writes slimmed models (per user, under the cache; ``SLIMGUI_CACHE_DIR`` moves it)."""
    path = cache_dir() / "slimmed"
    path.mkdir(parents=True, exist_ok=True)
    return path


class PlanPanel(QWidget):
    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier = document, runner, notifier
        # keep-set
        self.keep = QLineEdit()
        self.keep.setPlaceholderText("e.g. first:4,last:2  (Taylor+), or block indices / ids")
        self.keep.setToolTip("Blocks that are never removed (drawn with a padlock)")
        self.keep.editingFinished.connect(self._keep_edited)
        # presets (a family's named plans)
        self.preset = QComboBox()
        self.preset.setToolTip("Select the units of a named pruning preset of this model family")
        self.preset.activated.connect(self._preset_activated)
        self.preset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self._preset_units: dict[str, set[str]] = {}  # each fitting preset's units, to name a selection
        self.preset_note = QLabel()
        self.preset_note.setObjectName("Hint")
        self.preset_note.setWordWrap(True)
        preset_row = QHBoxLayout()
        preset_row.addWidget(self.preset)
        preset_row.addWidget(self.preset_note, 1)
        # budget
        self.amount = QDoubleSpinBox()
        self.amount.setRange(0, 100)
        self.amount.setDecimals(1)
        self.amount.setValue(25)
        self.unit = QComboBox()
        self.unit.addItems([BUDGET_PARAMS, BUDGET_BLOCKS])
        self.unit.currentTextChanged.connect(self._unit_changed)
        self.by = QComboBox()
        self.by.setToolTip("Rank blocks by this criterion's scores (least important first)")
        self.select_button = QPushButton("Select")
        self.select_button.setToolTip("Select the least important blocks within the budget, honouring the keep-set")
        self.select_button.clicked.connect(lambda: self.select_budget())
        clear = QPushButton("Clear")
        clear.setToolTip("Deselect every block")
        clear.clicked.connect(lambda: self.doc.set_remove([]))
        budget = QHBoxLayout()
        budget.addWidget(QLabel("remove"))
        budget.addWidget(self.amount)
        budget.addWidget(self.unit)
        budget.addWidget(QLabel("least important by"))
        budget.addWidget(self.by, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.select_button)
        buttons.addWidget(clear)
        buttons.addStretch(1)
        # widths snapped to latency steps (families whose units cut a layer's width in declared slices)
        self.snap_direction = QComboBox()
        self.snap_direction.addItem("up — keep the channels that cost no time", "up")
        self.snap_direction.addItem("down — one latency step faster", "down")
        self.snap_direction.setToolTip("Within a latency step the extra channels cost nothing: 'up' keeps them, 'down' "
                                       "narrows the layer to the step below")
        self.snap_button = QPushButton("Snap widths to latency steps")
        self.snap_button.setToolTip("Time every layer the selection narrows at 16 widths on this machine (in the "
                                    "background) and move its width to the edge of its latency step")
        self.snap_button.clicked.connect(lambda: self.snap_widths())
        self.snap_note = QLabel()
        self.snap_note.setObjectName("Hint")
        self.snap_note.setWordWrap(True)
        snap_row = QHBoxLayout()
        snap_row.addWidget(self.snap_direction)
        snap_row.addWidget(self.snap_button)
        snap_row.addStretch(1)
        snap_box = QVBoxLayout()
        snap_box.addLayout(snap_row)
        snap_box.addWidget(self.snap_note)
        self.snap_job: Job | None = None
        self._width_cache: dict[str, dict] = {}  # layer -> its measured staircase, for the open model
        # estimate
        est = QGroupBox("Estimate")
        grid = QGridLayout(est)
        self.est_labels: dict[str, QLabel] = {}
        self.est_titles: dict[str, QLabel] = {}
        for row, (key, title) in enumerate((("blocks", "Blocks"), ("params", "Parameters"), ("macs", "MACs"),
                                            ("size", "Size on disk"), ("speedup", "Expected speedup"),
                                            ("latency", "Expected latency"))):
            self.est_titles[key] = QLabel(title)
            grid.addWidget(self.est_titles[key], row, 0)
            value = QLabel("—")
            value.setObjectName("Value")
            grid.addWidget(value, row, 1)
            self.est_labels[key] = value
        grid.setColumnStretch(1, 1)
        self.selected = QLabel()
        self.selected.setWordWrap(True)
        self.selected.setObjectName("Hint")
        grid.addWidget(self.selected, 6, 0, 1, 2)
        # apply
        self.apply_button = QPushButton("Apply — build the slimmed model")
        self.apply_button.setObjectName("Primary")
        self.apply_button.setToolTip("Remove the selected blocks for real: a smaller model that loads back "
                                     "with from_pretrained (runs in the background)")
        self.apply_button.clicked.connect(lambda: self.apply())
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the slimmed model into a folder of your choice")
        self.export_button.clicked.connect(self._export_clicked)
        self.slim_status = QLabel("No slimmed model yet.")
        self.slim_status.setWordWrap(True)
        self.form = form = QFormLayout()
        form.addRow("Keep-set", self.keep)
        form.addRow("Preset", preset_row)
        form.addRow("Budget", budget)
        form.addRow("", buttons)
        form.addRow("Widths", snap_box)  # row 4: shown for models whose units declare width slices
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(est)
        row = QHBoxLayout()
        row.addWidget(self.apply_button, 1)
        row.addWidget(self.export_button)
        lay.addLayout(row)
        lay.addWidget(self.slim_status)
        lay.addStretch(1)
        self.job: Job | None = None
        document.modelChanged.connect(self._model_changed)
        document.scoresChanged.connect(self._scores_changed)
        document.selectionChanged.connect(self.update_estimate)
        document.slimmedChanged.connect(self._slimmed_changed)
        document.resultsChanged.connect(self._results_changed)
        self._model_changed()

    # -- keep-set ------------------------------------------------------------------------------
    def _keep_edited(self) -> None:
        text = self.keep.text().strip() or None
        if text == self.doc.keep:
            return
        try:
            self.doc.set_keep(text)
            self.keep.setStyleSheet("")
        except SlimError as exc:
            self.keep.setStyleSheet("border: 1px solid #dc2626;")
            self.notifier.error(f"Keep-set: {exc.one_line()}")

    def set_keep(self, text: str) -> None:
        """Type a keep-set and confirm it (as pressing Enter does)."""
        self.keep.setText(text)
        self._keep_edited()

    # -- presets -------------------------------------------------------------------------------
    def _fill_presets(self) -> None:
        """The family's presets for this model; one that does not fit is listed disabled, with the reason."""
        self.preset.clear()
        m = self.doc.model
        choices: list[tuple[str, bool, str]] = []
        if m is not None and self.doc.graph is not None:
            try:
                choices = preset_choices(m, self.doc.registry)
            except SlimError as exc:
                self.notifier.warning(f"Presets: {exc.one_line()}")
        self.form.setRowVisible(1, bool(choices))
        self._preset_units = {}
        if not choices:
            return
        self.preset.addItem("choose a preset…", None)
        model = self.preset.model()
        for name, fits, note in choices:
            self.preset.addItem(name if fits else f"{name} (does not fit)", name)
            index = self.preset.count() - 1
            self.preset.setItemData(index, note, Qt.ItemDataRole.ToolTipRole)
            if not fits and isinstance(model, QStandardItemModel):
                model.item(index).setEnabled(False)
            if fits:
                self._preset_units[name] = set(preset_plan(m, name, registry=self.doc.registry).remove)
        self.preset_note.setText("")

    def preset_names(self, only_fitting: bool = False) -> list[str]:
        """The presets listed (enabled ones only with ``only_fitting``)."""
        model = self.preset.model()
        out = []
        for i in range(self.preset.count()):
            name = self.preset.itemData(i)
            if name and (not only_fitting or not isinstance(model, QStandardItemModel) or model.item(i).isEnabled()):
                out.append(name)
        return out

    def _preset_activated(self, index: int) -> None:
        name = self.preset.itemData(index)
        if name:
            self.choose_preset(name)

    def choose_preset(self, name: str) -> list[str]:
        """Select exactly the units the preset ``name`` removes; returns them ([] and a message when it cannot)."""
        m = self.doc.model
        if m is None:
            return []
        try:
            plan = preset_plan(m, name, registry=self.doc.registry)
            self.doc.set_remove(list(plan.remove))
        except SlimError as exc:
            self.notifier.warning(f"Preset {name}: {exc.one_line()}")
            return []
        active = self.doc.active
        clash = active.among_most_important(plan.remove) if active is not None else []
        if clash:  # a preset knows the architecture, not this model's scores: say when they disagree
            n = len(active.values)
            named = ", ".join(f"{unit_title(self.doc.graph, u)} (#{place} of {n})" for u, place in clash[:3])
            self.notifier.warning(f"Preset {name} removes what {active.criterion} ranks most important: {named}; "
                                  "Undo (Ctrl+Z) brings the selection back")
        return list(plan.remove)

    def _selection_is_preset(self) -> None:
        """Show a preset's name while the selection is exactly that preset's units, else "choose a preset…"."""
        if not self.preset.count():
            return
        chosen = set(self.doc.remove)
        match = next((name for name, units in self._preset_units.items() if units == chosen), None)
        index = self.preset.findData(match) if match else 0
        if index != self.preset.currentIndex():
            self.preset.setCurrentIndex(max(0, index))
        note = str(self.preset.itemData(index, Qt.ItemDataRole.ToolTipRole) or "") if match else ""
        self.preset_note.setText(note.split(":")[0])

    # -- budget --------------------------------------------------------------------------------
    def profile(self) -> dict | None:
        """The Roofline view's profile of the open model (its per-unit latency table), or None."""
        res = self.doc.session.results.get(PROFILE_KEY) if self.doc.model is not None else None
        if isinstance(res, dict) and res.get("model") == self.doc.model.source and res.get("runtime") == "torch":
            return res
        return None

    def _results_changed(self) -> None:
        self._fill_budget_units()
        self._unit_changed(self.unit.currentText())
        self.update_estimate()

    def _unit_changed(self, unit: str) -> None:
        if unit == BUDGET_LATENCY:
            prof = self.profile()
            self.amount.setDecimals(3)
            self.amount.setRange(0.001, 1e6)
            if prof is not None and not 0 < self.amount.value() < prof["total_ms"]:
                self.amount.setValue(round(0.8 * prof["total_ms"], 3))
            self.amount.setToolTip("Remove the least important blocks until the measured latency is at most this "
                                   "many milliseconds per pass (the Roofline view's per-unit latency table)")
            return
        self.amount.setToolTip("")
        if unit == BUDGET_BLOCKS:
            self.amount.setDecimals(0)
            self.amount.setRange(1, max(1, len(self.doc.graph.prunable()) - 1) if self.doc.graph else 1)
            self.amount.setValue(max(1, min(self.amount.value(), self.amount.maximum())))
        else:
            self.amount.setDecimals(1)
            self.amount.setRange(0.1, 99.9)

    def select_budget(self, amount: float | None = None, unit: str | None = None, criterion: str | None = None) -> list[str]:
        """Select the least important unlocked blocks within the budget; returns the selection."""
        if amount is not None or unit is not None:
            if unit is not None:
                self.unit.setCurrentText(unit)
            if amount is not None:
                self.amount.setValue(amount)
        if criterion is not None:
            self.by.setCurrentText(criterion)
        g = self.doc.graph
        name = self.by.currentText()
        scores = self.doc.scores.get(name)
        if g is None or scores is None:
            self.notifier.warning("Run an analysis first: the budget is spent on the least important blocks.")
            return []
        try:
            if self.unit.currentText() == BUDGET_BLOCKS:
                chosen = select_by_budget(g, scores, blocks=int(self.amount.value()), keep=self.doc.keep or "")
            elif self.unit.currentText() == BUDGET_LATENCY:
                prof = self.profile()
                if prof is None:
                    self.notifier.warning("Profile the model in the Roofline view first: a latency budget needs "
                                          "each block's measured time.")
                    return []
                chosen = select_by_latency(g, scores, latency_table(prof), prof["total_ms"], self.amount.value(),
                                           keep=self.doc.keep or "")
            elif self.unit.currentText() == BUDGET_MACS:
                chosen = select_by_budget(g, scores, macs_fraction=self.amount.value() / 100,
                                          keep=self.doc.keep or "")
            else:
                chosen = select_by_budget(g, scores, params_fraction=self.amount.value() / 100,
                                          keep=self.doc.keep or "")
            self.doc.set_remove(chosen)
        except SlimError as exc:
            self.notifier.warning(exc.one_line())
            return []
        return chosen

    # -- widths snapped to latency steps --------------------------------------------------------
    def snap_available(self) -> bool:
        """Whether the open model's units declare width slices (the Widths row is shown only then)."""
        g = self.doc.graph
        try:
            return g is not None and bool(width_layers(g))
        except SlimError:
            return False

    def snap_widths(self, direction: str | None = None) -> Job | None:
        """Snap the selection's narrowed layers to their latency steps (``direction`` "up" / "down", else the combobox's),
        timed in the background; the selection becomes the snapped one and the note says what moved."""
        from slimgui.core.profiling import snap_widths

        if direction is not None:
            self.snap_direction.setCurrentIndex(max(0, self.snap_direction.findData(direction)))
        direction = self.snap_direction.currentData()
        model, remove = self.doc.model, list(self.doc.remove)
        if model is None or not self.snap_available():
            self.notifier.warning("This model's units declare no width slices: there are no widths to snap.")
            return None
        if not remove:
            self.notifier.warning(f"Select {self._word(True)} first: snapping moves the widths a selection cuts.")
            return None
        cache, reg = self._width_cache, self.doc.registry

        def task(progress=None, cancel=None):
            return snap_widths(model, reg, remove, direction=direction, cache=cache, progress=progress, cancel=cancel)

        def done(result, m=model) -> None:
            if self.doc.model is not m:
                return
            rows = result["layers"]
            if not rows:
                self.snap_note.setText("The selection narrows no layer that is cut in width slices: nothing to snap.")
                return
            self.doc.set_remove(result["remove"])
            lines = [f"{r['layer']}: {r['before']} → <b>{r['after']}</b> of {r['width']}"
                     + ("" if r["moved"] else " (stays)") for r in rows]
            self.snap_note.setText(f"Snapped {direction} ({result['moved']} of {len(rows)} moved): " + "; ".join(lines))
            self.snap_note.setToolTip("step edges (widths where latency steps up), timed on this machine:\n"
                                      + "\n".join(f"{r['layer']}: {', '.join(map(str, r['edges']))}" for r in rows))
            self.notifier.info(f"Widths snapped {direction}: {result['moved']} of {len(rows)} layer(s) moved")

        self.snap_note.setText("Timing the narrowed layers at several widths…")
        self.snap_job = self.runner.submit(f"Snap widths {direction} to latency steps", task, kind="profile",
                                           lane="model", on_done=done)
        return self.snap_job

    # -- reacting to the document --------------------------------------------------------------
    def _model_changed(self) -> None:
        self._width_cache = {}
        self.snap_note.setText("")
        self.form.setRowVisible(4, self.snap_available())
        self._fill_presets()
        g = self.doc.graph
        words = self.doc.unit_word(True)
        examples = ", ".join(u.id for u in (g.prunable()[:2] if g is not None else []))
        self.keep.setPlaceholderText(f"e.g. first:4,last:2, or {self.doc.unit_word()} indices / ids"
                                     + (f" such as {examples}" if examples else ""))
        self.keep.setToolTip(f"{words.capitalize()} that are never removed (drawn with a padlock)")
        self.keep.setText(self.doc.keep or "")
        self.keep.setStyleSheet("")
        self._fill_budget_units()
        self._unit_changed(self.unit.currentText())
        self._scores_changed()
        self.update_estimate()
        self._slimmed_changed()

    def _fill_budget_units(self) -> None:
        """Blocks and % of parameters always; % of MACs when the model's graph counts MACs."""
        g = self.doc.graph
        wanted = [BUDGET_PARAMS, BUDGET_BLOCKS] + ([BUDGET_MACS] if g is not None and g.total_macs else []) + (
            [BUDGET_LATENCY] if g is not None and self.profile() is not None else [])
        current = self.unit.currentText()
        if [self.unit.itemText(i) for i in range(self.unit.count())] == wanted:
            return
        self.unit.blockSignals(True)
        self.unit.clear()
        self.unit.addItems(wanted)
        self.unit.setCurrentText(current if current in wanted else BUDGET_PARAMS)
        self.unit.blockSignals(False)

    def _scores_changed(self) -> None:
        names = list(self.doc.scores)
        current = self.by.currentText()
        self.by.blockSignals(True)
        self.by.clear()
        self.by.addItems(names)
        active = self.doc.active
        self.by.setCurrentText(current if current in names else (active.criterion if active else ""))
        if active is not None:
            self.by.setCurrentText(active.criterion)
        self.by.blockSignals(False)
        self.select_button.setEnabled(bool(names))

    def update_estimate(self) -> None:
        if self.keep.text().strip() != (self.doc.keep or ""):
            self.keep.setText(self.doc.keep or "")
        est = self.doc.estimate()
        g = self.doc.graph
        if est is None or g is None:
            for label in self.est_labels.values():
                label.setText("—")
            self.selected.setText("Open a model, then click blocks or select by budget.")
            self.apply_button.setEnabled(False)
            return
        kept = est.units_before - est.units_removed
        self.est_labels["blocks"].setText(f"{est.units_before} → <b>{kept}</b>  (removing {est.units_removed})")
        self.est_titles["blocks"].setText(self._word(True).capitalize())
        self.est_labels["params"].setText(
            f"{human_count(est.params_before)} → <b>{human_count(est.params_after)}</b>  "
            f"(−{100 * est.params_removed_fraction:.1f}%)")
        self.est_labels["size"].setText(
            f"{human_bytes(est.size_before)} → <b>{human_bytes(est.size_after)}</b>  "
            f"({est.bytes_per_param} bytes/param)")
        has_macs = est.macs_before is not None and est.macs_after is not None
        self.est_titles["macs"].setVisible(has_macs)
        self.est_labels["macs"].setVisible(has_macs)
        if has_macs:
            per = f" per {g.attrs.get('macs_per') or layout_for(g).macs_per}"
            self.est_labels["macs"].setText(
                f"{human_count(est.macs_before)} → <b>{human_count(est.macs_after)}</b>{per}  "
                f"(−{100 * (est.macs_removed_fraction or 0):.1f}%)")
        self.est_labels["speedup"].setText(f"<b>×{est.speedup:.2f}</b>  ({est.speedup_basis} ratio)")
        prof = self.profile()
        self.est_titles["latency"].setVisible(prof is not None)
        self.est_labels["latency"].setVisible(prof is not None)
        if prof is not None:
            after = predicted_latency_ms(g, latency_table(prof), prof["total_ms"], self.doc.remove)
            self.est_labels["latency"].setText(
                f"{prof['total_ms']:.3g} ms → <b>{after:.3g} ms</b>  (measured per unit, batch {prof['batch']}, "
                f"{prof['device']['name']})")
        for label in self.est_labels.values():
            label.setToolTip(f"{est.params_before:,} → {est.params_after:,} parameters")
        self.est_labels["latency"].setToolTip("the measured whole-pass time less each removed unit's measured time "
                                              "(a first-order estimate; the Benchmark tab measures the real one)")
        removing = self.doc.remove
        if removing:
            names = ", ".join(unit_title(g, u) for u in removing)
            self.selected.setText(f"Selected for removal: {names}")
        else:
            self.selected.setText(f"Nothing selected: click {self._word(True)} in the model view or select by budget.")
        self._selection_is_preset()
        self.apply_button.setEnabled(bool(removing) and self.doc.model is not None)
        self._slimmed_changed()

    def _slimmed_changed(self) -> None:
        slim, s = self.doc.slimmed, self.doc.session
        self.export_button.setEnabled(slim is not None and slim.has_weights)
        if slim is None:
            self.slim_status.setText(f"No slimmed model yet: select {self._word(True)} and Apply.")
            return
        where = f" — saved in {s.slimmed_path}" if s.slimmed_path else " (in memory: a config-only model cannot be saved)"
        stale = "" if self.doc.applied_matches_selection else (
            "  <span style='color:#b45309'>The selection changed since: Apply again to rebuild.</span>")
        n = len(self.doc.graph.prunable()) - len(s.slimmed_remove) if self.doc.graph else "?"
        self.slim_status.setText(f"<b>Slimmed model:</b> {n} {self._word(True)}{where}.{stale}")
        self.slim_status.setToolTip(s.slimmed_path or "")

    def _word(self, plural: bool = False) -> str:
        """What the prunable things are called (the family's ``AdapterSpec.unit_word``)."""
        return self.doc.unit_word(plural)

    # -- apply / export ------------------------------------------------------------------------
    def apply(self) -> Job | None:
        model = self.doc.model
        try:
            plan = self.doc.plan()
        except SlimError as exc:
            self.notifier.warning(exc.one_line())
            return None
        name = Path(model.source).name or "model"
        out = None
        if model.has_weights:
            out = str(workspace_dir() / f"{name}-minus{len(plan.remove)}-{time.strftime('%Y%m%d-%H%M%S')}")

        removed = list(plan.remove)

        def done(result, m=model) -> None:
            slim, where = result
            if self.doc.model is not m:
                self.notifier.info("a slimmed model of a model that is no longer open was discarded")
                return
            self.doc.set_slimmed(slim, where, removed)
            self.notifier.info(f"Slimmed model built: {len(removed)} {self._word(True)} removed" + (f", saved in {where}" if where else ""))

        self.job = self.runner.submit(f"Apply plan to {name} (remove {len(plan.remove)})",
                                      partial(apply_task, model, plan, registry=self.doc.registry, out_dir=out),
                                      kind="apply", lane="model", on_done=done)
        return self.job

    def _export_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the slimmed model into an empty folder")
        if folder:
            self.export(folder)

    def export(self, folder: str) -> Job | None:
        slim = self.doc.slimmed
        if slim is None:
            self.notifier.warning("Apply a plan first: there is no slimmed model to export.")
            return None

        def task(progress=None, cancel=None):
            return str(save(slim, folder, registry=self.doc.registry))

        return self.runner.submit(f"Export slimmed model to {folder}", task, kind="export", lane="model",
                                  on_done=lambda where: self.notifier.info(f"Slimmed model saved in {where}"))
