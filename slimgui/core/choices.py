"""What the app offers for an open model, asked of the plugin registry.

The criteria that apply to a family (:func:`criteria_for`) and the one an analysis starts with
(:func:`default_criterion`), the family's default calibration text (:func:`default_data`), its named pruning
presets with what each removes (:func:`preset_choices`) and its previewers (:func:`previewers_for`).
No Qt here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import SlimError
from .selection import removed_params, unit_title

if TYPE_CHECKING:
    from .model import LoadedModel
    from .plugins import Registry


def criteria_for(registry: Registry, family: str) -> list[tuple[str, str]]:
    """(name, description) of the criteria that apply to ``family``, family-specific ones first."""
    specs = registry.criterion_specs(family)
    own = [(s.name, s.description) for _, s in specs if "*" not in s.families]
    shared = [(s.name, s.description) for _, s in specs if "*" in s.families]
    seen: dict[str, str] = {}
    for name, desc in own + shared:
        seen.setdefault(name, desc)
    return list(seen.items())


def default_data(model: LoadedModel, registry: Registry | None = None) -> str | None:
    """The family's default data for ``model`` (a demo's own text or images), if it declares "default-data"."""
    impl = model.impl
    if registry is not None:
        if not registry.spec_of(model).can("default-data"):
            return None
        impl = impl if impl is not None else registry.adapter(model.adapter)
    from .plugins import ModelAdapter

    if impl is None or (registry is None and not isinstance(impl, ModelAdapter)):
        return None
    try:
        return impl.default_data(model)  # ModelAdapter's: None unless the family declares "default-data"
    except SlimError:
        return None


def default_eval_data(model: LoadedModel, registry: Registry | None = None) -> str | None:
    """The data an evaluation of ``model`` defaults to: the family's held-out data for it
    (``ModelAdapter.default_eval_data``), else its default data; None when it has neither."""
    impl = model.impl if model.impl is not None else (registry.adapter(model.adapter) if registry else None)
    held_out = None
    if impl is not None and registry is not None and registry.spec_of(model).can("default-data"):
        try:
            held_out = impl.default_eval_data(model)
        except SlimError:
            held_out = None
    return held_out or default_data(model, registry)


def needs_data(registry: Registry, criterion: str) -> bool:
    """Whether a criterion is measured on calibration data (``CriterionSpec.needs_data``)."""
    return any(s.needs_data for _, s in registry.criterion_specs() if s.name == criterion)


def default_criterion(registry: Registry, model: LoadedModel, data: str | None = None) -> str | None:
    """The analysis ``slimgui gui MODEL`` runs: the family's ``default_criterion`` when it needs no data or there
    is data (given or the family's default), else its ``default_criterion_no_data``; without a declared default,
    the family's own first criterion that can run, else "magnitude".  None without weights."""
    if not model.has_weights:
        return None
    spec = registry.spec_of(model)
    names = [n for n, _ in criteria_for(registry, model.family)]
    has_data = bool(data or default_data(model, registry))
    first = spec.default_criterion or next((s.name for _, s in registry.criterion_specs(model.family)
                                            if "*" not in s.families), None)
    if first and first in names and (has_data or not needs_data(registry, first)):
        return first
    fallback = spec.default_criterion_no_data
    if fallback and fallback in names and (has_data or not needs_data(registry, fallback)):
        return fallback
    usable = [n for n in names if not needs_data(registry, n)]
    return usable[0] if usable else (names[0] if names else None)


def preset_choices(model: LoadedModel, registry: Registry) -> list[tuple[str, bool, str]]:
    """``(name, fits, note)`` of the family's named pruning presets (BK-SDM's bk-base/small/tiny): ``note`` says
    what the preset removes when it fits, or why it does not fit this model."""
    from .ops import graph_of, preset_plan, presets

    graph = graph_of(model, registry)
    out = []
    for name, fits in presets(model, registry).items():
        try:
            plan = preset_plan(model, name, registry=registry)
        except SlimError as exc:
            out.append((name, False, exc.one_line()))
            continue
        if not fits:
            out.append((name, False, f"{name} does not fit this model"))
            continue
        share = removed_params(graph, plan.remove) / max(1, graph.total_params)
        out.append((name, True, f"removes {len(plan.remove)} units ({100 * share:.1f}% of the parameters): "
                                + ", ".join(unit_title(graph, u) for u in plan.remove)))
    return out


def previewers_for(registry: Registry, family: str) -> list[tuple[str, str, str]]:
    """(name, media type, description) of the previewers that apply to ``family``."""
    out = []
    for plugin in registry.plugins:
        for spec in plugin.previewers:
            if "*" in spec.families or family in spec.families:
                out.append((spec.name, spec.media, spec.description))
    return out
