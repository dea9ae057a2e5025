"""Commands on one model and on the installation: plugins, demo, inspect, analyze, prune, report, gui."""

from __future__ import annotations

import math
import sys
from typing import Any

from slimgui.core.errors import SlimError

from . import flags
from .common import (
    BATCH_MAX,
    ProgressBar,
    check_out,
    emit,
    float_range,
    fmt_params,
    int_range,
    open_target,
    resolve,
    sources,
    warn,
)


# -- plugins ---------------------------------------------------------------------------------------------
def _cli_flags(f) -> list[str]:
    """The flags that set a field on the command line (a negating flag, constant flags, or its own)."""
    if not f.opt.cli:
        return []
    if f.opt.consts:
        return [c[0] for c in f.opt.consts]
    if f.kind == "bool" and f.default is True and f.opt.negate:
        return [f.opt.negate]
    return list(f.flags)


def _options_json(registry, spec, attr: str = "options") -> Any:
    from slimgui.core.options import describe, fields_of

    if not getattr(spec, attr, None):
        return []
    try:
        sch = registry.options(spec, attr)
    except SlimError as exc:
        return {"error": exc.one_line()}
    return [{**d, "cli_flags": _cli_flags(f)} for d, f in zip(describe(sch), fields_of(sch))]


def _metrics_json(spec) -> list[dict[str, Any]]:
    return [{**m.to_json(), "fmt": m.fmt, "headline": m.headline, "help": m.help} for m in getattr(spec, "metrics", ())]


def plugins_json(registry) -> list[dict[str, Any]]:
    """What `slimgui plugins --json` prints: the registry's description of each plugin, with the options
    (:func:`slimgui.core.options.describe`) and metrics of each contribution."""
    rows = registry.describe()
    for row, rec in zip(rows, registry.records):
        p = rec.plugin
        if p is None or row.get("status") != "ok":
            continue
        for entry, spec in zip(row.get("adapters", []), p.adapters):
            entry.update(items=spec.items, unit_word=spec.unit_word, default_criterion=spec.default_criterion,
                         calibration_options=_options_json(registry, spec, "calibration_options"),
                         train_options=_options_json(registry, spec, "train_options"),
                         bench_options=_options_json(registry, spec, "bench_options"))
        for entry, spec in zip(row.get("methods", []), p.methods):
            entry.update(options=_options_json(registry, spec), default_lr=spec.default_lr, teacher=spec.teacher)
        for entry, spec in zip(row.get("previewers", []), p.previewers):
            entry.update(options=_options_json(registry, spec), families=list(spec.families), label=spec.label)
        for entry, spec in zip(row.get("exporters", []), p.exporters):
            entry.update(options=_options_json(registry, spec), label=spec.label, suffix=spec.suffix,
                         metrics=_metrics_json(spec))
        # "evaluators" stays a list of names (as before); their details are listed beside it
        row["evaluator_specs"] = [{"name": s.name, "families": list(s.families), "description": s.description,
                                   "options": _options_json(registry, s), "metrics": _metrics_json(s),
                                   "data": None if s.data is None else {"kind": s.data.kind, "label": s.data.label}}
                                  for s in p.evaluators]
    return rows


def cmd_plugins(args) -> int:
    rows = plugins_json(args.registry)
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
        for m in r.get("methods", []):
            lines.append(f"    method    {m['name']:<14} {','.join(m['families']):<6} {m.get('label') or ''}")
        for e in r["evaluators"]:
            lines.append(f"    evaluator {e}")
        for p in r["previewers"]:
            lines.append(f"    previewer {p['name']:<14} {p['media']}")
        for x in r.get("exporters", []):
            lines.append(f"    exporter  {x['name']:<14} {','.join(x['families']):<6} {x.get('label') or ''}")
        for d in r["demos"]:
            lines.append(f"    demo      {d}")
    emit(args, {"plugins": rows}, "\n".join(lines))
    return 0


