"""`slimgui export` (any declared exporter, with its options) and `slimgui bench` (models and exported files
side by side, with the family's benchmark options)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError

from . import flags
from .common import BATCH_MAX, ProgressBar, check_out, emit, int_list, int_range, open_target, resolve, sources, warn
from .compare import format_metrics


# -- export ----------------------------------------------------------------------------------------------
def cmd_export(args) -> int:
    from slimgui.core.tasks_export import export_task

    reg = args.registry
    check_out(args.out, reg.exporter_spec(args.format).output, force=args.force, sources=sources(args.model))
    bar = ProgressBar(not args.quiet)
    try:
        target = resolve(args.model, reg, adapter=args.adapter, progress=bar)
        spec = reg.exporter_spec(args.format, target.family)  # a format of another family is refused here
        sch = flags.schema(reg, spec)
        flags.warn_others(args, [sch], f"--format {spec.name}")
        options = flags.given(args, sch)
        model = open_target(target, args, reg, bar)
        result, model = export_task(model, args.out, registry=reg, fmt=spec.name, options=options, force=args.force,
                                    progress=bar)
    finally:
        bar.close()
    payload = {"format": spec.name, "out": str(result.get("file") or args.out), "model": model.source,
               **{k: v for k, v in result.items() if k != "warnings"}}
    warn(payload, result.get("warnings"))
    shown = format_metrics(result, spec.metrics)
    detail = result.get("native") or result.get("mode")
    human = f"wrote {payload['out']} ({spec.label or spec.name}" + (f", {detail}" if detail else "") + ")"
    if shown:
        human += "; " + ", ".join(shown)
    if result.get("report"):
        human += f"; report in {result['report']}"
    emit(args, payload, human)
    return 0


# -- bench -----------------------------------------------------------------------------------------------
def _cell(value: Any, width: int, fmt: str) -> str:
    """A number, or a dash where the figure does not apply (a run a row does not have)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value != 0
    return f"{value:>{width}{fmt}}" if ok else f"{'-':>{width}}"


def bench_table(result: dict[str, Any], sch: type | None) -> list[str]:
    """The benchmark as a table whose columns come from the rows' runs and the family's items word."""
    from slimgui.core.options import fields_of

    rows = result["rows"]
    swept = [f for f in fields_of(sch) if f.opt.sweep]
    runs: dict[str, dict[str, Any]] = {}
    for r in rows:
        for run in r.get("runs", []):
            runs.setdefault(run["name"], run)
    first = next(iter(runs), None)
    items = next((r["items"] for r in rows if r.get("items")), "items")
    cols: list[tuple[str, int, Any]] = [(f.name, max(5, len(f.name)), None) for f in swept]
    for name, run in runs.items():
        label = run.get("label") or name
        if run.get("per"):
            cols.append((f"{label} ms/{run['per']}", 0, (f"{name}_ms_per_{run['per']}", ".2f")))
        else:
            cols.append((f"{label} ms", 0, (f"{name}_median_ms", ".2f")))
        if name == first:
            cols.append(("p90", 8, (f"{name}_p90_ms", ".2f")))
            cols.append((f"{items}/s", 0, (f"{items}_per_s", ".0f")))
    cols += [("speedup", 8, None), ("ideal", 6, ("ideal_speedup", ".2f"))]
    cols = [(title, max(width, len(title)), key) for title, width, key in cols]
    head = f"{'model':<40} {'runtime':<11} {'batch':>5} " + " ".join(f"{t:>{w}}" for t, w, _ in cols)
    lines = [head]
    for r in rows:
        cells = []
        for title, width, key in cols:
            if key is None and title == "speedup":
                last = [run["name"] for run in r.get("runs", []) if f"{run['name']}_speedup" in r]
                cells.append(_cell(r.get(f"{last[-1]}_speedup") if last else None, width, ".2f"))
            elif key is None:
                value = r.get(title)
                cells.append(f"{value!s:>{width}}" if value is not None else f"{'-':>{width}}")
            else:
                cells.append(_cell(r.get(key[0]), width, key[1]))
        lines.append(f"{Path(str(r['model'])).name[:40]:<40} {str(r['runtime'])[:11]:<11} {r['batch']:>5} "
                     + " ".join(cells))
    settings = []
    for f in fields_of(sch):
        value = result.get(f.name + "s") if f.opt.sweep and f.name + "s" in result else result.get(f.name)
        if value is not None:
            shown = ",".join(map(str, value)) if isinstance(value, list) else (
                ("on" if value else "off") if isinstance(value, bool) else str(value))
            settings.append(f"{f.label} {shown}")
    lines.append(", ".join([f"threads {result['threads']}", *settings, f"{result['repeats']} runs after warm-up"]))
    return lines


