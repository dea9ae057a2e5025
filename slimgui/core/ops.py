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
from .io import atomic_write_text, check_output_path
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
    t0 = time.perf_counter()
    model.extra.pop("calibration_used", None)  # a family's calibration records here what it really used
    values = impl.score(model, data, progress=progress, cancel=cancel)
    missing = [u.id for u in graph.prunable() if u.id not in values]
    if missing:
        raise SlimError(f"criterion '{criterion}' returned no score for {', '.join(missing[:5])}")
    meta = {"seconds": round(time.perf_counter() - t0, 3)}
    meta.update(getattr(impl, "last_info", None) or {})  # e.g. the full model's perplexity
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
    impl = adapter_of(model, registry)
    if not hasattr(impl, "preset_plan"):
        raise SlimError(f"the {model.family} family has no pruning presets", hint="choose units with --remove")
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
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def evaluate(model: LoadedModel, data_path: str, *, registry: Registry, evaluator: str = "perplexity",
             progress: ProgressFn | None = None, cancel: CancelToken | None = None, **options: Any) -> dict[str, Any]:
    if not model.has_weights:
        raise SlimError(f"{model.source} has no weights (config only)", hint="open a folder with weights to evaluate it")
    fn = registry.evaluator(evaluator, model.family)
    return fn(model, data_path, progress=progress, cancel=cancel, **options)
