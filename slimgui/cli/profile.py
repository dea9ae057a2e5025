"""`slimgui profile MODEL`: where time goes on this machine (or on a device described by a profile file) — each
unit's FLOPs, bytes moved, arithmetic intensity, roofline bound and measured time; an ONNX file per node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError

from . import flags
from .common import ProgressBar, emit, int_range, open_target, resolve


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(value * scale, spec)


def profile_table(result: dict[str, Any]) -> list[str]:
    from slimgui.core.costmodel import fmt_flops

    dev = result["device"]
    lines = [f"device: {dev['name']} · peak {fmt_flops(dev['peak_flops'])}FLOP/s · bandwidth "
             f"{dev['bandwidth'] / 1e9:.3g} GB/s · ridge {dev['ridge']:.1f} FLOP/byte ({dev['source']})",
             f"{result['runtime']}, batch {result['batch']}: {result['total_ms']:.3f} ms per pass, "
             f"{fmt_flops(result['total_flops'])}FLOP, {result['timed_units']} units timed"]
    head = f"{'unit':<28} {'MFLOP':>9} {'KB moved':>9} {'FLOP/B':>8} {'bound ms':>9} {'meas. ms':>9} {'eff.':>6}  bound by"
    lines += [head, "-" * len(head)]
    for r in result["units"]:
        name = ("  " * r.get("depth", 0) + (r["unit"] if not r.get("op") else f"{r['unit']} ({r['op']})"))[:28]
        by = "–" if r.get("memory_bound") is None else ("memory" if r["memory_bound"] else "compute")
        lines.append(f"{name:<28} {_fmt(r['flops'], '9.3f', 1e-6)} {_fmt(r['bytes'], '9.1f', 1e-3)} "
                     f"{_fmt(r['intensity'], '8.2f')} {_fmt(r['bound_ms'], '9.4f')} {_fmt(r['measured_ms'], '9.4f')} "
                     f"{_fmt(r['efficiency'], '6.1%')}  {by}")
    return lines


def cmd_profile(args) -> int:
    from slimgui.core.costmodel import device_profile, save_profile
    from slimgui.core.io import atomic_write_text
    from slimgui.core.profiling import profile_model, profile_onnx

    reg = args.registry
    bar = ProgressBar(not args.quiet)
    try:
        device = device_profile(args.device_profile, threads=args.threads, refresh=args.measure_device)
        if args.width_steps and args.model.lower().endswith(".onnx"):
            raise SlimError("--width-steps measures a layer of a torch model, not of an ONNX file")
        if args.model.lower().endswith(".onnx"):
            if not Path(args.model).is_file():
                raise SlimError(f"{args.model} does not exist", hint="give an ONNX file or a model")
            result = profile_onnx(args.model, batch=args.batch, device=device, repeats=args.repeats,
                                  threads=args.threads, progress=bar)
        else:
            target = resolve(args.model, reg, adapter=args.adapter, progress=bar)
            sch = flags.schema(reg, target.spec, "bench_options") if target.spec is not None else None
            flags.warn_others(args, [sch], f"profiling {target.family} models")
            options = flags.given(args, sch)  # what one pass is: the family's benchmark options (a length, …)
            model = open_target(target, args, reg, bar)
            result = profile_model(model, reg, batch=args.batch, device=device, repeats=args.repeats,
                                   threads=args.threads, options=options, progress=bar)
            if options:
                result["options"] = options
            if args.width_steps:
                from slimgui.core.profiling import width_steps

                result["width_steps"] = width_steps(model, reg, args.width_steps, batch=args.batch,
                                                    threads=args.threads, options=options)
        if args.save_device_profile:
            save_profile(device, args.save_device_profile)
            result["device_profile_file"] = str(args.save_device_profile)
        if args.out:
            import json

            atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
            result["out"] = str(args.out)
    finally:
        bar.close()
    human = profile_table(result)
    if result.get("width_steps"):
        ws = result["width_steps"]
        human.append(f"latency steps of {ws['unit']} (input {'×'.join(map(str, ws['input_shape']))}): "
                     + ", ".join(f"{w}: {t:.4f} ms" for w, t in ws["widths"]))
        human.append(f"step edges (snap planned widths up to these): {', '.join(map(str, ws['edges']))}")
    emit(args, result, "\n".join(human))
    return 0


def add_parsers(sub, registry, common) -> None:
    sp = sub.add_parser("profile", help="per-unit FLOPs, bytes, arithmetic intensity, roofline bound and measured "
                                        "time (a model, or an .onnx file per node)")
    common(sp)
    sp.add_argument("--device-profile", metavar="FILE",
                    help="model another device: a JSON device profile (name, peak_flops in FLOP/s, bandwidth in "
                         "bytes/s, dtype_bytes); default: this machine, measured once and cached")
    sp.add_argument("--measure-device", action="store_true", help="measure this machine again (not the cached one)")
    sp.add_argument("--save-device-profile", metavar="FILE", help="write the device profile used to FILE")
    sp.add_argument("--batch", type=int_range(1, 4096), default=1, help="batch size of the profiled pass (1)")
    sp.add_argument("--repeats", type=int_range(1, 200), default=5, help="timed passes; each unit's median (5)")
    sp.add_argument("--threads", type=int_range(1, 512), default=None, help="torch / onnxruntime threads")
    sp.add_argument("--out", metavar="FILE", help="also write the profile as JSON to FILE")
    sp.add_argument("--width-steps", metavar="UNIT",
                    help="also time this conv/linear unit at 16 widths and print its latency steps and step edges")
    flags.add(sp, flags.adapter_pairs(registry, "bench_options"),
              title="benchmark options of a family (what one profiled pass is)")
    sp.set_defaults(func=cmd_profile)
    add_abconv_parser(sub, registry, common)


# -- abconv ------------------------------------------------------------------------------------------------------
def cmd_abconv(args) -> int:
    import json

    from slimgui.core import ops
    from slimgui.core.abconv import abconv_model
    from slimgui.core.io import check_output_path

    reg = args.registry
    bar = ProgressBar(not args.quiet)
    try:
        layers = [x.strip() for x in args.layers.split(",") if x.strip()] if args.layers else None
        model = open_target(resolve(args.model, reg, adapter=args.adapter, progress=bar), args, reg, bar)
        check_output_path(args.out, "folder", force=args.force, sources=[model.source])
        balanced, result = abconv_model(model, reg, layers=layers, fold=args.fold, max_fold=args.max_fold)
        out = ops.save(balanced, args.out, registry=reg, force=args.force,
                       extra_files={"slimgui_abconv.json": json.dumps(result, indent=1) + "\n"})
    finally:
        bar.close()
    result = {"model": model.source, "out": str(out), **result}
    lines = [f"{'layer':<24} {'fold':>4} {'FLOP/B before':>13} {'after':>8}  why"]
    for r in result["layers"]:
        after = r["after"]["intensity"] if r["after"] and r["fold"] > 1 else None
        lines.append(f"{r['layer']:<24} {r['fold']:>4} {r['before']['intensity']:>13.2f} "
                     f"{_fmt(after, '8.2f')}  {r['reason']}")
    lines.append(f"{len(result['replaced'])} convolution(s) balanced; FLOPs {result['flops_before'] / 1e6:.2f}M → "
                 f"{result['flops_after'] / 1e6:.2f}M, conv weights {result['weight_bytes_before'] / 1e3:.0f} KB → "
                 f"{result['weight_bytes_after'] / 1e3:.0f} KB; saved to {out}")
    learners = [m.name for m in reg.method_specs(model.family) if m.teacher == "original"]
    if learners:  # healing from the original recovers what the balanced convolutions cost
        lines.append(f"heal it from the original: slimgui retrain {out} --method {learners[0]} --teacher {model.source}")
    emit(args, result, "\n".join(lines))
    return 0


def add_abconv_parser(sub, registry, common) -> None:
    sp = sub.add_parser("abconv", help="replace weight-bound small-spatial convolutions by arithmetic-intensity-"
                                       "balanced ones (ABConv), then retrain by distillation")
    common(sp)
    sp.add_argument("--out", required=True, help="the output model folder")
    sp.add_argument("--force", action="store_true", help="replace an existing output")
    sp.add_argument("--layers", help="comma-separated convolution names (default: every eligible one)")
    sp.add_argument("--fold", type=int_range(2, 64), default=None,
                    help="fold factor g of every replaced layer (default: the balancing one per layer)")
    sp.add_argument("--max-fold", type=int_range(2, 64), default=8, help="largest balancing fold (8)")
    sp.set_defaults(func=cmd_abconv)
