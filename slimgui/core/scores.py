"""Importance scores keyed by unit id (higher = more important), saved as versioned JSON.

A score that is not a finite number (NaN or ±inf: a model with NaN weights, a block whose removal makes the
loss overflow) is kept as such in memory and written as ``null`` in JSON (which has no NaN); such units are
listed by :meth:`Scores.non_finite` and rank as most important (they are never picked for removal first).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import SlimError
from .io import read_versioned_json, write_versioned_json

SCHEMA_VERSION = 1


def _rank_key(v: float) -> tuple[int, float]:
    return (1, 0.0) if math.isnan(v) else (0, v)


@dataclass
class Scores:
    criterion: str
    values: dict[str, float]
    model: str = ""
    locked: list[str] = field(default_factory=list)
    keep: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def ranking(self) -> list[str]:
        """Unit ids from least to most important (ties broken by id order in ``values``; NaN ranks last)."""
        order = {uid: i for i, uid in enumerate(self.values)}
        return sorted(order, key=lambda uid: (_rank_key(float(self.values[uid])), order[uid]))

    def versus_baseline(self, uid: str) -> str | None:
        """A unit's score as a change against the full model, when the criterion recorded what the full model
        scores (``meta["baseline"]`` and ``meta["baseline_label"]``, from its ``last_info``): a perplexity after
        removing a block reads "+3.7 % perplexity vs the full model's 53.5"."""
        base, label = self.meta.get("baseline"), str(self.meta.get("baseline_label") or "")
        v = self.values.get(uid)
        if not isinstance(base, (int, float)) or not math.isfinite(base) or base == 0 or v is None:
            return None
        if not math.isfinite(v):
            return f"{label or 'score'} not finite without it (the full model's: {base:.4g})"
        return f"{100 * (v - base) / abs(base):+.1f} % {label} vs the full model's {base:.4g}".replace("  ", " ")

    def among_most_important(self, units, share: float = 0.1) -> list[tuple[str, int]]:
        """Which of ``units`` this criterion ranks among its most important (the top ``share`` of the scored units,
        at least the first): ``[(unit, place)]``, place 1 = the most important, most important first."""
        order = [u for u in reversed(self.ranking()) if not math.isnan(float(self.values[u]))]  # NaN says nothing
        top = max(1, math.ceil(share * len(order)))
        chosen = set(units)
        return [(u, i + 1) for i, u in enumerate(order[:top]) if u in chosen]

    def non_finite(self) -> list[str]:
        """Units whose score is NaN or infinite, in ``values`` order."""
        return [uid for uid, v in self.values.items() if not math.isfinite(v)]

    def save(self, path: str | os.PathLike) -> None:
        values = {k: (None if not math.isfinite(v) else float(v)) for k, v in self.values.items()}
        write_versioned_json(path, "scores", SCHEMA_VERSION, {
            "criterion": self.criterion, "model": self.model, "values": values,
            "ranking": self.ranking(), "locked": self.locked, "keep": self.keep, "meta": _jsonable(self.meta),
        })

    @classmethod
    def load(cls, path: str | os.PathLike) -> Scores:
        doc = read_versioned_json(path, "scores", SCHEMA_VERSION)
        return scores_from_doc(doc, f"{path}")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def scores_from_doc(doc: Any, where: str, field_prefix: str = "", kind: str = "scores") -> Scores:
    """Scores from their JSON form, every field checked: one :class:`SlimError` naming the bad field and ``where``."""
    def bad(name: str, what: str) -> SlimError:
        hint = "write it again with `slimgui analyze --out`" if kind == "scores" else \
            "it may have been edited by hand; open the model instead"
        return SlimError(f"{where} is not a valid {kind} file: {field_prefix}{name} {what}", hint=hint)

    if not isinstance(doc, dict):
        raise bad("", "must be a JSON object") if not field_prefix else bad("", f"must be an object, got {doc!r:.40}")
    crit = doc.get("criterion")
    if not isinstance(crit, str) or not crit:
        raise bad("criterion", "must be a criterion name")
    raw = doc.get("values")
    if not isinstance(raw, dict):
        raise bad("values", "must be an object of unit id → number")
    values: dict[str, float] = {}
    for k, v in raw.items():
        if v is None:
            values[str(k)] = math.inf  # JSON has no infinity: a non-finite score was written as null
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad(f"values.{k}", f"must be a number or null, got {v!r:.40}")
        else:
            values[str(k)] = float(v)
    locked = doc.get("locked", [])
    if locked is None:
        locked = []
    if not isinstance(locked, list) or not all(isinstance(x, str) for x in locked):
        raise bad("locked", "must be a list of unit ids")
    keep = doc.get("keep")
    if keep is not None and not isinstance(keep, str):
        raise bad("keep", f"must be a keep-set such as first:4,last:2 or null, got {keep!r:.40}")
    model = doc.get("model", "")
    if model is not None and not isinstance(model, str):
        raise bad("model", "must be a path")
    meta = doc.get("meta") or {}
    if not isinstance(meta, dict):
        raise bad("meta", "must be an object")
    return Scores(criterion=crit, values=values, model=model or "", locked=list(locked), keep=keep, meta=dict(meta))


def scores_csv(scores: dict[str, Scores], unit_ids: list[str]) -> str:
    """The raw scores of every criterion as CSV: one row per unit (in ``unit_ids`` order), one column per
    criterion, and each criterion's rank (1 = least important); an empty cell where a criterion has no score,
    "nan"/"inf" where the score is not finite."""
    import csv
    import io

    names = list(scores)
    ranks = {n: {u: i + 1 for i, u in enumerate(s.ranking())} for n, s in scores.items()}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["unit", *names, *[f"{n} rank" for n in names]])
    for u in unit_ids:
        w.writerow([u, *[repr(float(scores[n].values[u])) if u in scores[n].values else "" for n in names],
                    *[ranks[n].get(u, "") for n in names]])
    return buf.getvalue()
