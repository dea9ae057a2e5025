"""The core steps every front end calls: inspect, analyse, plan, prune, save, evaluate.

Each is a plain function; long ones take ``progress`` and ``cancel`` (see :mod:`.progress`).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import SlimError
from .graph import UnitGraph
from .io import (
    atomic_write_text,
    check_output_path,
    clean_stale_staging,
    disk_full,
    usual_permissions,
    write_output_marker,
)
from .model import LoadedModel
from .plan import PruningPlan, parse_keep
from .plugins import Registry
from .progress import CancelToken, ProgressFn
from .scores import Scores


def adapter_of(model: LoadedModel, registry: Registry):
    return model.impl if model.impl is not None else registry.adapter(model.adapter)


def graph_of(model: LoadedModel, registry: Registry) -> UnitGraph:
    graph = model.extra.get("graph")
    if graph is None:
        graph = adapter_of(model, registry).to_graph(model)
        model.extra["graph"] = graph
    return graph


def analyze(model: LoadedModel, criterion: str, *, registry: Registry, data: Any = None, keep: str | None = None,
            progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Scores:
    """Score every prunable unit with ``criterion``; the keep-set is recorded (and shown as locked)."""
    if not model.has_weights:
        raise SlimError(f"{model.source} has no weights (config only)", hint="open a folder with weights to analyse it")
    graph = graph_of(model, registry)
    locked = parse_keep(keep, graph)
    impl = registry.criterion(criterion, model.family)
    fam = registry.spec_of(model)
    for _, cspec in registry.criterion_specs(model.family):
        missing_caps = [c for c in cspec.needs if not fam.can(c)] if cspec.name == criterion else []
        if missing_caps:
            raise SlimError(f"criterion '{criterion}' needs the {model.family} family's "
                            f"{', '.join(missing_caps)}, which it does not declare",
                            hint="choose a criterion that needs no data, e.g. magnitude")
    t0 = time.perf_counter()
    model.extra.pop("calibration_used", None)  # a family's calibration records here what it really used
    values = impl.score(model, data, progress=progress, cancel=cancel)
    missing = [u.id for u in graph.prunable() if u.id not in values]
    if missing:
        raise SlimError(f"criterion '{criterion}' returned no score for {', '.join(missing[:5])}")
    meta = {"seconds": round(time.perf_counter() - t0, 3)}
    meta.update(getattr(impl, "last_info", None) or {})  # Criterion.last_info: e.g. the full model's perplexity
    used = model.extra.get("calibration_used")
    if isinstance(used, dict):  # fewer segments than asked for: recorded as used, with its warning
        meta["data"] = {**(meta.get("data") or {}), **used.get("data", {})}
        meta["warnings"] = [*(meta.get("warnings") or []), *used.get("warnings", [])]
    if data is not None:
        spec = {k: v for k, v in vars(data).items()} if hasattr(data, "__dict__") else str(data)
        told = meta.get("data")  # what the criterion says it used (e.g. fewer segments than asked for) wins
        meta["data"] = {**spec, **told} if isinstance(spec, dict) and isinstance(told, dict) else (told or spec)
    floats = {k: _as_float(v) for k, v in values.items()}
    warnings = [str(w) for w in (meta.get("warnings") or [])]
    bad_weights = non_finite_tensors(model.module)
    if bad_weights:
        meta["non_finite_weights"] = bad_weights
        warnings.append(f"the model's weights contain NaN or Inf values in {len(bad_weights)} tensor(s): "
                        f"{_names(bad_weights)}")
    odd = [k for k, v in floats.items() if not math.isfinite(v)]
    if odd:
        meta["non_finite"] = odd
        kinds = sorted({"NaN" if math.isnan(floats[k]) else "Inf" for k in odd})
        warnings.append(f"criterion '{criterion}' gave no finite score ({'/'.join(kinds)}) for {_names(odd)}; "
                        "they are shown as nan/inf and ranked as the most important")
    if warnings:
        meta["warnings"] = warnings
    return Scores(criterion=criterion, values=floats, model=model.source, locked=locked, keep=keep, meta=meta)


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _names(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def non_finite_tensors(module: Any) -> list[str]:
    """Names of the module's parameters that hold NaN or Inf (none for a module on the meta device)."""
    import torch

    if module is None or not hasattr(module, "named_parameters"):
        return []
    out = []
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.device.type == "meta" or not p.is_floating_point() or p.numel() == 0:
                continue
            if not bool(torch.isfinite(p).all()):
                out.append(name)
    return out


def presets(model: LoadedModel, registry: Registry) -> dict[str, bool]:
    """Named pruning presets of the model's family (e.g. BK-SDM's) and whether each fits this model."""
    return dict(graph_of(model, registry).attrs.get("presets") or {})


