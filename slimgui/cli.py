"""The ``slimgui`` command: every core step, scriptable, with ``--json`` output.

Exit codes: 0 success, 2 a problem the user can fix (one line on stderr), 1 a bug (traceback),
130 cancelled with Ctrl-C.  With ``--json`` the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slimgui import __version__
from slimgui.core.errors import Cancelled, SlimError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        sys.stderr.write(f"slimgui: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


# -- numeric options: every one has a stated range, checked by argparse (one line through _Parser.error) ----------
INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1
SEQ_MAX = 1_048_576  # tokens; the model's own context (max_position_embeddings / n_positions) is checked once open
BATCH_MAX = 4096


def _int_range(lo: int, hi: int):
    """An argparse ``type`` for a whole number in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(str(text).strip().replace("_", ""), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number from {lo:,} to {hi:,}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be from {lo:,} to {hi:,}, got {value:,}")
        return value

    parse.__name__ = "int"
    return parse


def _float_range(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False):
    """An argparse ``type`` for a finite number in [lo, hi] (``lo_open``/``hi_open``: the bound itself excluded)."""
    if lo_open or hi_open:
        span = f"{'above' if lo_open else 'at least'} {lo:g} and {'below' if hi_open else 'at most'} {hi:g}"
    else:
        span = f"from {lo:g} to {hi:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text!r}") from None
        if not math.isfinite(value) or value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text}")
        return value

    parse.__name__ = "float"
    return parse


