"""`slimgui retrain`: heal a slimmed model with one of its family's declared healing methods.

The method's own options and the family's training-data options are flags built from their schemas;
the values given go into :attr:`TrainConfig.options` by name, and a flag that the chosen method (and the
family) does not take is refused.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError

from . import flags
from .common import BATCH_MAX, SEED_MAX, ProgressBar, check_out, emit, float_range, int_range, resolve, sources


def _method(args, reg, family: str, spec=None):
    if args.method:
        return reg.method_spec(args.method, family)  # a SlimError listing the family's methods
    specs = reg.method_specs(family)
    if not specs:
        raise SlimError(f"the {family} family declares no retraining method", hint="`slimgui plugins` lists them")
    default = getattr(spec, "default_method", None)
    return next((s for s in specs if s.name == default), specs[0])


def train_config(args, reg):
    """The job of this command line (checked), and the method it runs."""
    from slimgui.core.train import TrainConfig

    target = resolve(args.model, reg, adapter=args.adapter)
    family = target.family
    method = _method(args, reg, family, target.spec)
    m_schema = flags.schema(reg, method)
    d_schema = flags.schema(reg, target.spec, "train_options")
    flags.warn_others(args, [m_schema, d_schema], f"--method {method.name} on {family} models")
    options: dict[str, Any] = {**flags.given(args, d_schema), **flags.given(args, m_schema)}
    model = target.path
    teacher = args.teacher
    cfg = TrainConfig(
        model=str(Path(model).resolve()) if Path(model).exists() else model,
        data=[str(Path(d).resolve()) for d in args.data], out=str(Path(args.out).resolve()), method=method.name,
        teacher=str(Path(teacher).resolve()) if teacher and Path(teacher).exists() else teacher,
        adapter=target.spec.name, steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
        lr=args.lr, warmup=args.warmup, save_every=args.save_every, keep_last=args.keep_last,
        eval_every=args.eval_every or args.save_every, seed=args.seed, trust_remote_code=args.trust_remote_code,
        options=options)
    cfg.validate()
    return cfg


def _extra_val(result: dict[str, Any]) -> str:
    """The validation metrics a family adds to the loss (its task's ``val_metrics``), as ``name value``."""
    return ", ".join(f"{k} {v:.4g}" for k, v in result.items()
                     if k.startswith("val_") and k != "val_loss" and isinstance(v, (int, float)))


def cmd_retrain(args) -> int:
    from slimgui.core.train import estimate_job, export_job, run_training

    reg = args.registry
    srcs = sources(args.model, args.teacher)
    check_out(args.out, "folder", force=True, sources=srcs)
    if args.export_job:
        check_out(args.export_job, "folder", force=True, sources=srcs, what="--export-job")
    cfg = train_config(args, reg)
    if args.export_job:
        job, cmd = export_job(cfg, Path(args.export_job))
        emit(args, {"job": str(job), "command": cmd}, f"job written to {job}\nrun: {cmd}")
        return 0
    if args.estimate:
        est = estimate_job(cfg, registry=reg)
        emit(args, est, f"~{est['seconds']:.0f}s ({est['step_seconds']:.2f}s/step), ~{est['memory_bytes'] / 2**20:.0f} MiB "
                        f"of {est['machine_memory_bytes'] / 2**30:.0f} GiB, {est['item_count']:,} {est['items']}, "
                        f"{est['trainable_params']:,} of {est['params']:,} parameters trained"
                        + ("" if est["fits"] else " — does NOT fit in memory"))
        return 0
    bar = ProgressBar(not args.quiet)

    def on_event(ev: dict[str, Any]) -> None:
        if ev["event"] == "start" and not args.quiet:
            est = ev["estimate"]
            sys.stderr.write(f"estimate: ~{est['seconds']:.0f}s, ~{est['memory_bytes'] / 2**20:.0f} MiB, "
                             f"{est['trainable_params']:,} trainable of {est['params']:,} parameters"
                             + (" (resuming)" if ev["resumed"] else "") + "\n")
        if ev["event"] == "step":
            extra = _extra_val(ev)
            msg = f"loss {ev['train_loss']:.3f}" + (f" {extra}" if extra else
                                                   f" val loss {ev['val_loss']:.4f}" if "val_loss" in ev else "")
            bar(ev["step"], ev["total"], msg)

    try:
        result = run_training(cfg, registry=reg, events=on_event, resume=args.resume)
    finally:
        bar.close()
    result["model"] = str(Path(cfg.out) / "model")
    extra = _extra_val(result)
    items = result.get("items", "samples")
    human = (f"step {result['step']}: validation loss {result['val_loss']:.4f}{' (' + extra + ')' if extra else ''}, "
             f"{result.get('items_seen', 0):,} {items}\nhealed model: {result['model']}")
    emit(args, result, human)
    return 0


def add_parsers(sub, registry, common) -> None:
    methods = flags.all_specs(registry, "methods")
    names = list(dict.fromkeys(s.name for s in methods))
    described = "; ".join(f"{s.name}: {s.label or s.name} ({', '.join(s.families)})" for s in methods)
    lrs = ", ".join(dict.fromkeys(f"{s.name} {s.default_lr:g}" for s in methods))
    sp = sub.add_parser("retrain", help="heal a slimmed model with a method of its family ("
                                        + ", ".join(names) + ")")
    common(sp)
    sp.add_argument("--method", choices=names or None,
                    help=f"the healing method (default: the family's default_method, else its first). {described}")
    sp.add_argument("--teacher", help="the model to learn from, for methods that have one (default: the model "
                                      "MODEL was slimmed from, or MODEL itself, as the method says)")
    sp.add_argument("--data", action="append", default=[],
                    help="training data in the family's form: a file, a folder or a saved dataset (repeatable)")
    sp.add_argument("--steps", type=int_range(1, 10_000_000), default=100,
                    help="optimizer steps (1-10000000, default 100)")
    sp.add_argument("--save-every", type=int_range(1, 10_000_000), default=50,
                    help="checkpoint every N steps (1-10000000, default 50)")
    sp.add_argument("--keep-last", type=int_range(1, 1000), default=2, help="checkpoints to keep (1-1000, default 2)")
    sp.add_argument("--eval-every", type=int_range(1, 10_000_000),
                    help="validate every N steps (1-10000000; default: --save-every)")
    sp.add_argument("--out", required=True, help="run folder: checkpoints and the healed model (OUT/model)")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    sp.add_argument("--export-job", metavar="DIR", help="write a job folder for `accelerate launch` instead of running")
    sp.add_argument("--estimate", action="store_true", help="check the job and print its time/memory estimate only")
    sp.add_argument("--batch-size", type=int_range(1, BATCH_MAX), default=8,
                    help=f"samples per step and process (1-{BATCH_MAX}, default 8)")
    sp.add_argument("--grad-accum", type=int_range(1, BATCH_MAX), default=1,
                    help=f"gradient accumulation steps (1-{BATCH_MAX}, default 1)")
    sp.add_argument("--lr", type=float_range(0, 10, lo_open=True),
                    help=f"learning rate, above 0 and at most 10 (default: the method's own: {lrs})")
    sp.add_argument("--warmup", type=int_range(0, 10_000_000), default=10,
                    help="learning-rate warm-up steps (0-10000000, default 10)")
    sp.add_argument("--seed", type=int_range(0, SEED_MAX), default=0, help=f"random seed (0-{SEED_MAX}, default 0)")
    flags.add(sp, flags.spec_pairs(methods, registry) + flags.adapter_pairs(registry, "train_options"),
              title="options of the methods and of a family's training data")
    sp.set_defaults(func=cmd_retrain)
