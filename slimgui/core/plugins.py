r"""The plugin API: everything a model family can contribute, declared in one place.

A plugin is a :class:`Plugin` manifest exposed under the entry-point group ``slimgui.plugins``.
The manifest names what it contributes with ``"module:attribute"`` strings, so listing plugins
imports only the (light) manifest module; the heavy code behind a contribution is imported the
first time it is used.  A plugin that fails to load is recorded as broken with its reason and
everything else keeps working.

Contributions (each a frozen dataclass below; ``families`` says which families one applies to, "*" all)
--------------------------------------------------------------------------------------------------------
adapters     :class:`AdapterSpec` — a model family: a class implementing :class:`ModelAdapter` (open,
             graph, plan, save, and the optional capabilities it *declares* in ``capabilities``), a cheap
             ``match(path)`` that must not load weights, and how its work is counted and shown (``items``,
             ``unit_word``, ``layout``), its data (``data``), its default criteria and the options of its
             calibration (``calibration_options``), training data (``train_options``) and benchmark
             (``bench_options``).
criteria     :class:`CriterionSpec` — classes implementing :class:`Criterion` (importance of prunable units).
methods      :class:`MethodSpec` — healing methods: a function building the :class:`~slimgui.core.train.TrainTask`
             the core loop runs, with its options schema and default learning rate.
evaluators   :class:`EvaluatorSpec` — ``(model, data_path, **options) -> dict`` with the :class:`Metric`\ s
             the dict holds (name, unit, which direction is better) and an options schema.
previewers   :class:`PreviewerSpec` — ``(model, **options) -> media`` (text, image, audio, video, table;
             see :mod:`slimgui.core.media`) with an options schema and, optionally, a ``joint`` step that
             redraws the media of models compared side by side together (e.g. on one colour scale).
exporters    :class:`ExporterSpec` — ``(model, out, *, options, progress, cancel, **context) -> dict``
             writing a file or folder (ONNX, a native folder, ...), with an options schema and, optionally,
             a benchmark runner for what it writes, advice measured before exporting and a per-layer choice.
             Its result may carry ``notes`` (lines the app and the report show) and ``warnings``.
demos        :class:`DemoSpec` — ``(progress, cancel) -> dict`` returning paths of a ready demo model.

Options schemas are dataclasses of :func:`slimgui.core.options.option` fields, named by ``"module:Class"``
like every target; the CLI builds its flags and the GUI its forms from them, sessions store their values
by name.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import SlimError
from .metrics import Metric

if TYPE_CHECKING:  # only for type checkers: keeps discovery free of torch
    from .graph import UnitGraph
    from .model import LoadedModel
    from .plan import PruningPlan
    from .progress import CancelToken, ProgressFn

ENTRY_POINT_GROUP = "slimgui.plugins"
# A frozen bundle (PyInstaller) carries no package metadata of its own, so its build writes the built-in plugins'
# entry points (pyproject's ``slimgui.plugins`` group, in entry_points.txt format) to this file at the bundle's root.
BUNDLED_ENTRY_POINTS = "slimgui-entry-points.txt"
# Third-party plugins of a bundle live in a user plugin folder (``pip install --target FOLDER``): this variable names
# it, else the bundle scans ``<user data dir>/slimgui/plugins`` (a pip install of the project needs none).
PLUGIN_DIR_ENV = "SLIMGUI_PLUGIN_DIR"


def load_ref(ref: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, _, attr = ref.partition(":")
    obj = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


# -- manifest ---------------------------------------------------------------------------------
# Capabilities an adapter may declare (AdapterSpec.capabilities) — each is a method of ModelAdapter below.
CAPABILITIES = {
    "calibration": "calibration_batches(model, data) and loss(model, batch): data-driven criteria (taylor, ...)",
    "default-data": "default_data(model): the data a model comes with (a demo's own), used when none is given",
    "presets": "preset_plan(model, name): named pruning plans (the names are listed in graph.attrs['presets'])",
    "width": "width_variant(model, target_params): a width-pruned model of a given size, to compare with",
    "bench": "bench_runner(model, batch, options, mode): a callable timed by the benchmark",
    "decode": "bench mode 'decode': step-by-step generation after a forward pass (can_decode(model) says when)",
    "abconv": "save(model) writes convolutions replaced by slimgui.core.abconv.ABConv2d (and load reads them back): "
              "'slimgui abconv' saves through it",
}


@dataclass(frozen=True)
class DataSpec:
    """What a family's data is, for the file/folder choosers and help texts: ``kind`` "file" or "folder"
    (or "file-or-folder"), a ``label`` ("calibration text"), a dialog ``filter`` and a ``help`` line."""

    kind: str = "file"
    label: str = "data"
    filter: str = ""
    help: str = ""
    required: bool = True  # False: the family brings its own data when none is given


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    family: str
    target: str  # "module:Class" implementing ModelAdapter
    match: str  # "module:function" (path) -> confidence in [0, 1]; must be cheap
    description: str = ""
    capabilities: tuple[str, ...] = ()  # the optional ModelAdapter methods it implements (CAPABILITIES)
    items: str = "samples"  # what a throughput counts, in the family's word (plural)
    unit_word: str = "unit"  # what its prunable units are called ("block", "stage", ...)
    layout: str = "stack"  # which of the app's graph layouts draws it: "stack" (blocks in a column) or "u" (down
    # stages, mid block and up stages with skip connections; the graph names them in attrs["stages"])
    native: str = "folder"  # what save() writes, in words ("transformers folder", "diffusers folder")
    data: DataSpec = DataSpec()
    default_method: str | None = None  # the healing method a job that names none uses (None: the first declared)
    default_criterion: str | None = None  # with data
    default_criterion_no_data: str | None = "magnitude"
    calibration_options: str | None = None  # "module:Class": options of calibration (segment length, ...)
    train_options: str | None = None  # "module:Class": family-wide options of retraining data
    bench_options: str | None = None  # "module:Class": options of bench_runner
    file_kinds: tuple[str, ...] = ()  # what a chooser names the files it opens, e.g. ("config.json", "*.safetensors")

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True)
class CriterionSpec:
    name: str
    target: str  # "module:Class" implementing Criterion
    description: str = ""
    families: tuple[str, ...] = ("*",)
    needs_data: bool = False  # True: scores need calibration data (and the "calibration" capability)
    needs: tuple[str, ...] = ()  # adapter capabilities it requires, e.g. ("calibration",)


@dataclass(frozen=True)
class MethodSpec:
    """A healing method.  ``target``: ``(adapter, cfg: TrainConfig, options, *, registry) -> TrainTask``
    where ``options`` is an instance of the ``options`` schema (None without one)."""

    name: str
    target: str
    label: str = ""
    description: str = ""
    families: tuple[str, ...] = ("*",)
    options: str | None = None
    default_lr: float = 1e-4
    teacher: str = ""  # "" none, "original" (the model it was slimmed from), "self" (the model itself)
    role: str = ""  # what the healed model is shown as, e.g. "few-step" (default: "healed")


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str
    target: str
    description: str = ""
    families: tuple[str, ...] = ("*",)
    options: str | None = None
    metrics: tuple[Metric, ...] = ()
    data: DataSpec | None = None  # None: it needs no data


@dataclass(frozen=True)
class PreviewerSpec:
    name: str
    target: str
    media: str  # "text", "image", "audio", "video", "table"
    description: str = ""
    families: tuple[str, ...] = ("*",)
    options: str | None = None
    label: str = ""  # what the compare panel calls it
    # "module:function" ``(medias: list[media]) -> list[media]``: given the media this previewer made for models
    # compared side by side (original first, same options), the same number of media redrawn together — e.g.
    # heatmaps put on one shared colour scale.  Each media's ``meta`` carries what the redraw needs.  None: each
    # model's media is shown as made.
    joint: str | None = None


@dataclass(frozen=True)
class ExporterSpec:
    """An export format.  ``target``: ``(model, out, *, options, progress, cancel, **context) -> dict`` (the
    result shown and recorded); ``runner``: ``(path, batch, options, mode) -> callable`` timing what it wrote."""

    name: str
    target: str
    label: str = ""
    description: str = ""
    families: tuple[str, ...] = ("*",)
    options: str | None = None
    output: str = "file"  # "file" or "folder"
    suffix: str = ""  # e.g. ".onnx"
    runner: str | None = None
    metrics: tuple[Metric, ...] = ()
    # "module:function" ``(options: dict) -> str | None``: what the exporter says, measured on this machine, about
    # the chosen options before anything is exported (e.g. whether INT8 is faster here); a line starting with "⚠"
    # is a warning.  Asked only while ``advice_when`` (((option, allowed values), ...)) holds.
    advice: str | None = None
    advice_when: tuple[tuple[str, Any], ...] = ()
    # the option a per-layer choice is given back through: the result's ``layers`` ([{"layer", "precision"}, ...])
    # shown as a table whose choices the app passes as this option to "Export again" (None: no such choice)
    layers_option: str | None = None


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
    methods: Sequence[MethodSpec] = ()
    evaluators: Sequence[EvaluatorSpec] = ()
    previewers: Sequence[PreviewerSpec] = ()
    exporters: Sequence[ExporterSpec] = ()
    demos: Sequence[DemoSpec] = ()


# -- protocols the targets implement ------------------------------------------------------------
class ModelAdapter:
    """The base class of a family's adapter.  The first five methods are required; the rest are the
    optional capabilities, each implemented only by an adapter whose :class:`AdapterSpec` declares it in
    ``capabilities`` (core asks the spec, never ``hasattr``).  Calling one that was not declared raises a
    SlimError saying so."""

    family: str = ""

    # -- required -----------------------------------------------------------------------------
    def load(self, path: str, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
             **options: Any) -> LoadedModel:
        """Open ``path`` (a folder, a file or a hub id); ``options`` may carry ``trust_remote_code``.
        Must refuse bad input with a SlimError and never unpickle untrusted data."""
        raise NotImplementedError

    def to_graph(self, model: LoadedModel) -> UnitGraph:
        """The model's prunable units and their parameters/MACs, as one :class:`UnitGraph`."""
        raise NotImplementedError

    def apply_plan(self, model: LoadedModel, plan: PruningPlan, *, copy: bool = True) -> LoadedModel:
        """The model with ``plan.remove`` taken out (a copy unless ``copy`` is False)."""
        raise NotImplementedError

    def save(self, model: LoadedModel, out_dir: str) -> str:
        """Write the model in the family's native format (``AdapterSpec.native``); returns the folder."""
        raise NotImplementedError

    def unit_module(self, model: LoadedModel, unit_id: str) -> Any:
        """The torch module of one unit (what core criteria such as ``magnitude`` read)."""
        raise NotImplementedError

    # -- optional: "calibration" -------------------------------------------------------------------
    def calibration_batches(self, model: LoadedModel, data: Any) -> list[Any]:
        """Batches of ``data`` (a :class:`~slimgui.core.data.CalibrationData`) the model's ``loss`` takes."""
        raise _undeclared(self, "calibration")

    def loss(self, model: LoadedModel, batch: Any) -> Any:
        """A scalar loss tensor of the model on one calibration batch (what ``taylor`` differentiates)."""
        raise _undeclared(self, "calibration")

    # -- optional: "default-data" ----------------------------------------------------------------------
    def default_data(self, model: LoadedModel) -> str | None:
        """The data this model comes with (a demo's own text or images), or None."""
        return None

    def default_eval_data(self, model: LoadedModel) -> str | None:
        """Held-out data this model comes with (a demo's evaluation text, never its training data), or None.
        Evaluations default to it before :meth:`default_data`, so a figure is not measured on what the model was
        trained or calibrated on; each result names the data it was measured on."""
        return None

    # -- optional: "presets" -----------------------------------------------------------------------------
    def preset_plan(self, model: LoadedModel, preset: str) -> PruningPlan:
        """The plan of a named preset (the names are in ``to_graph(model).attrs["presets"]``)."""
        raise _undeclared(self, "presets")

    # -- optional: "width" -------------------------------------------------------------------------------
    def width_variant(self, model: LoadedModel, target_params: int) -> LoadedModel:
        """The model pruned in width to about ``target_params`` parameters (a baseline to benchmark)."""
        raise _undeclared(self, "width")

    # -- optional: "bench" (and "decode") ------------------------------------------------------------------
    def bench_runner(self, model: LoadedModel, batch: int, options: Any, mode: str) -> Callable[[], Any]:
        """A callable running one timed pass: ``mode`` "forward" (a batch of ``batch`` samples shaped by
        ``options``, an instance of ``bench_options``) or "decode" (declared by "decode")."""
        raise _undeclared(self, "bench")

    def can_decode(self, model: LoadedModel) -> bool:
        """Whether "decode" applies to this model (e.g. not to an encoder)."""
        return False

    def context_limit(self, model: LoadedModel) -> tuple[int, str] | None:
        """(items, where it is stated) of the longest input the model takes, e.g. (2048, "max_position_embeddings
        in config.json"), for the front ends' checks of lengths a user asks for; None: no limit."""
        return None

    # -- always safe -------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Import the family's heavy libraries ahead of use (the app calls it in the background)."""

    def describe_result(self, model: LoadedModel) -> dict[str, Any]:
        """Extra facts about a loaded model the app shows (dtype, context, ...)."""
        return {}


