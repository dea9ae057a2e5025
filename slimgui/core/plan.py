"""Pruning plans: which units to remove, the keep-set that locks units, and the selection by budget."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import SlimError
from .graph import UnitGraph
from .io import read_versioned_json, write_versioned_json
from .scores import Scores

SCHEMA_VERSION = 1


def parse_keep(spec: str | None, graph: UnitGraph) -> list[str]:
    """Unit ids locked by a keep-set such as ``first:4,last:2`` (Taylor+ of Shortened LLaMA) or ids/indices.

    Items are comma-separated: ``first:N``, ``last:N``, a 0-based index, or a unit id.
    """
    if not spec:
        return []
    units = graph.prunable()
    locked: list[str] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        head, _, count = item.partition(":")
        if head in ("first", "last") and count:
            try:
                n = int(count)
            except ValueError:
                raise SlimError(f"bad keep-set item '{item}'", hint="use first:N, last:N, an index or a unit id") from None
            if n < 0:
                raise SlimError(f"bad keep-set item '{item}': N must be ≥ 0")
            chosen = units[:n] if head == "first" else (units[-n:] if n else [])
        else:
            chosen = [graph.resolve(item)]
        locked.extend(u.id for u in chosen if u.id not in locked)
    return locked


@dataclass
class PruningPlan:
    """Units to remove, with how they were chosen; ``locked`` units are never removed."""

    remove: list[str]
    locked: list[str] = field(default_factory=list)
    keep: str | None = None
    criterion: str | None = None
    ratio: float | None = None
    model: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self, graph: UnitGraph) -> None:
        units = graph.prunable()
        ids = [u.id for u in units]
        for uid in self.remove:
            graph.resolve(uid)
        if len(set(self.remove)) != len(self.remove):
            raise SlimError("the plan removes the same unit twice")
        clash = sorted(set(self.remove) & set(self.locked), key=ids.index)
        if clash:
            raise SlimError(f"the plan removes locked unit(s) {', '.join(clash)}", hint="change the keep-set or the selection")
        if not self.remove:
            raise SlimError("the plan removes nothing", hint="pick units with --remove or a --ratio above 0")
        if len(self.remove) >= len(units) and not graph.attrs.get("keeps_unprunable_units"):
            raise SlimError(f"the plan removes all {len(units)} prunable units; at least one must stay")

    def kept(self, graph: UnitGraph) -> list[str]:
        gone = set(self.remove)
        return [u.id for u in graph.prunable() if u.id not in gone]

    def params_after(self, graph: UnitGraph) -> int:
        return graph.total_params - graph.removed_params(self.remove)

    def save(self, path: str | os.PathLike) -> None:
        write_versioned_json(path, "plan", SCHEMA_VERSION, {
            "model": self.model, "remove": self.remove, "locked": self.locked, "keep": self.keep,
            "criterion": self.criterion, "ratio": self.ratio, "meta": self.meta,
        })

    @classmethod
    def load(cls, path: str | os.PathLike) -> PruningPlan:
        doc = read_versioned_json(path, "plan", SCHEMA_VERSION)

        def bad(name: str, what: str) -> SlimError:
            return SlimError(f"{path} is not a valid plan file: {name} {what}")

        for name in ("remove", "locked"):
            v = doc.get(name, [] if name == "locked" else None)
            if not isinstance(v, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
                raise bad(name, "must be a list of unit ids")
        for name in ("keep", "criterion", "model"):
            if doc.get(name) is not None and not isinstance(doc[name], str):
                raise bad(name, f"must be text or null, got {doc[name]!r:.40}")
        ratio = doc.get("ratio")
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))):
            raise bad("ratio", f"must be a number or null, got {ratio!r:.40}")
        meta = doc.get("meta") or {}
        if not isinstance(meta, dict):
            raise bad("meta", "must be an object")
        return cls(remove=[str(x) for x in doc["remove"]], locked=[str(x) for x in doc.get("locked") or []],
                   keep=doc.get("keep"), criterion=doc.get("criterion"), ratio=ratio,
                   model=str(doc.get("model") or ""), meta=dict(meta))


RATIO_RULE = "floor"
"""How ``--ratio`` becomes a number of units: ⌊ratio × N⌋ of the N prunable units, never more than the ratio
(0.25 of 30 blocks removes 7, 23.3 %; 0.25 of 18 removes 4, 22.2 %); a ratio below one unit is refused."""

_RATIO_EPS = 1e-9  # 0.29 × 100 is 28.999999999999996 in floating point: still 29 units


def count_for_ratio(graph: UnitGraph, ratio: float) -> int:
    """The number of units ``ratio`` removes (:data:`RATIO_RULE`: ⌊ratio × N⌋, never above the ratio)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or not 0 < ratio < 1:
        raise SlimError(f"--ratio must be between 0 and 1 (exclusive), got {ratio}")
    n = len(graph.prunable())
    count = math.floor(ratio * n + _RATIO_EPS)
    if count < 1:
        raise SlimError(f"--ratio {ratio:g} of {n} prunable units removes none (the ratio is rounded down, "
                        "never above it)", hint=f"use --count 1, or a ratio of at least {1 / max(n, 1):.3g}")
    return count


def ratio_meta(graph: UnitGraph, count: int, ratio: float | None) -> dict[str, Any]:
    """What a plan records about its ratio: the rule and the ratio it really removes (count / N)."""
    n = len(graph.prunable())
    out: dict[str, Any] = {"effective_ratio": count / n if n else None, "units": n}
    if ratio is not None:
        out["ratio_rule"] = RATIO_RULE
    return out


def plan_from_scores(graph: UnitGraph, scores: Scores, *, count: int | None = None, ratio: float | None = None,
                     keep: str | None = None) -> PruningPlan:
    """Remove the ``count`` (or ``ratio`` of the prunable units, :data:`RATIO_RULE`) least important units not
    locked by ``keep``; ``plan.meta["effective_ratio"]`` is the share really removed."""
    if count is None:
        if ratio is None:
            raise SlimError("give a number of units or a ratio to remove")
        count = count_for_ratio(graph, ratio)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise SlimError(f"the number of units to remove must be at least 1, got {count}")
    locked = parse_keep(keep, graph) if keep is not None else list(scores.locked)
    prunable = {u.id for u in graph.prunable()}
    missing = prunable - set(scores.values)
    if missing:
        raise SlimError(f"the scores do not cover unit(s) {', '.join(sorted(missing))}",
                        hint="re-run the analysis on this model")
    candidates = [uid for uid in scores.ranking() if uid in prunable and uid not in locked]
    if count > len(candidates):
        raise SlimError(f"cannot remove {count} units: only {len(candidates)} are not locked by the keep-set")
    unknown = [uid for uid in candidates[:count] if math.isnan(scores.values[uid])]
    if unknown:
        raise SlimError(f"cannot rank {', '.join(unknown[:5])}: {'its score is' if len(unknown) == 1 else 'their scores are'}"
                        f" not a number (NaN), and {count} {'unit was' if count == 1 else 'units were'} asked for",
                        hint="check the model's weights for NaN/Inf, or remove fewer units")
    order = [u.id for u in graph.prunable()]
    remove = sorted(candidates[:count], key=order.index)
    plan = PruningPlan(remove=remove, locked=locked, keep=keep if keep is not None else scores.keep,
                       criterion=scores.criterion, ratio=ratio, model=scores.model,
                       meta=ratio_meta(graph, count, ratio))
    plan.validate(graph)
    return plan
