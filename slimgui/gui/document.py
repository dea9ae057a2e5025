"""The open document: the session (Qt-free, saved as ``.slim``) plus the live models, with signals.

Every panel is a view of one :class:`Document`; they change it only through its methods, and
redraw when it signals.  The document does no heavy work: models arrive from worker jobs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from slimgui.core.errors import SlimError
from slimgui.core.graph import UnitGraph
from slimgui.core.model import LoadedModel
from slimgui.core.ops import graph_of
from slimgui.core.plan import PruningPlan, parse_keep
from slimgui.core.plugins import AdapterSpec, Registry
from slimgui.core.scores import Scores
from slimgui.core.session import (
    BenchSettings,
    Estimate,
    ExportSettings,
    PreviewSettings,
    RetrainSettings,
    Session,
    bytes_per_param,
    estimate,
)


@dataclass
class Overlay:
    """Values keyed by unit id that colour the model view instead of a criterion's scores.

    A unit without a value of its own gets the ``aggregate`` (max, sum, mean) of its children's, so values
    given for children (e.g. a block's attention and MLP) colour the block too.  ``title`` heads the
    legend, ``words`` name the two ends of its colour bar, ``notes`` add a line to a unit's tooltip."""

    title: str
    values: dict[str, float]
    words: tuple[str, str] = ("low", "high")
    aggregate: str = "max"
    notes: dict[str, str] = field(default_factory=dict)


class Document(QObject):
    modelChanged = Signal()
    scoresChanged = Signal()
    selectionChanged = Signal()
    slimmedChanged = Signal()
    resultsChanged = Signal()
    overlaysChanged = Signal()
    historyChanged = Signal()  # what Undo / Redo would do changed

    def __init__(self, registry: Registry, parent: QObject | None = None):
        super().__init__(parent)
        self.registry = registry
        self.session = Session()
        self.model: LoadedModel | None = None
        self.graph: UnitGraph | None = None
        self.slimmed: LoadedModel | None = None
        self.healed: LoadedModel | None = None  # the retrained model, once some job has loaded it
        self.locked: list[str] = []
        self.bytes_per_param = 4
        self.overlays: dict[str, Overlay] = {}  # other values the model view can be coloured by
        self.active_overlay: str | None = None
        # plan edits that Undo / Redo walk through: (units selected for removal, keep-set) before each edit
        self._undo: list[tuple[list[str], str | None]] = []
        self._redo: list[tuple[list[str], str | None]] = []

    # -- the model -----------------------------------------------------------------------------
    @property
    def has_model(self) -> bool:
        return self.model is not None

    @property
    def spec(self) -> AdapterSpec | None:
        """The :class:`AdapterSpec` of the open model's family (what its work is counted in, its units' word,
        its data, its options); None without a model."""
        return self.registry.spec_of(self.model) if self.model is not None else None

    def context_limit(self) -> int | None:
        """The longest input the open model takes, in its items (``ModelAdapter.context_limit``), or None."""
        m = self.model
        if m is None:
            return None
        if "context_limit" not in m.extra:
            try:
                impl = m.impl if m.impl is not None else self.registry.adapter(m.adapter)
                got = impl.context_limit(m)
            except SlimError:
                got = None
            m.extra["context_limit"] = int(got[0]) if got else None
        return m.extra["context_limit"]

    def unit_word(self, plural: bool = False) -> str:
        """What the open model's prunable units are called (``AdapterSpec.unit_word``), e.g. "blocks"."""
        word = self.spec.unit_word if self.spec is not None else "unit"
        return word + ("s" if plural else "")

    def set_model(self, model: LoadedModel, path: str | None = None) -> None:
        """A newly opened model: scores, selection and the slimmed model of the previous one go."""
        old = self.session
        self.model = model
        self.graph = graph_of(model, self.registry)  # cached by the open job
        self.bytes_per_param = bytes_per_param(model)
        preview = PreviewSettings(**{**vars(old.preview)})
        retrain = RetrainSettings(**{**copy.deepcopy(vars(old.retrain)), "out": None})  # settings stay, the run is new
        export = ExportSettings(**{**vars(old.export), "out": None, "target": "original"})
        bench = BenchSettings(**copy.deepcopy(vars(old.bench)))
        bench.models = [m for m in bench.models if m in ("original", "slimmed", "healed", "width")]  # not its files
        self.session = Session(model_path=path or model.source, adapter=model.adapter, analysis=old.analysis,
                               preview=preview, retrain=retrain, export=export, bench=bench)
        self.locked = []
        self.slimmed = None
        self.healed = None
        self.overlays, self.active_overlay = {}, None
        self._undo, self._redo = [], []
        self.modelChanged.emit()
        self.historyChanged.emit()
        self.overlaysChanged.emit()
        self.scoresChanged.emit()
        self.selectionChanged.emit()
        self.slimmedChanged.emit()
        self.resultsChanged.emit()

    def close_model(self) -> None:
        """No model open: the screen goes back to its empty state (the session's settings stay)."""
        old = self.session
        self.model = self.graph = self.slimmed = self.healed = None
        self.session = Session(analysis=old.analysis, preview=old.preview, retrain=old.retrain)
        self.locked = []
        self.overlays, self.active_overlay = {}, None
        self._undo, self._redo = [], []
        self.modelChanged.emit()
        self.overlaysChanged.emit()
        self.scoresChanged.emit()
        self.selectionChanged.emit()
        self.slimmedChanged.emit()
        self.resultsChanged.emit()
        self.historyChanged.emit()

    def restore(self, session: Session) -> None:
        """Put a reopened session's scores, selection and results on screen (the model is open)."""
        if self.graph is None:
            raise SlimError("open the session's model first")
        known = {u.id for u in self.graph.prunable()}
        scores = {k: s for k, s in session.scores.items() if set(s.values) >= known}
        if len(scores) != len(session.scores):
            dropped = sorted(set(session.scores) - set(scores))
            raise SlimError(f"the session's scores ({', '.join(dropped)}) do not match {self.model.source}",
                            hint="the model changed since the session was saved; re-run the analysis")
        self.session.scores = dict(scores)
        self.session.active_criterion = session.active_criterion if session.active_criterion in scores else (
            next(iter(scores), None))
        self.session.analysis = session.analysis
        self.session.preview = session.preview
        self.session.retrain = session.retrain
        self.session.export = session.export
        self.session.bench = session.bench
        self.session.results = dict(session.results)
        self.session.view = dict(session.view)
        self.session.slimmed_path = session.slimmed_path
        self.session.slimmed_remove = list(session.slimmed_remove)
        self.scoresChanged.emit()
        self.set_keep(session.keep)
        self.set_remove([u for u in session.remove if u in known])
        self._undo, self._redo = [], []  # a reopened session starts its own history
        self.historyChanged.emit()
        self.resultsChanged.emit()

    # -- scores --------------------------------------------------------------------------------
    @property
    def scores(self) -> dict[str, Scores]:
        return self.session.scores

    @property
    def active(self) -> Scores | None:
        name = self.session.active_criterion
        return self.session.scores.get(name) if name else None

    def add_scores(self, scores: Scores) -> None:
        self.session.scores[scores.criterion] = scores
        self.session.active_criterion = scores.criterion
        self.show_overlay(None)  # the new scores are what the user wants to see
        self.scoresChanged.emit()

    def set_active(self, criterion: str | None) -> None:
        if criterion == self.session.active_criterion:
            return
        if criterion is not None and criterion not in self.session.scores:
            raise SlimError(f"no scores for '{criterion}' yet", hint="run the analysis first")
        self.session.active_criterion = criterion
        self.scoresChanged.emit()

    # -- keep-set and selection ----------------------------------------------------------------
    @property
    def remove(self) -> list[str]:
        return list(self.session.remove)

    @property
    def keep(self) -> str | None:
        return self.session.keep

    # -- undo / redo of plan edits ---------------------------------------------------------------
    def _state(self) -> tuple[list[str], str | None]:
        return list(self.session.remove), self.session.keep

    def _record(self, new: tuple[list[str], str | None]) -> None:
        """Remember the state before an edit that changes it (a new edit forgets what was undone)."""
        if new == self._state():
            return
        self._undo.append(self._state())
        del self._undo[:-200]  # a long session keeps its last 200 edits
        self._redo.clear()
        self.historyChanged.emit()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _put(self, state: tuple[list[str], str | None]) -> None:
        remove, keep = state
        self.session.keep = keep
        self.locked = parse_keep(keep, self.graph) if (keep and self.graph is not None) else []
        self.session.remove = list(remove)
        self.selectionChanged.emit()
        self.historyChanged.emit()

    def undo(self) -> bool:
        """Go back one plan edit (selection or keep-set); False when there is none."""
        if not self._undo:
            return False
        self._redo.append(self._state())
        self._put(self._undo.pop())
        return True

    def redo(self) -> bool:
        """Redo the plan edit undone last; False when there is none."""
        if not self._redo:
            return False
        self._undo.append(self._state())
        self._put(self._redo.pop())
        return True

    def set_keep(self, spec: str | None) -> None:
        """Lock units by a keep-set (``first:4,last:2``, indices, ids); raises SlimError when invalid."""
        spec = (spec or "").strip() or None
        locked = parse_keep(spec, self.graph) if (spec and self.graph is not None) else []
        self._record(([u for u in self.session.remove if u not in set(locked)], spec))
        self.session.keep = spec
        self.locked = locked
        self.session.remove = [u for u in self.session.remove if u not in set(locked)]
        self.selectionChanged.emit()

    def can_remove(self, unit_id: str) -> bool:
        if self.graph is None or unit_id not in self.graph:
            return False
        return self.graph.get(unit_id).prunable and unit_id not in self.locked

    def toggle(self, unit_id: str) -> bool:
        """Select or deselect one unit for removal; False (and no change) for locked or fixed units."""
        if not self.can_remove(unit_id):
            return False
        current = self.session.remove
        if unit_id in current:
            new = [u for u in current if u != unit_id]
        else:
            if len(current) + 1 >= len(self.graph.prunable()):
                raise SlimError("at least one block must stay")
            new = current + [unit_id]
        self.set_remove(new)
        return True

    def set_remove(self, ids: list[str]) -> None:
        if self.graph is None:
            return
        order = [u.id for u in self.graph.prunable()]
        wanted = set(ids)
        bad = [u for u in wanted if u not in order]
        if bad:
            raise SlimError(f"unit(s) {', '.join(sorted(bad))} cannot be removed")
        clash = sorted(wanted & set(self.locked), key=order.index)
        if clash:
            raise SlimError(f"unit(s) {', '.join(clash)} are locked by the keep-set", hint="change the keep-set first")
        new = [u for u in order if u in wanted]
        self._record((new, self.session.keep))
        self.session.remove = new
        self.selectionChanged.emit()

    def estimate(self) -> Estimate | None:
        if self.graph is None:
            return None
        return estimate(self.graph, self.session.remove, self.bytes_per_param)

    def plan(self) -> PruningPlan:
        if self.graph is None or self.model is None:
            raise SlimError("open a model first")
        active = self.active
        plan = PruningPlan(remove=self.remove, locked=list(self.locked), keep=self.keep,
                           criterion=active.criterion if active else None, model=self.model.source,
                           meta={"selected_in": "slimgui gui"})
        plan.validate(self.graph)
        return plan

    # -- the slimmed model ---------------------------------------------------------------------
    def set_slimmed(self, model: LoadedModel | None, path: str | None, remove: list[str]) -> None:
        self.slimmed = model
        self.session.slimmed_path = path
        self.session.slimmed_remove = list(remove) if model is not None else []
        results = self.session.results
        for key in ("generation", "evaluation"):  # results of another slimmed model are stale
            if isinstance(results.get(key), dict):
                results[key] = {k: v for k, v in results[key].items() if k != "slimmed"}
        self.slimmedChanged.emit()
        self.resultsChanged.emit()

    @property
    def applied_matches_selection(self) -> bool:
        return self.slimmed is not None and self.session.slimmed_remove == self.session.remove

    # -- compare results -----------------------------------------------------------------------
    def set_results(self, kind: str, values: dict) -> None:
        self.session.results[kind] = dict(values)
        self.resultsChanged.emit()

    def healed_path(self) -> str | None:
        """The healed model's folder from the last retraining run, when it is still there."""
        path = (self.session.results.get("retrain") or {}).get("healed_path")
        return path if path and Path(path).is_dir() else None

    @property
    def healed_role(self) -> str:
        """What the healed model is shown as: its method's ``MethodSpec.role`` (e.g. "few-step"), else "healed"."""
        return str((self.session.results.get("retrain") or {}).get("role") or "healed")

    # -- overlays: other values the model view is coloured by ------------------------------------
    def set_overlay(self, name: str, overlay: Overlay | None, show: bool = True) -> None:
        """Add (or replace, or with None remove) the overlay ``name``; ``show`` colours the view by it."""
        if overlay is None:
            self.overlays.pop(name, None)
            if self.active_overlay == name:
                self.active_overlay = None
        else:
            self.overlays[name] = overlay
            if show:
                self.active_overlay = name
        self.overlaysChanged.emit()

    def show_overlay(self, name: str | None) -> None:
        """Colour the view by the overlay ``name`` (None: by the active criterion again)."""
        if name is not None and name not in self.overlays:
            raise SlimError(f"nothing to colour by under '{name}'")
        if name != self.active_overlay:
            self.active_overlay = name
            self.overlaysChanged.emit()

    @property
    def overlay(self) -> Overlay | None:
        return self.overlays.get(self.active_overlay) if self.active_overlay else None
