"""The plugin API.

A plugin is a :class:`Plugin` manifest exposed under the entry-point group ``slimgui.plugins``.
The manifest names what it contributes with ``"module:attribute"`` strings, so listing plugins
imports only the (light) manifest module; the heavy code behind a contribution is imported the
first time it is used.  A plugin that fails to load is recorded as broken with its reason and
everything else keeps working.

Contributions
-------------
adapters    classes implementing :class:`ModelAdapter` (open a model family); each also names a
            cheap ``match(path) -> float`` function that must not load weights.
criteria    classes implementing :class:`Criterion` (importance scores of prunable units).
evaluators  callables ``(model, data_path, **options) -> dict`` (metrics such as perplexity).
previewers  callables ``(model, **options) -> media`` (text, image arrays, audio, video files).
demos       callables ``(progress, cancel) -> dict`` returning paths of a ready demo model.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import SlimError

if TYPE_CHECKING:  # only for type checkers: keeps discovery free of torch
    from .graph import UnitGraph
    from .model import LoadedModel
    from .plan import PruningPlan
    from .progress import CancelToken, ProgressFn

ENTRY_POINT_GROUP = "slimgui.plugins"


def load_ref(ref: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, _, attr = ref.partition(":")
    obj = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


# -- manifest ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdapterSpec:
    name: str
    family: str
    target: str  # "module:Class" implementing ModelAdapter
    match: str  # "module:function" (path) -> confidence in [0, 1]; must be cheap
    description: str = ""


@dataclass(frozen=True)
class CriterionSpec:
    name: str
    target: str  # "module:Class" implementing Criterion
    description: str = ""
    families: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str
    target: str
    description: str = ""
    families: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class PreviewerSpec:
    name: str
    target: str
    media: str  # "text", "image", "audio", "video", "table"
    description: str = ""
    families: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class DemoSpec:
    name: str
    target: str
    description: str = ""


@dataclass(frozen=True)
class Plugin:
    name: str
    version: str = "0"
    description: str = ""
    adapters: Sequence[AdapterSpec] = ()
    criteria: Sequence[CriterionSpec] = ()
    evaluators: Sequence[EvaluatorSpec] = ()
    previewers: Sequence[PreviewerSpec] = ()
    demos: Sequence[DemoSpec] = ()


# -- protocols the targets implement ------------------------------------------------------------
@runtime_checkable
class ModelAdapter(Protocol):
    family: str

    def load(self, path: str, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
             **options: Any) -> LoadedModel: ...

    def to_graph(self, model: LoadedModel) -> UnitGraph: ...

    def apply_plan(self, model: LoadedModel, plan: PruningPlan, *, copy: bool = True) -> LoadedModel: ...

    def save(self, model: LoadedModel, out_dir: str) -> str: ...

    def unit_module(self, model: LoadedModel, unit_id: str) -> Any: ...


@runtime_checkable
class Criterion(Protocol):
    name: str

    def score(self, model: LoadedModel, data: Any, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]: ...


# -- registry --------------------------------------------------------------------------------
@dataclass
class PluginRecord:
    entry_point: str
    source: str
    plugin: Plugin | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.plugin is not None

    @property
    def name(self) -> str:
        return self.plugin.name if self.plugin else self.entry_point


@dataclass
class Registry:
    records: list[PluginRecord] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)

    # -- what is there ---------------------------------------------------------------------
    @property
    def plugins(self) -> list[Plugin]:
        return [r.plugin for r in self.records if r.plugin is not None]

    def broken(self) -> list[PluginRecord]:
        return [r for r in self.records if not r.ok]

    def _specs(self, kind: str) -> list[tuple[Plugin, Any]]:
        return [(p, s) for p in self.plugins for s in getattr(p, kind)]

    def evaluator_names(self, family: str) -> list[str]:
        """Evaluators that apply to ``family``, the family's own first."""
        specs = [s for _, s in self._specs("evaluators") if family in s.families or "*" in s.families]
        return [s.name for s in specs if "*" not in s.families] + [s.name for s in specs if "*" in s.families]

    def adapter_specs(self) -> list[tuple[Plugin, AdapterSpec]]:
        return self._specs("adapters")

    def criterion_specs(self, family: str | None = None) -> list[tuple[Plugin, CriterionSpec]]:
        return [(p, s) for p, s in self._specs("criteria")
                if family is None or "*" in s.families or family in s.families]

    # -- loading what is used ---------------------------------------------------------------
    def _load(self, plugin: Plugin, kind: str, name: str, ref: str, instantiate: bool) -> Any:
        key = f"{kind}:{plugin.name}:{name}"
        if key not in self._cache:
            try:
                obj = load_ref(ref)
                self._cache[key] = obj() if instantiate else obj
            except Exception as exc:  # a plugin's bug must not take the app down
                raise SlimError(f"plugin '{plugin.name}' failed to load its {kind} '{name}': "
                                f"{type(exc).__name__}: {exc}") from exc
        return self._cache[key]

    def adapter(self, name: str) -> ModelAdapter:
        for plugin, spec in self.adapter_specs():
            if spec.name == name:
                return self._load(plugin, "adapter", name, spec.target, True)
        raise SlimError(f"no model adapter named '{name}'", hint="`slimgui plugins` lists them")

    def criterion(self, name: str, family: str | None = None) -> Criterion:
        known = self.criterion_specs()
        for plugin, spec in known:
            if spec.name == name:
                if family and "*" not in spec.families and family not in spec.families:
                    raise SlimError(f"criterion '{name}' does not apply to {family} models",
                                    hint="choose one of: " + ", ".join(s.name for _, s in self.criterion_specs(family)))
                return self._load(plugin, "criterion", name, spec.target, True)
        names = ", ".join(sorted({s.name for _, s in self.criterion_specs(family)}))
        raise SlimError(f"unknown criterion '{name}'", hint=f"available: {names}")

    def _named(self, kind: str, name: str, family: str | None = None) -> Any:
        for plugin, spec in self._specs(kind):
            fams = getattr(spec, "families", ("*",))
            if spec.name == name and (family is None or "*" in fams or family in fams):
                return self._load(plugin, kind[:-1], name, spec.target, False)
        raise SlimError(f"no {kind[:-1]} named '{name}'" + (f" for {family} models" if family else ""),
                        hint="`slimgui plugins` lists what is installed")

    def evaluator(self, name: str, family: str | None = None) -> Callable[..., dict]:
        return self._named("evaluators", name, family)

    def previewer(self, name: str, family: str | None = None) -> Callable[..., Any]:
        return self._named("previewers", name, family)

    def demo(self, name: str) -> Callable[..., dict]:
        return self._named("demos", name)

    def match(self, path: str) -> list[tuple[float, Plugin, AdapterSpec]]:
        """Every adapter's confidence for ``path``, best first (adapters that raise count as 0)."""
        found = []
        for plugin, spec in self.adapter_specs():
            try:
                fn = self._load(plugin, "match", spec.name, spec.match, False)
                conf = float(fn(path))
            except Exception:
                conf = 0.0
            if conf > 0:
                found.append((conf, plugin, spec))
        found.sort(key=lambda item: -item[0])
        return found

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for rec in self.records:
            if rec.plugin is None:
                out.append({"name": rec.entry_point, "source": rec.source, "status": "broken", "error": rec.error})
                continue
            p = rec.plugin
            out.append({
                "name": p.name, "source": rec.source, "status": "ok", "version": p.version,
                "description": p.description,
                "adapters": [{"name": s.name, "family": s.family, "description": s.description} for s in p.adapters],
                "criteria": [{"name": s.name, "families": list(s.families), "description": s.description}
                             for s in p.criteria],
                "evaluators": [s.name for s in p.evaluators],
                "previewers": [{"name": s.name, "media": s.media} for s in p.previewers],
                "demos": [s.name for s in p.demos],
            })
        return out


def discover(extra: Sequence[Plugin] = ()) -> Registry:
    """Find every plugin under the ``slimgui.plugins`` entry-point group (plus ``extra``)."""
    reg = Registry()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        source = f"{dist.name} {dist.version}" if dist is not None else ep.value
        rec = PluginRecord(entry_point=ep.name, source=source)
        try:
            obj = ep.load()
            plugin = obj() if callable(obj) and not isinstance(obj, Plugin) else obj
            if not isinstance(plugin, Plugin):
                raise TypeError(f"{ep.value} is a {type(plugin).__name__}, not a slimgui Plugin")
            rec.plugin = plugin
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" ({tb[-1].filename}:{tb[-1].lineno})" if tb else ""
            rec.error = f"{type(exc).__name__}: {exc}{where}"
        reg.records.append(rec)
    for plugin in extra:
        reg.records.append(PluginRecord(entry_point=plugin.name, source="in-process", plugin=plugin))
    names = [r.name for r in reg.records if r.ok]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        print(f"slimgui: warning: several plugins are named {', '.join(sorted(dupes))}", file=sys.stderr)
    return reg
