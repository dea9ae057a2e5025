"""`make bench`, gan part: the demo Pix2Pix generator (edges -> photo), measured in one run.

- ``inner_vs_global_quality``: PSNR / SSIM to the held-out targets of the generator pruned the Cut Inner Layers way
  (the n convs nearest the bottleneck by one fraction: the (n, fraction) whose removed MACs come closest to the
  budget) and of global norm pruning (one mean-|w| threshold across every layer, at the same MACs budget; both counts
  reported), before healing and after the same healing (distillation from the original: same steps, batch, data,
  seed).  The paper claims inner wins; ``inner_wins_before`` / ``inner_wins_after`` say whether it holds here.
- ``gan_speedup_over_mac_ratio``: each pruned generator's measured speedup over the original at batch 1 divided by
  its MAC ratio (original MACs / pruned MACs), in torch and in onnxruntime (the family's FP32 exporter); medians of
  interleaved rounds, one intra-op thread (``--threads``).
- ``sensitivity_scan_cost``: the scan's forward passes per layer and fraction (one per calibration batch), in all,
  and its seconds.

Prints progress on stderr and, as the last line of stdout, one JSON object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def log(msg: str) -> None:
    print(f"[bench-gan] {msg}", file=sys.stderr, flush=True)


def quality(model, pairs: str) -> dict:
    from slimgui_families.gan.evaluate import pair_quality

    r = pair_quality(model, pairs)
    return {"psnr": round(r["psnr"], 3), "ssim": round(r["ssim"], 4)}


def heal(reg, folder: Path, out: Path, steps: int, batch: int) -> tuple[Path, dict]:
    from slimgui.core.train import TrainConfig, run_training

    cfg = TrainConfig(model=str(folder), data=[], out=str(out), method="kd", steps=steps, batch_size=batch,
                      save_every=steps, eval_every=steps, warmup=max(1, steps // 10), seed=0)
    t0 = time.perf_counter()
    res = run_training(cfg, registry=reg)
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return out / "model", res


def latency(models: dict, onnx: dict, rounds: int = 5, repeats: int = 7) -> dict:
    from slimgui_families.gan.export import bench_runner

    from slimgui.core.bench import measure

    runs = {}
    for name, m in models.items():
        runs[("torch", name)] = m.impl.bench_runner(m, 1, None, "forward").fn
    for name, path in onnx.items():
        runs[("onnxruntime", name)] = bench_runner(str(path), 1, None, "forward", threads=1).fn
    times: dict = {k: [] for k in runs}
    keys = list(runs)
    for r in range(rounds):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            times[k].append(measure(runs[k], warmup=2, repeats=repeats)["median_s"])
    return {f"{rt}:{name}": statistics.median(v) for (rt, name), v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="also write the JSON report here")
    ap.add_argument("--macs", type=float, default=0.5, help="share of the generator's MACs both plans remove")
    ap.add_argument("--heal-steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()

    from slimgui_families.gan.criteria import sensitivity_scan
    from slimgui_families.gan.demo import ensure_demo
    from slimgui_families.gan.export import export_onnx
    from slimgui_families.gan.modeling import conv_macs
    from slimgui_families.gan.plans import global_plan, inner_at_macs

    from slimgui.core import ops
    from slimgui.core.model import open_model
    from slimgui.core.plan import PruningPlan
    from slimgui.core.plugins import discover

    reg = discover()
    demo = ensure_demo()
    pairs = demo["eval"]
    model = open_model(demo["model"], registry=reg)
    graph = model.impl.to_graph(model)
    total = graph.attrs["total_macs"]
    log(f"demo: {graph.attrs['architecture']}, {graph.total_params:,} params, {total:,} MACs")
    inner_units, inner_frac, how = inner_at_macs(model, graph, args.macs)
    global_units, global_frac = global_plan(model, graph, args.macs, "l1")
    report: dict = {"demo": demo["model"], "macs_budget": args.macs, "threads": args.threads,
                    "inner_plan": {"units": inner_units, "macs_removed": round(inner_frac, 4), **how},
                    "global_plan": {"units": global_units, "macs_removed": round(global_frac, 4), "norm": "mean |w|"}}
    work = Path(tempfile.mkdtemp(prefix="bench-gan-"))
    folders, models = {}, {"original": model}
    for name, units, crit in (("inner", inner_units, "sensitivity-scan"), ("global", global_units, "filter-l1")):
        plan = PruningPlan(remove=units, criterion=crit, model=model.source)
        slim = ops.prune(model, plan, registry=reg)
        folders[name] = ops.save(slim, work / name, registry=reg)
        models[name] = open_model(str(folders[name]), registry=reg)
        report[f"{name}_plan"]["params"] = sum(p.numel() for p in models[name].module.parameters())
        report[f"{name}_plan"]["macs"] = int(sum(conv_macs(models[name].config).values()))
    before = {name: quality(models[name], pairs) for name in ("original", "inner", "global")}
    log(f"before healing: {before}")
    after, runs = {}, {}
    for name in ("inner", "global"):
        healed, res = heal(reg, folders[name], work / f"heal-{name}", args.heal_steps, args.batch)
        runs[name] = {"steps": res.get("step"), "seconds": res["wall_seconds"], "val_psnr": res.get("val_psnr")}
        after[name] = quality(open_model(str(healed), registry=reg), pairs)
    log(f"after {args.heal_steps} steps of distillation: {after}")
    report["inner_vs_global_quality"] = {
        "original": before["original"], "before_healing": {k: before[k] for k in ("inner", "global")},
        "after_healing": after, "healing": {"method": "kd", "steps": args.heal_steps, "batch": args.batch,
                                            "runs": runs},
        "inner_wins_before": before["inner"]["psnr"] > before["global"]["psnr"],
        "inner_wins_after": after["inner"]["psnr"] > after["global"]["psnr"],
        "psnr_gap_after_db": round(after["inner"]["psnr"] - after["global"]["psnr"], 3)}
    # latency: torch and onnxruntime, batch 1
    onnx = {}
    for name in ("original", "inner", "global"):
        path = work / f"{name}.gan.onnx"
        export_onnx(models[name], str(path), check_images=4)
        onnx[name] = path
    lat = latency(models, onnx)
    speed = {}
    for name in ("inner", "global"):
        mac_ratio = total / report[f"{name}_plan"]["macs"]
        for rt in ("torch", "onnxruntime"):
            s = lat[f"{rt}:original"] / lat[f"{rt}:{name}"]
            speed[f"{name}_{rt}_b1"] = {"speedup": round(s, 3), "mac_ratio": round(mac_ratio, 3),
                                        "speedup_over_mac_ratio": round(s / mac_ratio, 3)}
    report["gan_speedup_over_mac_ratio"] = speed
    report["latency_ms_b1"] = {k: round(v * 1e3, 3) for k, v in lat.items()}
    # the sensitivity scan's cost
    from slimgui_families.gan.data import load_pairs

    x, y = load_pairs(pairs, model.config, limit=32)
    t0 = time.perf_counter()
    scan = sensitivity_scan(model, list(x.split(8)), list(y.split(8)))
    secs = time.perf_counter() - t0
    report["sensitivity_scan_cost"] = {
        "calibration_images": len(x), "batches": scan["batches"], "forward_passes": scan["forward_passes"],
        "forward_passes_per_layer_and_fraction": scan["batches"], "layer_fraction_pairs_and_cuts": scan["scanned"],
        "seconds": round(secs, 2)}
    report["sensitivity_at_0.75"] = {k: round(v["0.75"], 5) for k, v in scan["table"].items() if "0.75" in v}
    report["seconds"] = round(time.perf_counter() - t_all, 1)
    text = json.dumps(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