def _undeclared(adapter: Any, capability: str) -> SlimError:
    return SlimError(f"the {getattr(adapter, 'family', '') or type(adapter).__name__} family does not declare "
                     f"'{capability}' ({CAPABILITIES.get(capability, '')})")


@runtime_checkable
class Criterion(Protocol):
    """Importance of a model's prunable units: ``score`` returns ``{unit_id: score}``, higher = more important.
    A criterion may also keep ``last_info`` (a dict: what the last ``score`` found, e.g. the full model's
    perplexity), which the analysis records in the scores' ``meta``.  Keys the core reads: ``baseline`` (what
    the full model scores on the criterion's own measure, e.g. its perplexity when each score is the perplexity
    without a unit) and ``baseline_label`` (that measure's name): the app then shows each score as a change
    against the full model ("+3.7 % perplexity")."""

    name: str

    def score(self, model: LoadedModel, data: Any, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]: ...


# -- registry --------------------------------------------------------------------------------
class Candidate(tuple):
    """``(confidence, plugin, spec)`` of an adapter that can open a path, with ``info``: what its ``match``
    found (None, or anything its ``load`` accepts as ``match=``)."""

    info: Any

    def __new__(cls, confidence: float, plugin: Plugin, spec: AdapterSpec, info: Any = None) -> Candidate:
        obj = super().__new__(cls, (confidence, plugin, spec))
        obj.info = info
        return obj

    @property
    def confidence(self) -> float:
        return self[0]

    @property
    def spec(self) -> AdapterSpec:
        return self[2]


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

    # -- declared contributions, by family ----------------------------------------------------------
    @staticmethod
    def _applies(spec: Any, family: str | None) -> bool:
        fams = getattr(spec, "families", ("*",))
        return family is None or "*" in fams or family in fams

    def _family_specs(self, kind: str, family: str | None) -> list[Any]:
        """Specs of ``kind`` for ``family``: those of the plugin that declares the family's adapter first, then
        other plugins' for that family, then those for every family (so another plugin's contribution never
        becomes a family's default by the order of entry-point names)."""
        home = {p.name for p in self.plugins if any(a.family == family for a in p.adapters)}
        ranked = [(0 if p.name in home and "*" not in s.families else 1 if "*" not in s.families else 2, i, s)
                  for i, (p, s) in enumerate(self._specs(kind)) if self._applies(s, family)]
        return [s for _, _, s in sorted(ranked, key=lambda t: (t[0], t[1]))]

    def adapter_spec(self, name: str) -> AdapterSpec:
        for _, spec in self.adapter_specs():
            if spec.name == name:
                return spec
        raise SlimError(f"no model adapter named '{name}'", hint="`slimgui plugins` lists them")

    def family_spec(self, family: str, adapter: str | None = None) -> AdapterSpec:
        """The spec of the adapter that opened a model (by name), else the family's first adapter."""
        if adapter:
            for _, spec in self.adapter_specs():
                if spec.name == adapter:
                    return spec
        for _, spec in self.adapter_specs():
            if spec.family == family:
                return spec
        return AdapterSpec(name=adapter or family, family=family, target="", match="")

    def spec_of(self, model: Any) -> AdapterSpec:
        """The :class:`AdapterSpec` of a :class:`~slimgui.core.model.LoadedModel`."""
        return self.family_spec(model.family, getattr(model, "adapter", None))

    def method_specs(self, family: str | None) -> list[MethodSpec]:
        return self._family_specs("methods", family)

    def method_spec(self, name: str, family: str | None = None) -> MethodSpec:
        for spec in self.method_specs(family):
            if spec.name == name:
                return spec
        names = ", ".join(s.name for s in self.method_specs(family)) or "none"
        raise SlimError(f"unknown retraining method '{name}'" + (f" for {family} models" if family else ""),
                        hint=f"use one of: {names}")

    def evaluator_specs(self, family: str | None) -> list[EvaluatorSpec]:
        return self._family_specs("evaluators", family)

    def evaluator_spec(self, name: str, family: str | None = None) -> EvaluatorSpec:
        for spec in self.evaluator_specs(family):
            if spec.name == name:
                return spec
        raise SlimError(f"no evaluator named '{name}'" + (f" for {family} models" if family else ""),
                        hint="available: " + (", ".join(s.name for s in self.evaluator_specs(family)) or "none"))

    def previewer_specs(self, family: str | None) -> list[PreviewerSpec]:
        return self._family_specs("previewers", family)

    def previewer_spec(self, name: str, family: str | None = None) -> PreviewerSpec:
        for spec in self.previewer_specs(family):
            if spec.name == name:
                return spec
        raise SlimError(f"no previewer named '{name}'" + (f" for {family} models" if family else ""),
                        hint="available: " + (", ".join(s.name for s in self.previewer_specs(family)) or "none"))

    def exporter_specs(self, family: str | None) -> list[ExporterSpec]:
        return self._family_specs("exporters", family)

    def exporter_spec(self, name: str, family: str | None = None) -> ExporterSpec:
        for spec in self.exporter_specs(family):
            if spec.name == name:
                return spec
        raise SlimError(f"no export format '{name}'" + (f" for {family} models" if family else ""),
                        hint="available: " + (", ".join(s.name for s in self.exporter_specs(family)) or "none"))

    def exporter(self, name: str, family: str | None = None) -> Callable[..., dict]:
        return self._named("exporters", name, family)

    def method(self, name: str, family: str | None = None) -> Callable[..., Any]:
        return self._named("methods", name, family)

    def target(self, spec: Any, ref: str | None, kind: str = "target") -> Any:
        """Load one ``"module:attr"`` a spec names (an options schema, a runner); None stays None."""
        if not ref:
            return None
        owner = next((p for p, s in self._all_specs() if s is spec), None)
        plugin = owner or Plugin(name="?")
        return self._load(plugin, kind, f"{getattr(spec, 'name', '?')}:{ref}", ref, False)

    def options(self, spec: Any, attr: str = "options") -> type | None:
        """The options schema (a dataclass) a spec declares under ``attr``, or None."""
        return self.target(spec, getattr(spec, attr, None), "options")

    def _all_specs(self) -> list[tuple[Plugin, Any]]:
        kinds = ("adapters", "criteria", "methods", "evaluators", "previewers", "exporters", "demos")
        return [(p, s) for p in self.plugins for k in kinds for s in getattr(p, k)]

    def adapter(self, name: str) -> ModelAdapter:
        for plugin, spec in self.adapter_specs():
            if spec.name == name:
                return self._load(plugin, "adapter", name, spec.target, True)
        raise SlimError(f"no model adapter named '{name}'", hint="`slimgui plugins` lists them")

    def criterion(self, name: str, family: str | None = None) -> Criterion:
        """The criterion ``name`` for ``family``: of the plugins declaring that name, the one that applies to the
        family (two families may each declare their own ``bi``), else a SlimError saying it does not apply."""
        if family:
            for plugin, spec in self.criterion_specs(family):
                if spec.name == name:
                    return self._load(plugin, "criterion", name, spec.target, True)
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
            if spec.name == name and self._applies(spec, family):
                return self._load(plugin, kind[:-1], name, spec.target, False)
        raise SlimError(f"no {kind[:-1]} named '{name}'" + (f" for {family} models" if family else ""),
                        hint="`slimgui plugins` lists what is installed")

    def evaluator(self, name: str, family: str | None = None) -> Callable[..., dict]:
        return self._named("evaluators", name, family)

    def previewer(self, name: str, family: str | None = None) -> Callable[..., Any]:
        return self._named("previewers", name, family)

    def demo(self, name: str) -> Callable[..., dict]:
        return self._named("demos", name)

    def match(self, path: str) -> list[Candidate]:
        """Every adapter's confidence for ``path``, best first (adapters that raise count as 0).

        A ``match`` function returns a confidence in [0, 1], or ``(confidence, info)``: ``info`` (what the
        probe found, e.g. the parsed config) is kept on the :class:`Candidate` and handed to the adapter's
        ``load(path, match=info)``, so a model is never probed twice."""
        found = []
        for plugin, spec in self.adapter_specs():
            info = None
            try:
                fn = self._load(plugin, "match", spec.name, spec.match, False)
                got = fn(path)
                if isinstance(got, tuple):
                    got, info = got
                conf = float(got)
            except Exception:
                conf = 0.0
            if conf > 0:
                found.append(Candidate(conf, plugin, spec, info))
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
                "adapters": [{"name": s.name, "family": s.family, "description": s.description,
                              "capabilities": list(s.capabilities)} for s in p.adapters],
                "criteria": [{"name": s.name, "families": list(s.families), "description": s.description}
                             for s in p.criteria],
                "methods": [{"name": s.name, "families": list(s.families), "label": s.label,
                             "description": s.description} for s in p.methods],
                "evaluators": [s.name for s in p.evaluators],
                "previewers": [{"name": s.name, "media": s.media} for s in p.previewers],
                "exporters": [{"name": s.name, "families": list(s.families), "output": s.output}
                              for s in p.exporters],
                "demos": [s.name for s in p.demos],
            })
        return out


