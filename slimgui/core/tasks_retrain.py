"""The Retrain panel's tasks: check a training job, run it, and measure the healed model.

:func:`retrain_check_task` validates a job and estimates its time and memory on this machine (and prepares the
task once), :func:`retrain_task` runs :func:`slimgui.core.train.run_training` with the job protocol, and
:func:`evaluate_healed_task` opens the healed model and evaluates it beside the others.  What a run folder
holds is :func:`slimgui.core.runs.run_state`.  No Qt here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SlimError
from .progress import CancelToken, ProgressFn, check, report
from .runs import run_state
from .tasks_preview import evaluate_task

if TYPE_CHECKING:
    from .model import LoadedModel
    from .plugins import Registry
    from .train import TrainConfig, TrainTask


def retrain_check_task(cfg: TrainConfig, *, registry: Registry, resume: bool = False, check_out: bool = True,
                       reuse: dict[str, Any] | None = None, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> tuple[dict, TrainTask]:
    """Check a retraining job before it starts and estimate its time and memory on this machine.

    Returns ``(estimate, task)``; the prepared task (model with adapters, token blocks) is handed to
    :func:`retrain_task` so the model is loaded once.  Raises :class:`SlimError` saying what to change
    when the job cannot work: unknown LoRA target modules, empty or too little data, a batch that
    cannot fit in memory, an output folder that already holds another run (unless ``check_out`` is
    False: an estimate only).  ``reuse``: an earlier estimate; when its ``key`` is this job's
    (:func:`~slimgui.core.train.estimate_key`: only the step count, intervals or run folder differ) its step and
    validation times are used instead of timing a step again.
    """
    import random

    import torch

    from .train import build_task, checkpoints, estimate, estimate_key, sample_count, time_left

    cfg.validate()
    out = Path(cfg.out)
    if check_out and not resume and (checkpoints(out) or (out / "slimgui_train.json").exists()):
        raise SlimError(f"{out} already holds a training run", hint="resume it, or choose another run folder")
    report(progress, 0, 2, "loading the model and the data")
    torch.manual_seed(cfg.seed)  # as run_training does before building, so adapters start the same
    random.seed(cfg.seed)
    task = build_task(cfg, registry)
    check(cancel)
    n_train = sample_count(task.train_blocks)  # token blocks, or a dict of per-sample tensors (images)
    if n_train == 0:
        raise SlimError("the training data gives no full training sample",
                        hint=str(task.info.get("too_little_data") or "give more training data"))
    if reuse is not None and reuse.get("key") == estimate_key(cfg) and reuse.get("step_seconds") is not None:
        est = {**reuse}  # a fresh estimate of the same job (only the step count or intervals differ): no second timing
        est["reused"] = True
    else:
        report(progress, 1, 2, "timing one training step")
        est = estimate(cfg, task)
        if est["step_seconds"] < 10:  # the first pass pays one-time costs: time a warm one when that is cheap
            check(cancel)
            est = estimate(cfg, task)
        est["key"] = estimate_key(cfg)
    machine = est["machine_memory_bytes"]
    est["fits"] = not machine or est["memory_bytes"] <= 0.9 * machine
    est.update({k: v for k, v in task.info.items() if k in ("train_sequences", "val_sequences")})
    est["items"] = str(task.info.get("items", "samples"))  # what the counts count: tokens, images, ...
    if not est["fits"]:
        raise SlimError(f"this job needs about {est['memory_bytes'] / 2**30:.1f} GiB but the machine has "
                        f"{machine / 2**30:.1f} GiB", hint=str(task.info.get("too_much_memory") or "lower the batch size"))
    done = run_state(out)["step"] if resume else 0
    est.update(time_left(est, cfg, done))
    est["epochs"] = round(cfg.steps * cfg.batch_size * cfg.grad_accum / max(1, n_train), 2)
    report(progress, 2, 2, "checked")
    return est, task


def retrain_task(cfg: TrainConfig, *, registry: Registry, task: TrainTask | None = None, resume: bool = False,
                 events: Callable[[dict[str, Any]], None] | None = None, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> dict[str, Any]:
    """:func:`slimgui.core.train.run_training` with the job protocol: its step events also drive ``progress``
    (the whole run's steps, so a resumed run shows how far the run is; the ETA is timed from where it resumed)."""
    from .train import run_training

    first = [0]

    def on_event(ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "start":  # the whole run's steps: a resumed run at step 6 of 12 is half done (its ETA is
            first[0] = int(ev.get("step", 0))  # timed from step 6: the job's tracker takes the first as baseline)
            report(progress, first[0], max(1, ev["total"]), f"step {first[0]}/{ev['total']}")
        elif kind == "step":
            msg = f"step {ev['step']}/{ev['total']} · loss {ev['train_loss']:.3f}"
            report(progress, ev["step"], max(1, ev["total"]), msg)
        if events is not None:
            events(ev)

    return run_training(cfg, registry=registry, events=on_event, cancel=cancel, resume=resume, task=task)


def evaluate_healed_task(models: dict[str, LoadedModel], healed_path: str, data_path: str | None, *,
                         registry: Registry, evaluator: str | None = None, options: dict[str, Any] | None = None,
                         adapter: str | None = None, measured: Callable[[], dict[str, dict[str, Any]]] | None = None,
                         progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> tuple[LoadedModel, dict[str, dict[str, Any]]]:
    """Open the healed model and measure it next to ``models`` (e.g. original and slimmed) on one file.

    Returns the healed model (with its graph, ready to show or compare) and ``{name: evaluation}``
    with "healed" last.  ``adapter`` opens the healed model with the models' adapter (default: the first
    model's).  ``measured``: the evaluations of models measured elsewhere (the app measures the open models
    in their own jobs, so that work queued on them waits for one model, not three); it is called after the
    healed model is measured, may block until they are ready, and its results come before "healed"."""
    from .model import open_model
    from .ops import graph_of

    first = next(iter(models.values()), None)
    report(progress, 0, 1, "opening the healed model")
    healed = open_model(healed_path, registry=registry, adapter=adapter or (first.adapter if first is not None else None),
                        cancel=cancel)
    graph_of(healed, registry)
    check(cancel)
    names = [*models, "healed"]
    results = evaluate_task([*models.values(), healed], data_path, registry=registry, evaluator=evaluator,
                            options=options, progress=progress, cancel=cancel)
    if measured is not None:
        report(progress, 1, 1, "measured; waiting for the open models' measurements")
        return healed, {**measured(), **dict(zip(names, results))}
    return healed, dict(zip(names, results))
