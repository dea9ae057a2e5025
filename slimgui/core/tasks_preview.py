"""The Compare panel's tasks: the same previewer, or the same evaluation, on each model side by side.

:func:`preview_task` runs one previewer with the same options on each model (one media per model) and
:func:`evaluate_task` one evaluator (perplexity on a file, ...); progress spans all the models.
No Qt here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import SlimError
from .progress import CancelToken, ProgressFn, check, report
from .tasks_open import open_models

if TYPE_CHECKING:
    from .model import LoadedModel
    from .plugins import Registry


def preview_task(models: Sequence[LoadedModel | str], previewer: str, *, registry: Registry, options: dict[str, Any],
                 labels: Sequence[str] | None = None, adapter: str | None = None, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> list[Any]:
    """The same previewer with the same options on each model (original first); one media per model.

    A model may be given as a folder (e.g. a healed model not loaded yet): it is opened here (``adapter``).

    ``options`` go to the previewer as they are (a text previewer's prompt and token count, an image
    previewer's prompt, seed, number of images, steps and guidance).  Each model's ``labels`` entry and the
    job's ``progress`` (scaled to this model's share) and ``cancel`` are passed too when the previewer takes
    them (by name or through ``**kwargs``), so a long preview reports progress and stops when cancelled.
    With more than one model, a previewer that declares a ``joint`` step has its media redrawn together (e.g.
    on one colour scale) before they are returned."""
    labels = list(labels) if labels is not None else [None] * len(models)
    if len(labels) != len(models):
        raise SlimError("give one label per model to preview")
    models = open_models(models, registry=registry, adapter=adapter, cancel=cancel)
    out = []
    n = len(models)
    for i, (model, label) in enumerate(zip(models, labels)):
        check(cancel)
        if not model.has_weights:
            raise SlimError(f"{model.source} has no weights (config only)", hint="open a folder with weights to preview it")
        report(progress, i * 1000, n * 1000, f"{previewer} on {label or f'model {i + 1}'} ({i + 1} of {n})")
        from .ops import option_values

        spec = registry.previewer_spec(previewer, model.family)
        values = option_values(registry.options(spec), options, where=f"{spec.name} option")
        fn = registry.previewer(spec.name, model.family)

        def sub(done: int, total: int, message: str = "", i: int = i) -> None:
            report(progress, i * 1000 + (1000 * done // max(1, total)), n * 1000, f"{message} (model {i + 1} of {n})")

        extra = {"label": label, "progress": sub, "cancel": cancel}
        out.append(fn(model, **values, **_accepted(fn, {k: v for k, v in extra.items() if v is not None})))
    check(cancel)
    if len(out) > 1 and spec.joint:
        joint = registry.target(spec, spec.joint, "joint")
        redrawn = list(joint(out))
        if len(redrawn) != len(out):
            raise SlimError(f"the {spec.name} previewer's joint step returned {len(redrawn)} media for {len(out)} "
                            "models", hint="report this to the plugin's authors")
        out = redrawn
    report(progress, n * 1000, n * 1000, "done")
    return out


def _accepted(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``kwargs`` that ``fn`` takes (all of them when it has ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def evaluate_task(models: Sequence[LoadedModel], data_path: str | None, *, registry: Registry,
                  evaluator: str | None = None, options: dict[str, Any] | None = None,
                  progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                  **more: Any) -> list[dict[str, Any]]:
    """The same evaluation (``evaluator``, default the family's first, with its ``options`` by name) on each
    model; progress spans all of them.  Each result carries its declared ``metrics``."""
    from .ops import evaluate

    out = []
    n = len(models)
    for i, model in enumerate(models):
        check(cancel)

        def sub(done: int, total: int, message: str = "", i: int = i) -> None:
            report(progress, i * 1000 + (1000 * done // max(1, total)), n * 1000, f"{message} (model {i + 1} of {n})")

        out.append(evaluate(model, data_path, registry=registry, evaluator=evaluator,
                            options={**(options or {}), **more}, progress=sub, cancel=cancel))
    return out
