"""Jobs: the bookkeeping of a long operation, and the composite tasks the desktop app runs.

A :class:`Job` wraps one call of a core function with the progress/cancel protocol of
:mod:`.progress`: it records status (queued → running → done | failed | cancelled), progress,
ETA and the result or the error's one-line message.  It knows nothing about threads or Qt; the GUI
runs :meth:`Job.run` in a worker thread and listens through :attr:`Job.listener`.

The task functions below (:func:`open_task`, :func:`apply_task`, :func:`preview_task`,
:func:`evaluate_task`, and for retraining :func:`retrain_check_task`, :func:`retrain_task`,
:func:`evaluate_healed_task`, :func:`export_task` and :func:`bench_task`) are what the app's buttons start; each is a plain function taking
``progress`` and ``cancel`` so it is tested headless like every other core step.
"""

from __future__ import annotations

import itertools
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Cancelled, SlimError
from .progress import CancelToken, EtaTracker, ProgressFn, check, report

if TYPE_CHECKING:
    from .model import LoadedModel
    from .plan import PruningPlan
    from .plugins import AdapterSpec, Plugin, Registry
    from .train import TrainConfig, TrainTask


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    """One long operation. ``run(fn)`` calls ``fn(progress=..., cancel=...)`` and records the outcome."""

    title: str
    kind: str = "task"
    id: int = field(default_factory=lambda: next(_ids))
    status: JobStatus = JobStatus.QUEUED
    done: int = 0
    total: int = 0
    message: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    details: str | None = None  # a traceback, for bugs only
    result: Any = field(default=None, repr=False)
    cancel_token: CancelToken = field(default_factory=CancelToken, repr=False)
    listener: Callable[[Job], None] | None = field(default=None, repr=False)
    _eta: EtaTracker | None = field(default=None, repr=False)
    _phase: tuple[int, str] = field(default=(0, ""), repr=False)

    # -- progress protocol ---------------------------------------------------------------------
    def progress(self, done: int, total: int, message: str = "") -> None:
        if total != self._phase[0]:  # a new phase (another total): restart the rate estimate
            self._phase = (total, message)
            self._eta = EtaTracker()
        self.done, self.total, self.message = int(done), int(total), message
        self._notify()

    def cancel(self) -> None:
        self.cancel_token.cancel()
        if self.status == JobStatus.QUEUED:
            self.message = "cancelling…"
        self._notify()

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_token.cancelled

    @property
    def fraction(self) -> float | None:
        if self.status == JobStatus.DONE:
            return 1.0
        return self.done / self.total if self.total > 0 else None

    @property
    def eta(self) -> float | None:
        if self.status != JobStatus.RUNNING or self._eta is None:
            return None
        return self._eta.eta(self.done, self.total)

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def _notify(self) -> None:
        if self.listener is not None:
            try:
                self.listener(self)
            except Exception:  # a listener's bug must not kill the work
                pass

    # -- running -------------------------------------------------------------------------------
    def run(self, fn: Callable[..., Any]) -> Any:
        """Run ``fn(progress=, cancel=)`` here and now; never raises (the outcome is in the fields)."""
        self.started = time.time()
        self._eta = EtaTracker()
        try:
            check(self.cancel_token)
            self.status = JobStatus.RUNNING
            self._notify()
            self.result = fn(progress=self.progress, cancel=self.cancel_token)
            self.status = JobStatus.DONE
            self.message = self.message if self.message and self.message != "cancelling…" else "done"
        except Cancelled:
            self.status = JobStatus.CANCELLED
            self.message = "cancelled"
        except SlimError as exc:
            self.status = JobStatus.FAILED
            self.error = exc.one_line()
        except Exception as exc:  # a bug: keep the traceback for the details view
            self.status = JobStatus.FAILED
            self.error = f"{type(exc).__name__}: {exc}"
            self.details = traceback.format_exc()
        finally:
            self.finished = time.time()
            self._notify()
        return self.result


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


# -- opening, with ties settled by the caller ---------------------------------------------------
@dataclass
class NeedsChoice:
    """``open_task`` found several adapters with the same confidence: the caller asks the user."""

    path: str
    candidates: list[tuple[float, Plugin, AdapterSpec]]