def _frozen_root() -> Path | None:
    """The folder of a frozen bundle's own files (PyInstaller's ``sys._MEIPASS``), None when not frozen."""
    root = getattr(sys, "_MEIPASS", None)
    return Path(root) if getattr(sys, "frozen", False) and root else None


def user_plugin_dir() -> Path | None:
    """The folder scanned for third-party plugins installed with ``pip install --target``: ``$SLIMGUI_PLUGIN_DIR``,
    else in a frozen bundle ``<user data dir>/slimgui/plugins``; None for a pip install (its site-packages is it)."""
    override = os.environ.get(PLUGIN_DIR_ENV)
    if override:
        return Path(override).expanduser()
    if _frozen_root() is None:
        return None
    import platformdirs

    return Path(platformdirs.user_data_dir("slimgui", appauthor=False)) / "plugins"


def _add_plugin_dir() -> None:
    """Put the user plugin folder at the END of ``sys.path`` (the bundle's own packages win over a plugin's copies),
    so its modules import and its ``.dist-info`` entry points are found like a pip install's."""
    folder = user_plugin_dir()
    if folder is None or not folder.is_dir() or str(folder) in sys.path:
        return
    sys.path.append(str(folder))
    importlib.invalidate_caches()


def _bundled_entry_points() -> list[tuple[metadata.EntryPoint, str]]:
    """The built-in plugins' entry points a frozen bundle lists in :data:`BUNDLED_ENTRY_POINTS`, with their source
    (``"slimgui VERSION (bundled)"`` from the file's ``# slimgui VERSION`` header)."""
    root = _frozen_root()
    path = root / BUNDLED_ENTRY_POINTS if root is not None else None
    if path is None or not path.is_file():
        return []
    found, group, source = [], None, "bundled"
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("#") and not found and line[1:].strip():
            source = f"{line[1:].strip()} (bundled)"
        elif line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
        elif "=" in line and group == ENTRY_POINT_GROUP:
            name, _, value = line.partition("=")
            found.append((metadata.EntryPoint(name=name.strip(), value=value.strip(), group=group), source))
    return found


def _entry_points() -> list[tuple[metadata.EntryPoint, str]]:
    """Every ``slimgui.plugins`` entry point with where it comes from: installed distributions (site-packages, the
    user plugin folder), then a bundle's built-in list (those not already found under the same name and target)."""
    _add_plugin_dir()
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found.append((ep, f"{dist.name} {dist.version}" if dist is not None else ep.value))
    seen = {(ep.name, ep.value) for ep, _ in found}
    found += [(ep, src) for ep, src in _bundled_entry_points() if (ep.name, ep.value) not in seen]
    return sorted(found, key=lambda item: item[0].name)


def discover(extra: Sequence[Plugin] = ()) -> Registry:
    """Find every plugin under the ``slimgui.plugins`` entry-point group (plus ``extra``); in a frozen bundle also
    its built-in list and the user plugin folder (:func:`user_plugin_dir`)."""
    reg = Registry()
    for ep, source in _entry_points():
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