def cmd_bench(args) -> int:
    from slimgui.core.bench import exported_file_spec
    from slimgui.core.tasks_export import bench_task

    reg = args.registry
    batches = int_list(args.batch, "--batch", 1, BATCH_MAX)
    bar = ProgressBar(not args.quiet)
    try:
        entries: list[tuple[str, Any]] = []
        families: list[str] = []
        for i, path in enumerate([args.model, *(args.vs or [])]):
            exported = exported_file_spec(path, reg)
            if exported is not None:
                from slimgui.core.io import regular_file_stat

                regular_file_stat(path, f"{exported.label or exported.name} file")
                entries.append((path, path))
                families += [f for f in exported.families if f != "*"][:1]
                continue
            model = open_target(resolve(path, reg, adapter=args.adapter if i == 0 else None, progress=bar),
                                args, reg, bar)
            entries.append((path, model))
            families.append(model.family)
        kinds = sorted(set(families))
        if len(kinds) > 1:
            raise SlimError(f"the models to compare are of different families ({', '.join(kinds)})",
                            hint="benchmark models of one family side by side")
        family = kinds[0] if kinds else None
        sch = flags.schema(reg, reg.family_spec(family), "bench_options") if family else None
        flags.warn_others(args, [sch], f"benchmarking {family} models")
        options = flags.given(args, sch)
        width = None
        if args.width_variant:
            if isinstance(entries[0][1], str):
                raise SlimError("--width-variant needs MODEL to be a model, not an exported file")
            if len(entries) < 2 or isinstance(entries[1][1], str):
                raise SlimError("--width-variant needs a torch model to match: give the depth-pruned one with --vs")
            target = sum(p.numel() for p in entries[1][1].module.parameters())
            width = (f"width-pruned ({target:,} params)", entries[0][1], target)
        result = bench_task(entries, registry=reg, batches=batches, options=options, threads=args.threads,
                            repeats=args.repeats, width=width, progress=bar)
    finally:
        bar.close()
    warn(result, list(result.pop("warnings", None) or []))  # e.g. a busy machine: the figures are marked
    emit(args, result, "\n".join(bench_table(result, sch)))
    return 0


# -- parsers ---------------------------------------------------------------------------------------------
def add_parsers(sub, registry, common) -> None:
    exporters = flags.all_specs(registry, "exporters")
    names = list(dict.fromkeys(s.name for s in exporters))
    described = "; ".join(f"{s.name}: {s.label or s.name} ({s.output}{', ' + s.suffix if s.suffix else ''})"
                          for s in exporters)
    sp = sub.add_parser("export", help="save the model in another format (" + ", ".join(names) + ")")
    common(sp)
    sp.add_argument("--format", choices=names or None, required=True, help=described)
    sp.add_argument("--out", required=True, help="the output folder or file, as the format writes")
    sp.add_argument("--force", action="store_true", help="replace an existing output")
    flags.add(sp, flags.spec_pairs(exporters, registry), title="options of the formats")
    sp.set_defaults(func=cmd_export)

    suffixes = sorted({s.suffix for s in exporters if s.runner and s.suffix})
    sp = sub.add_parser("bench", help="latency and throughput, side by side, across batch sizes")
    common(sp)
    sp.add_argument("--vs", nargs="+", help="other models or exported files (" + ", ".join(suffixes)
                                            + ") to measure beside MODEL")
    sp.add_argument("--batch", default="1,8,32", help=f"batch sizes, comma-separated, each 1-{BATCH_MAX} (default 1,8,32)")
    sp.add_argument("--threads", type=int_range(1, 1024), default=2,
                    help="threads for torch and the exported files' runtimes (1-1024, default 2)")
    sp.add_argument("--repeats", type=int_range(1, 10_000), default=5,
                    help="timed runs after warm-up (1-10000, default 5)")
    sp.add_argument("--width-variant", action="store_true",
                    help="also measure MODEL width-pruned to the parameter count of the first --vs model")
    flags.add(sp, flags.adapter_pairs(registry, "bench_options"), title="benchmark options of a family")
    sp.set_defaults(func=cmd_bench)
