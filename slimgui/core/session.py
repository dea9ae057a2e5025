"""Sessions (``.slim`` files): everything the app restores when one is reopened.

A session is versioned JSON (``"kind": "session"``, ``schema_version``), never pickle: which model
is open (path and adapter), every criterion's scores, the keep-set and the units selected for
removal, where the slimmed model was written, the preview/evaluation settings and results that
were on screen, the retraining settings with the run folder (so a reopened session offers to
resume the run), the export and benchmark settings, and the export check reports (with the per-layer
sensitivity and the user's INT8/FP32 choices) and benchmark results.  Reopening a session restores all of it.

This module holds :class:`Session` and the settings dataclasses it keeps for each panel; the file's schema
check is :mod:`.session_check`.  The arithmetic behind the panels lives in its own modules, tested without a
screen, and is re-exported here for older imports: :mod:`.selection` (estimate, selection by budget),
:mod:`.colors` (colour scales), :mod:`.stats` (rank agreement), :mod:`.graph_values` (values on the graph,
unit correspondence), :mod:`.fmt` (human-readable numbers), :mod:`.choices` (what the registry offers a
family) and :mod:`.runs` (retraining run folders).

No Qt here (enforced by import-linter).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .choices import (  # noqa: F401
    criteria_for,
    default_criterion,
    default_data,
    default_eval_data,
    preset_choices,
    previewers_for,
)
from .colors import color_scale, normalized, score_matrix  # noqa: F401
from .errors import SlimError
from .fmt import human_bytes, human_count, json_preview  # noqa: F401
from .graph_values import aggregate_up, unit_correspondence  # noqa: F401
from .io import read_versioned_json, write_versioned_json
from .runs import new_run_dir, runs_dir  # noqa: F401
from .scores import Scores, _jsonable
from .selection import (  # noqa: F401
    Estimate,
    bytes_per_param,
    estimate,
    removal_closure,
    removed_params,
    select_by_budget,
    unit_title,
)
from .session_check import check_bench_doc, validate_session_doc  # noqa: F401
from .session_migrate import MIGRATIONS
from .settings import (  # noqa: F401
    AnalysisSettings,
    BenchSettings,
    ExportSettings,
    PreviewSettings,
    RetrainSettings,
    put,
    values_for,
)
from .stats import Agreement, agreement, kendall, spearman  # noqa: F401

SCHEMA_VERSION = 2
SUFFIX = ".slim"


# -- media <-> JSON: every media type (core.media), kept for older imports -----------------------------
from .media import media_from_json, media_to_json  # noqa: E402,F401


def _scores_to_json(scores: Scores) -> dict[str, Any]:
    return {
        "criterion": scores.criterion, "model": scores.model,
        "values": {k: (float(v) if math.isfinite(v) else None) for k, v in scores.values.items()},
        "locked": list(scores.locked), "keep": scores.keep, "meta": _jsonable(scores.meta),
    }


def _scores_from_json(doc: Mapping[str, Any]) -> Scores:
    values = {str(k): (math.inf if v is None else float(v)) for k, v in dict(doc["values"]).items()}
    return Scores(criterion=str(doc["criterion"]), values=values, model=str(doc.get("model", "")),
                  locked=[str(x) for x in doc.get("locked", [])], keep=doc.get("keep"), meta=dict(doc.get("meta") or {}))


# -- the session -------------------------------------------------------------------------------
@dataclass
class Session:
    """Everything the app restores when a ``.slim`` file is reopened."""

    model_path: str | None = None
    adapter: str | None = None
    scores: dict[str, Scores] = field(default_factory=dict)
    active_criterion: str | None = None
    keep: str | None = None
    remove: list[str] = field(default_factory=list)
    slimmed_path: str | None = None
    slimmed_remove: list[str] = field(default_factory=list)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    preview: PreviewSettings = field(default_factory=PreviewSettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    bench: BenchSettings = field(default_factory=BenchSettings)
    # what the compare panel showed: {"generation": {"original": media, "slimmed": media},
    #  "evaluation": {"original": {"evaluator": NAME, ..., "metrics": [...]}, "slimmed": {...}},
    #  "retrain": {...}, "export": {"runs": [record, ...], "layers": [...], "flips": {...}}, "bench": {...}}
    results: dict[str, Any] = field(default_factory=dict)
    view: dict[str, Any] = field(default_factory=dict)  # expanded units, open tab, ...

    # -- files --------------------------------------------------------------------------------
    def to_json(self, where: str | os.PathLike | None = None) -> dict[str, Any]:
        base = Path(where).resolve().parent if where is not None else None

        def place(path: str | None) -> dict[str, Any] | None:
            if not path:
                return None
            out: dict[str, Any] = {"path": path}
            p = Path(path)
            if base is not None and p.is_absolute():
                try:
                    out["relative"] = os.path.relpath(p, base)
                except ValueError:  # another drive on Windows
                    pass
            return out

        results = dict(self.results)
        gen = results.get("generation")
        if isinstance(gen, dict):
            results["generation"] = {k: (v if isinstance(v, dict) else media_to_json(v)) for k, v in gen.items()}
        return {
            "model": {**(place(self.model_path) or {"path": None}), "adapter": self.adapter},
            "scores": [_scores_to_json(s) for s in self.scores.values()],
            "active_criterion": self.active_criterion,
            "keep": self.keep,
            "remove": list(self.remove),
            "slimmed": ({**(place(self.slimmed_path) or {"path": None}), "remove": list(self.slimmed_remove)}
                        if (self.slimmed_path or self.slimmed_remove) else None),
            "analysis": asdict(self.analysis),
            "preview": asdict(self.preview),
            "retrain": {**asdict(self.retrain), "out": place(self.retrain.out)},
            "export": asdict(self.export),
            "bench": asdict(self.bench),
            "results": _jsonable(results),
            "view": _jsonable(self.view),
        }

    def save(self, path: str | os.PathLike) -> Path:
        return write_versioned_json(path, "session", SCHEMA_VERSION, self.to_json(path))

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str | os.PathLike | None = None) -> Session:
        base = Path(where).resolve().parent if where is not None else None

        def locate(entry: Any) -> str | None:
            if not isinstance(entry, Mapping) or not entry.get("path"):
                return None
            path = str(entry["path"])
            rel = entry.get("relative")
            if not Path(path).exists() and base is not None and rel and (base / rel).exists():
                return str((base / rel).resolve())  # the session moved together with its models
            return path

        model = doc.get("model") or {}
        slimmed = doc.get("slimmed") or None
        scores = [_scores_from_json(s) for s in doc.get("scores", [])]

        def settings(kind, raw):
            known = {f for f in kind.__dataclass_fields__}
            return kind(**{k: v for k, v in dict(raw or {}).items() if k in known})

        retrain = dict(doc.get("retrain") or {})
        retrain["out"] = locate(retrain.get("out"))
        retrain["data"] = [str(d) for d in (retrain.get("data") or [])]
        results = dict(doc.get("results") or {})
        gen = results.get("generation")
        if isinstance(gen, dict):
            results["generation"] = {k: media_from_json(v) for k, v in gen.items()}
        return cls(
            model_path=locate(model), adapter=model.get("adapter") if isinstance(model, Mapping) else None,
            scores={s.criterion: s for s in scores}, active_criterion=doc.get("active_criterion"),
            keep=doc.get("keep"), remove=[str(x) for x in doc.get("remove", [])],
            slimmed_path=locate(slimmed), slimmed_remove=[str(x) for x in (slimmed or {}).get("remove", [])],
            analysis=settings(AnalysisSettings, doc.get("analysis")),
            preview=settings(PreviewSettings, doc.get("preview")),
            retrain=settings(RetrainSettings, retrain),
            export=settings(ExportSettings, doc.get("export")),
            bench=settings(BenchSettings, doc.get("bench")),
            results=results, view=dict(doc.get("view") or {}),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Session:
        doc = read_versioned_json(path, "session", SCHEMA_VERSION, MIGRATIONS)
        validate_session_doc(doc, str(path))
        try:
            return cls.from_json(doc, path)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SlimError(f"{path} is not a valid session file: {type(exc).__name__}: {exc}",
                            hint="it may have been edited by hand; open the model instead") from None
