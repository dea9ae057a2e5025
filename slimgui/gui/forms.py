"""Forms built from options schemas (issue 12, "options are data").

Healing methods, previewers, evaluators, exporters and benchmark runners declare their options as typed
dataclass schemas (:mod:`slimgui.core.options`); the CLI turns them into flags and this module turns them
into widgets, the way napari builds widgets from signatures with magicgui, so a panel never lays out an
option by hand and a plugin's new option shows up in the GUI by itself.

:class:`OptionsForm` is built from one or several *parts*, ``(title or None, schema or None)``: e.g. the
options of each healing method, only the chosen one shown (:meth:`OptionsForm.set_part_visible`).  Each
part is a :class:`QFormLayout`, one row per field (label from ``Opt.label``, tool tip from ``Opt.help`` and
the range); ``Opt.gui=False`` fields get no row (their value is kept: the default, or what
:meth:`~OptionsForm.set_values` gave), ``Opt.advanced`` ones go under a collapsible "More".

The widget follows the field's kind: int → QSpinBox, float → QDoubleSpinBox (``Opt.log``: scientific,
stepping by ×2), bool → QCheckBox, choices → QComboBox (item data = the value), str → QLineEdit (with a
"…" browse button when ``Opt.path`` says it names a file or folder, calling :func:`choose_path`, which
tests replace), lists → comma-separated QLineEdit.  A None-able number is a spin box whose lowest value
is the special value shown as ``Opt.none_label``; a None-able choice gets that as its first item.

Values come back checked by :func:`slimgui.core.options.coerce`: :meth:`~OptionsForm.values` returns a
schema instance or raises one :class:`SlimError` naming the field's label, for the panel to show.
Fields are reached by name (:meth:`~OptionsForm.widget`, :meth:`~OptionsForm.row_visible`), never by row.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.errors import SlimError
from slimgui.core.options import OptionField, coerce, fields_of, to_dict

INT_MAX = 2**31 - 1  # a QSpinBox holds a 32-bit int
RECORD_SECONDS = 5.0  # one press of a record button records this long


def choose_save_path(parent: QWidget | None, caption: str, start: str, filter: str = "") -> str | None:
    """Ask where to save a file; None when cancelled.  Tests replace this."""
    path, _ = QFileDialog.getSaveFileName(parent, caption, start, filter)
    return path or None


def choose_path(parent: QWidget | None, kind: str, caption: str, start: str, filter: str = "") -> str | None:
    """Ask for a file (``kind`` "file" or "path") or a folder; None when cancelled.  Tests replace this."""
    if kind == "folder":
        path = QFileDialog.getExistingDirectory(parent, caption, start)
    else:
        path, _ = QFileDialog.getOpenFileName(parent, caption, start, filter)
    return path or None


def condition_holds(when: Any, value_of: Any) -> bool:
    """Whether a declared condition holds: ``when`` is ``((field, allowed values), ...)`` (or a mapping), and
    ``value_of(field)`` gives a field's current value.  An empty condition always holds."""
    pairs = when.items() if isinstance(when, Mapping) else (when or ())
    for name, allowed in pairs:
        allowed = allowed if isinstance(allowed, (list, tuple, set, frozenset)) else (allowed,)
        if value_of(name) not in allowed:
            return False
    return True


