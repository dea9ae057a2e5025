"""Retraining that heals slimmed models, written once on HF accelerate.

The same function runs in the desktop app's background worker, in ``slimgui retrain`` and, unchanged,
under ``accelerate launch -m slimgui.core.train JOB.json`` on several GPUs or nodes.  The model family
supplies a *training task* (model, token blocks, loss, final save) through its adapter's
healing method (a :class:`~slimgui.core.plugins.MethodSpec` whose target builds a :class:`TrainTask` from the
config and the method's options); this module owns the loop, the schedule, evaluation, progress
events, cancellation and checkpoints.

Checkpoints go to ``OUT/checkpoint-STEP/`` (as the HF Trainer names them), written into a
``.partial`` folder and renamed when complete; the last ``keep_last`` are kept.  They hold the
trainable weights (safetensors), optimizer and scheduler state (loaded back with
``weights_only=True``), every process's RNG state (JSON + safetensors) and ``trainer_state.json``
with the step, the data position and the loss history — so a run resumed after Cancel, after the
app was closed, or after SIGKILL continues the same run.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import Cancelled, SlimError
from .io import atomic_write_text, disk_full, read_versioned_json, write_versioned_json
from .progress import CancelToken

SCHEMA_VERSION = 2

EventFn = Callable[[dict[str, Any]], None]


@dataclass
class TrainConfig:
    """Everything a retraining job needs; saved as the job's versioned JSON.

    The fields are what every family's retraining shares.  ``options`` holds, by name, the values of the
    healing method's options schema and of the family's training-data options (``AdapterSpec.train_options``);
    the method's builder reads them.  ``adapter`` names the adapter that opens ``model`` (None: the best match)."""

    model: str
    data: list[str]
    out: str
    method: str = ""  # a healing method the model's family declares ("": the family's first)
    teacher: str | None = None
    adapter: str | None = None
    steps: int = 100
    batch_size: int = 8
    grad_accum: int = 1
    lr: float | None = None  # None: the method's default (MethodSpec.default_lr)
    warmup: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    save_every: int = 50
    keep_last: int = 2
    eval_every: int = 50
    val_fraction: float = 0.05
    val_batches: int = 8
    seed: int = 0
    trust_remote_code: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]

    @classmethod
    def flat(cls, **values: Any) -> TrainConfig:
        """A config from flat keyword values: the generic fields by name, everything else into ``options``."""
        known = {f.name for f in fields(cls)}
        opts = dict(values.pop("options", None) or {})
        opts.update({k: values.pop(k) for k in list(values) if k not in known})
        return cls(**values, options=opts)

    def validate(self) -> None:
        if not isinstance(self.method, str):
            raise SlimError("the retraining method must be a name")
        # a missing teacher, and missing data, are the family's to resolve (a family may train on data it
        # brings, a model slimmed by SlimGUI records its original)
        for name in ("steps", "batch_size", "grad_accum", "save_every", "eval_every", "keep_last"):
            if getattr(self, name) < 1:
                raise SlimError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 0.5:
            raise SlimError(f"val-fraction must be between 0 and 0.5, got {self.val_fraction}")
        if not isinstance(self.options, dict):
            raise SlimError("the job's options must be a JSON object")

    def save(self, path: str | os.PathLike) -> None:
        write_versioned_json(path, "train-job", SCHEMA_VERSION, {"config": asdict(self)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        doc = read_versioned_json(path, "train-job", SCHEMA_VERSION, {1: _job_v1_to_v2})
        known = {f.name for f in fields(cls)}
        cfg = doc.get("config", {})
        if not isinstance(cfg, dict):
            raise SlimError(f"{path} is not a valid job file: no config object")
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise SlimError(f"{path}: unknown job settings {', '.join(unknown)}")
        try:
            return cls(**cfg)
        except TypeError as exc:
            raise SlimError(f"{path} is not a valid job file: {exc}") from None


# the generic fields of schema 1; every other key of a schema-1 config was a method's or a family's option
_V1_GENERIC = ("model", "data", "out", "method", "teacher", "steps", "batch_size", "grad_accum", "lr", "warmup",
               "weight_decay", "max_grad_norm", "save_every", "keep_last", "eval_every", "val_fraction", "val_batches",
               "seed", "trust_remote_code", "extra")


def _job_v1_to_v2(doc: dict) -> dict:
    """Schema 1 kept every option as a field of the config; schema 2 keeps them in ``options``, by name."""
    cfg = dict(doc.get("config") or {})
    opts = {k: cfg.pop(k) for k in list(cfg) if k not in _V1_GENERIC}
    extra = dict(cfg.get("extra") or {}) if isinstance(cfg.get("extra"), dict) else {}
    extra["options_from_schema_1"] = True  # every knob of every method: the method takes the ones it knows
    return {**doc, "schema_version": 2, "config": {**cfg, "options": opts, "extra": extra}}


@dataclass
class TrainTask:
    """What a healing method gives the loop.  ``loss(model, batch)`` returns (loss, metrics).

    The samples are a tensor whose first dimension indexes them (token blocks of a language model) or a
    dict of such tensors of equal length (a diffusion model's latents and text embeddings).  ``info`` may
    say ``items_per_sample`` and ``items`` (what the speed is counted in: "tokens", "images", ...),
    ``activation_bytes_per_sample`` (for the memory estimate), ``teacher_params``, ``lr`` (the method's default
    learning rate; the core sets it from the MethodSpec), ``metrics`` (Metric JSON of the validation metrics
    ``val_metrics`` returns) and ``too_little_data`` (a hint when the data gives no sample).
    ``val_metrics(mean_val_loss)`` returns extra validation metrics by name (e.g. a perplexity).
    """

    model: Any  # torch.nn.Module; only parameters with requires_grad are trained
    train_blocks: Any  # LongTensor (N, seq_len), or {name: Tensor(N, ...)}
    val_blocks: Any  # same kind, M samples
    loss: Callable[[Any, Any], tuple[Any, dict[str, float]]]
    save: Callable[[Any, str], None]  # (unwrapped model, out_dir)
    eval_loss: Callable[[Any, Any], Any] | None = None  # (model, batch) -> CE loss for validation perplexity
    info: dict[str, Any] = field(default_factory=dict)
    after_step: Callable[[Any], None] | None = None  # (unwrapped model) after each optimizer step, e.g. an EMA update
    extra_state: Callable[[], dict[str, Any]] | None = None  # tensors to checkpoint beside the weights (e.g. EMA)
    load_extra_state: Callable[[dict[str, Any]], None] | None = None
    val_metrics: Callable[[float], dict[str, float]] | None = None


def sample_count(data: Any) -> int:
    """Number of samples in a tensor or a dict of tensors."""
    if isinstance(data, dict):
        return len(next(iter(data.values()))) if data else 0
    return len(data)


def take(data: Any, index: Any) -> Any:
    """Samples ``index`` (a list of indices or a slice) of a tensor or a dict of tensors."""
    import torch

    if isinstance(index, list):
        index = torch.as_tensor(index, dtype=torch.long)
    if isinstance(data, dict):
        return {k: v[index] for k, v in data.items()}
    return data[index]


def to_device(batch: Any, device: Any) -> Any:
    if isinstance(batch, dict):
        return {k: v.to(device) for k, v in batch.items()}
    return batch.to(device)


# -- checkpoints --------------------------------------------------------------------------------
def checkpoints(out: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``out``, oldest first."""
    root = Path(out)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("checkpoint-") and p.name[11:].isdigit() \
                and (p / "trainer_state.json").is_file():
            found.append(p)
    return sorted(found, key=lambda p: int(p.name[11:]))


def _rng_state() -> tuple[dict, Any]:
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    return ({"python": [py[0], list(py[1]), py[2]], "numpy": [kind, keys.tolist(), pos, has_gauss, cached]},
            torch.get_rng_state())


def _set_rng_state(doc: dict, torch_state) -> None:
    import numpy as np
    import torch

    py = doc["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = doc["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch_state)


def _trainable_state(model) -> dict:
    return {k: v.detach().contiguous().clone() for k, v in model.named_parameters() if v.requires_grad}


def save_checkpoint(accelerator, model, optimizer, scheduler, out: Path, step: int, state: dict, keep_last: int,
                    extra: dict[str, Any] | None = None) -> Path:
    import torch
    from safetensors.torch import save_file

    final = out / f"checkpoint-{step}"
    partial = out / f".checkpoint-{step}.partial"
    if accelerator.is_main_process:
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rank = accelerator.process_index
    rng_doc, torch_rng = _rng_state()
    try:
        atomic_write_text(partial / f"rng_state_{rank}.json", json.dumps(rng_doc))
        save_file({"torch": torch_rng}, str(partial / f"rng_state_{rank}.safetensors"))
        torch.save(optimizer.state_dict(), partial / f"optimizer_{rank}.pt")
        if accelerator.is_main_process:
            save_file(_trainable_state(accelerator.unwrap_model(model)), str(partial / "trainable.safetensors"))
            if extra:
                save_file({k: v.detach().contiguous().cpu() for k, v in extra.items()},
                          str(partial / "extra_state.safetensors"))
            torch.save(scheduler.state_dict(), partial / "scheduler.pt")
            atomic_write_text(partial / "trainer_state.json", json.dumps({**state, "global_step": step}, indent=1))
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if disk_full(exc):
            kept = checkpoints(out)
            raise SlimError(f"not enough disk space to save checkpoint {step} in {out}"
                            + (f"; {kept[-1].name} is intact, resume continues from there" if kept else ""),
                            hint="free some space, then resume the run") from None
        raise
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        for old in checkpoints(out)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, model, optimizer, scheduler, ckpt: Path, load_extra=None) -> dict:
    import torch
    from safetensors.torch import load_file

    rank = accelerator.process_index
    unwrapped = accelerator.unwrap_model(model)
    weights = load_file(str(ckpt / "trainable.safetensors"))
    missing = set(weights) - {k for k, _ in unwrapped.named_parameters()}
    if missing:
        raise SlimError(f"{ckpt} does not belong to this model ({len(missing)} unknown tensors)",
                        hint="resume with the same model and method, or choose a new --out")
    with torch.no_grad():
        params = dict(unwrapped.named_parameters())
        for k, v in weights.items():
            params[k].copy_(v)
    opt_file = ckpt / f"optimizer_{rank}.pt"
    if not opt_file.is_file():
        raise SlimError(f"{ckpt} was written by a run with fewer processes", hint="resume with the same launch setup")
    optimizer.load_state_dict(torch.load(opt_file, weights_only=True, map_location="cpu"))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True, map_location="cpu"))
    if load_extra is not None and (ckpt / "extra_state.safetensors").is_file():
        load_extra(load_file(str(ckpt / "extra_state.safetensors")))
    rng_json = ckpt / f"rng_state_{rank}.json"
    if rng_json.is_file():
        _set_rng_state(json.loads(rng_json.read_text()), load_file(str(ckpt / f"rng_state_{rank}.safetensors"))["torch"])
    return json.loads((ckpt / "trainer_state.json").read_text())


# -- the loop ---------------------------------------------------------------------------------------
def _batch_indices(n: int, step: int, global_batch: int, seed: int):
    """Indices of the samples in step ``step`` (epoch-wise permutations, reproducible from the step alone)."""
    import torch

    out = []
    start = step * global_batch
    for pos in range(start, start + global_batch):
        epoch, idx = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(int(perm[idx]))
    return out


def resolve_adapter(cfg: TrainConfig, registry) -> str:
    """The adapter that opens ``cfg.model``: the one the config names, else the best match (recorded in
    ``cfg.adapter``, so a resumed run and its teacher open the same way)."""
    from .model import probe

    if cfg.adapter:
        registry.adapter_spec(cfg.adapter)  # a SlimError naming it when it is not installed
        return cfg.adapter
    candidates = probe(cfg.model, registry)
    if not candidates:
        raise SlimError(f"no installed plugin can open {cfg.model}")
    cfg.adapter = candidates[0][2].name
    return cfg.adapter


def method_options(cfg: TrainConfig, registry) -> tuple[Any, Any, Any]:
    """(MethodSpec, the method's options, the family's training-data options) of a job, checked."""
    from . import options as opts

    spec = registry.adapter_spec(resolve_adapter(cfg, registry))
    if not cfg.method:
        declared = registry.method_specs(spec.family)
        if not declared:
            raise SlimError(f"the {spec.family} family declares no retraining method")
        cfg.method = spec.default_method or declared[0].name
    method = registry.method_spec(cfg.method, spec.family)
    where = f"retraining option ({cfg.method})"
    m_schema = registry.options(method) if method.options else None
    d_schema = registry.options(spec, "train_options") if spec.train_options else None
    if not (cfg.extra or {}).get("options_from_schema_1"):  # a schema-1 job kept every method's knobs
        known = {n for sch in (m_schema, d_schema) for f in opts.fields_of(sch) for n in (f.name, *f.opt.legacy)}
        unknown = sorted(set(cfg.options) - known)
        if unknown:
            raise SlimError(f"the job's options {', '.join(unknown)} are not options of {cfg.method} on "
                            f"{spec.family} models",
                            hint="known: " + (", ".join(sorted(f.name for sch in (m_schema, d_schema)
                                                               for f in opts.fields_of(sch))) or "none"))
    values = opts.from_dict(m_schema, cfg.options, where=where) if m_schema else None
    family = opts.from_dict(d_schema, cfg.options, where=where) if d_schema else None
    return method, values, family


def build_task(cfg: TrainConfig, registry=None) -> TrainTask:
    """The family's training task for ``cfg``: its method's builder, given the method's options."""
    from .plugins import discover

    registry = registry or discover()
    adapter_name = resolve_adapter(cfg, registry)
    family = registry.adapter_spec(adapter_name).family
    adapter = registry.adapter(adapter_name)
    method, values, _ = method_options(cfg, registry)
    task = registry.method(method.name, family)(adapter, cfg, values, registry=registry)
    task.info.setdefault("lr", method.default_lr)
    task.info.setdefault("method_label", method.label or method.name)
    return task


def learning_rate(cfg: TrainConfig, task: TrainTask) -> float:
    return float(cfg.lr if cfg.lr is not None else task.info.get("lr", 1e-4))


def estimate(cfg: TrainConfig, task: TrainTask, *, world: int = 1) -> dict[str, Any]:
    """Time and memory estimate on this machine, from one measured forward/backward pass."""

    model = task.model
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    batch = take(task.train_blocks, slice(0, cfg.batch_size))
    model.train()

    def one_pass() -> float:
        t0 = time.perf_counter()
        loss, _ = task.loss(model, batch)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    first = one_pass()  # cold: allocations, lazy imports
    step_s = (one_pass() if first < 10 else first) * cfg.grad_accum * 1.15  # + optimizer step
    val_s = validation_seconds(cfg, task, world=world)
    items = str(task.info.get("items", "samples"))
    per_batch = cfg.batch_size * int(task.info.get("items_per_sample", 1))
    activations = int(task.info.get("activation_bytes_per_sample", 0)) * cfg.batch_size
    memory = params * 4 + trainable * 12 + activations + int(task.info.get("teacher_params", 0)) * 4
    total_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    count = cfg.steps * per_batch * cfg.grad_accum * world
    est = {"step_seconds": round(step_s / world, 4), "val_seconds": round(val_s, 3),
           "memory_bytes": int(memory), "machine_memory_bytes": int(total_mem),
           "items": items, "item_count": count, items: count, "params": params, "trainable_params": trainable}
    return {**est, **time_left(est, cfg)}


def validation_seconds(cfg: TrainConfig, task: TrainTask, *, world: int = 1) -> float:
    """Seconds of one validation pass (as ``run_training`` runs it), from one timed validation batch."""
    import torch

    vb = task.val_blocks
    n = min(sample_count(vb), cfg.val_batches * cfg.batch_size * world) if vb is not None else 0
    if n <= 0:
        return 0.0
    fn = task.eval_loss or (lambda m, b: task.loss(m, b)[0])
    model = task.model
    model.eval()
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            fn(model, take(vb, slice(0, cfg.batch_size)))
            one = time.perf_counter() - t0
    finally:
        model.train()
    return one * -(-n // (cfg.batch_size * world))


def validation_count(cfg: TrainConfig, done: int = 0) -> int:
    """Validation passes a run of ``cfg.steps`` makes after step ``done`` (every ``eval_every`` steps, the last step,
    and the final one after training)."""
    every = max(1, int(cfg.eval_every or cfg.steps or 1))
    periodic = cfg.steps // every - done // every
    return periodic + (0 if cfg.steps % every == 0 else 1) + 1


def time_left(est: dict[str, Any], cfg: TrainConfig, done: int = 0) -> dict[str, Any]:
    """The time part of an estimate for ``cfg`` from step ``done``: its per-step and per-validation seconds times
    the steps and validation passes left.  Used again when only the step count or the validation interval change,
    and with a step time calibrated from a run's own steps."""
    left = max(0, cfg.steps - done)
    val = validation_count(cfg, done) if left else 0
    seconds = float(est["step_seconds"]) * left + float(est.get("val_seconds") or 0.0) * val
    return {"seconds": round(seconds, 1), "steps_left": left, "seconds_left": round(seconds, 1),
            "validations": val}


def estimate_key(cfg: TrainConfig) -> str:
    """What a step's time depends on: the configuration without its step count, intervals, seed and run folder.
    An estimate with the same key can be reused (its time rescaled by :func:`time_left`) instead of timed again."""
    import hashlib

    data = {k: v for k, v in asdict(cfg).items()
            if k not in ("steps", "out", "save_every", "eval_every", "keep_last", "seed", "warmup")}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def estimate_job(cfg: TrainConfig, *, registry=None, world: int = 1) -> dict[str, Any]:
    """Check that the job can work (model, data, LoRA targets, memory) and estimate its time and memory."""
    cfg.validate()
    task = build_task(cfg, registry)
    est = estimate(cfg, task, world=world)
    est["fits"] = not est["machine_memory_bytes"] or est["memory_bytes"] <= 0.9 * est["machine_memory_bytes"]
    est.update({k: v for k, v in task.info.items() if k in ("train_sequences", "val_sequences")})
    return est


def run_training(cfg: TrainConfig, *, registry=None, events: EventFn | None = None, cancel: CancelToken | None = None,
                 resume: bool = False, task: TrainTask | None = None) -> dict[str, Any]:
    """Train per ``cfg``; returns the final state. Raises Cancelled (after checkpointing) when cancelled."""

    cfg.validate()
    out = Path(cfg.out)
    with run_lock(out):
        return _run_training(cfg, out, registry=registry, events=events, cancel=cancel, resume=resume, task=task)


LOCK_FILE = ".slimgui-run.lock"


class run_lock:
    """One writer per run folder: ``OUT/.slimgui-run.lock`` holds the PID of the run writing there.  A second run
    into the same folder is refused while that process lives; a lock whose process is gone (a killed run) is
    taken over.  Only the main process of a distributed run takes it."""

    def __init__(self, out: Path):
        self.out = out
        self.path = out / LOCK_FILE
        self.held = False
        self.created = False

    def __enter__(self) -> run_lock:
        from .io import pid_alive

        if int(os.environ.get("RANK", "0") or 0) != 0:
            return self
        self.created = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SlimError(f"cannot create {self.out}: {exc.strerror or exc}") from None
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    pid = -1
                if pid > 0 and pid_alive(pid):
                    raise SlimError(f"{self.out} is being written by another SlimGUI run (process {pid})",
                                    hint="wait for it to finish, or choose another --out") from None
                try:
                    self.path.unlink()  # a stale lock: its run was killed
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            self.held = True
            return self
        raise SlimError(f"cannot lock {self.out} for this run", hint="another run may be starting there; try again")

    def __exit__(self, *exc: Any) -> None:
        if self.held:
            try:
                self.path.unlink()
            except OSError:
                pass
            self.held = False
            if self.created:  # a run refused before it wrote anything leaves no empty folder behind
                try:
                    self.out.rmdir()
                except OSError:
                    pass


def _run_training(cfg: TrainConfig, out: Path, *, registry, events, cancel, resume: bool,
                  task: TrainTask | None) -> dict[str, Any]:
    import torch
    from accelerate import Accelerator

    existing = checkpoints(out)
    if not resume and (existing or (out / "slimgui_train.json").exists()):
        raise SlimError(f"{out} already holds a training run", hint="pass --resume to continue it, or choose another --out")
    if resume and not existing:
        resume = False  # nothing saved yet: start from the beginning
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world = accelerator.num_processes
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    task = task or build_task(cfg, registry)
    n_train = sample_count(task.train_blocks)
    per_sample = int(task.info.get("items_per_sample", 1))
    items = str(task.info.get("items", "samples"))
    val_metric = task.info.get("val_metric")
    if n_train == 0:
        raise SlimError("the training data gives no full training sample",
                        hint=str(task.info.get("too_little_data") or "give more training data"))
    est = estimate(cfg, task, world=world)
    if est["machine_memory_bytes"] and est["memory_bytes"] > 0.9 * est["machine_memory_bytes"]:
        raise SlimError(f"this job needs about {est['memory_bytes'] / 2**30:.1f} GiB but the machine has "
                        f"{est['machine_memory_bytes'] / 2**30:.1f} GiB",
                        hint=str(task.info.get("too_much_memory") or "lower --batch-size"))
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "job.json")

    trainable = [p for p in task.model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate(cfg, task))

    def schedule(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer = accelerator.prepare(task.model, optimizer)
    state: dict[str, Any] = {"history": [], "val_history": [], "items_seen": 0, "config": asdict(cfg)}
    start = 0
    if resume:
        ckpt = existing[-1]
        loaded = load_checkpoint(accelerator, model, optimizer, scheduler, ckpt, task.load_extra_state)
        start = int(loaded["global_step"])
        state.update({k: loaded[k] for k in ("history", "val_history", "items_seen") if k in loaded})
        if "items_seen" not in loaded and "tokens_seen" in loaded:  # a checkpoint of schema 1
            state["items_seen"] = loaded["tokens_seen"]
        state["resumed_from"] = str(ckpt)

    def emit(ev: dict[str, Any]) -> None:
        if events is not None and accelerator.is_main_process:
            events(ev)

    def validate() -> dict[str, float]:
        model.eval()
        vb = task.val_blocks
        total, count = 0.0, 0
        # validation draws its own noise (diffusion) from a fixed seed, so it neither varies between
        # evaluations nor disturbs the training RNG that checkpoints restore
        rng = torch.get_rng_state()
        torch.manual_seed(cfg.seed + 7919)
        with torch.no_grad():
            for i in range(accelerator.process_index * cfg.batch_size,
                           min(sample_count(vb), cfg.val_batches * cfg.batch_size * world), cfg.batch_size * world):
                batch = to_device(take(vb, slice(i, i + cfg.batch_size)), accelerator.device)
                fn = task.eval_loss or (lambda m, b: task.loss(m, b)[0])
                n = sample_count(batch)
                total += float(fn(model, batch)) * n
                count += n
        torch.set_rng_state(rng)
        stats = accelerator.reduce(torch.tensor([total, float(count)], device=accelerator.device), reduction="sum")
        model.train()
        mean = float(stats[0] / max(1.0, float(stats[1])))
        out = {"val_loss": mean}
        if task.val_metrics is not None:
            out.update({k: float(v) for k, v in task.val_metrics(mean).items()})
        return out

    emit({"event": "start", "step": start, "total": cfg.steps, "estimate": est, "resumed": resume, "items": items,
          "val_metric": val_metric})
    extra_state = task.extra_state or (lambda: None)
    global_batch = cfg.batch_size * world * cfg.grad_accum
    rank = accelerator.process_index
    model.train()
    t_start = time.perf_counter()
    val_time = [0.0]
    items_run = 0
    step = start
    try:
        for step in range(start, cfg.steps):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("retraining cancelled")
            idx = _batch_indices(n_train, step, global_batch, cfg.seed)
            losses = []
            metrics: dict[str, float] = {}
            for micro in range(cfg.grad_accum):
                lo = (micro * world + rank) * cfg.batch_size
                batch = to_device(take(task.train_blocks, idx[lo:lo + cfg.batch_size]), accelerator.device)
                loss, metrics = task.loss(model, batch)
                value = loss.item()
                if not math.isfinite(value):
                    kept = checkpoints(out)
                    raise SlimError(f"the training loss became {value} at step {step + 1}: retraining stopped before "
                                    "the weights were changed"
                                    + (f"; {kept[-1].name} is intact" if kept else "; no checkpoint was written"),
                                    hint="lower the learning rate, or check the model and data for NaN/Inf")
                accelerator.backward(loss / cfg.grad_accum)
                losses.append(value)
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if task.after_step is not None:
                task.after_step(accelerator.unwrap_model(model))
            done = step + 1
            train_loss = float(accelerator.reduce(torch.tensor(sum(losses) / len(losses), device=accelerator.device),
                                                  reduction="mean"))
            items_run += global_batch * per_sample
            state["items_seen"] += global_batch * per_sample
            state["history"].append([done, round(train_loss, 5)])
            elapsed = time.perf_counter() - t_start
            rate = items_run / max(elapsed, 1e-9)
            ev = {"event": "step", "step": done, "total": cfg.steps, "train_loss": train_loss,
                  "lr": scheduler.get_last_lr()[0], "items_per_s": rate, f"{items}_per_s": rate, "items": items,
                  "eta_s": (cfg.steps - done) * elapsed / max(1, done - start),
                  # measured time of a step (validations excluded, checkpoints included) and of a validation:
                  # what the front ends calibrate the estimate with
                  "step_time_s": (elapsed - val_time[0]) / max(1, done - start),
                  **{k: float(v) for k, v in metrics.items()}}
            if done % cfg.eval_every == 0 or done == cfg.steps:
                t_val = time.perf_counter()
                val = validate()
                val_time[0] += time.perf_counter() - t_val
                ev["validation_time_s"] = time.perf_counter() - t_val  # (not "val_*": those are metrics)
                state["val_history"].append([done, round(val["val_loss"], 5)])
                ev.update(val)
            emit(ev)
            if done % cfg.save_every == 0 or done == cfg.steps:
                save_checkpoint(accelerator, model, optimizer, scheduler, out, done, state, cfg.keep_last, extra_state())
                emit({"event": "checkpoint", "step": done, "path": str(out / f"checkpoint-{done}")})
    except (Cancelled, KeyboardInterrupt):
        done = step if not state["history"] or state["history"][-1][0] != step + 1 else step + 1
        if done > start:
            save_checkpoint(accelerator, model, optimizer, scheduler, out, done, state, cfg.keep_last, extra_state())
        emit({"event": "cancelled", "step": done})
        raise Cancelled(f"retraining cancelled at step {done}; resume continues from there") from None

    val = validate()
    result = {"step": cfg.steps, "train_loss": state["history"][-1][1] if state["history"] else None,
              **val, "items_seen": state["items_seen"], f"{items}_seen": state["items_seen"], "items": items,
              "seconds": round(time.perf_counter() - t_start, 2), "out": str(out), "method": cfg.method,
              "resumed_from": state.get("resumed_from"), "processes": world}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        try:
            task.save(accelerator.unwrap_model(model), str(out / "model"))
        except SlimError:
            raise
        except Exception as exc:
            if disk_full(exc):
                raise SlimError(f"not enough disk space to save the healed model into {out / 'model'}; the last "
                                "checkpoint is intact", hint="free some space, then resume the run") from None
            raise
        atomic_write_text(out / "slimgui_train.json", json.dumps({**result, "history": state["history"],
                                                                  "val_history": state["val_history"]}, indent=1))
    emit({"event": "done", **result})
    accelerator.wait_for_everyone()
    return result


ACCELERATE_CONFIG = """\
# accelerate config for this job: multi-GPU DDP on one machine by default.
# For several nodes set num_machines, machine_rank and main_process_ip/port on each node.
# For FSDP use distributed_type: FSDP (and an fsdp_config block); for DeepSpeed use
# distributed_type: DEEPSPEED with a deepspeed_config block (see `accelerate config`).
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 1
machine_rank: 0
num_processes: {processes}
mixed_precision: "no"
use_cpu: false
"""


def export_job(cfg: TrainConfig, job_dir: Path, processes: int = 2) -> tuple[Path, str]:
    """A folder that runs unchanged with `accelerate launch` on several GPUs or nodes."""
    job_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(job_dir / "job.json")
    atomic_write_text(job_dir / "accelerate_config.yaml", ACCELERATE_CONFIG.format(processes=processes))
    cmd = f"accelerate launch --config_file {job_dir / 'accelerate_config.yaml'} -m slimgui.core.train {job_dir / 'job.json'}"
    data = ", ".join(f"`{d}`" for d in cfg.data)
    readme = [
        f"# SlimGUI retraining job ({cfg.method})", "",
        f"- model: `{cfg.model}`", f"- data: {data}", f"- output: `{cfg.out}`", "",
        "Run it (the same code the desktop app runs, on every process):", "", "```", cmd, "```", "",
        "On a CPU-only machine, two processes (gloo): "
        f"`accelerate launch --multi_gpu --num_processes 2 -m slimgui.core.train {job_dir / 'job.json'}`",
        "(`--cpu --num_processes 2` starts a single process unless mpirun is configured).",
        "Edit `accelerate_config.yaml` for several nodes, FSDP or DeepSpeed. The paths in `job.json` must exist on",
        "every node. Checkpoints go to `OUT/checkpoint-STEP/`; launching the same command again resumes from the",
        "last one. The healed model is written to `OUT/model/`.", ""]
    atomic_write_text(job_dir / "README.md", "\n".join(readme))
    return job_dir, cmd


def main(argv: list[str] | None = None) -> int:
    """``accelerate launch -m slimgui.core.train JOB.json [--resume]``: run an exported job."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m slimgui.core.train JOB.json [--resume]", file=sys.stderr)
        return 2
    try:
        cfg = TrainConfig.load(argv[0])

        def log(ev: dict[str, Any]) -> None:
            print(json.dumps(ev), flush=True)

        result = run_training(cfg, events=log, resume="--resume" in argv or bool(checkpoints(cfg.out)))
    except SlimError as exc:
        print(f"slimgui: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except Cancelled as exc:
        print(f"slimgui: {exc}", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:  # one result line, not one per process
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
