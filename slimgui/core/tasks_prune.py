"""The Analysis and Plan panels' tasks: score a model's units, and build the slimmed model.

:func:`analyze_task` runs one criterion (:func:`slimgui.core.ops.analyze`); :func:`apply_task` removes the
plan's units from a copy of the model and saves it.  Plain functions taking ``progress`` and ``cancel``.
No Qt here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .progress import CancelToken, ProgressFn, check, report

if TYPE_CHECKING:
    from .model import LoadedModel
    from .plan import PruningPlan
    from .plugins import Registry


def analyze_task(model: LoadedModel, criterion: str, *, registry: Registry, data: Any = None,
                 keep: str | None = None, progress: ProgressFn | None = None, cancel: CancelToken | None = None):
    from .ops import analyze

    return analyze(model, criterion, registry=registry, data=data, keep=keep, progress=progress, cancel=cancel)


def apply_task(model: LoadedModel, plan: PruningPlan, *, registry: Registry, out_dir: str | None = None,
               progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> tuple[LoadedModel, str | None]:
    """Build the slimmed model (a physically smaller copy) and, when it has weights, save it to ``out_dir``."""
    from .ops import graph_of, prune, save

    steps = 2 if out_dir and model.has_weights else 1
    report(progress, 0, steps, "removing blocks")
    check(cancel)
    slim = prune(model, plan, registry=registry, copy=True)
    graph_of(slim, registry)
    report(progress, 1, steps, "saving the slimmed model" if steps == 2 else "built")
    check(cancel)
    where = None
    if steps == 2:
        where = str(save(slim, out_dir, registry=registry, force=True))
        slim.source = where
        report(progress, 2, steps, "saved")
    return slim, where
