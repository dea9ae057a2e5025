"""The Export tab: write the original, slimmed or healed model in one of the formats its family declares.

The formats are the registry's exporters for the family (:class:`~slimgui.core.plugins.ExporterSpec`: a label,
an options schema shown as a generated form, whether it writes a file or a folder and its suffix), the core's
native folder among them.  The work is :func:`slimgui.core.jobs.export_task` on the runner's ``"model"`` lane.
The result is shown by what it holds: the metrics the exporter declares (each in a small box, formatted as
declared), its notes, and — when the exporter scanned each layer — the per-layer table of :mod:`.export_layers`
with its overlay on the model view.  Every export (its check report's path) is kept in the session.

An exporter may declare advice about its options on this machine (``ExporterSpec.advice``, a function run in the
background, and ``advice_when``, the option values it applies to — e.g. whether a lower precision is faster on
this CPU): it is shown under the form before anything is exported.
"""

from __future__ import annotations

import glob
import time
from functools import partial
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
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.io import cache_dir
from slimgui.core.jobs import Job, export_task, format_eta
from slimgui.core.model import LoadedModel
from slimgui.core.ops import graph_of
from slimgui.core.options import fields_of, to_dict
from slimgui.core.plugins import load_ref
from slimgui.core.session import ExportSettings, human_bytes, unit_correspondence
from slimgui.core.settings import owner_key, put, values_for
from slimgui.gui.widgets import StatBox, browse_row, thin_progress

from . import metric_view as mv
from .document import Document
from .export_layers import OVERLAY, ExportLayers
from .forms import OptionsForm, condition_holds
from .notify import Notifier
from .workers import JobRunner

__all__ = ["OVERLAY", "ExportPanel", "exports_dir"]

TARGETS = (("original", "Original model"), ("slimmed", "Slimmed model"), ("healed", "Healed model"))


def exports_dir() -> Path:
    """Where the tab proposes to write exports (per user, under the cache; ``SLIMGUI_CACHE_DIR`` moves it).
    Created by the first export that goes there."""
    return cache_dir() / "exports"


def _advise(ref: str, options: dict[str, Any], progress=None, cancel=None) -> str | None:
    """Run an exporter's declared advice (``"module:function"``, ``(options) -> str | None``)."""
    text = load_ref(ref)(options)
    return str(text) if text else None


def _recordable(key: str, value: Any) -> bool:
    """What of an exporter's result the session's run record keeps: its figures, names and lists of them, its
    declared metrics; not the nested detail (per-layer tables, maps), which stays in the check report."""
    if key == "metrics":
        return isinstance(value, list)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    return isinstance(value, list) and all(isinstance(x, (str, int, float, bool)) for x in value)