def cmd_demo(args) -> int:
    bar = ProgressBar(not args.quiet)
    try:
        paths = args.registry.demo(args.name)(progress=bar)
    finally:
        bar.close()
    emit(args, paths, "\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


# -- inspect -----------------------------------------------------------------------------------------------
def cmd_inspect(args) -> int:
    from slimgui.core.ops import graph_of

    reg = args.registry
    bar = ProgressBar(not args.quiet)
    try:
        model = open_target(resolve(args.model, reg, adapter=args.adapter, progress=bar), args, reg, bar)
    finally:
        bar.close()
    graph = graph_of(model, reg)
    total = graph.total_params
    lines = [f"{model.source}", f"  family {model.family} · {graph.attrs.get('architecture', '')} · "
             f"{fmt_params(total)} parameters · {len(graph.prunable())} prunable units"
             + ("" if model.has_weights else " · config only (no weights)"), ""]
    pos = {u.id: i for i, u in enumerate(graph.prunable())}
    width = max([16] + [len(u.id) + 2 for u in graph.units if u.parent is None or u.prunable])
    lines.append(f"  {'#':>3}  {'id':<{width}} {'kind':<10} {'params':>10} {'share':>7}")
    for u in graph.units:
        if u.parent is not None and not u.prunable:
            continue
        idx = f"{pos[u.id]}" if u.prunable else ""
        name = u.id if u.parent is None else f"  {u.id}"
        note = u.attrs.get("inspect_note")
        lines.append(f"  {idx:>3}  {name:<{width}} {u.kind:<10} {fmt_params(u.params):>10} "
                     f"{100 * u.params / max(1, total):6.2f}%" + (f"  ({note})" if note else ""))
    presets = graph.attrs.get("presets")
    if presets:
        lines += ["", "  presets: " + ", ".join(f"{k}{'' if ok else ' (does not fit)'}" for k, ok in presets.items())]
    payload = {"model": model.source, "family": model.family, "adapter": model.adapter,
               "has_weights": model.has_weights, "params": total,
               "blocks": [{"index": i, "id": u.id, "params": u.params} for i, u in enumerate(graph.prunable())],
               "presets": presets, "graph": graph.to_json(), "notes": list(model.extra.get("notes") or [])}
    emit(args, payload, "\n".join(lines))
    return 0


# -- analyze and prune -------------------------------------------------------------------------------------
def calibration_options(args, target) -> dict[str, Any]:
    """The calibration options given for the target's family (checked); flags of another family refused."""
    sch = flags.schema(args.registry, target.spec, "calibration_options")
    flags.warn_others(args, [sch], f"{target.family} models' calibration")
    return flags.given(args, sch)


def calibration(args, model, options: dict[str, Any]):
    """Calibration data from --data, else the family's default (a demo's own data), else None."""
    from slimgui.core.data import CalibrationData

    reg = args.registry
    path = args.data
    if path is None and reg.spec_of(model).can("default-data"):
        impl = model.impl if model.impl is not None else reg.adapter(model.adapter)
        path = impl.default_data(model)
    if path is None:
        return None
    return CalibrationData(path, samples=args.samples, batch_size=args.batch_size, options=dict(options))


def analyze_model(args, model, options: dict[str, Any], bar):
    from slimgui.core import ops

    data = calibration(args, model, options)
    return ops.analyze(model, args.criterion, registry=args.registry, data=data, keep=args.keep, progress=bar)


def _score_cell(v: float) -> str:
    return f"{v:12.5g}" if math.isfinite(v) else f"{'nan' if math.isnan(v) else ('inf' if v > 0 else '-inf'):>12}"


def _baseline(meta: dict[str, Any]) -> Any:
    """The full model's figure a criterion reports beside its scores (``baseline`` or ``baseline_*`` in its meta)."""
    for key, value in meta.items():
        if (key == "baseline" or key.startswith("baseline_")) and isinstance(value, (int, float)):
            return value
    return None


def cmd_analyze(args) -> int:
    from slimgui.core.ops import graph_of

    if args.out is not None:
        check_out(args.out, "file", force=args.force)
    reg = args.registry
    bar = ProgressBar(not args.quiet)
    try:
        target = resolve(args.model, reg, adapter=args.adapter, progress=bar)
        options = calibration_options(args, target)
        model = open_target(target, args, reg, bar)
        scores = analyze_model(args, model, options, bar)
    finally:
        bar.close()
    if args.out:
        scores.save(args.out)
    graph = graph_of(model, reg)
    ranking = scores.ranking()
    rank = {uid: i + 1 for i, uid in enumerate(ranking)}  # 1-based, as the app shows it; unit indices are 0-based
    finite = [v for v in scores.values.values() if math.isfinite(v)]
    hi = max(finite) if finite else 1.0
    lo = min(finite) if finite else 0.0
    width = max([12] + [len(u.id) for u in graph.prunable()])
    baseline = _baseline(scores.meta)
    lines = [f"criterion {scores.criterion} on {model.source} ({scores.meta.get('seconds', 0):.1f}s)"
             + (f"; keep-set {scores.keep}" if scores.keep else "")
             + (f"; full model {baseline:.3f}" if baseline is not None else ""),
             f"  {'#':>3}  {'unit':<{width}} {'score':>12} {'rank':>5}  (rank 1 = least important; # is the unit index, 0-based)"]
    for pos, u in enumerate(graph.prunable()):
        v = scores.values[u.id]
        bar_len = (int(20 * (v - lo) / (hi - lo)) if hi > lo else 10) if math.isfinite(v) else 0
        lock = " locked" if u.id in scores.locked else ""
        lines.append(f"  {pos:>3}  {u.id:<{width}} {_score_cell(v)} {rank[u.id]:>5}  {'█' * bar_len}{lock}")
    if args.out:
        lines.append(f"scores written to {args.out}")
    payload = {"criterion": scores.criterion, "model": model.source,
               "scores": {k: (v if math.isfinite(v) else None) for k, v in scores.values.items()}, "ranking": ranking,
               "locked": scores.locked, "keep": scores.keep, "seconds": scores.meta.get("seconds"),
               "baseline": baseline, "out": str(args.out) if args.out else None, "non_finite": scores.non_finite()}
    warn(payload, scores.meta.get("warnings"))
    emit(args, payload, "\n".join(lines))
    return 0


def cmd_prune(args) -> int:
    from slimgui.core.ops import graph_of, preset_plan, prune, save
    from slimgui.core.plan import PruningPlan, parse_keep, plan_from_scores
    from slimgui.core.scores import Scores
    from slimgui.core.selection import select_by_budget

    budgets = [f for f, v in (("--ratio", args.ratio), ("--count", args.count), ("--params-fraction", args.params_fraction),
                              ("--macs-fraction", args.macs_fraction), ("--latency-ms", args.latency_ms))
               if v is not None]
    if len(budgets) == 2:
        raise SlimError(f"give {budgets[0]} or {budgets[1]}, not both")
    if len(budgets) > 2:
        raise SlimError(f"give one of {', '.join(budgets)}, not {len(budgets)}")
    check_out(args.out, "folder", force=args.force, sources=sources(args.model))
    reg = args.registry
    bar = ProgressBar(not args.quiet)
    warnings: list[str] = []
    try:
        target = resolve(args.model, reg, adapter=args.adapter, progress=bar)
        options = calibration_options(args, target)
        model = open_target(target, args, reg, bar)
        graph = graph_of(model, reg)
        if args.snap_widths:
            from slimgui.core.selection import width_layers

            if not width_layers(graph):
                raise SlimError(f"--snap-widths: the {model.family} family's units declare no width slices, so no "
                                "width can be snapped", hint="leave out --snap-widths for this model")
        if args.preset:
            if args.remove or budgets:
                raise SlimError("--preset chooses the units itself: leave out --remove, --ratio, --count, "
                                "--params-fraction and --macs-fraction")
            plan = preset_plan(model, args.preset, registry=reg)
            plan.locked, plan.keep = parse_keep(args.keep, graph), args.keep
        elif args.remove:
            ids = [graph.resolve(r).id for r in args.remove.split(",") if r.strip()]
            plan = PruningPlan(remove=ids, locked=parse_keep(args.keep, graph), keep=args.keep, model=model.source)
        else:
            if not budgets:
                raise SlimError("give --remove, --preset, or --criterion/--scores with --ratio, --count, "
                                "--params-fraction, --macs-fraction or --latency-ms")
            if args.scores:
                scores = Scores.load(args.scores)
            elif args.criterion:
                scores = analyze_model(args, model, options, bar)
                warnings = list(scores.meta.get("warnings") or [])
            else:
                raise SlimError(f"{budgets[0]} needs --criterion NAME or --scores FILE to rank the blocks")
            if args.latency_ms is not None:
                from slimgui.core.profiling import profile_model
                from slimgui.core.selection import latency_table, select_by_latency

                profile = profile_model(model, reg, batch=args.latency_batch, progress=bar)
                chosen = select_by_latency(graph, scores, latency_table(profile), profile["total_ms"], args.latency_ms,
                                           keep=args.keep)
                plan = PruningPlan(remove=chosen, locked=parse_keep(args.keep, graph) if args.keep is not None
                                   else list(scores.locked), keep=args.keep if args.keep is not None else scores.keep,
                                   criterion=scores.criterion)
                plan.meta["budget"] = {"latency_ms": args.latency_ms, "batch": args.latency_batch,
                                       "measured_ms": profile["total_ms"]}
            elif args.params_fraction is not None or args.macs_fraction is not None:
                chosen = select_by_budget(graph, scores, params_fraction=args.params_fraction,
                                          macs_fraction=args.macs_fraction, keep=args.keep)
                plan = PruningPlan(remove=chosen, locked=parse_keep(args.keep, graph) if args.keep is not None
                                   else list(scores.locked), keep=args.keep if args.keep is not None else scores.keep,
                                   criterion=scores.criterion)
                plan.meta["budget"] = ({"params_fraction": args.params_fraction} if args.params_fraction is not None
                                       else {"macs_fraction": args.macs_fraction})
            else:
                plan = plan_from_scores(graph, scores, ratio=args.ratio, count=args.count, keep=args.keep)
            plan.model = model.source
        snapped = None
        if args.snap_widths:
            from slimgui.core.profiling import snap_widths

            snapped = snap_widths(model, reg, list(plan.remove), direction=args.snap_widths, batch=args.latency_batch,
                                  progress=bar)
            if not snapped["remove"]:
                raise SlimError(f"with --snap-widths {args.snap_widths} every layer the plan narrows is back at its "
                                "full width: the plan removes nothing",
                                hint="narrow the layers further, or use --snap-widths down")
            plan.remove = snapped["remove"]
            plan.meta["snap_widths"] = {k: snapped[k] for k in ("direction", "before", "layers")}
        plan.validate(graph)
        before, macs_before = graph.total_params, graph.total_macs
        pruned = prune(model, plan, registry=reg, copy=False)
        pruned_graph = graph_of(pruned, reg)
        after, macs_after = pruned_graph.total_params, pruned_graph.total_macs
        pos = {u.id: i for i, u in enumerate(graph.prunable())}
        plan.meta.update({"params_before": before, "params_after": after, "macs_before": macs_before,
                          "macs_after": macs_after,
                          "removed_indices": [pos[u] for u in plan.remove],
                          "kept_indices": [pos[u] for u in plan.kept(graph)]})
        out = save(pruned, args.out, registry=reg, force=args.force)
    finally:
        bar.close()
    payload = {"out": str(out), "removed": plan.remove, "removed_indices": plan.meta["removed_indices"],
               "kept_indices": plan.meta["kept_indices"], "criterion": plan.criterion, "keep": plan.keep,
               "preset": plan.meta.get("preset"),
               "params_before": before, "params_after": after, "param_ratio": after / before if before else None,
               "effective_ratio": plan.meta.get("effective_ratio"), "ratio_rule": plan.meta.get("ratio_rule"),
               "macs_before": macs_before, "macs_after": macs_after,
               "mac_ratio": macs_after / macs_before if macs_before and macs_after is not None else None}
    if snapped is not None:  # per layer: full width, kept width before / after snapping, the step edges
        payload["snap_widths"] = {"direction": snapped["direction"], "before": snapped["before"], "moved": snapped["moved"],
                                  "layers": [{k: r[k] for k in ("layer", "width", "before", "after", "edges", "moved")}
                                             for r in snapped["layers"]]}
    warn(payload, warnings)
    share = (f" ({len(plan.remove)} of {plan.meta['units']}: {100 * plan.meta['effective_ratio']:.1f}%, "
             f"--ratio {plan.ratio:g} rounded down)" if plan.ratio is not None and plan.meta.get("effective_ratio")
             else "")
    human = (f"removed {', '.join(plan.remove)}{share}\n"
             f"params {fmt_params(before)} → {fmt_params(after)}"
             + (f" ({100 * after / before:.1f}%)" if before else "") + "\n"
             + (f"MACs {fmt_params(macs_before)} → {fmt_params(macs_after)} ({100 * macs_after / macs_before:.1f}%)\n"
                if macs_before and macs_after is not None else "") +
             f"saved to {out}")
    if snapped is not None:
        rows = [f"  {r['layer']}: {r['before']} → {r['after']} of {r['width']} (edges {', '.join(map(str, r['edges']))})"
                for r in snapped["layers"]]
        human = (f"widths snapped {snapped['direction']} to latency steps ({snapped['moved']} of {len(rows)} layer(s) "
                 "moved; timings on this machine):\n" + "\n".join(rows) + "\n" + human)
    emit(args, payload, human)
    return 0


# -- report and gui ------------------------------------------------------------------------------------------
def cmd_report(args) -> int:
    from slimgui.core.report import session_report

    check_out(args.out, "file", force=args.force)
    out = session_report(args.session, args.out, bench=args.bench, exports=args.export or [])
    emit(args, {"out": str(out)}, f"report written to {out} (open it in a browser)")
    return 0


def cmd_record(args) -> int:
    from slimgui.core.recording import input_device, record_wav

    check_out(args.out, "file", force=args.force)
    device, why = input_device()
    if device is None:
        raise SlimError(why, hint="give a recorded WAV file instead")
    if not args.quiet:
        print(f"recording {args.seconds:g} s from {device}…", file=sys.stderr)
    out = record_wav(args.out, args.seconds, rate=args.rate)
    emit(args, {"out": str(out), "seconds": args.seconds, "rate": args.rate, "device": device},
         f"recorded {args.seconds:g} s from {device} into {out}")
    return 0


def cmd_gui(args) -> int:
    import os

    from slimgui.syslibs import check

    if getattr(args, "screenshot", None):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a screenshot needs no window
    problem = check()  # before Qt aborts with a message that blames the wrong library
    if problem:
        raise SlimError(problem)
    try:
        from slimgui.gui.app import main as gui_main
    except ImportError as exc:
        raise SlimError(f"the desktop app is not available: {exc}", hint="install SlimGUI with its gui extra") from None
    return gui_main(args)


# -- parsers -------------------------------------------------------------------------------------------------
def add_parsers(sub, registry, common) -> None:
    def calib(sp):
        data = sorted({s.data.label for _, s in registry.adapter_specs() if s.data and s.data.label})
        sp.add_argument("--data", help=f"calibration data ({', '.join(data) or 'a file or folder'}; default: a demo "
                                       "model's own data)")
        sp.add_argument("--keep", help="keep-set of locked blocks, e.g. first:4,last:2 (Taylor+), or indices/ids")
        sp.add_argument("--samples", type=int_range(1, 100_000), default=32,
                        help="calibration samples (1-100000, default 32)")
        sp.add_argument("--batch-size", type=int_range(1, BATCH_MAX), default=8,
                        help=f"samples per forward pass (1-{BATCH_MAX}, default 8)")
        flags.add(sp, flags.adapter_pairs(registry, "calibration_options"), title="calibration options of a family")

    sp = sub.add_parser("plugins", help="list plugins, their adapters, criteria, methods and options, and broken ones")
    common(sp, model=False)
    sp.set_defaults(func=cmd_plugins)

    sp = sub.add_parser("demo", help="build or locate a built-in demo model")
    sp.add_argument("name", help="demo name (`slimgui plugins` lists them)")
    common(sp, model=False)
    sp.set_defaults(func=cmd_demo)

    def streaming(sp):
        sp.add_argument("--stream", action="store_true", default=None,
                        help="read the weights block by block instead of loading them (for models bigger than "
                             "memory; chosen by itself when the weights would not fit)")

    sp = sub.add_parser("inspect", help="show a model's prunable units and their parameters")
    common(sp)
    streaming(sp)
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("analyze", help="score every prunable unit with a criterion")
    common(sp)
    sp.add_argument("--criterion", required=True, help="criterion name (`slimgui plugins` lists them)")
    sp.add_argument("--out", help="write the scores to this JSON file")
    sp.add_argument("--force", action="store_true", help="replace an existing --out file")
    calib(sp)
    streaming(sp)
    sp.set_defaults(func=cmd_analyze)

    sp = sub.add_parser("prune", help="remove blocks and save the smaller model")
    common(sp)
    sp.add_argument("--remove", help="comma-separated block indices or unit ids, e.g. 3,7")
    sp.add_argument("--preset", help="a named preset of the family (`slimgui inspect MODEL` lists them)")
    sp.add_argument("--criterion", help="rank blocks with this criterion")
    sp.add_argument("--scores", help="rank blocks with a scores file from `slimgui analyze --out`")
    sp.add_argument("--ratio", type=float_range(0, 1, lo_open=True, hi_open=True),
                    help="fraction of the blocks to remove, above 0 and below 1, e.g. 0.25")
    sp.add_argument("--count", type=int_range(1, 100_000),
                    help="number of blocks to remove (1-100000, fewer than the model has; instead of --ratio)")
    sp.add_argument("--params-fraction", type=float_range(0, 1, lo_open=True, hi_open=True), metavar="F",
                    help="remove the least important units while the removed parameters stay within this fraction "
                         "of the model's, above 0 and below 1 (instead of --ratio)")
    sp.add_argument("--macs-fraction", type=float_range(0, 1, lo_open=True, hi_open=True), metavar="F",
                    help="remove the least important units while the removed MACs stay within this fraction of the "
                         "model's (families that count MACs), above 0 and below 1 (instead of --ratio)")
    sp.add_argument("--latency-ms", type=float_range(0, 1e9, lo_open=True), metavar="MS",
                    help="remove the least important units until the pass measured on this machine is predicted to "
                         "take at most MS milliseconds (each unit's time measured once; instead of --ratio)")
    sp.add_argument("--latency-batch", type=int_range(1, BATCH_MAX), default=1, metavar="B",
                    help=f"batch size the --latency-ms pass (and --snap-widths) is measured at (1-{BATCH_MAX}, "
                         "default 1)")
    sp.add_argument("--snap-widths", nargs="?", const="up", choices=("up", "down"), default=None,
                    help="snap every layer the plan narrows to its latency steps measured on this machine: 'up' "
                         "(default) keeps the channels that cost no time, 'down' goes one step faster (families "
                         "whose units cut a layer's width in slices)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--force", action="store_true", help="replace an existing output folder")
    calib(sp)
    streaming(sp)
    sp.set_defaults(func=cmd_prune)



def add_session_parsers(sub, registry, common) -> None:
    sp = sub.add_parser("report", help="an HTML report of a session (scores, plan, healing, benchmark, exports)")
    sp.add_argument("session", metavar="SESSION.slim")
    sp.add_argument("--out", required=True, help="the .html file to write")
    sp.add_argument("--force", action="store_true", help="replace an existing --out file")
    sp.add_argument("--bench", help="a `slimgui bench --json` output to include")
    sp.add_argument("--export", action="append", help="an exported file whose check report to include (repeatable)")
    common(sp, model=False)
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("record", help="record speech from the microphone into a WAV file (the app's record button)")
    sp.add_argument("--out", required=True, help="the .wav file to write")
    sp.add_argument("--seconds", type=float_range(0, 600, lo_open=True), default=5.0,
                    help="how long to record (above 0, at most 600; default 5)")
    sp.add_argument("--rate", type=int_range(8000, 192_000), default=16_000, help="sample rate in Hz (default 16000)")
    sp.add_argument("--force", action="store_true", help="replace an existing --out file")
    common(sp, model=False)
    sp.set_defaults(func=cmd_record)

    sp = sub.add_parser("gui", help="open the desktop app")
    sp.add_argument("model", nargs="?", help="model to open")
    sp.add_argument("--screenshot", help="render the window into this PNG and exit")
    sp.set_defaults(func=cmd_gui)
