"""Values and units mapped across a :class:`~slimgui.core.graph.UnitGraph`.

:func:`aggregate_up` gives every parent unit a value from its children's (a block shows its most sensitive
layer), and :func:`unit_correspondence` says which unit of the original model each unit of a slimmed or
healed model is (so results measured on the smaller model are drawn on the original).  No Qt here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import SlimError
from .graph import UnitGraph


def aggregate_up(graph: UnitGraph, values: Mapping[str, float], how: str = "max") -> dict[str, float]:
    """``values`` for every unit that has one of its own or below it: a unit without a value of its own
    gets the ``max``/``sum``/``mean`` of its children's (after they got theirs).  Ids not in the graph go."""
    combine = {"max": max, "sum": sum, "mean": lambda xs: sum(xs) / len(xs)}.get(how)
    if combine is None:
        raise SlimError(f"unknown aggregation '{how}'", hint="use max, sum or mean")
    out = {k: float(v) for k, v in values.items() if k in graph}
    kids: dict[str | None, list[str]] = {}
    for u in graph.units:
        kids.setdefault(u.parent, []).append(u.id)

    def fill(uid: str) -> float | None:
        below = [v for v in (fill(c) for c in kids.get(uid, [])) if v is not None]
        if uid not in out and below:
            out[uid] = float(combine(below))
        return out.get(uid)

    for top in kids.get(None, []):
        fill(top)
    return out


def unit_correspondence(original: UnitGraph, derived: UnitGraph, removed: Sequence[str] = ()) -> dict[str, str]:
    """For a model ``derived`` from ``original`` by removing the units ``removed`` (a slimmed or healed model):
    which unit of ``original`` each unit of ``derived`` is.  Prunable units pair up in order, their children by
    position and label, and the fixed units (embeddings, head, ...) by id.  Units without a partner are left out
    (the mapping is empty where the two graphs do not fit together)."""
    gone = set(removed)
    kept = [u for u in original.prunable() if u.id not in gone]
    mine = derived.prunable()
    out: dict[str, str] = {}

    def pair(d: str, o: str) -> None:
        out[d] = o
        for dc, oc in zip(derived.children(d), original.children(o)):
            if dc.label == oc.label and dc.kind == oc.kind:
                pair(dc.id, oc.id)

    if len(kept) == len(mine):
        for d, o in zip(mine, kept):
            pair(d.id, o.id)
    for u in derived.units:
        if u.parent is None and not u.prunable and u.id in original and not original.get(u.id).prunable:
            pair(u.id, u.id)
    return out
