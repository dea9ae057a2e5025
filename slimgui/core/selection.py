"""Choosing what to remove, and what removing it saves: the arithmetic behind the Plan panel.

:func:`removal_closure` (every unit that goes with a selection, partners included), :func:`removed_params`,
:func:`estimate` (the :class:`Estimate` of parameters, size and expected speedup), :func:`select_by_budget`
(the least important units within a block count or a parameter budget), :func:`unit_title` (a unit's short
name for lists) and :func:`bytes_per_param` of a loaded model; latency budgets (:func:`select_by_latency`) and
a plan's width slices snapped to latency steps (:func:`width_layers`, :func:`snap_removal`).  No Qt here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SlimError
from .graph import UnitGraph
from .plan import parse_keep, plan_from_scores
from .scores import Scores

if TYPE_CHECKING:
    from .model import LoadedModel


@dataclass(frozen=True)
class Estimate:
    params_before: int
    params_after: int
    units_before: int
    units_removed: int
    bytes_per_param: int
    macs_before: int | None = None  # None: the family declares no MACs
    macs_after: int | None = None

    @property
    def size_before(self) -> int:
        return self.params_before * self.bytes_per_param

    @property
    def size_after(self) -> int:
        return self.params_after * self.bytes_per_param

    @property
    def params_removed_fraction(self) -> float:
        return 1.0 - self.params_after / self.params_before if self.params_before else 0.0

    @property
    def macs_removed_fraction(self) -> float | None:
        if not self.macs_before or self.macs_after is None:
            return None
        return 1.0 - self.macs_after / self.macs_before

    @property
    def speedup_basis(self) -> str:
        """What :attr:`speedup` is the ratio of: "MAC" when the family counts MACs, else "parameter"."""
        return "MAC" if self.macs_before and self.macs_after is not None else "parameter"

    @property
    def speedup(self) -> float:
        """Expected speedup: the MAC ratio when the graph counts MACs, else the parameter ratio (first-order
        estimates; the benchmark measures the real one)."""
        if self.speedup_basis == "MAC":
            return self.macs_before / self.macs_after if self.macs_after else math.inf
        return self.params_before / self.params_after if self.params_after else math.inf


def bytes_per_param(model: LoadedModel) -> int:
    """Bytes per parameter of ``model`` as saved: the family's ``extra["bytes_per_param"]`` (a float16 checkpoint
    computed in float32: 2), else as loaded (4 for float32); 4 when it has no parameters."""
    stored = (getattr(model, "extra", None) or {}).get("bytes_per_param")
    if isinstance(stored, int) and not isinstance(stored, bool) and stored > 0:
        return stored
    module = getattr(model, "module", None)
    try:
        first = next(iter(module.parameters())) if module is not None else None
    except StopIteration:
        first = None
    return int(first.element_size()) if first is not None else 4


def removal_closure(graph: UnitGraph, unit_ids: Sequence[str]) -> list[str]:
    """Every unit that goes when ``unit_ids`` are removed, in graph order: the units themselves, the partners
    they name in ``attrs["removes_with"]`` (a U-Net's down-stage layer takes its mirrored up-stage layer along),
    units whose ``attrs["removed_with"]`` names a unit that goes, and units with an ``attrs["removed_with_all"]``
    group (a list of unit ids) that goes entirely (a head left with no query/key pair goes).  A unit inside one that goes goes too
    (it is not listed unless named), and its partners go with it."""
    gone = {u for u in unit_ids if u in graph}

    def inside(uid: str) -> bool:
        return uid in gone or any(a in gone for a in graph.ancestors(uid))

    changed = True
    while changed:
        changed = False
        for unit in graph.units:
            if inside(unit.id):
                for partner in unit.attrs.get("removes_with") or ():
                    if partner in graph and not inside(partner):
                        gone.add(partner)
                        changed = True
            else:
                named = unit.attrs.get("removed_with")
                named = [named] if isinstance(named, str) else list(named or ())
                groups = unit.attrs.get("removed_with_all") or ()
                if any(n in graph and inside(n) for n in named) or any(
                        group and all(n in graph and inside(n) for n in group) for group in groups):
                    gone.add(unit.id)
                    changed = True
    return [u.id for u in graph.units if u.id in gone]


def removed_params(graph: UnitGraph, unit_ids: Sequence[str]) -> int:
    """Parameters that go with ``unit_ids``: their partners included (:func:`removal_closure`), and each counted
    once even when one unit contains another."""
    return graph.removed_params(removal_closure(graph, unit_ids))


def unit_title(graph: UnitGraph, unit_id: str) -> str:
    """A unit's short name for lists: its label with its parent's short name when it is nested ("Down 1 · ResNet +
    attention 1"); a top-level unit's label up to its first " · " ("Mid block")."""
    unit = graph.get(unit_id)
    if unit.parent is None or unit.parent not in graph:
        return unit.label.split(" · ")[0]  # "Mid block", without its width and resolution
    return f"{graph.get(unit.parent).label.split(' · ')[0]} · {unit.label}"


def removed_macs(graph: UnitGraph, unit_ids: Sequence[str]) -> int:
    """MACs that go with ``unit_ids`` (partners included, each counted once)."""
    return graph.removed_macs(removal_closure(graph, unit_ids))


def estimate(graph: UnitGraph, remove: Sequence[str], bytes_per_param: int = 4) -> Estimate:
    ids = list(dict.fromkeys(remove))
    gone = removed_params(graph, ids)
    total = graph.total_params
    macs = graph.total_macs
    return Estimate(params_before=total, params_after=total - gone, units_before=len(graph.prunable()),
                    units_removed=len(set(remove)), bytes_per_param=bytes_per_param, macs_before=macs,
                    macs_after=None if macs is None else max(0, macs - removed_macs(graph, ids)))



def select_by_budget(graph: UnitGraph, scores: Scores, *, blocks: int | None = None,
                     params_fraction: float | None = None, macs_fraction: float | None = None,
                     keep: str | None = None) -> list[str]:
    """Least important units (by ``scores``) not locked by ``keep``, in graph order.

    ``blocks``: remove exactly that many units.  ``params_fraction`` / ``macs_fraction``: walk the ranking from
    the least important unit and take each unit while what is removed stays within that fraction of the model's
    parameters / MACs; a unit that would overshoot is passed over and the walk goes on (a smaller one further up
    the ranking may still fit), so a budget is spent as fully as the ranking allows.  At least one unit; the
    most important unit always stays.  A MACs budget needs a graph whose units declare MACs and never takes a
    unit that declares none.
    """
    given = [v is not None for v in (blocks, params_fraction, macs_fraction)]
    if sum(given) != 1:
        raise SlimError("give one budget: a number of blocks, a fraction of the parameters or a fraction of the MACs")
    if blocks is not None:
        if blocks < 1:
            raise SlimError("choose at least one block to remove")
        return plan_from_scores(graph, scores, count=blocks, keep=keep).remove
    what, fraction = ("parameters", params_fraction) if params_fraction is not None else ("MACs", macs_fraction)
    assert fraction is not None
    if not 0 < fraction < 1:
        raise SlimError(f"the {what} budget must be between 0 and 100%, got {fraction * 100:g}%")
    if what == "MACs":
        total = graph.total_macs
        if not total:
            raise SlimError("this model's graph counts no MACs", hint="budget by parameters or by blocks")
        cost = removed_macs
    else:
        total = graph.total_params
        cost = removed_params
    locked = set(parse_keep(keep, graph)) if keep is not None else set(scores.locked)
    prunable = [u.id for u in graph.prunable()]
    missing = set(prunable) - set(scores.values)
    if missing:
        raise SlimError(f"the scores do not cover unit(s) {', '.join(sorted(missing))}",
                        hint="re-run the analysis on this model")
    pool = set(prunable)
    # a unit whose score is not a number is never chosen by a budget (it stays)
    candidates = [uid for uid in scores.ranking() if uid in pool and uid not in locked
                  and not math.isnan(scores.values[uid]) and (what != "MACs" or graph.get(uid).macs is not None)]
    budget = fraction * total
    chosen: list[str] = []
    spent = 0
    gone: set[str] = set()
    for uid in candidates:
        if len(chosen) >= len(prunable) - 1:
            break
        if what == "MACs" and (uid in gone or gone.intersection(graph.ancestors(uid))):
            continue  # already going with what was chosen (e.g. a head whose every q/k pair was chosen)
        size = cost(graph, [*chosen, uid]) - spent
        if spent + size > budget:
            if what == "parameters":
                break  # parameters: the historical rule, the walk stops at the first unit that does not fit
            continue
        chosen.append(uid)
        spent += size
        if what == "MACs":
            gone = set(removal_closure(graph, chosen))
    if not chosen:
        if not candidates:
            raise SlimError("every prunable unit is locked by the keep-set" if what == "parameters" or not locked
                            else "no unlocked unit declares MACs", hint="loosen the keep-set")
        smallest = cost(graph, [candidates[0]]) / max(1, total)
        raise SlimError(f"{fraction * 100:g}% of the {what} is less than one block "
                        f"({smallest * 100:.1f}%)", hint="raise the budget or select by blocks")
    return sorted(chosen, key=prunable.index)


# -- latency budgets (issue 18) -----------------------------------------------------------------------------------
def latency_table(profile: dict) -> dict[str, float]:
    """Unit id -> measured milliseconds per pass, from a :func:`slimgui.core.profiling.profile_model` result (units
    that were not timed are left out).  Measured once; budgets and estimates read it."""
    return {r["unit"]: float(r["measured_ms"]) for r in profile.get("units", []) if r.get("measured_ms") is not None}


def predicted_latency_ms(graph: UnitGraph, table: dict[str, float], total_ms: float, remove: Sequence[str]) -> float:
    """The pass's expected time without ``remove``: the measured whole-pass time less each removed unit's measured
    time (partners included, :func:`removal_closure`; a unit nested in another that goes is counted once).  A
    first-order estimate: the benchmark measures the real one."""
    gone = removal_closure(graph, remove)
    gone_set = set(gone)
    saved = sum(table.get(uid, 0.0) for uid in gone if not gone_set.intersection(graph.ancestors(uid)))
    return max(0.0, total_ms - saved)


def select_by_latency(graph: UnitGraph, scores: Scores, table: dict[str, float], total_ms: float, budget_ms: float,
                      *, keep: str | None = None) -> list[str]:
    """Least important units (by ``scores``) removed, one after another from the bottom of the ranking, until the
    predicted latency (:func:`predicted_latency_ms`, from the per-unit latency ``table`` measured once) is at most
    ``budget_ms``; units without a measured time and locked units are passed over; the most important unit always
    stays.  A budget the model already meets, or one that removing every candidate cannot meet, is a SlimError that
    says the latency in reach."""
    if not math.isfinite(budget_ms) or budget_ms <= 0:
        raise SlimError(f"the latency budget must be a positive number of milliseconds, got {budget_ms:g}")
    if total_ms <= budget_ms:
        raise SlimError(f"the model already runs in {total_ms:.3g} ms, within the {budget_ms:g} ms budget",
                        hint="nothing needs to go: lower the budget")
    locked = set(parse_keep(keep, graph)) if keep is not None else set(scores.locked)
    prunable = [u.id for u in graph.prunable()]
    candidates = [uid for uid in scores.ranking() if uid in set(prunable) and uid not in locked
                  and uid in table and not math.isnan(scores.values[uid])]
    chosen: list[str] = []
    for uid in candidates:
        if len(chosen) >= len(prunable) - 1:
            break
        if uid in removal_closure(graph, chosen):
            continue
        chosen.append(uid)
        if predicted_latency_ms(graph, table, total_ms, chosen) <= budget_ms:
            return sorted(chosen, key=prunable.index)
    best = predicted_latency_ms(graph, table, total_ms, chosen)
    raise SlimError(f"removing every unit that may go leaves about {best:.3g} ms, over the {budget_ms:g} ms budget",
                    hint="raise the budget, loosen the keep-set, or slim in width too")


def snap_width(width: int, edges: Sequence[int], *, up: bool = True) -> int:
    """A planned channel count snapped to a latency step edge (:func:`slimgui.core.costmodel.step_edges`): where
    latency is flat between two edges, any width inside a step costs what the step's upper edge costs, so ``up``
    keeps those channels for free (the upper edge); ``up=False`` goes down to the lower edge (one step faster).  A
    width at or beyond the last edge is kept."""
    edges = sorted(set(int(e) for e in edges))
    if not edges or width in edges:
        return width
    above = [e for e in edges if e > width]
    below = [e for e in edges if e < width]
    if up:
        return above[0] if above else width
    return below[-1] if below else width


# -- width slices snapped to latency steps (issue 18) ------------------------------------------------------------
# What a family declares on its graph so that a plan's channel widths can be snapped (documented in the README's
# Plugin API): a *layer unit* L carries ``attrs["channels"]`` (its full output width) and its ``unit_module`` is, or
# holds exactly one, ``nn.Conv2d`` / ``nn.ConvTranspose2d`` / ``nn.Linear`` (the layer that is timed); a *slice
# unit* carries ``attrs["width_of"] = L`` and ``attrs["channels"]`` = the output channels of L it removes by itself
# (its own slice; slices that take others along through ``removes_with`` count only their own).  A layer's removed
# width is the sum of its slices in the plan's :func:`removal_closure`; the widths a plan can reach are those of the
# slices taken in graph order (a family lists them least important first): ``W − (c₁ + … + c_k)`` for k = 0 … n.
WIDTH_OF = "width_of"
CHANNELS = "channels"


@dataclass(frozen=True)
class WidthLayer:
    """A layer whose output width a plan can cut in declared slices: its unit id, full width and slice units (graph
    order, each with the channels it removes)."""

    layer: str
    width: int
    slices: tuple[tuple[str, int], ...]

    def reachable(self) -> list[tuple[int, tuple[str, ...]]]:
        """(kept width, slice units removed) for every prefix of the slices, the full width first."""
        out = [(self.width, ())]
        removed, ids = 0, []
        for uid, c in self.slices:
            removed += c
            ids.append(uid)
            if self.width - removed >= 1:
                out.append((self.width - removed, tuple(ids)))
        return out


def width_layers(graph: UnitGraph) -> dict[str, WidthLayer]:
    """The layers of ``graph`` whose width is cut in declared slices (``attrs["width_of"]`` / ``attrs["channels"]``),
    by layer unit id; empty for a family that declares none.  A declaration that does not add up (a slice naming an
    unknown layer, a layer without its full width, slices removing the whole layer) is a SlimError: a plugin bug."""
    slices: dict[str, list[tuple[str, int]]] = {}
    for u in graph.units:
        layer = u.attrs.get(WIDTH_OF)
        if layer is None:
            continue
        c = u.attrs.get(CHANNELS)
        if not isinstance(layer, str) or layer not in graph or not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise SlimError(f"unit '{u.id}' declares a width slice that does not fit (width_of={layer!r}, "
                            f"channels={c!r})", hint="the family's graph is wrong: report it to its plugin")
        slices.setdefault(layer, []).append((u.id, c))
    out: dict[str, WidthLayer] = {}
    for layer, sl in slices.items():
        w = graph.get(layer).attrs.get(CHANNELS)
        if not isinstance(w, int) or isinstance(w, bool) or w <= sum(c for _, c in sl):
            raise SlimError(f"layer unit '{layer}' declares no full width its slices fit in (channels={w!r})",
                            hint="the family's graph is wrong: report it to its plugin")
        out[layer] = WidthLayer(layer, w, tuple(sl))
    return out


def touched_widths(graph: UnitGraph, remove: Sequence[str],
                   layers: dict[str, WidthLayer] | None = None) -> dict[str, int]:
    """{layer unit id: kept width} of every declared width layer that ``remove`` narrows (a layer that goes whole
    with the plan — it or a unit it is inside is removed — is left out)."""
    layers = width_layers(graph) if layers is None else layers
    gone = set(removal_closure(graph, remove))
    out: dict[str, int] = {}
    for lid, wl in layers.items():
        if lid in gone or gone.intersection(graph.ancestors(lid)):
            continue
        cut = sum(c for uid, c in wl.slices if uid in gone)
        if cut:
            out[lid] = wl.width - cut
    return out


def snap_removal(graph: UnitGraph, remove: Sequence[str], edges: dict[str, Sequence[int]], *,
                 direction: str = "up") -> tuple[list[str], list[dict]]:
    """``remove`` with each narrowed layer's kept width snapped to its latency step ``edges`` (layer unit id ->
    step edges, :func:`slimgui.core.costmodel.step_edges`; a layer without edges is left as it is).

    ``direction="up"``: within a step latency is flat, so the layer keeps the widest width its slices reach without
    passing the step's upper edge (:func:`snap_width`) — channels that cost nothing come back.  ``direction="down"``: the
    widest reachable width at or below the step's lower edge (one step faster), when a slice reaches it.  Units that
    are not width slices stay as they are.  Returns (the snapped removal list, one row per narrowed layer:
    ``layer``, ``width`` (full), ``before``, ``after`` (kept widths), ``edges``, ``moved``)."""
    if direction not in ("up", "down"):
        raise SlimError(f"snap widths 'up' or 'down', not {direction!r}")
    layers = width_layers(graph)
    if not layers:
        raise SlimError("this model's units declare no width slices: there are no widths to snap",
                        hint="width snapping applies to families that prune a layer's filters in slices")
    kept = touched_widths(graph, remove, layers)
    gone = set(removal_closure(graph, remove))
    touched = {uid for lid in kept for uid, _ in layers[lid].slices}
    out = [u for u in remove if u not in touched]
    rows = []
    for lid, before in kept.items():
        wl = layers[lid]
        reach = wl.reachable()
        e = sorted({int(x) for x in edges.get(lid) or ()})
        after = before
        if e:
            if direction == "up":
                target = snap_width(before, e, up=True)
                fits = [w for w, _ in reach if before <= w <= target]
                after = max(fits) if fits else before
            else:
                target = snap_width(before, e, up=False)
                fits = [w for w, _ in reach if w <= target] if target < before else []
                after = max(fits) if fits else before
        chosen = next((ids for w, ids in reach if w == after), None)
        if chosen is None:  # the plan's width is no prefix of the slices (independent slices): left as it is
            chosen = tuple(uid for uid, _ in wl.slices if uid in gone)
        # the fewest units whose closure is the chosen slices (the highest slice takes the lower ones along)
        picked: list[str] = []
        for uid in reversed(chosen):
            if uid not in removal_closure(graph, picked):
                picked.append(uid)
        out += reversed(picked)
        rows.append({"layer": lid, "width": wl.width, "before": before, "after": after, "edges": e,
                     "moved": after != before})
    order = {u.id: i for i, u in enumerate(graph.units)}
    return sorted(dict.fromkeys(out), key=lambda u: order.get(u, len(order))), rows