class SciSpinBox(QDoubleSpinBox):
    """A float spin box that shows and accepts ``1e-3`` style numbers and steps by ×2 (learning rates)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(12)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:  # noqa: N802
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        if self.specialValueText() and text == self.specialValueText():
            return self.minimum()
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        if self.specialValueText() and text == self.specialValueText():
            return QValidator.State.Acceptable, text, pos
        try:
            float(text)
            return QValidator.State.Acceptable, text, pos
        except ValueError:
            ok = all(c in "0123456789.eE+-" for c in text)
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        self.setValue(self.value() * (2.0 ** steps))


def _digits(value: float, most: int = 8) -> int:
    """Decimals needed to show ``value`` exactly (at most ``most``)."""
    for d in range(most + 1):
        if abs(round(value, d) - value) < 1e-12:
            return d
    return most


class _Editor:
    """One field's widget: ``main`` (the input), ``row`` (what the form row holds), get/set of the raw value."""

    def __init__(self, f: OptionField, form: OptionsForm):
        self.f = f
        self.max: float | None = None  # the declared maximum of a spin box (set_limit never goes above it)
        o = f.opt
        self.main: QWidget
        if o.choices and f.kind in ("int", "float", "str"):
            self.main = box = QComboBox()
            if f.optional:
                box.addItem(o.none_label or "none", None)
            for value, text in o.choice_labels():
                box.addItem(text, value)
            box.currentIndexChanged.connect(form._edited)
        elif f.kind == "bool":
            self.main = check = QCheckBox()
            check.setTristate(f.optional)
            check.stateChanged.connect(form._edited)
        elif f.kind in ("int", "float"):
            self.main = self._spin(form)
        else:  # str and lists
            self.main = line = QLineEdit()
            if f.kind.startswith("list["):
                line.setPlaceholderText(o.none_label or f.default_text())
            elif o.none_label:
                line.setPlaceholderText(o.none_label)
            line.textChanged.connect(form._edited)
        self.row: QWidget = self.main
        self.browse: QToolButton | None = None
        self.record: QToolButton | None = None
        if o.path and f.kind == "str":
            self.main.setProperty("pathDrop", True)  # a file dropped on it fills it in (see MainWindow)
            self.row = QWidget()
            lay = QHBoxLayout(self.row)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.addWidget(self.main, 1)
            self.browse = QToolButton()
            self.browse.setText("…")
            self.browse.setToolTip(f"choose a {'folder' if o.path == 'folder' else 'file'}")
            self.browse.clicked.connect(self._browse)
            lay.addWidget(self.browse)
            if o.record == "audio":  # a microphone recording instead of a file (where there is a microphone)
                from slimgui.core.recording import input_device

                self.record = QToolButton()
                self.record.setText("● Record")
                device, why = input_device()
                self.record.setEnabled(device is not None)
                self.record.setToolTip(f"record {RECORD_SECONDS:g} s from {device} into a WAV file" if device
                                       else f"{why} (give a recorded WAV file instead)")
                self.record.clicked.connect(self._record)
                lay.addWidget(self.record)
        self.set(f.form_default)

    def _spin(self, form: OptionsForm) -> QWidget:
        f, o = self.f, self.f.opt
        if f.kind == "int":
            spin: QSpinBox | QDoubleSpinBox = QSpinBox()
            lo = -INT_MAX if o.lo is None else max(-INT_MAX, math.ceil(o.lo) + (1 if o.lo_open else 0))
            hi = INT_MAX if o.hi is None else min(INT_MAX, math.floor(o.hi) - (1 if o.hi_open else 0))
            spin.setSingleStep(int(o.step or 1))
            low = lo - 1 if f.optional else lo
        else:
            if o.log:
                spin = SciSpinBox()
                lo = o.lo if o.lo is not None and o.lo > 0 else 1e-12
                hi = o.hi if o.hi is not None else 1e6
                low = lo / 2 if f.optional else lo
            else:
                spin = QDoubleSpinBox()
                span = (o.hi - o.lo) if o.lo is not None and o.hi is not None else math.inf
                step = o.step or (0.01 if span <= 1 else 0.1)
                default = f.default if isinstance(f.default, (int, float)) else 0.0
                decimals = o.decimals if o.decimals is not None else max(
                    1, math.ceil(-math.log10(step) - 1e-9), _digits(default, 6))
                spin.setDecimals(decimals)
                spin.setSingleStep(step)
                tiny = 10.0 ** -decimals
                lo = -float(INT_MAX) if o.lo is None else o.lo + (tiny if o.lo_open else 0.0)
                hi = float(INT_MAX) if o.hi is None else o.hi - (tiny if o.hi_open else 0.0)
                low = lo - step if f.optional else lo
        spin.setRange(low, hi)
        self.max = hi
        if f.optional:
            spin.setSpecialValueText(o.none_label or "none")
        spin.valueChanged.connect(form._edited)
        return spin

    def _record(self) -> None:
        """Record RECORD_SECONDS of speech into a new WAV file in the cache and put its path in the field."""
        import time

        from slimgui.core.io import cache_dir
        from slimgui.core.recording import record_wav

        line = self.main
        assert isinstance(line, QLineEdit)
        out = cache_dir() / "recordings" / f"recording-{time.strftime('%Y%m%d-%H%M%S')}.wav"
        self.record.setEnabled(False)
        self.record.setText("● Recording…")
        QApplication.processEvents()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            path = record_wav(out, RECORD_SECONDS)
        except SlimError as exc:
            self.record.setToolTip(exc.one_line())
            line.setToolTip(f"recording failed: {exc.one_line()}")
        else:
            line.setText(str(path))
        finally:
            self.record.setText("● Record")
            self.record.setEnabled(True)

    def _browse(self) -> None:
        line = self.main
        assert isinstance(line, QLineEdit)
        path = choose_path(line.window(), self.f.opt.path or "file", self.f.label, line.text(), self.f.opt.filter)
        if path:
            line.setText(path)

    def get(self) -> Any:
        w, f = self.main, self.f
        if isinstance(w, QComboBox):
            return w.currentData()
        if isinstance(w, QCheckBox):
            state = w.checkState()
            return None if state == Qt.CheckState.PartiallyChecked else state == Qt.CheckState.Checked
        if isinstance(w, (QSpinBox, QDoubleSpinBox)):
            return None if f.optional and w.value() == w.minimum() else w.value()
        assert isinstance(w, QLineEdit)
        text = w.text()
        if text.strip() == "" and (f.optional or f.kind.startswith("list[")):
            return None if f.optional else f.default
        return text

    def set(self, value: Any) -> None:
        w, f = self.main, self.f
        if isinstance(w, QComboBox):
            i = w.findData(value)
            if i >= 0:
                w.setCurrentIndex(i)
        elif isinstance(w, QCheckBox):
            w.setCheckState(Qt.CheckState.PartiallyChecked if value is None and f.optional
                            else Qt.CheckState.Checked if value else Qt.CheckState.Unchecked)
        elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
            if value is None:
                w.setValue(w.minimum())
                return
            if isinstance(w, QDoubleSpinBox) and not isinstance(w, SciSpinBox) and _digits(value) > w.decimals():
                w.setDecimals(_digits(value))
            w.setValue(value)
        else:
            assert isinstance(w, QLineEdit)
            if value is None:
                w.setText("")
            elif isinstance(value, (list, tuple)):
                w.setText(", ".join(str(x) for x in value))
            else:
                w.setText(str(value))

    def limit(self, hi: float | None) -> None:
        w = self.main
        if isinstance(w, (QSpinBox, QDoubleSpinBox)) and self.max is not None:
            top = self.max if hi is None else max(w.minimum(), min(hi, self.max))
            w.setMaximum(int(top) if isinstance(w, QSpinBox) else top)


