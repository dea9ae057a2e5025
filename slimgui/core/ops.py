"""The core steps every front end calls: inspect, analyse, plan, prune, save, evaluate.

Each is a plain function; long ones take ``progress`` and ``cancel`` (see :mod:`.progress`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import SlimError
from .graph import UnitGraph
from .io import atomic_write_text
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
    values = impl.score(model, data, progress=progress, cancel=cancel)
    missing = [u.id for u in graph.prunable() if u.id not in values]
    if missing:
        raise SlimError(f"criterion '{criterion}' returned no score for {', '.join(missing[:5])}")
    meta = {"seconds": round(time.perf_counter() - t0, 3)}
    meta.update(getattr(impl, "last_info", None) or {})  # e.g. the full model's perplexity
    if data is not None:
        meta["data"] = {k: v for k, v in vars(data).items()} if hasattr(data, "__dict__") else str(data)
    return Scores(criterion=criterion, values={k: float(v) for k, v in values.items()}, model=model.source,
                  locked=locked, keep=keep, meta=meta)


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
    """Save into ``out_dir`` atomically: everything goes to a sibling temp folder, then is moved in."""
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise SlimError(f"{out} already exists and is not empty", hint="choose another --out or pass --force")
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
