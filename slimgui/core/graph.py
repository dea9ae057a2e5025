"""The uniform graph every family turns its model into.

Views only know this graph; heatmaps are scores keyed by unit id.  ``attrs["layout"]`` tells a
view how to draw it (one of the app's layouts: "stack" for a block stack, "u" for stages with skips).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import SlimError


@dataclass
class Unit:
    """One node of the graph: a block, a layer, an embedding, a head...

    ``attrs`` holds optional hints for views and tools.  Ones the GUI reads:

    - ``attrs["cells"] = "children"``: draw this unit's children as a row of small cells inside its box
      (each cell coloured by its child's score on the same colour scale as the boxes, with the child's
      tooltip; a click on a cell selects that child for removal, as a click on its box would).  Meant for
      a unit with many small parallel parts (e.g. the heads of an attention layer), so the user sees at a
      glance where its capacity sits without expanding it.  Any other value, or no key, draws no cells.
    - ``attrs["removes_with"]`` / ``attrs["removed_with"]``: units removed together with this one.
    - ``attrs["removed_with_all"]``: groups (lists of unit ids); this unit goes when every unit of one group goes
      (what the family's pruning turns such a plan into, e.g. a head left with no query/key pair), so estimates
      and budgets count it.
    - ``attrs["note"]``: a line added to the unit's tooltip.
    - ``attrs["width_of"]`` / ``attrs["channels"]``: a *width slice* — ``width_of`` names a layer unit and
      ``channels`` is the output channels this unit removes from it on its own; the layer unit's own
      ``attrs["channels"]`` is its full width and its ``unit_module`` is, or holds exactly one, ``Conv2d`` /
      ``ConvTranspose2d`` / ``Linear``.  :func:`slimgui.core.selection.width_layers` / ``snap_removal``, the
      Plan panel's "Snap widths to latency steps" and ``slimgui prune --snap-widths`` read them.
    """

    id: str
    kind: str
    label: str
    parent: str | None = None
    params: int = 0
    macs: int | None = None
    prunable: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class UnitGraph:
    """A family's model as units and edges.  ``attrs`` a view or tool reads: ``layout`` (the app's layout to draw
    it with), ``total_params``, ``total_macs`` and ``macs_per`` (what a unit's MACs are counted per: "token",
    "image", "second of audio"…; the layout's word when absent)."""

    family: str
    units: list[Unit]
    edges: list[tuple[str, str]] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_id = {u.id: u for u in self.units}
        if len(self._by_id) != len(self.units):
            raise ValueError("unit ids must be unique")

    # -- lookup -----------------------------------------------------------------------------
    def __contains__(self, unit_id: str) -> bool:
        return unit_id in self._by_id

    def get(self, unit_id: str) -> Unit:
        try:
            return self._by_id[unit_id]
        except KeyError:
            raise SlimError(f"unknown unit '{unit_id}'", hint="`slimgui inspect MODEL` lists the unit ids") from None

    def children(self, unit_id: str | None) -> list[Unit]:
        return [u for u in self.units if u.parent == unit_id]

    def prunable(self) -> list[Unit]:
        """The prunable units in order; a unit's position here is its 0-based index on the CLI."""
        return [u for u in self.units if u.prunable]

    def resolve(self, ref: str | int) -> Unit:
        """A unit from a 0-based prunable index (``3`` or ``"3"``) or a unit id."""
        units = self.prunable()
        if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().lstrip("-").isdigit()):
            idx = int(ref)
            if not 0 <= idx < len(units):
                raise SlimError(f"block index {idx} is out of range: this model has {len(units)} prunable "
                                f"units (0 to {len(units) - 1})")
            return units[idx]
        unit = self.get(str(ref).strip())
        if not unit.prunable:
            raise SlimError(f"unit '{unit.id}' cannot be removed", hint="choose one of the prunable units")
        return unit

    def ancestors(self, unit_id: str) -> list[str]:
        """Parent, grandparent, ... of a unit (a U-Net stage holds removable layers)."""
        out, parent = [], self.get(unit_id).parent
        while parent is not None and parent in self._by_id:
            out.append(parent)
            parent = self._by_id[parent].parent
        return out

    def removed_params(self, unit_ids: list[str]) -> int:
        """Parameters removed with these units — with the units each one takes along (``attrs["removes_with"]``,
        e.g. a U-Net layer's mirrored up layer) — each counted once even when one unit contains another."""
        chosen = set(unit_ids)
        for uid in list(chosen):
            chosen.update(p for p in self.get(uid).attrs.get("removes_with", []) if p in self._by_id)
        return sum(self.get(uid).params for uid in chosen if not chosen.intersection(self.ancestors(uid)))

    def removed_macs(self, unit_ids: list[str]) -> int:
        """MACs removed with these units, counted like :meth:`removed_params` (partners included, nested units
        once); a unit that declares no MACs counts 0."""
        chosen = set(unit_ids)
        for uid in list(chosen):
            chosen.update(p for p in self.get(uid).attrs.get("removes_with", []) if p in self._by_id)
        return sum(self.get(uid).macs or 0 for uid in chosen if not chosen.intersection(self.ancestors(uid)))

    @property
    def total_params(self) -> int:
        return int(self.attrs.get("total_params") or sum(u.params for u in self.units if u.parent is None))

    @property
    def total_macs(self) -> int | None:
        """The model's MACs (per token, image, second of audio… as the family counts them): ``attrs["total_macs"]``
        or the sum over the top-level units; None when no unit declares MACs."""
        if self.attrs.get("total_macs"):
            return int(self.attrs["total_macs"])
        top = [u.macs for u in self.units if u.parent is None and u.macs is not None]
        return int(sum(top)) if top else None

    # -- files ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "attrs": self.attrs,
            "units": [asdict(u) for u in self.units],
            "edges": [list(e) for e in self.edges],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> UnitGraph:
        return cls(
            family=doc["family"],
            units=[Unit(**u) for u in doc["units"]],
            edges=[tuple(e) for e in doc.get("edges", [])],
            attrs=dict(doc.get("attrs", {})),
        )