def _int_list(text: str, flag: str, lo: int, hi: int) -> list[int]:
    try:
        values = [int(x, 10) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SlimError(f"{flag} must be comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise SlimError(f"{flag} needs at least one value from {lo:,} to {hi:,}")
    bad = [v for v in values if not lo <= v <= hi]
    if bad:
        raise SlimError(f"{flag} values must be from {lo:,} to {hi:,}, got {bad[0]:,}")
    return values


def _context(model) -> tuple[int, str] | None:
    """(tokens, config key) of a model's context window, when its config states one."""
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, key
    return None


def _check_context(model, flag: str, tokens: int, *, what: str = "") -> None:
    """Refuse ``tokens`` (a --seq-len, --max-new-tokens, ...) beyond the model's context, naming the limit."""
    ctx = _context(model)
    if ctx is not None and tokens > ctx[0]:
        raise SlimError(f"{flag} {tokens:,}{what} is more than the model's context of {ctx[0]:,} tokens "
                        f"({ctx[1]} in {Path(str(model.source)).name}/config.json)",
                        hint=f"use at most {ctx[0]:,}")


def _sources(*paths) -> list[str]:
    """The model paths a command reads (outputs may not be, lie inside or contain them); demo: names excluded."""
    return [str(p) for p in paths if p and not str(p).startswith("demo:")]


def _check_out(path, kind: str, *, force: bool = False, sources=(), what: str = "--out") -> Path:
    from slimgui.core.io import check_output_path

    return check_output_path(path, kind, force=force, sources=sources, what=what)


def _warn(payload: dict[str, Any], warnings) -> list[str]:
    """Print each warning as one ``slimgui: warning: TEXT`` line on stderr and list them in ``payload["warnings"]``."""
    lines = [" ".join(str(w).split()) for w in (warnings or []) if str(w).strip()]
    for line in lines:
        sys.stderr.write(f"slimgui: warning: {line}\n")
    payload["warnings"] = lines
    return lines


def _finite_or_none(obj: Any) -> Any:
    """The payload with NaN/Inf numbers as null, so that --json output is always valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


class ProgressBar:
    """A terminal progress bar with ETA on stderr (tqdm), fed by core progress callbacks.

    Shown when stderr is a terminal (or ``SLIMGUI_PROGRESS=1``), so logs and pipes stay clean.
    """

    def __init__(self, enabled: bool = True, stream=None, mininterval: float = 0.25):
        self.stream = stream or sys.stderr
        self.mininterval = mininterval
        forced = os.environ.get("SLIMGUI_PROGRESS") == "1"
        self.enabled = enabled and (forced or stream is not None or self.stream.isatty())
        self.bar = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None or self.bar.total != total or done < self.bar.n:
            self.close()
            self.bar = tqdm(total=total, file=self.stream, leave=False, dynamic_ncols=True, mininterval=self.mininterval,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
        self.bar.set_description_str(message[:48], refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _registry():
    from slimgui.core.plugins import discover

    return discover()


def _open(args, registry, progress):
    from slimgui.core.model import open_model

    path = args.model
    if path.startswith("demo:"):
        path = registry.demo(path[5:])(progress=progress)["model"]
    return open_model(path, registry=registry, adapter=getattr(args, "adapter", None), progress=progress,
                      trust_remote_code=getattr(args, "trust_remote_code", False))


def _open_path(path: str, args, registry, progress):
    """Open one more model (``--vs``) with the best-matching adapter and the command's trust setting."""
    return _open(argparse.Namespace(model=path, adapter=None, trust_remote_code=args.trust_remote_code),
                 registry, progress)


def _calibration(args, model):
    """Calibration data from --data, else the family's default (the demo's own text), else None."""
    from slimgui.core.data import CalibrationData

    path = args.data
    if path is None and hasattr(model.impl, "default_data"):
        path = model.impl.default_data(model)
    if path is None:
        return None
    _check_context(model, "--seq-len", args.seq_len)
    return CalibrationData(path, seq_len=args.seq_len, samples=args.samples, batch_size=args.batch_size)


def _emit(args, payload: dict[str, Any], human: str) -> None:
    if args.json:
        print(json.dumps(_finite_or_none(payload), default=str, allow_nan=False))
    else:
        print(human)


def _fmt_params(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


# -- commands ------------------------------------------------------------------------------------
def cmd_plugins(args) -> int:
    reg = _registry()
    rows = reg.describe()
    lines = []
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"{r['name']:<10} BROKEN  {r['error']}")
            continue
        lines.append(f"{r['name']:<10} ok      {r['source']} — {r['description']}")
        for a in r["adapters"]:
            lines.append(f"    adapter   {a['name']:<14} {a['family']:<6} {a['description']}")
        for c in r["criteria"]:
            lines.append(f"    criterion {c['name']:<14} {','.join(c['families']):<6} {c['description']}")
        for e in r["evaluators"]:
            lines.append(f"    evaluator {e}")
        for p in r["previewers"]:
            lines.append(f"    previewer {p['name']:<14} {p['media']}")
        for d in r["demos"]:
            lines.append(f"    demo      {d}")
    _emit(args, {"plugins": rows}, "\n".join(lines))
    return 0


def cmd_demo(args) -> int:
    reg = _registry()
    bar = ProgressBar(not args.quiet)
    try:
        paths = reg.demo(args.name)(progress=bar)
    finally:
        bar.close()
    _emit(args, paths, "\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


def cmd_inspect(args) -> int:
    from slimgui.core.ops import graph_of

    reg = _registry()
    bar = ProgressBar(not args.quiet)
    try:
        model = _open(args, reg, bar)
    finally:
        bar.close()
    graph = graph_of(model, reg)
    total = graph.total_params
    lines = [f"{model.source}", f"  family {model.family} · {graph.attrs.get('architecture', '')} · "
             f"{_fmt_params(total)} parameters · {len(graph.prunable())} prunable units"
             + ("" if model.has_weights else " · config only (no weights)"), ""]
    pos = {u.id: i for i, u in enumerate(graph.prunable())}
    width = max([16] + [len(u.id) + 2 for u in graph.units if u.parent is None or u.prunable])
    lines.append(f"  {'#':>3}  {'id':<{width}} {'kind':<10} {'params':>10} {'share':>7}")
    for u in graph.units:
        if u.parent is not None and not u.prunable:
            continue
        idx = f"{pos[u.id]}" if u.prunable else ""
        name = u.id if u.parent is None else f"  {u.id}"
        lines.append(f"  {idx:>3}  {name:<{width}} {u.kind:<10} {_fmt_params(u.params):>10} "
                     f"{100 * u.params / max(1, total):6.2f}%")
    presets = graph.attrs.get("presets")
    if presets:
        lines += ["", "  presets: " + ", ".join(f"{k}{'' if ok else ' (does not fit)'}" for k, ok in presets.items())]
    payload = {"model": model.source, "family": model.family, "adapter": model.adapter,
               "has_weights": model.has_weights, "params": total,
               "blocks": [{"index": i, "id": u.id, "params": u.params} for i, u in enumerate(graph.prunable())],
               "presets": presets, "graph": graph.to_json()}
    _emit(args, payload, "\n".join(lines))
    return 0


def _analyze(args, reg, model, bar):
    from slimgui.core.ops import analyze

    data = _calibration(args, model)
    return analyze(model, args.criterion, registry=reg, data=data, keep=args.keep, progress=bar)


def _score_cell(v: float) -> str:
    return f"{v:12.5g}" if math.isfinite(v) else f"{'nan' if math.isnan(v) else ('inf' if v > 0 else '-inf'):>12}"


def cmd_analyze(args) -> int:
    from slimgui.core.ops import graph_of

    if args.out is not None:
        _check_out(args.out, "file", force=True)
    reg = _registry()
    bar = ProgressBar(not args.quiet)
    try:
        model = _open(args, reg, bar)
        scores = _analyze(args, reg, model, bar)
    finally:
        bar.close()
    if args.out:
        scores.save(args.out)
    graph = graph_of(model, reg)
    ranking = scores.ranking()
    rank = {uid: i for i, uid in enumerate(ranking)}
    finite = [v for v in scores.values.values() if math.isfinite(v)]
    hi = max(finite) if finite else 1.0
    lo = min(finite) if finite else 0.0
    width = max([12] + [len(u.id) for u in graph.prunable()])
    lines = [f"criterion {scores.criterion} on {model.source} ({scores.meta.get('seconds', 0):.1f}s)"
             + (f"; keep-set {scores.keep}" if scores.keep else "")
             + (f"; full model {scores.meta['baseline_ppl']:.3f}" if "baseline_ppl" in scores.meta else ""),
             f"  {'#':>3}  {'unit':<{width}} {'score':>12} {'rank':>5}  (rank 0 = least important)"]
    for pos, u in enumerate(graph.prunable()):
        v = scores.values[u.id]
        if math.isfinite(v):
            bar_len = int(20 * (v - lo) / (hi - lo)) if hi > lo else 10
        else:
            bar_len = 0
        lock = " locked" if u.id in scores.locked else ""
        lines.append(f"  {pos:>3}  {u.id:<{width}} {_score_cell(v)} {rank[u.id]:>5}  {'█' * bar_len}{lock}")
    if args.out:
        lines.append(f"scores written to {args.out}")
    payload = {"criterion": scores.criterion, "model": model.source,
               "scores": {k: (v if math.isfinite(v) else None) for k, v in scores.values.items()}, "ranking": ranking,
               "locked": scores.locked, "keep": scores.keep, "seconds": scores.meta.get("seconds"),
               "baseline": scores.meta.get("baseline_ppl"),
               "out": str(args.out) if args.out else None, "non_finite": scores.non_finite()}
    _warn(payload, scores.meta.get("warnings"))
    _emit(args, payload, "\n".join(lines))
    return 0


def cmd_prune(args) -> int:
    from slimgui.core.ops import graph_of, prune, save
    from slimgui.core.plan import PruningPlan, plan_from_scores
    from slimgui.core.scores import Scores

    if args.ratio is not None and args.count is not None:
        raise SlimError("give --ratio or --count, not both")
    _check_out(args.out, "folder", force=args.force, sources=_sources(args.model))
    reg = _registry()
    bar = ProgressBar(not args.quiet)
    warnings: list[str] = []
    try:
        model = _open(args, reg, bar)
        graph = graph_of(model, reg)
        from slimgui.core.plan import parse_keep

        if args.preset:
            from slimgui.core.ops import preset_plan

            if args.remove or args.ratio is not None or args.count is not None:
                raise SlimError("--preset chooses the units itself: leave out --remove, --ratio and --count")
            plan = preset_plan(model, args.preset, registry=reg)
            plan.locked, plan.keep = parse_keep(args.keep, graph), args.keep
        elif args.remove:
            ids = [graph.resolve(r).id for r in args.remove.split(",") if r.strip()]
            plan = PruningPlan(remove=ids, locked=parse_keep(args.keep, graph), keep=args.keep, model=model.source)
        else:
            if args.ratio is None and args.count is None:
                raise SlimError("give --remove, --preset, or --criterion/--scores with --ratio or --count")
            if args.scores:
                scores = Scores.load(args.scores)
            elif args.criterion:
                scores = _analyze(args, reg, model, bar)
                warnings = list(scores.meta.get("warnings") or [])
            else:
                raise SlimError("--ratio needs --criterion NAME or --scores FILE to rank the blocks")
            plan = plan_from_scores(graph, scores, ratio=args.ratio, count=args.count, keep=args.keep)
            plan.model = model.source
        plan.validate(graph)
        before = graph.total_params
        pruned = prune(model, plan, registry=reg, copy=False)
        after = graph_of(pruned, reg).total_params
        pos = {u.id: i for i, u in enumerate(graph.prunable())}
        plan.meta.update({"params_before": before, "params_after": after,
                          "removed_indices": [pos[u] for u in plan.remove],
                          "kept_indices": [pos[u] for u in plan.kept(graph)]})
        out = save(pruned, args.out, registry=reg, force=args.force)
    finally:
        bar.close()
    payload = {"out": str(out), "removed": plan.remove, "removed_indices": plan.meta["removed_indices"],
               "kept_indices": plan.meta["kept_indices"], "criterion": plan.criterion, "keep": plan.keep,
               "preset": plan.meta.get("preset"),
               "params_before": before, "params_after": after, "param_ratio": after / before}
    _warn(payload, warnings)
    human = (f"removed {', '.join(plan.remove)}\n"
             f"params {_fmt_params(before)} → {_fmt_params(after)} ({100 * after / before:.1f}%)\n"
             f"saved to {out}")
    _emit(args, payload, human)
    return 0


def cmd_eval(args) -> int:
    from slimgui.core.ops import evaluate

    reg = _registry()
    bar = ProgressBar(not args.quiet)
    try:
        model = _open(args, reg, bar)
        names = reg.evaluator_names(model.family)
        evaluator = args.evaluator or (names[0] if names else "perplexity")
        if evaluator == "perplexity":
            if not args.data:
                raise SlimError("perplexity needs a text file", hint="pass --data FILE")
            if args.stride is not None and args.stride > args.seq_len:
                raise SlimError(f"--stride {args.stride} is longer than --seq-len {args.seq_len}",
                                hint="the stride moves the window: at most the window length")
            _check_context(model, "--seq-len", args.seq_len)
            if not args.no_generate and model.tokenizer is not None:
                prompt = len(model.tokenizer(args.prompt, add_special_tokens=False)["input_ids"]) if args.prompt else 0
                _check_context(model, "--max-new-tokens", args.max_new_tokens + prompt,
                               what=f" (with the prompt's {prompt} tokens)" if prompt else "")
            result = evaluate(model, args.data, registry=reg, seq_len=args.seq_len, stride=args.stride,
                              max_tokens=args.max_tokens, progress=bar)
        else:
            result = evaluate(model, args.data, registry=reg, evaluator=evaluator, progress=bar,
                              per_digit=args.samples, steps=args.steps, guidance=args.guidance, seed=args.seed)
        sample = None
        if evaluator == "perplexity" and not args.no_generate:
            try:
                media = reg.previewer("generate", model.family)(model, args.prompt, max_new_tokens=args.max_new_tokens)
                sample = media.text
                result["generation"] = {"prompt": args.prompt, "text": media.text, **media.meta}
            except SlimError as exc:  # e.g. an encoder: perplexity still stands
                result["generation"] = {"skipped": exc.one_line()}
    finally:
        bar.close()
    if evaluator == "perplexity":
        human = (f"perplexity {result['perplexity']:.3f} over {result['tokens']} tokens "
                 f"(seq_len {result['seq_len']}, stride {result['stride']}, {result['kind']})")
        if sample is not None:
            human += f"\n--- greedy continuation of {args.prompt!r} ---\n{sample}"
    elif "accuracy" in result:
        human = (f"digit accuracy {100 * result['accuracy']:.1f}% over {result['n']} generated images, "
                 f"Fréchet distance {result['fid']:.2f} to real held-out digits "
                 f"({result['steps']} steps, guidance {result['guidance']:g}, {result['seconds']:.1f}s)")
    else:
        human = "\n".join(f"{k}: {v}" for k, v in result.items())
    _emit(args, {"model": model.source, "evaluator": evaluator, **result}, human)
    return 0


def cmd_generate(args) -> int:
    reg = _registry()
    bar = ProgressBar(not args.quiet)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise SlimError(f"--out must be a .png file, got {out.name or repr(args.out)}")
    out = _check_out(args.out, "file", force=args.force)
    if args.steps is not None and args.steps < 1:
        raise SlimError(f"--steps must be at least 1, got {args.steps}")
    if args.n < 1:
        raise SlimError(f"--n must be at least 1, got {args.n}")
    try:
        models = []
        for path in [args.model, *(args.vs or [])]:
            m = _open_path(path, args, reg, bar)
            p = Path(path)
            label = path if path.startswith("demo:") else (f"{p.parent.name}/{p.name}" if p.name == "model" else p.name)
            models.append((label, m))
        family = models[0][1].family
        if any(m.family != family for _, m in models):
            raise SlimError("the models to compare are of different families")
        grid_fn = getattr(models[0][1].impl, "compare_grid", None)
        if grid_fn is None:
            raise SlimError(f"the {family} family does not generate images")
        prompt = args.prompt
        if args.label is not None:
            if prompt:
                raise SlimError("give --prompt or --class, not both")
            prompt = models[0][1].impl.class_prompt(models[0][1], args.label)
        media = grid_fn(models, prompt or "", seeds=list(range(args.seed, args.seed + args.n)), steps=args.steps,
                        guidance=args.guidance, progress=bar)
        path = models[0][1].impl.save_grid(media, out)
    finally:
        bar.close()
    payload = {"out": str(path), "prompt": media.meta.get("prompt"), "seeds": media.meta.get("seeds"),
               "models": media.meta.get("models"), "size": [int(media.image.shape[1]), int(media.image.shape[0])]}
    _emit(args, payload, f"grid of {len(models)} model(s) × {args.n} seed(s) written to {path}")
    return 0


def _train_config(args):
    from slimgui.core.train import TrainConfig

    model = args.model
    if model.startswith("demo:"):
        model = _registry().demo(model[5:])()["model"]
    cfg = TrainConfig(
        model=str(Path(model).resolve()) if Path(model).exists() else model,
        data=[str(Path(d).resolve()) for d in args.data], out=str(Path(args.out).resolve()), method=args.method,
        teacher=(str(Path(args.teacher).resolve()) if args.teacher and Path(args.teacher).exists() else args.teacher),
        steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum, seq_len=args.seq_len, lr=args.lr,
        warmup=args.warmup, save_every=args.save_every, keep_last=args.keep_last,
        eval_every=args.eval_every or args.save_every, seed=args.seed, lora_r=args.lora_r,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        lora_targets=[t.strip() for t in args.lora_targets.split(",")] if args.lora_targets else None,
        lora_merge=not args.keep_adapter, kd_ce=args.kd_ce, kd_kl=args.kd_kl, kd_hidden=args.kd_hidden,
        lcm_ddim_steps=args.lcm_ddim_steps, lcm_guidance=args.lcm_guidance, lcm_ema_decay=args.lcm_ema_decay,
        max_train_tokens=args.max_train_tokens, trust_remote_code=args.trust_remote_code)
    cfg.validate()
    return cfg


def _path_context(path: str) -> tuple[int, str] | None:
    """The context window a model folder's config.json states (read with a size limit), if any."""
    from slimgui.core.io import MAX_CONFIG_BYTES, read_json_file

    cfg = Path(path) / "config.json" if Path(path).is_dir() else None
    if cfg is None or not cfg.is_file():
        return None
    try:
        doc = read_json_file(cfg, "the model's config", limit=MAX_CONFIG_BYTES)
    except SlimError:
        return None  # opening the model explains it
    return _context(argparse.Namespace(config=doc, source=path)) if isinstance(doc, dict) else None


def cmd_retrain(args) -> int:
    from slimgui.core.train import run_training

    sources = _sources(args.model, args.teacher)
    _check_out(args.out, "folder", force=True, sources=sources)
    if args.export_job:
        _check_out(args.export_job, "folder", force=True, sources=sources, what="--export-job")
    if args.method == "kd" and args.kd_ce == args.kd_kl == args.kd_hidden == 0:
        raise SlimError("--lambda-task, --lambda-out and --lambda-feat are all 0: distillation would learn nothing",
                        hint="give at least one a weight above 0")
    ctx = _path_context(args.model) if not args.model.startswith("demo:") else None
    if ctx is not None and args.seq_len > ctx[0]:
        raise SlimError(f"--seq-len {args.seq_len:,} is more than the model's context of {ctx[0]:,} tokens "
                        f"({ctx[1]} in {Path(args.model).name}/config.json)", hint=f"use at most {ctx[0]:,}")
    cfg = _train_config(args)
    if args.export_job:
        from slimgui.core.train import export_job

        job, cmd = export_job(cfg, Path(args.export_job))
        _emit(args, {"job": str(job), "command": cmd}, f"job written to {job}\nrun: {cmd}")
        return 0
    if args.estimate:
        from slimgui.core.train import estimate_job

        est = estimate_job(cfg)
        _emit(args, est, f"~{est['seconds']:.0f}s ({est['step_seconds']:.2f}s/step), ~{est['memory_bytes'] / 2**20:.0f} MiB "
                         f"of {est['machine_memory_bytes'] / 2**30:.0f} GiB, {est['tokens']:,} tokens, "
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
            msg = f"loss {ev['train_loss']:.3f}" + (f" val ppl {ev['val_ppl']:.2f}" if "val_ppl" in ev else
                                                   f" val loss {ev['val_loss']:.4f}" if "val_loss" in ev else "")
            bar(ev["step"], ev["total"], msg)

    try:
        result = run_training(cfg, events=on_event, resume=args.resume)
    finally:
        bar.close()
    result["model"] = str(Path(cfg.out) / "model")
    val = (f"validation perplexity {result['val_ppl']:.3f} (loss {result['val_loss']:.4f})" if "val_ppl" in result
           else f"validation loss {result['val_loss']:.4f}")
    human = (f"step {result['step']}: {val}, {result['tokens_seen']:,} {result.get('items', 'tokens')}"
             f"\nhealed model: {result['model']}")
    _emit(args, result, human)
    return 0


def cmd_export(args) -> int:
    from slimgui.core.ops import save

    if args.int8 and args.mixed:
        raise SlimError("choose one of --int8 and --mixed")
    if args.format == "hf" and (args.int8 or args.mixed or args.past):
        raise SlimError("--int8, --mixed and --past apply to --format onnx")
    _check_out(args.out, "folder" if args.format == "hf" else "file", force=args.force, sources=_sources(args.model))
    out = Path(args.out)
    reg = _registry()
    bar = ProgressBar(not args.quiet)
    try:
        model = _open(args, reg, bar)
        if args.format == "hf":
            if args.int8 or args.mixed or args.past:
                raise SlimError("--int8, --mixed and --past apply to --format onnx")
            path = save(model, out, registry=reg, force=args.force)
            payload = {"format": "hf", "out": str(path), "model": model.source}
            human = f"saved {model.source} as a {getattr(model.impl, 'folder_kind', 'transformers')} folder in {path}"
        else:
            if not hasattr(model.impl, "export_onnx"):
                raise SlimError(f"the {model.family} family cannot export to ONNX yet")
            from slimgui.core.io import onnx_data_file

            for existing in (out, onnx_data_file(out)):  # a large export keeps its weights in NAME.onnx.data
                if existing.exists() and not args.force:
                    raise SlimError(f"{existing} already exists", hint="choose another --out or pass --force")
            if args.int8 and args.mixed:
                raise SlimError("choose one of --int8 and --mixed")
            mode = "mixed" if args.mixed else "int8" if args.int8 else "fp32"
            options: dict[str, Any] = {"progress": bar}
            if args.data:
                from slimgui.core.data import read_text_file

                options["sample_text"] = read_text_file(args.data, "sample text file")[:200_000]
            if mode == "mixed":
                options["fp32_fraction"] = args.fp32_fraction
                if args.keep_fp32:
                    options["keep_fp32"] = [x.strip() for x in args.keep_fp32.split(",") if x.strip()]
            if mode != "fp32" and args.past:
                raise SlimError("--past is available for the FP32 export only")
            result = model.impl.export_onnx(model, str(out), mode=mode, with_past=args.past, **options)
            payload = {"format": "onnx", "mode": mode, "out": str(out), "model": model.source,
                       **{k: v for k, v in result.items() if k not in ("layers", "warnings")}}
            _warn(payload, result.get("warnings"))
            if mode == "mixed":
                payload["sensitivity"] = {x["layer"]: x.get("sensitivity") for x in result["layers"]}
            human = (f"wrote {out} ({result['bytes'] / 2**20:.1f} MiB, {mode}); vs torch: cosine "
                     f"{result['cosine']:.6f}, max abs diff {result['max_abs_diff']:.3g}; report in {out}.check.json")
            if mode != "fp32":
                human += f"\nsize {100 * result['size_ratio']:.0f}% of FP32, relative output error {result['output_rel_error']:.2e}"
                if mode == "mixed":
                    human += f"\nkept in FP32: {', '.join(result['fp32_layers'])}"
    finally:
        bar.close()
    _emit(args, payload, human)
    return 0


def cmd_bench(args) -> int:
    from slimgui.core.bench import benchmark

    reg = _registry()
    bar = ProgressBar(not args.quiet)
    batches = _int_list(args.batch, "--batch", 1, BATCH_MAX)
    seqs = _int_list(args.seq, "--seq", 1, SEQ_MAX)
    try:
        entries: list[tuple[str, Any]] = []
        for path in [args.model, *(args.vs or [])]:
            if path.endswith(".onnx"):
                from slimgui.core.io import regular_file_stat

                regular_file_stat(path, "ONNX file")
                entries.append((path, path))
                continue
            entries.append((path, _open_path(path, args, reg, bar)))
        models = [(label, m) for label, m in entries if not isinstance(m, str)]
        families = sorted({m.family for _, m in models})
        if len(families) > 1:
            raise SlimError(f"the models to compare are of different families ({', '.join(families)})",
                            hint="benchmark models of one family side by side")
        for _label, m in models:
            _check_context(m, "--seq", max(seqs))
            if not args.no_decode and getattr(m.impl, "can_decode", lambda _m: True)(m):
                _check_context(m, "--new-tokens", args.new_tokens + min(max(seqs), 16),
                               what=f" (after a prompt of {min(max(seqs), 16)} tokens)")
        if args.width_variant:
            if len(entries) < 2 or isinstance(entries[1][1], str):
                raise SlimError("--width-variant needs a torch model to match: give the depth-pruned one with --vs")
            target = sum(p.numel() for p in entries[1][1].module.parameters())
            entries.append((f"width-pruned ({target:,} params)", entries[0][1].impl.width_variant(entries[0][1], target)))
        result = benchmark(entries, batches=batches, seq=seqs, new_tokens=args.new_tokens, threads=args.threads,
                           repeats=args.repeats, decode=not args.no_decode, progress=bar)
    finally:
        bar.close()
    def cell(value, width: int, fmt: str) -> str:
        """A number, or a dash where the figure does not apply (ONNX rows have no decode loop or ideal)."""
        ok = isinstance(value, (int, float)) and value == value and value != 0
        return f"{value:>{width}{fmt}}" if ok else f"{'-':>{width}}"

    lines = [f"{'model':<40} {'runtime':<11} {'batch':>5} {'seq':>5} {'forward ms':>11} {'p90':>8} {'items/s':>9} "
             f"{'decode ms/tok':>14} {'speedup':>8} {'ideal':>6}"]
    for r in result["rows"]:
        sp = r.get("decode_speedup", r.get("prefill_speedup"))
        rate = r.get("prefill_tokens_per_s", r.get(f"{r.get('items', 'tokens')}_per_s"))
        lines.append(f"{Path(r['model']).name[:40]:<40} {r['runtime'][:11]:<11} {r['batch']:>5} {r['seq']:>5} "
                     f"{r['prefill_median_ms']:>11.2f} {r['prefill_p90_ms']:>8.2f} {cell(rate, 9, '.0f')} "
                     f"{cell(r.get('decode_ms_per_token'), 14, '.2f')} {cell(sp, 8, '.2f')} "
                     f"{cell(r.get('ideal_speedup'), 6, '.2f')}")
    lines.append(f"threads {result['threads']}, sequence {','.join(map(str, result['seqs']))}, "
                 f"{result['repeats']} runs after warm-up")
    _emit(args, result, "\n".join(lines))
    return 0


def cmd_report(args) -> int:
    from slimgui.core.report import session_report

    _check_out(args.out, "file", force=True)
    out = session_report(args.session, args.out, bench=args.bench, exports=args.export or [])
    _emit(args, {"out": str(out)}, f"report written to {out} (open it in a browser)")
    return 0


def cmd_gui(args) -> int:
    try:
        from slimgui.gui.app import main as gui_main
    except ImportError as exc:
        raise SlimError(f"the desktop app is not available: {exc}", hint="install SlimGUI with its gui extra") from None
    return gui_main(args)


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="slimgui", description="Make large neural networks small: inspect, score, prune, evaluate.")
    p.add_argument("--version", action="version", version=f"slimgui {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    def common(sp, model=True):
        sp.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        if model:
            sp.add_argument("model", metavar="MODEL", help="model folder or file, a hub id, or demo:NAME")
            sp.add_argument("--adapter", help="open with this adapter instead of the best match")
            sp.add_argument("--trust-remote-code", action="store_true", help="allow code shipped with the model to run")

    def calib(sp):
        sp.add_argument("--data", help="calibration text file (default: the demo's training text for demo models)")
        sp.add_argument("--keep", help="keep-set of locked blocks, e.g. first:4,last:2 (Taylor+), or indices/ids")
        sp.add_argument("--seq-len", type=_int_range(2, SEQ_MAX), default=128,
                        help=f"tokens per calibration segment (2-{SEQ_MAX}, at most the model's context; default 128)")
        sp.add_argument("--samples", type=_int_range(1, 100_000), default=32,
                        help="calibration segments (1-100000, default 32)")
        sp.add_argument("--batch-size", type=_int_range(1, BATCH_MAX), default=8,
                        help=f"segments per forward pass (1-{BATCH_MAX}, default 8)")

    sp = sub.add_parser("plugins", help="list plugins, their adapters and criteria, and broken ones")
    common(sp, model=False)
    sp.set_defaults(func=cmd_plugins)

    sp = sub.add_parser("demo", help="build or locate a built-in demo model")
    sp.add_argument("name", help="demo name, e.g. llm")
    common(sp, model=False)
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("inspect", help="show a model's prunable units and their parameters")
    common(sp)
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("analyze", help="score every prunable unit with a criterion")
    common(sp)
    sp.add_argument("--criterion", required=True, help="criterion name (`slimgui plugins` lists them)")
    sp.add_argument("--out", help="write the scores to this JSON file")
    calib(sp)
    sp.set_defaults(func=cmd_analyze)

    sp = sub.add_parser("prune", help="remove blocks and save the smaller model")
    common(sp)
    sp.add_argument("--remove", help="comma-separated block indices or unit ids, e.g. 3,7")
    sp.add_argument("--preset", help="a named preset of the family, e.g. bk-base, bk-small, bk-tiny (diffusion U-Nets)")
    sp.add_argument("--criterion", help="rank blocks with this criterion")
    sp.add_argument("--scores", help="rank blocks with a scores file from `slimgui analyze --out`")
    sp.add_argument("--ratio", type=_float_range(0, 1, lo_open=True, hi_open=True),
                    help="fraction of the blocks to remove, above 0 and below 1, e.g. 0.25")
    sp.add_argument("--count", type=_int_range(1, 100_000),
                    help="number of blocks to remove (1-100000, fewer than the model has; instead of --ratio)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--force", action="store_true", help="replace an existing output folder")
    calib(sp)
    sp.set_defaults(func=cmd_prune)

    sp = sub.add_parser("eval", help="evaluate: perplexity on a text file (LLM), digit quality (diffusion demo)")
    common(sp)
    sp.add_argument("--data", help="text file to evaluate on (LLM); the demo folder with the classifier (diffusion)")
    sp.add_argument("--evaluator", help="evaluator name (default: the family's first, e.g. perplexity or digits)")
    sp.add_argument("--samples", type=_int_range(1, 10_000), default=10,
                    help="digits: images generated per digit (1-10000, default 10)")
    sp.add_argument("--steps", type=_int_range(1, 1000),
                    help="digits: sampler steps (1-1000; default 25, a few-step model's own)")
    sp.add_argument("--guidance", type=_float_range(0, 100),
                    help="digits: classifier-free guidance (0-100, default 3)")
    sp.add_argument("--seed", type=_int_range(0, SEED_MAX), default=0, help=f"random seed (0-{SEED_MAX}, default 0)")
    sp.add_argument("--seq-len", type=_int_range(2, SEQ_MAX), default=128,
                    help=f"window length in tokens (2-{SEQ_MAX}, at most the model's context; default 128)")
    sp.add_argument("--stride", type=_int_range(1, SEQ_MAX),
                    help="window stride (1 to the window length; default: the window length)")
    sp.add_argument("--max-tokens", type=_int_range(2, INT_MAX),
                    help=f"evaluate only the first N tokens (2-{INT_MAX}; default: all)")
    sp.add_argument("--prompt", default="def ", help="prompt for the generation sample")
    sp.add_argument("--max-new-tokens", type=_int_range(1, 100_000), default=40,
                    help="tokens of the generation sample (1-100000, within the model's context; default 40)")
    sp.add_argument("--no-generate", action="store_true", help="skip the generation sample")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("generate", help="an image grid: the same prompt and seeds from each model, side by side")
    common(sp)
    sp.add_argument("--vs", nargs="+", help="more models, one row each (slimmed, healed, few-step)")
    sp.add_argument("--prompt", default="", help="text prompt (empty: unconditional / empty prompt)")
    sp.add_argument("--class", dest="label", type=_int_range(0, 1_000_000),
                    help="a class instead of a prompt (the demo: a digit 0-9)")
    sp.add_argument("--seed", type=_int_range(0, SEED_MAX - 256), default=0,
                    help=f"first seed (0-{SEED_MAX - 256}, default 0)")
    sp.add_argument("--n", type=_int_range(1, 256), default=4,
                    help="images per model: seeds SEED..SEED+N-1 (1-256, default 4)")
    sp.add_argument("--steps", type=_int_range(1, 1000),
                    help="sampler steps (1-1000; default 25, a few-step model uses its own)")
    sp.add_argument("--guidance", type=_float_range(0, 100),
                    help="classifier-free guidance scale (0-100; default: the pipeline's)")
    sp.add_argument("--out", required=True, help="the .png grid to write")
    sp.add_argument("--force", action="store_true", help="replace an existing --out")
    sp.set_defaults(func=cmd_generate)

    sp = sub.add_parser("retrain", help="heal a slimmed model: LoRA, continued pretraining or distillation")
    common(sp)
    sp.add_argument("--method", choices=["lora", "cpt", "kd", "lcm"], default="lora",
                    help="lora, cpt (full), kd (distil from --teacher), lcm (latent consistency: few-step diffusion)")
    sp.add_argument("--teacher", help="the original model (kd: default the model MODEL was slimmed from; "
                                      "lcm: default MODEL itself)")
    sp.add_argument("--data", action="append", required=True,
                    help="text file/folder, JSONL or a saved dataset; for diffusion an image folder with "
                         "metadata.jsonl captions (repeatable)")
    sp.add_argument("--steps", type=_int_range(1, 10_000_000), default=100,
                    help="optimizer steps (1-10000000, default 100)")
    sp.add_argument("--save-every", type=_int_range(1, 10_000_000), default=50,
                    help="checkpoint every N steps (1-10000000, default 50)")
    sp.add_argument("--keep-last", type=_int_range(1, 1000), default=2, help="checkpoints to keep (1-1000, default 2)")
    sp.add_argument("--eval-every", type=_int_range(1, 10_000_000),
                    help="validate every N steps (1-10000000; default: --save-every)")
    sp.add_argument("--out", required=True, help="run folder: checkpoints and the healed model (OUT/model)")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    sp.add_argument("--export-job", metavar="DIR", help="write a job folder for `accelerate launch` instead of running")
    sp.add_argument("--estimate", action="store_true", help="check the job and print its time/memory estimate only")
    sp.add_argument("--batch-size", type=_int_range(1, BATCH_MAX), default=8,
                    help=f"sequences per step and process (1-{BATCH_MAX}, default 8)")
    sp.add_argument("--grad-accum", type=_int_range(1, BATCH_MAX), default=1,
                    help=f"gradient accumulation steps (1-{BATCH_MAX}, default 1)")
    sp.add_argument("--seq-len", type=_int_range(2, SEQ_MAX), default=128,
                    help=f"tokens per training sequence (2-{SEQ_MAX}, at most the model's context; default 128)")
    sp.add_argument("--lr", type=_float_range(0, 10, lo_open=True),
                    help="learning rate, above 0 and at most 10 (default: 1e-3 LoRA, 2e-4 otherwise)")
    sp.add_argument("--warmup", type=_int_range(0, 10_000_000), default=10,
                    help="learning-rate warm-up steps (0-10000000, default 10)")
    sp.add_argument("--seed", type=_int_range(0, SEED_MAX), default=0, help=f"random seed (0-{SEED_MAX}, default 0)")
    sp.add_argument("--lora-r", type=_int_range(1, 4096), default=8, help="LoRA rank (1-4096, default 8)")
    sp.add_argument("--lora-alpha", type=_int_range(1, 65_536), default=16, help="LoRA alpha (1-65536, default 16)")
    sp.add_argument("--lora-dropout", type=_float_range(0, 1, hi_open=True), default=0.05,
                    help="LoRA dropout, from 0 and below 1 (default 0.05)")
    sp.add_argument("--lora-targets", help="comma-separated module names (default: every linear layer in the blocks)")
    sp.add_argument("--keep-adapter", action="store_true", help="save the LoRA adapter instead of merging it")
    weight = _float_range(0, 1e6)
    sp.add_argument("--kd-ce", "--lambda-task", dest="kd_ce", type=weight, default=1.0,
                    help="distillation: weight of the task loss (next-token CE; diffusion: noise MSE; 0-1e6, default 1)")
    sp.add_argument("--kd-kl", "--lambda-out", dest="kd_kl", type=weight, default=1.0,
                    help="distillation: weight of the output loss (KL on logits; diffusion: MSE to the teacher's output; "
                         "0-1e6, default 1)")
    sp.add_argument("--kd-hidden", "--lambda-feat", dest="kd_hidden", type=weight, default=1.0,
                    help="distillation: weight of the feature loss (block outputs; diffusion: stage features; "
                         "0-1e6, default 1)")
    sp.add_argument("--lcm-ddim-steps", type=_int_range(1, 10_000), default=50,
                    help="lcm: teacher solver steps (1-10000, default 50)")
    sp.add_argument("--lcm-guidance", type=_float_range(0, 100), default=3.0,
                    help="lcm: classifier-free guidance of the teacher (0-100, default 3)")
    sp.add_argument("--lcm-ema-decay", type=_float_range(0, 1, hi_open=True), default=0.95,
                    help="lcm: EMA decay of the target network, from 0 and below 1 (default 0.95)")
    sp.add_argument("--max-train-tokens", type=_int_range(2, 2**40),
                    help="use at most this many training tokens (2 or more)")
    sp.set_defaults(func=cmd_retrain)

    sp = sub.add_parser("export", help="save as a transformers folder or ONNX (FP32, INT8 or mixed precision)")
    common(sp)
    sp.add_argument("--format", choices=["hf", "onnx"], required=True)
    sp.add_argument("--out", required=True, help="output folder (hf) or .onnx file")
    sp.add_argument("--int8", action="store_true", help="dynamic INT8 quantisation of every weight MatMul")
    sp.add_argument("--mixed", action="store_true", help="INT8 except the layers a sensitivity scan marks sensitive")
    sp.add_argument("--fp32-fraction", type=_float_range(0, 1), default=0.1,
                    help="--mixed: share of layers kept FP32 (0-1, default 0.1)")
    sp.add_argument("--keep-fp32", help="--mixed: comma-separated layers to keep FP32 (instead of the scan's choice)")
    sp.add_argument("--past", action="store_true", help="ONNX with past key/values inputs for incremental decoding")
    sp.add_argument("--data", help="text to draw the comparison inputs from (default: random tokens)")
    sp.add_argument("--force", action="store_true", help="replace an existing output")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("bench", help="latency and throughput, side by side, across batch sizes")
    common(sp)
    sp.add_argument("--vs", nargs="+", help="other models or .onnx files to measure beside MODEL")
    sp.add_argument("--batch", default="1,8,32", help=f"batch sizes, comma-separated, each 1-{BATCH_MAX} (default 1,8,32)")
    sp.add_argument("--seq", default="128",
                    help=f"sequence length(s), comma-separated, each 1-{SEQ_MAX} and within the model's context "
                         "(default 128)")
    sp.add_argument("--new-tokens", type=_int_range(1, 100_000), default=16,
                    help="tokens generated per decode run (1-100000, within the model's context; default 16)")
    sp.add_argument("--threads", type=_int_range(1, 1024), default=2,
                    help="threads for torch and onnxruntime (1-1024, default 2)")
    sp.add_argument("--repeats", type=_int_range(1, 10_000), default=5,
                    help="timed runs after warm-up (1-10000, default 5)")
    sp.add_argument("--no-decode", action="store_true", help="measure forward passes only")
    sp.add_argument("--width-variant", action="store_true",
                    help="also measure MODEL width-pruned to the parameter count of the first --vs model")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("report", help="an HTML report of a session (scores, plan, healing, benchmark, exports)")
    sp.add_argument("session", metavar="SESSION.slim")
    sp.add_argument("--out", required=True, help="the .html file to write")
    sp.add_argument("--bench", help="a `slimgui bench --json` output to include")
    sp.add_argument("--export", action="append", help="an exported .onnx whose check report to include (repeatable)")
    common(sp, model=False)
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("gui", help="open the desktop app")
    sp.add_argument("model", nargs="?", help="model to open")
    sp.add_argument("--screenshot", help="render the window into this PNG and exit")
    sp.set_defaults(func=cmd_gui)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui"])
    t0 = time.perf_counter()
    try:
        return int(args.func(args) or 0)
    except SlimError as exc:
        sys.stderr.write(f"slimgui: error: {exc.one_line()}\n")
        return 2
    except (Cancelled, KeyboardInterrupt):
        sys.stderr.write(f"slimgui: cancelled after {time.perf_counter() - t0:.1f}s\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