def preset_plan(model: LoadedModel, preset: str, *, registry: Registry) -> PruningPlan:
    """The plan a named preset makes for this model (e.g. ``bk-small``)."""
    if not registry.spec_of(model).can("presets"):
        raise SlimError(f"the {model.family} family has no pruning presets", hint="choose units with --remove")
    impl = adapter_of(model, registry)
    plan = impl.preset_plan(model, preset)
    plan.validate(graph_of(model, registry))
    return plan


def prune(model: LoadedModel, plan: PruningPlan, *, registry: Registry, copy: bool = True) -> LoadedModel:
    """A physically smaller model without the plan's units (the original is kept when ``copy``)."""
    graph = graph_of(model, registry)
    plan.validate(graph)
    pruned = adapter_of(model, registry).apply_plan(model, plan, copy=copy)
    pruned.extra.pop("graph", None)
    pruned.extra["plan"] = plan
    return pruned


def save(model: LoadedModel, out_dir: str | os.PathLike, *, registry: Registry, force: bool = False,
         extra_files: dict[str, str] | None = None) -> Path:
    """Save into ``out_dir`` atomically: everything goes to a sibling temp folder, then is moved in.

    The output is checked first (:func:`~slimgui.core.io.check_output_path`): it must be writable, and it may
    not be, lie inside or contain the folder the model was opened from."""
    out = check_output_path(out_dir, "folder", force=force, sources=[model.source])
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SlimError(f"cannot create {out.parent}: {exc.strerror or exc}") from exc
    if not os.access(out.parent, os.W_OK):
        raise SlimError(f"cannot write into {out.parent}", hint="choose a writable --out")
    clean_stale_staging(out)  # what a killed save into the same place left behind
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        adapter_of(model, registry).save(model, str(tmp))
        plan = model.extra.get("plan")
        if plan is not None:
            plan.save(tmp / "slimgui_plan.json")
        for name, text in (extra_files or {}).items():
            atomic_write_text(tmp / name, text)
        write_output_marker(tmp, "model")
        usual_permissions(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(exc, SlimError) and isinstance(exc, Exception) and disk_full(exc):
            raise SlimError(f"not enough disk space to save the model into {out}; nothing was written",
                            hint="free some space or choose another --out") from None
        raise
    return out


def _accepted(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``kwargs`` that ``fn`` takes (all of them when it has ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def evaluator_spec(model: LoadedModel, registry: Registry, name: str | None = None):
    """The evaluator ``name`` for the model's family, or the family's first; a SlimError when there is none."""
    if name:
        return registry.evaluator_spec(name, model.family)
    specs = registry.evaluator_specs(model.family)
    if not specs:
        raise SlimError(f"no evaluator applies to {model.family} models", hint="`slimgui plugins` lists them")
    return specs[0]


def option_values(schema: Any, given: dict[str, Any] | None, *, where: str) -> dict[str, Any]:
    """The values of an options schema (by name) for ``given`` values: defaults filled in, each checked."""
    from . import options as opts

    if schema is None:
        if given:
            raise SlimError(f"{where.removesuffix(' option')} takes no options, got {', '.join(sorted(given))}")
        return {}
    return opts.to_dict(opts.from_dict(schema, given or {}, where=where, strict=True))


def evaluate(model: LoadedModel, data_path: str | None, *, registry: Registry, evaluator: str | None = None,
             options: dict[str, Any] | None = None, progress: ProgressFn | None = None,
             cancel: CancelToken | None = None, **more: Any) -> dict[str, Any]:
    """Run an evaluator (default: the family's first) with its options (by name; defaults for the rest).
    The result is the evaluator's dict plus ``evaluator`` and ``metrics`` (its declared metrics with units
    and direction, see :func:`slimgui.core.metrics.with_metrics`)."""
    from .metrics import with_metrics

    if not model.has_weights:
        raise SlimError(f"{model.source} has no weights (config only)", hint="open a folder with weights to evaluate it")
    spec = evaluator_spec(model, registry, evaluator)
    values = option_values(registry.options(spec), {**(options or {}), **more}, where=f"{spec.name} option")
    fn = registry.evaluator(spec.name, model.family)
    result = dict(fn(model, data_path, progress=progress, cancel=cancel, **values))
    result.setdefault("evaluator", spec.name)
    bad = [m.name for m in spec.metrics if isinstance(result.get(m.name), float) and not math.isfinite(result[m.name])]
    if bad:  # a NaN is never a result: say where it comes from
        raise SlimError(f"the {spec.name} evaluation of {Path(str(model.source)).name} gave {result[bad[0]]} "
                        f"({', '.join(bad)}): {nonfinite_weights(model) or 'its outputs are not finite'}",
                        hint="repair or re-create the model's weights")
    return with_metrics(result, spec.metrics)


def nonfinite_weights(model: LoadedModel, limit: int = 3) -> str | None:
    """Which parameters of a loaded model hold NaN/Inf ("its weights hold NaN/Inf in a, b, …"), or None."""
    import torch

    module = getattr(model, "module", None)
    if module is None:
        return None
    bad = [n for n, p in module.named_parameters() if p.is_floating_point() and p.device.type != "meta"
           and not bool(torch.isfinite(p).all())]
    if not bad:
        return None
    return f"its weights hold NaN/Inf in {', '.join(bad[:limit])}" + (f" and {len(bad) - limit} more" if len(bad) > limit else "")


def previewer_spec(model: LoadedModel, registry: Registry, name: str | None = None, media: str | None = None):
    """The previewer ``name`` (or the family's first, of ``media`` when given) for the model's family."""
    if name:
        return registry.previewer_spec(name, model.family)
    specs = [s for s in registry.previewer_specs(model.family) if media is None or s.media == media]
    if not specs:
        raise SlimError(f"no previewer{' of ' + media if media else ''} applies to {model.family} models")
    return specs[0]


def check_context_options(model: LoadedModel, registry: Registry, spec: Any, values: dict[str, Any]) -> None:
    """Refuse, before any work, a length option (declared ``context=True``) beyond the model's context (the
    adapter's ``context_limit``), naming the limit and where it is stated."""
    from . import options as opts

    schema = registry.options(spec)
    if schema is None:
        return
    fields = [f for f in opts.fields_of(schema) if f.opt.context and isinstance(values.get(f.name), int)]
    if not fields:
        return
    limit = adapter_of(model, registry).context_limit(model)
    if limit is None:
        return
    items = registry.spec_of(model).items or "items"
    for f in fields:
        value = int(values[f.name])
        if value > limit[0]:
            flag = f.flags[0] if f.flags else f.name
            raise SlimError(f"{flag} {value:,} is more than the model's context of {limit[0]:,} {items} ({limit[1]})",
                            hint=f"use at most {limit[0]:,}")


def preview(model: LoadedModel, *, registry: Registry, previewer: str | None = None,
            options: dict[str, Any] | None = None, label: str | None = None, progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> Any:
    """Run a previewer with its options; returns its media.  ``label`` (the row's name), ``progress`` and
    ``cancel`` are passed when the previewer takes them."""
    if not model.has_weights:
        raise SlimError(f"{model.source} has no weights (config only)", hint="open a folder with weights to preview it")
    spec = previewer_spec(model, registry, previewer)
    values = option_values(registry.options(spec), options, where=f"{spec.name} option")
    fn = registry.previewer(spec.name, model.family)
    extra = {k: v for k, v in {"label": label, "progress": progress, "cancel": cancel}.items() if v is not None}
    return fn(model, **values, **_accepted(fn, extra))


def exporter_spec(model: LoadedModel | None, registry: Registry, name: str, family: str | None = None):
    return registry.exporter_spec(name, family or (model.family if model is not None else None))


def export(model: LoadedModel, fmt: str, out: str, *, registry: Registry, options: dict[str, Any] | None = None,
           force: bool = False, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
           **context: Any) -> dict[str, Any]:
    """Export with the format ``fmt`` (an exporter the family declares, or the core's native folder) and
    its options.  The exporter writes ``out`` (checked first: never the model's own folder); the result is
    its dict plus ``format``, ``source`` and ``metrics`` (declared)."""
    from .metrics import with_metrics

    spec = exporter_spec(model, registry, fmt)
    if not out or not str(out).strip():
        raise SlimError("choose where to write the export")
    if spec.suffix and not str(out).lower().endswith(spec.suffix):
        raise SlimError(f"{out} does not end in {spec.suffix}", hint=f"give the file a name ending in {spec.suffix}")
    check_output_path(out, spec.output, force=force, sources=[model.source])
    values = option_values(registry.options(spec), options, where=f"{spec.name} option")
    fn = registry.exporter(spec.name, model.family)
    try:
        result = dict(fn(model, str(out), registry=registry, force=force, progress=progress, cancel=cancel,
                         **values, **context))
    except SlimError:
        raise
    except Exception as exc:
        if disk_full(exc):
            raise SlimError(f"not enough disk space to write {out}", hint="free some space or choose another --out") from None
        raise
    result.setdefault("format", spec.name)
    result.setdefault("source", model.source)
    return with_metrics(result, spec.metrics)


def export_native(model: LoadedModel, out: str, *, registry: Registry, force: bool = False,
                  progress: ProgressFn | None = None, cancel: CancelToken | None = None, **_: Any) -> dict[str, Any]:
    """The core plugin's exporter for every family: the model in its family's native folder format."""
    from .progress import report

    spec = registry.spec_of(model)
    report(progress, 0, 1, f"saving the {spec.native}")
    where = save(model, out, registry=registry, force=force)
    report(progress, 1, 1, "saved")
    size = sum(p.stat().st_size for p in Path(where).rglob("*") if p.is_file())
    return {"mode": "fp32", "file": str(where), "bytes": size, "source": model.source, "report": None,
            "native": spec.native}