class ExportPanel(ExportLayers, QWidget):
    def __init__(self, document: Document, runner: JobRunner, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.runner, self.notifier = document, runner, notifier
        self.job: Job | None = None
        self.result: dict[str, Any] | None = None  # the record of the export shown
        self.exporters: list = []
        self._family_shown: str | None = "?"
        self._proposed_out: str | None = None
        self._confirmed_out: str | None = None  # chosen in the save dialog, which asked before replacing
        self._filling = False
        self._advice_cache: dict[str, str | None] = {}  # advice per exporter, measured once per app run
        self._advice_job: Job | None = None
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
        self.format.setToolTip("The formats this model's family can be exported in")
        self.format.currentIndexChanged.connect(self._settings_changed)
        self.form = OptionsForm()
        self.advice = QLabel()
        self.advice.setObjectName("Hint")
        self.advice.setWordWrap(True)
        self.advice.setToolTip("What these settings do on this machine, measured in the background")
        self.advice.hide()
        self.out = QLineEdit()
        self.out.setToolTip("Where the export goes (a file, or a folder, as the format writes)")
        out_row = browse_row(self.out, self._browse_out, "Choose where to write the export")
        target_row = QHBoxLayout()
        target_row.addWidget(self.target)
        target_row.addWidget(self.target_hint, 1)
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("Primary")
        self.export_button.setToolTip("Export in the background; a file that fails its check is not kept")
        self.export_button.clicked.connect(lambda: self.export())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        out_row.addSpacing(6)
        out_row.addWidget(self.export_button)
        out_row.addWidget(self.cancel_button)
        self.settings_form = QFormLayout()
        self.settings_form.addRow("Model", target_row)
        self.settings_form.addRow("Format", self.format)
        self.settings_form.addRow("", self.form)
        self.settings_form.addRow("", self.advice)
        self.settings_form.addRow("Write to", out_row)
        settings = QGroupBox("Settings")
        settings.setLayout(self.settings_form)
        self.progress = thin_progress()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # the check: the exporter's metrics
        self.stats: dict[str, StatBox] = {}
        self.stat_row = QHBoxLayout()
        self.check_label = QLabel("Nothing exported yet.")
        self.check_label.setWordWrap(True)
        self.check_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.check_box = QGroupBox("Check")
        cl = QVBoxLayout(self.check_box)
        cl.setSpacing(4)
        cl.addWidget(self.check_label)
        cl.addLayout(self.stat_row)
        lay = QVBoxLayout(self)
        lay.addWidget(settings)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.check_box)
        lay.addWidget(self._build_layers(), 1)
        lay.addStretch(0)

    def _family(self) -> str | None:
        return self.doc.model.family if self.doc.model is not None else None

    def _fill_formats(self) -> None:
        family = self._family()
        if family == self._family_shown:
            return
        self._family_shown = family
        try:
            self.exporters = list(self.doc.registry.exporter_specs(family)) if family else []
        except SlimError:
            self.exporters = []
        parts = []
        for spec in self.exporters:
            try:
                parts.append((None, self.doc.registry.options(spec)))
            except SlimError as exc:
                self.notifier.error(exc.one_line())
                parts.append((None, None))
        form = OptionsForm(parts)
        form.changed.connect(self._settings_changed)
        self.settings_form.replaceWidget(self.form, form)
        self.form.setParent(None)
        self.form.deleteLater()
        self.form = form
        self._filling = True
        try:
            self.format.clear()
            for spec in self.exporters:
                self.format.addItem(spec.label or spec.name, spec.name)
                self.format.setItemData(self.format.count() - 1, spec.description, Qt.ItemDataRole.ToolTipRole)
        finally:
            self._filling = False

    # -- settings --------------------------------------------------------------------------------
    @property
    def settings(self) -> ExportSettings:
        return self.doc.session.export

    def spec(self, fmt: str | None = None):
        fmt = fmt or self.format.currentData()
        return next((s for s in self.exporters if s.name == fmt), None)

    def _index(self, fmt: str | None = None) -> int:
        fmt = fmt or self.format.currentData()
        return next((i for i, s in enumerate(self.exporters) if s.name == fmt), -1)

    def _choice(self) -> tuple[str, str]:
        return self.target.currentData(), self.format.currentData()

    def store_settings(self) -> ExportSettings:
        s = self.settings
        s.target, fmt = self._choice()
        s.format = fmt or s.format
        for i, spec in enumerate(self.exporters):
            try:
                values = self.form.values(i)
            except SlimError:
                continue
            if values is not None:
                put(s.options, owner_key(self._family(), spec.name), values)
        s.out = self.out.text().strip() or None
        return s

    def apply_settings(self) -> None:
        """Show the session's export settings (after reopening)."""
        s = self.settings
        self._filling = True
        try:
            self.target.setCurrentIndex(max(0, self.target.findData(s.target)))
            self.format.setCurrentIndex(max(0, self.format.findData(s.format)))
            for spec in self.exporters:
                try:
                    schema = self.doc.registry.options(spec)
                except SlimError:
                    continue
                if schema is not None:
                    self.form.set_values(values_for(s.options, owner_key(self._family(), spec.name), schema,
                                                    where=f"{spec.name} "), emit=False)
            self.out.setText(s.out or "")
        finally:
            self._filling = False
        self._settings_changed()

    def _values(self) -> dict[str, Any]:
        i = self._index()
        return to_dict(self.form.values(i)) if i >= 0 else {}

    def _settings_changed(self, *_args) -> None:
        if self._filling:
            return
        target, fmt = self._choice()
        shown = self._index()
        for i in range(len(self.exporters)):
            self.form.set_part_visible(i, i == shown)
        self._show_advice()
        model = self._target_source(target)
        self.target_hint.setText(Path(model).name if model else "")
        self.target_hint.setToolTip(model or "")
        current = self.out.text().strip()
        spec = self.spec()
        if not current or current == self._proposed_out:
            self._propose_out()
        elif spec is not None:  # the user's path, in the shape the chosen format writes
            self.out.setText(self._with_suffix(current, spec))
        self.update_buttons()

    def _with_suffix(self, path: str, spec) -> str:
        for other in self.exporters:
            if other.suffix and path.lower().endswith(other.suffix.lower()) and other.suffix != spec.suffix:
                path = path[: -len(other.suffix)]
        if spec.suffix and not path.lower().endswith(spec.suffix.lower()):
            path += spec.suffix
        return path

    # -- advice ----------------------------------------------------------------------------------
    def advice_text(self) -> str | None:
        """The advice of the chosen exporter once measured (None while it is not)."""
        spec = self.spec()
        return self._advice_cache.get(spec.name) if spec is not None else None

    def _show_advice(self) -> None:
        """Show what the exporter declares about the chosen options on this machine (measured once, in the
        background), when its ``advice_when`` holds for them."""
        spec = self.spec()
        ref = spec.advice if spec is not None else None
        try:
            values = self._values()
        except SlimError:
            values = {}
        wanted = bool(ref) and condition_holds(spec.advice_when, values.get)
        self.advice.setVisible(wanted)
        if not wanted:
            return
        if spec.name in self._advice_cache:
            text = self._advice_cache[spec.name]
            self.advice.setText(text or "")
            self.advice.setVisible(bool(text))
            return
        self.advice.setText("Measuring these settings on this machine…")
        if self._advice_job is None or self._advice_job.status.finished:
            name = spec.name
            self._advice_job = self.runner.submit(
                f"Measure {spec.label or name} on this machine", partial(_advise, ref, values), kind="probe",
                lane="io", on_done=lambda text: self._advised(name, text), notify_failure=False)

    def _advised(self, name: str, text: str | None) -> None:
        self._advice_cache[name] = text
        self._show_advice()

    # -- where the export goes -------------------------------------------------------------------
    def _propose_out(self) -> None:
        target, fmt = self._choice()
        spec = self.spec()
        m = self.doc.model
        name = (Path(m.source).name or "model") if m is not None else "model"
        bits: list[str] = []
        i = self._index()
        try:
            values = self._values()
        except SlimError:
            values = {}
        schema = self.form.schema(i) if i >= 0 else None
        for f in fields_of(schema):  # the choices made: a mode, a switched-on flag
            value = values.get(f.name)
            if f.opt.choices and value is not None:
                bits.append(str(value))
            elif f.kind == "bool" and value and value != f.default:
                bits.append(f.flag.lstrip("-"))
        stem = f"{name}-{target}-" + ("-".join(bits) if bits else str(fmt or "export"))
        suffix = spec.suffix if spec is not None else ""
        root = exports_dir()
        path, n = root / f"{stem}{suffix}", 1
        while path.exists() or any(root.glob(f"{glob.escape(path.name)}.*")):  # e.g. a large file's weights beside it
            n += 1
            path = root / f"{stem}-{n}{suffix}"
        self._proposed_out = str(path)
        self.out.setText(self._proposed_out)

    def _browse_out(self) -> None:
        spec = self.spec()
        current = self.out.text().strip() or str(exports_dir())
        if spec is not None and spec.output == "file":
            flt = f"{spec.label or spec.name} (*{spec.suffix})" if spec.suffix else "All files (*)"
            path, _ = QFileDialog.getSaveFileName(self, f"Export to a {spec.label or spec.name} file", current, flt)
            if path:
                path = self._with_suffix(path, spec)
        else:
            path = QFileDialog.getExistingDirectory(self, "Export into an empty folder", str(Path(current).parent))
        if path:
            self.out.setText(path)
            self._confirmed_out = path if spec is not None and spec.output == "file" else None

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
        self._fill_formats()
        self.apply_settings()
        self._targets_changed()
        self.show_results()

    def update_buttons(self) -> None:
        busy = self.busy
        target = self.target.currentData()
        ok = self.doc.model is not None and self.target.model().item(self.target.currentIndex()).isEnabled()
        self.export_button.setEnabled(ok and not busy and target is not None and bool(self.exporters))
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

    def export(self, *, target: str | None = None, out: str | None = None, fmt: str | None = None,
               options: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> Job | None:
        """Export with the tab's settings (or the given ones: ``options`` of the exporter ``fmt`` by name;
        ``context``: what the exporter may reuse, e.g. an earlier scan of the same model)."""
        if self.busy or self.doc.model is None:
            return None
        s = self.store_settings()
        target, fmt = target or s.target, fmt or s.format
        spec = self.spec(fmt)
        if spec is None:
            self.notifier.warning(f"no export format '{fmt}' for this model")
            return None
        try:
            options = dict(options) if options is not None else self._values()
        except SlimError as exc:
            self.notifier.error(f"Export: {exc.one_line()}")
            return None
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
        self.status.setText(f"Exporting the {target} model to {out}…")
        self.progress.setValue(0)
        self.job = self.runner.submit(
            f"Export {target} model as {Path(out).name} ({spec.label or spec.name})",
            partial(export_task, model, out, registry=self.doc.registry, fmt=spec.name, options=options,
                    adapter=original.adapter, force=force, **(context or {})),
            kind="export", lane="model", on_done=lambda r: self._exported(r, target, original, spec.name, options),
            on_failed=self._failed, on_cancelled=self._cancelled)
        self.update_buttons()
        return self.job

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

    def _exported(self, outcome: tuple[dict[str, Any], LoadedModel], target: str, original: LoadedModel, fmt: str,
                  options: dict[str, Any]) -> None:
        result, model = outcome
        self.progress.setValue(1000)
        if self.doc.model is not original:
            self.status.setText(f"Exported to {result.get('file')} (a model that is no longer open).")
            return
        if target == "healed":
            self.doc.healed = model
        record = {k: v for k, v in result.items() if _recordable(k, v)}
        record.update({"format": result.get("format", fmt), "target": target, "options": options,
                       "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        res = dict(self._export_results())
        res["runs"] = [*res.get("runs", []), record]
        scanned = [x for x in result.get("layers") or [] if isinstance(x, dict) and "sensitivity" in x]
        if scanned:
            mapping = self._view_units(target, model)
            res["layers"] = [{**x, "view_unit": mapping.get(x.get("unit"))} for x in result["layers"]]
            res.update({"layers_file": result.get("file"), "layers_target": target, "layers_format": fmt,
                        "layers_options": options, "flips": {}})
        self.status.setText(f"<b>Done</b>: {result.get('file')}")
        self.doc.set_results("export", res)
        if scanned and OVERLAY in self.doc.overlays:
            self.doc.show_overlay(OVERLAY)
        spec = self.spec(fmt)
        found = mv.metrics_for(result, spec.metrics if spec is not None else ())
        figures = mv.summary(found, limit=3)
        size = f" ({human_bytes(result['bytes'])})" if isinstance(result.get("bytes"), (int, float)) else ""
        label = spec.label if spec is not None and spec.label else fmt
        self.notifier.info(f"Exported the {target} model ({label}) to {result.get('file')}{size}"
                           + (f"; {figures}" if figures else ""))
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

    def _set_stats(self, boxes: list[tuple[str, str, str, str]]) -> None:
        """Replace the value boxes: (key, title, value, tooltip) each."""
        for stat in self.stats.values():
            self.stat_row.removeWidget(stat)
            stat.deleteLater()
        self.stats = {}
        for key, title, text, tip in boxes:
            stat = StatBox(title, tip)
            stat.set(text)
            self.stat_row.addWidget(stat)
            self.stats[key] = stat

    def _show_check(self, r: dict[str, Any] | None) -> None:
        if r is None:
            self.check_label.setText("Nothing exported yet.")
            self._set_stats([])
            return
        fmt = str(r.get("format") or "")
        spec = self.spec(fmt)
        found = mv.metrics_for(r, spec.metrics if spec is not None else ())
        boxes = [("size", "file size" if (spec is None or spec.output == "file") else "folder size",
                  human_bytes(r["bytes"]) if isinstance(r.get("bytes"), (int, float)) else "—", str(r.get("file")))]
        boxes += [(m.name, m.title, mv.format_value(m, v), m.help) for m, v in found
                  if v is not None and m.unit != "bytes"]
        self._set_stats(boxes)
        name = Path(str(r.get("file"))).name
        when = f" · {r['time']}" if r.get("time") else ""
        what = (spec.label or spec.name) if spec is not None else fmt
        native = f" ({r['native']})" if isinstance(r.get("native"), str) and r["native"] else ""
        lines = [f"<b>{name}</b> — {what}{native} of the {r.get('target', '?')} model{when}"]
        notes = r.get("notes")
        lines += [str(n) for n in (notes if isinstance(notes, list) else [notes] if isinstance(notes, str) else [])]
        self.check_label.setText("<br>".join(lines))
        self.check_box.setToolTip(f"{r.get('file')}" + (f"\ncheck report: {r['report']}" if r.get("report") else ""))