def file_kind(path: str) -> str:
    """What kind of thing ``path`` is, for remembering adapter choices: "folder" or the suffix."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    return p.suffix.lower() or "file"


def open_task(path: str, *, registry: Registry, adapter: str | None = None,
              remembered: dict[str, str] | None = None, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None, **options: Any) -> LoadedModel | NeedsChoice:
    """Open ``path``; on a tie between adapters return :class:`NeedsChoice` unless a remembered
    choice for this kind of file settles it.  ``demo:NAME`` opens (and if needed builds) a demo."""
    from .model import open_model, probe

    if path.startswith("demo:"):
        path = registry.demo(path[5:])(progress=progress, cancel=cancel)["model"]
    check(cancel)
    if adapter is None:
        candidates = probe(path, registry)
        if candidates:
            best = candidates[0][0]
            tied = [c for c in candidates if abs(c[0] - best) < 1e-9]
            if len(tied) > 1:
                want = (remembered or {}).get(file_kind(path))
                names = [spec.name for _, _, spec in tied]
                if want in names:
                    adapter = want
                else:
                    return NeedsChoice(path=path, candidates=tied)
    return open_model(path, registry=registry, adapter=adapter, progress=progress, cancel=cancel, **options)


# -- the app's composite steps ----------------------------------------------------------------
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


def open_models(items: Sequence[LoadedModel | str], *, registry: Registry, adapter: str | None = None,
                cancel: CancelToken | None = None) -> list[LoadedModel]:
    """Each item itself, or the model in the folder it names opened here (with its graph), in order."""
    out = []
    for item in items:
        check(cancel)
        out.append(_model_at(item, registry=registry, adapter=adapter, cancel=cancel))
    return out


def preview_task(models: Sequence[LoadedModel | str], previewer: str, *, registry: Registry, options: dict[str, Any],
                 labels: Sequence[str] | None = None, adapter: str | None = None, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> list[Any]:
    """The same previewer with the same options on each model (original first); one media per model.

    A model may be given as a folder (e.g. a healed model not loaded yet): it is opened here (``adapter``).

    ``options`` go to the previewer as they are (a text previewer's prompt and token count, an image
    previewer's prompt, seed, number of images, steps and guidance).  Each model's ``labels`` entry and the
    job's ``progress`` (scaled to this model's share) and ``cancel`` are passed too when the previewer takes
    them (by name or through ``**kwargs``), so a long preview reports progress and stops when cancelled."""
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
        fn = registry.previewer(previewer, model.family)

        def sub(done: int, total: int, message: str = "", i: int = i) -> None:
            report(progress, i * 1000 + (1000 * done // max(1, total)), n * 1000, f"{message} (model {i + 1} of {n})")

        extra = {"label": label, "progress": sub, "cancel": cancel}
        out.append(fn(model, **options, **_accepted(fn, {k: v for k, v in extra.items() if v is not None})))
    check(cancel)
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


def evaluate_task(models: Sequence[LoadedModel], data_path: str, *, registry: Registry, evaluator: str = "perplexity",
                  progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                  **options: Any) -> list[dict[str, Any]]:
    """The same evaluation on each model; progress spans all of them."""
    from .ops import evaluate

    out = []
    n = len(models)
    for i, model in enumerate(models):
        check(cancel)

        def sub(done: int, total: int, message: str = "", i: int = i) -> None:
            report(progress, i * 1000 + (1000 * done // max(1, total)), n * 1000, f"{message} (model {i + 1} of {n})")

        out.append(evaluate(model, data_path, registry=registry, evaluator=evaluator, progress=sub, cancel=cancel,
                            **options))
    return out


# -- retraining ------------------------------------------------------------------------------------
def retrain_check_task(cfg: TrainConfig, *, registry: Registry, resume: bool = False, check_out: bool = True,
                       progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> tuple[dict, TrainTask]:
    """Check a retraining job before it starts and estimate its time and memory on this machine.

    Returns ``(estimate, task)``; the prepared task (model with adapters, token blocks) is handed to
    :func:`retrain_task` so the model is loaded once.  Raises :class:`SlimError` saying what to change
    when the job cannot work: unknown LoRA target modules, empty or too little data, a batch that
    cannot fit in memory, an output folder that already holds another run (unless ``check_out`` is
    False: an estimate only).
    """
    import random

    import torch

    from .train import build_task, checkpoints, estimate, sample_count

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
                        hint="give more data (text: or a smaller sequence length)")
    report(progress, 1, 2, "timing one training step")
    est = estimate(cfg, task)
    if est["step_seconds"] < 10:  # the first pass pays one-time costs: time a warm one when that is cheap
        check(cancel)
        est = estimate(cfg, task)
    machine = est["machine_memory_bytes"]
    est["fits"] = not machine or est["memory_bytes"] <= 0.9 * machine
    est.update({k: v for k, v in task.info.items() if k in ("train_sequences", "val_sequences")})
    est["items"] = str(task.info.get("items", "tokens"))  # what "tokens" counts: tokens, or images
    if not est["fits"]:
        raise SlimError(f"this job needs about {est['memory_bytes'] / 2**30:.1f} GiB but the machine has "
                        f"{machine / 2**30:.1f} GiB", hint="lower the batch size or the sequence length")
    done = run_state(out)["step"] if resume else 0
    est["steps_left"] = max(0, cfg.steps - done)
    est["seconds_left"] = round(est["step_seconds"] * est["steps_left"], 1)
    est["epochs"] = round(cfg.steps * cfg.batch_size * cfg.grad_accum / max(1, n_train), 2)
    report(progress, 2, 2, "checked")
    return est, task


def retrain_task(cfg: TrainConfig, *, registry: Registry, task: TrainTask | None = None, resume: bool = False,
                 events: Callable[[dict[str, Any]], None] | None = None, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> dict[str, Any]:
    """:func:`slimgui.core.train.run_training` with the job protocol: its step events also drive
    ``progress`` (steps of this session of the run, so the ETA is right after a resume)."""
    from .train import run_training

    first = [0]

    def on_event(ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "start":
            first[0] = int(ev.get("step", 0))
            report(progress, 0, max(1, ev["total"] - first[0]), f"step {first[0]}/{ev['total']}")
        elif kind == "step":
            msg = f"step {ev['step']}/{ev['total']} · loss {ev['train_loss']:.3f}"
            report(progress, ev["step"] - first[0], max(1, ev["total"] - first[0]), msg)
        if events is not None:
            events(ev)

    return run_training(cfg, registry=registry, events=on_event, cancel=cancel, resume=resume, task=task)


def run_state(out: str | Path) -> dict[str, Any]:
    """What a run folder holds, for showing it again (curves after reopening, Resume):
    ``{"step", "steps", "history": [[step, loss]], "val_history": [[step, loss]], "finished", "checkpoints",
    "result"}``.  An empty folder gives step 0 and empty histories."""
    import json

    from .train import checkpoints

    root = Path(out)
    ckpts = checkpoints(root)
    state: dict[str, Any] = {"step": 0, "steps": None, "history": [], "val_history": [], "finished": False,
                             "checkpoints": [str(c) for c in ckpts], "result": None}
    try:
        job = json.loads((root / "job.json").read_text(encoding="utf-8"))
        state["steps"] = int(job["config"]["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    doc = None
    if ckpts:
        try:
            doc = json.loads((ckpts[-1] / "trainer_state.json").read_text(encoding="utf-8"))
            state["step"] = int(doc.get("global_step", 0))
        except (OSError, ValueError):
            doc = None
    try:
        final = json.loads((root / "slimgui_train.json").read_text(encoding="utf-8"))
        if int(final.get("step", 0)) >= state["step"]:
            doc, state["finished"], state["step"] = final, True, int(final.get("step", 0))
            state["result"] = {k: v for k, v in final.items() if k not in ("history", "val_history")}
    except (OSError, ValueError, TypeError):
        pass
    if doc is not None:
        state["history"] = [list(p) for p in doc.get("history", []) if int(p[0]) <= state["step"]]
        state["val_history"] = [list(p) for p in doc.get("val_history", []) if int(p[0]) <= state["step"]]
    return state


def evaluate_healed_task(models: dict[str, LoadedModel], healed_path: str, data_path: str, *, registry: Registry,
                         progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                         **options: Any) -> tuple[LoadedModel, dict[str, dict[str, Any]]]:
    """Open the healed model and measure it next to ``models`` (e.g. original and slimmed) on one file.

    Returns the healed model (with its graph, ready to show or compare) and ``{name: evaluation}``
    with "healed" last."""
    from .model import open_model
    from .ops import graph_of

    first = next(iter(models.values()), None)
    report(progress, 0, 1, "opening the healed model")
    healed = open_model(healed_path, registry=registry, adapter=first.adapter if first is not None else None,
                        cancel=cancel)
    graph_of(healed, registry)
    check(cancel)
    names = [*models, "healed"]
    results = evaluate_task([*models.values(), healed], data_path, registry=registry, progress=progress,
                            cancel=cancel, **options)
    return healed, dict(zip(names, results))


# -- export and benchmark ----------------------------------------------------------------------------
EXPORT_MODES = ("fp32", "int8", "mixed")


def _model_at(item: LoadedModel | str, *, registry: Registry, adapter: str | None, cancel: CancelToken | None,
              progress: ProgressFn | None = None) -> LoadedModel:
    """``item`` itself, or the model in the folder ``item`` opened (with its graph)."""
    from .model import LoadedModel as _Loaded
    from .model import open_model
    from .ops import graph_of

    if isinstance(item, _Loaded):
        return item
    model = open_model(str(item), registry=registry, adapter=adapter, progress=progress, cancel=cancel)
    graph_of(model, registry)
    return model


def folder_bytes(path: str | Path) -> int:
    root = Path(path)
    if root.is_file():
        return root.stat().st_size
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def export_task(model: LoadedModel | str, out: str, *, registry: Registry, fmt: str = "onnx", mode: str = "fp32",
                with_past: bool = False, fp32_fraction: float = 0.1, keep_fp32: Sequence[str] | None = None,
                sensitivity: dict[str, float] | None = None,
                sample_text: str | None = None, adapter: str | None = None, force: bool = False,
                progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> tuple[dict[str, Any], LoadedModel]:
    """Export ``model`` (loaded, or a folder opened here) as a transformers folder (``fmt="hf"``) or an ONNX
    file checked against torch (``fmt="onnx"``, ``mode`` fp32/int8/mixed; ``keep_fp32``: the layers a
    mixed export keeps FP32 instead of the sensitivity scan's choice; ``sample_text``: a text file the
    comparison inputs are drawn from).  Returns ``(report, model)``: the check report as
    ``slimgui export --json`` gives it, with ``format``, ``mode`` and ``report`` (where the ONNX check report
    was written) added, and the model that was exported.  Nothing is written when a check fails."""
    from .ops import save

    if fmt not in ("onnx", "hf"):
        raise SlimError(f"unknown export format '{fmt}'", hint="choose onnx or hf")
    if mode not in EXPORT_MODES:
        raise SlimError(f"unknown precision '{mode}'", hint="choose fp32, int8 or mixed")
    if not out or not str(out).strip():
        raise SlimError("choose where to write the export")
    if fmt == "hf" and (mode != "fp32" or with_past):
        raise SlimError("INT8, mixed precision and past key/values apply to ONNX exports",
                        hint="choose ONNX, or FP32 without past key/values")
    if fmt == "onnx" and mode != "fp32" and with_past:
        raise SlimError("past key/values are available for the FP32 export only", hint="untick past key/values")
    if fmt == "onnx" and not str(out).lower().endswith(".onnx"):
        raise SlimError(f"{out} does not end in .onnx", hint="give the ONNX file a name ending in .onnx")
    model = _model_at(model, registry=registry, adapter=adapter, cancel=cancel)
    check(cancel)
    if fmt == "hf":
        report(progress, 0, 1, "saving the transformers folder")
        where = save(model, out, registry=registry, force=force)
        report(progress, 1, 1, "saved")
        return {"format": "hf", "mode": "fp32", "file": str(where), "bytes": folder_bytes(where),
                "source": model.source, "report": None}, model
    if not hasattr(model.impl, "export_onnx"):
        raise SlimError(f"the {model.family} family cannot export to ONNX yet", hint="export a transformers folder")
    if Path(out).exists() and not force:
        raise SlimError(f"{out} already exists", hint="choose another file name")
    options: dict[str, Any] = {"progress": progress, "cancel": cancel}
    if sample_text:
        from .data import read_text_file

        options["sample_text"] = read_text_file(sample_text, "sample text file")[:200_000]
    if mode == "mixed":
        options["fp32_fraction"] = float(fp32_fraction)
        if keep_fp32 is not None:
            options["keep_fp32"] = list(keep_fp32)
        if sensitivity:
            options["sensitivity"] = dict(sensitivity)  # reuse an earlier scan of the same model
    result = dict(model.impl.export_onnx(model, str(out), mode=mode, with_past=with_past, **options))
    result.update({"format": "onnx", "mode": mode, "report": str(out) + ".check.json", "source": model.source})
    return result, model


def bench_task(entries: Sequence[tuple[str, Any]], *, registry: Registry, batches: Sequence[int], seq: int = 128,
               new_tokens: int = 16, threads: int | None = 2, repeats: int = 5, decode: bool = True,
               width: tuple[str, Any, Any] | None = None, adapter: str | None = None,
               progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, Any]:
    """:func:`slimgui.core.bench.benchmark` of ``entries`` (``(label, model)``: a loaded model, a model folder
    opened here, or an ``.onnx`` file) side by side; speedups are relative to the first entry.

    ``width=(label, base, match)`` adds the width-pruned variant of the model ``base`` (loaded or a folder) with
    the parameter count of the model ``match`` (or that many parameters, an int): depth versus width pruning
    at equal size.  The
    result is the benchmark's, with ``"models"``: ``[{"label", "source", "params", "runtime"}]`` in order.
    The caller's torch thread count is restored afterwards."""
    import torch

    from .bench import benchmark

    batches = [int(b) for b in batches]
    if not entries and width is None:
        raise SlimError("choose at least one model to measure")
    if not batches or min(batches) < 1:
        raise SlimError("give batch sizes of at least 1")
    if seq < 2:
        raise SlimError("the sequence length must be at least 2")
    labels = [label for label, _ in entries] + ([width[0]] if width is not None else [])
    if len(set(labels)) != len(labels):
        raise SlimError("two models to measure have the same name")
    resolved: list[tuple[str, Any]] = []
    n_open = sum(1 for _, item in entries if not _is_onnx(item) and isinstance(item, (str, Path)))
    opened = 0
    for label, item in entries:
        check(cancel)
        if _is_onnx(item):
            if not Path(item).is_file():
                raise SlimError(f"{item} does not exist", hint="export it again or untick it")
            resolved.append((label, str(item)))
            continue
        if isinstance(item, (str, Path)):
            report(progress, opened, n_open + 1, f"opening {label}")
            opened += 1
        model = _model_at(item, registry=registry, adapter=adapter, cancel=cancel)
        if not model.has_weights:
            raise SlimError(f"{model.source} has no weights to benchmark")
        resolved.append((label, model))
    if width is not None:
        label, base, match = width
        check(cancel)
        report(progress, 0, 1, "building the width-pruned variant")
        original = _model_at(base, registry=registry, adapter=adapter, cancel=cancel)
        fn = getattr(original.impl, "width_variant", None)
        if fn is None:
            raise SlimError(f"the {original.family} family has no width pruning to compare with")
        if isinstance(match, int):
            target = match
        else:
            other = _model_at(match, registry=registry, adapter=adapter, cancel=cancel)
            target = sum(p.numel() for p in other.module.parameters())
        resolved.append((label, fn(original, target)))
    before = torch.get_num_threads()
    try:
        result = benchmark(resolved, batches=batches, seq=seq, new_tokens=new_tokens, threads=threads,
                           repeats=repeats, decode=decode, progress=progress, cancel=cancel)
    finally:
        torch.set_num_threads(before)
    result["models"] = [{"label": label, "runtime": "onnxruntime" if _is_onnx(item) else "torch",
                         "source": str(item) if _is_onnx(item) else item.source,
                         "params": None if _is_onnx(item) else sum(p.numel() for p in item.module.parameters())}
                        for label, item in resolved]
    result["batches"] = batches
    result["decode"] = bool(decode)
    result["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return result


def _is_onnx(item: Any) -> bool:
    return isinstance(item, (str, Path)) and str(item).lower().endswith(".onnx")