@dataclasses.dataclass
class _Part:
    title: str | None
    schema: type | None
    box: QWidget
    editors: dict[str, _Editor]
    labels: dict[str, QLabel]
    forms: dict[str, QFormLayout]  # the form each field's row is in (the part's, or its "More")
    kept: dict[str, Any]  # values of fields without a row (Opt.gui False)
    more: QToolButton | None
    more_box: QWidget | None
    hidden_rows: set[str] = dataclasses.field(default_factory=set)


class OptionsForm(QWidget):
    """A form for one or several options schemas; see the module docstring."""

    changed = Signal()  # any value changed (by the user, or once per set_values that changed something)
    fieldChanged = Signal(str)  # noqa: N815 — the name of the field the user changed

    def __init__(self, parts: Iterable[tuple[str | None, type | None]] | type | None = (),
                 parent: QWidget | None = None):
        super().__init__(parent)
        if parts is None or isinstance(parts, type):
            parts = [(None, parts)]
        self._muted = True  # the editors' defaults are set while building: no signal for them
        self._limits: dict[str, float] = {}
        self._parts: list[_Part] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self._parts = [self._build(title, schema) for title, schema in parts]
        self._muted = False
        self._conditions()
        for part in self._parts:
            lay.addWidget(part.box)
        lay.addStretch(1)

    # -- building ------------------------------------------------------------------------------------
    def _build(self, title: str | None, schema: type | None) -> _Part:
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        shown = [f for f in fields_of(schema) if f.opt.gui]
        if title and shown:
            head = QLabel(title)
            font = head.font()
            font.setBold(True)
            head.setFont(font)
            lay.addWidget(head)
        form = QFormLayout()
        lay.addLayout(form)
        part = _Part(title, schema, box, {}, {}, {}, {f.name: f.default for f in fields_of(schema) if not f.opt.gui},
                     None, None)
        if any(f.opt.advanced for f in shown):
            part.more = QToolButton()
            part.more.setText("More")
            part.more.setCheckable(True)
            part.more.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            part.more.setArrowType(Qt.ArrowType.RightArrow)
            part.more.setAutoRaise(True)
            part.more_box = QWidget()
            part.more_box.setVisible(False)
            more_form = QFormLayout(part.more_box)
            more_form.setContentsMargins(0, 0, 0, 0)
            part.more.toggled.connect(lambda on, p=part: self._expand(p, on))
            lay.addWidget(part.more)
            lay.addWidget(part.more_box)
        for f in shown:
            editor = _Editor(f, self)
            label = QLabel(f.label)
            tip = f.opt.help or f.label
            if span := f.range_text():
                tip += f" ({span})"
            for w in (label, editor.main):
                w.setToolTip(tip)
            target = more_form if f.opt.advanced else form
            target.addRow(label, editor.row)
            part.editors[f.name], part.labels[f.name], part.forms[f.name] = editor, label, target
        if not shown:
            box.setVisible(False)
        return part

    def _expand(self, part: _Part, on: bool) -> None:
        assert part.more is not None and part.more_box is not None
        part.more.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        part.more_box.setVisible(on)

    def _conditions(self) -> None:
        """Enable each row whose field declares ``when`` (``((other_field, allowed values), ...)``) only while the
        other fields of its part hold one of the allowed values (e.g. a share that applies to one mode)."""
        for part in self._parts:
            def value_of(name: str, part: _Part = part) -> Any:
                editor = part.editors.get(name)
                return editor.get() if editor is not None else part.kept.get(name)

            for name, editor in part.editors.items():
                ok = condition_holds(editor.f.opt.when, value_of)
                editor.main.setEnabled(ok)
                part.labels[name].setEnabled(ok)
                if editor.browse is not None:
                    editor.browse.setEnabled(ok)

    def _edited(self, *_: Any) -> None:
        if self._muted:
            return
        self._conditions()
        sender = self.sender()
        for part in self._parts:
            for name, editor in part.editors.items():
                if editor.main is sender:
                    self.fieldChanged.emit(name)
        self.changed.emit()

    # -- finding -------------------------------------------------------------------------------------
    def _part(self, which: int | type) -> _Part:
        if isinstance(which, int):
            return self._parts[which]
        for part in self._parts:
            if part.schema is which:
                return part
        raise KeyError(f"no part for {which!r}")

    def _editors(self, name: str) -> list[tuple[_Part, _Editor]]:
        found = [(p, p.editors[name]) for p in self._parts if name in p.editors]
        if not found:
            raise KeyError(f"no field named {name!r} in this form")
        return sorted(found, key=lambda pe: not self._part_shown(pe[0]))  # shown parts first

    def _part_shown(self, part: _Part) -> bool:
        return bool(part.editors) and not part.box.isHidden()

    def widget(self, name: str, part: int | type | None = None) -> QWidget:
        """The input widget of field ``name`` (of ``part``, else of the first shown part that has it)."""
        return (self._part(part).editors[name] if part is not None else self._editors(name)[0][1]).main

    def label(self, name: str, part: int | type | None = None) -> QLabel:
        """The label of field ``name``'s row (of ``part``, else of the first shown part that has it)."""
        if part is not None:
            return self._part(part).labels[name]
        p, _ = self._editors(name)[0]
        return p.labels[name]

    def schema(self, part: int | type) -> type | None:
        """The options schema of a part (None for a part without one)."""
        return self._part(part).schema

    @property
    def part_count(self) -> int:
        return len(self._parts)

    def browse_button(self, name: str, part: int | type | None = None) -> QToolButton | None:
        editor = self._part(part).editors[name] if part is not None else self._editors(name)[0][1]
        return editor.browse

    def record_button(self, name: str, part: int | type | None = None) -> QToolButton | None:
        """The "● Record" button of a field declared ``record="audio"`` (None for other fields)."""
        editor = self._part(part).editors[name] if part is not None else self._editors(name)[0][1]
        return editor.record

    def more_button(self, part: int | type = 0) -> QToolButton | None:
        return self._part(part).more

    def row_visible(self, name: str) -> bool:
        """Whether some shown part shows the row of ``name`` (False for gui=False fields or a collapsed "More")."""
        for part in self._parts:
            if name in part.editors and self._part_shown(part) and name not in part.hidden_rows:
                if not part.editors[name].f.opt.advanced or (part.more is not None and part.more.isChecked()):
                    return True
        return False

    # -- showing -------------------------------------------------------------------------------------
    def set_part_visible(self, index: int | type, visible: bool) -> None:
        part = self._part(index)
        part.box.setVisible(visible and bool(part.editors))

    def set_row_visible(self, name: str, visible: bool) -> None:
        """Show or hide the row of ``name`` in every part (a field that does not apply to the model)."""
        for part, editor in self._editors(name):
            part.forms[name].setRowVisible(editor.row, visible)
            (part.hidden_rows.discard if visible else part.hidden_rows.add)(name)

    def set_more_expanded(self, expanded: bool) -> None:
        for part in self._parts:
            if part.more is not None:
                part.more.setChecked(expanded)

    def set_limit(self, name: str, hi: float | None) -> None:
        """Lower the maximum of ``name`` (e.g. a model's context length); None restores the declared one."""
        if hi is None:
            self._limits.pop(name, None)
        else:
            self._limits[name] = hi
        for _, editor in self._editors(name):
            editor.limit(hi)

    def set_context_limit(self, hi: float | None) -> None:
        """Lower the maximum of every field that is a length in the model's items (``Opt.context``) to the open
        model's context (``ModelAdapter.context_limit``); None restores the declared maxima."""
        names = {n for p in self._parts for n, e in p.editors.items() if e.f.opt.context}
        for name in names:
            self.set_limit(name, hi)

    # -- values --------------------------------------------------------------------------------------
    def _read(self, part: _Part) -> dict[str, Any]:
        out = dict(part.kept)
        for name, editor in part.editors.items():
            f = editor.f
            what = f"{part.title}: {f.label}" if part.title else f.label
            value = coerce(f, editor.get(), what=what)
            top = self._limits.get(name)
            for x in value if isinstance(value, list) else [value]:
                if top is not None and isinstance(x, (int, float)) and not isinstance(x, bool) and x > top:
                    raise SlimError(f"{what} must be at most {top:g} here, got {x:g}")
            out[name] = value
        return out

    def values(self, part: int | type = 0) -> Any:
        """The values of one part (by index or schema) as its schema's instance; None for a part without one.
        Raises SlimError naming the field's label when a value is bad."""
        p = self._part(part)
        return None if p.schema is None else p.schema(**self._read(p))

    def all_values(self, *, visible_only: bool = False) -> dict[str, Any]:
        """Every part's values by field name, flat (for a name in several parts, a shown part's value)."""
        out: dict[str, Any] = {}
        for p in sorted(self._parts, key=lambda p: not self._part_shown(p)):
            if visible_only and not self._part_shown(p):
                continue
            for name, value in self._read(p).items():
                out.setdefault(name, value)
        return out

    def set_values(self, values: Any, *, emit: bool = True) -> None:
        """Show ``values``: a schema instance (sets the parts of that schema, or every part when none is) or
        a ``{name: value}`` mapping (every part).  Unknown names are ignored.  ``changed`` is emitted once,
        if anything changed and ``emit``."""
        if values is None:
            return
        parts = self._parts
        if dataclasses.is_dataclass(values) and not isinstance(values, type):
            parts = [p for p in self._parts if p.schema is type(values)] or self._parts
            values = to_dict(values)
        assert isinstance(values, Mapping)
        before = [(p.kept.copy(), [e.get() for e in p.editors.values()]) for p in parts]
        self._muted = True
        try:
            for p in parts:
                for name, value in values.items():
                    if name in p.editors:
                        p.editors[name].set(value)
                    elif name in p.kept:
                        p.kept[name] = value
        finally:
            self._muted = False
        self._conditions()
        after = [(p.kept.copy(), [e.get() for e in p.editors.values()]) for p in parts]
        if emit and before != after:
            self.changed.emit()


def replace_form(layout: QFormLayout, old: OptionsForm, schema: type | None) -> OptionsForm:
    """A form of ``schema`` in place of ``old`` in its row of ``layout``; the row is hidden when there is no schema
    (a family that declares no such options)."""
    form = OptionsForm([(None, schema)])
    layout.replaceWidget(old, form)
    old.setParent(None)
    old.deleteLater()
    layout.setRowVisible(form, schema is not None)
    return form


def form_for(schema: type | None, values: Any = None, parent: QWidget | None = None) -> OptionsForm:
    """A form for one schema, showing ``values`` (an instance or a mapping) when given."""
    form = OptionsForm([(None, schema)], parent)
    form.set_values(values, emit=False)
    return form
