"""`make bench`, hardware-aware part (issue 18): the cnn demos (ResNet-style and MobileNetV1-style, trained on
scikit-learn's digits) on this machine, measured in one run with one intra-op thread (``--threads``).

- ``device``: this machine's roofline, measured by the micro-benchmark (float32 matmul peak, copy bandwidth).
- ``roofline_efficiency``: per demo, each convolution / linear layer's attained FLOP/s over its roofline bound at
  batch 1 (median, min, max, and the share of layers that are memory-bound); above 1 means its data stayed in cache
  (the bound uses DRAM bandwidth).
- ``abconv_latency_ratio``: measured latency after ABConv / before, batch 1, in torch and in onnxruntime (the
  family's ONNX exporter), medians of interleaved rounds — below 1 is faster.
- ``abconv_accuracy_delta``: held-out accuracy after ABConv and the same distillation budget (``--kd-steps`` Adam
  steps of ``--kd-batch`` digits from the original) minus the original's; the accuracy right after the swap too.
- ``latency_budget_error``: three plans chosen by latency budget (90 %, 80 %, 70 % of the measured pass, blocks
  ranked by magnitude, per-unit latency table measured once): predicted vs measured latency of each pruned network
  (|predicted − measured| / measured), and the same as shares of each one's full-pass time (``share_error``: the
  profile's whole pass and this run's, so a machine that sped up or slowed down between the two does not count).

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
    print(f"[bench-hw] {msg}", file=sys.stderr, flush=True)


def interleaved(fns: dict[str, object], rounds: int = 7, repeats: int = 15) -> dict[str, float]:
    """Median ms of each callable, measured in interleaved rounds (each round: every callable, median of repeats)."""
    from slimgui.core.bench import measure

    per: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up of each, before any round
        measure(fn, warmup=3, repeats=3)
    for _ in range(rounds):
        for k, fn in fns.items():
            per[k].append(measure(fn, warmup=1, repeats=repeats)["median_s"] * 1e3)
    return {k: statistics.median(v) for k, v in per.items()}


def efficiency(prof: dict) -> dict:
    from slimgui.core.profiling import leaf_rows

    rows = [r for r in leaf_rows(prof) if r.get("efficiency") is not None]
    effs = [r["efficiency"] for r in rows]
    return {"layers": len(rows), "median": round(statistics.median(effs), 4), "min": round(min(effs), 4),
            "max": round(max(effs), 4), "memory_bound_share": round(sum(bool(r["memory_bound"]) for r in rows) / len(rows), 3),
            "total_ms": round(prof["total_ms"], 4),
            "per_layer": {r["unit"]: {"intensity": round(r["intensity"], 3), "efficiency": round(r["efficiency"], 4),
                                      "measured_ms": round(r["measured_ms"], 5), "bound_ms": round(r["bound_ms"], 5)}
                          for r in rows}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-hw.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kd-steps", type=int, default=300)
    ap.add_argument("--kd-batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.time()

    from slimgui_families.cnn.data import accuracy_of, digits
    from slimgui_families.cnn.export import onnx_runner
    from slimgui_families.cnn.training import distill_loop

    from slimgui.core import ops
    from slimgui.core.abconv import abconv_model
    from slimgui.core.bench import machine_load
    from slimgui.core.costmodel import measure_device
    from slimgui.core.model import open_model
    from slimgui.core.plan import PruningPlan
    from slimgui.core.plugins import discover
    from slimgui.core.profiling import profile_model
    from slimgui.core.selection import latency_table, predicted_latency_ms, select_by_latency

    load_before = __import__("os").getloadavg()[0]
    reg = discover()
    device = measure_device(args.threads)
    log(f"device: {device.name}: {device.peak_flops / 1e9:.1f} GFLOP/s, {device.bandwidth / 1e9:.2f} GB/s")
    out: dict = {"device": {"name": device.name, "cpu": device.details["cpu"], "threads": args.threads,
                            "peak_gflops": round(device.peak_flops / 1e9, 2),
                            "bandwidth_gbs": round(device.bandwidth / 1e9, 3), "ridge_flop_per_byte": round(device.ridge, 2)},
                 "roofline_efficiency": {}, "abconv_latency_ratio": {}, "abconv_accuracy_delta": {},
                 "latency_budget_error": {}}
    xt, yt = digits("test")
    xs, ys = digits("train")
    with tempfile.TemporaryDirectory() as tmp:
        for demo in ("cnn", "cnn-mobilenet"):
            model = open_model(str(reg.demo(demo)()["model"]), registry=reg)
            log(f"{demo}: profiling")
            prof = profile_model(model, reg, batch=1, device=device, repeats=20, threads=args.threads)
            out["roofline_efficiency"][demo] = efficiency(prof)
            # ABConv, then the distillation budget
            log(f"{demo}: ABConv + distillation ({args.kd_steps} steps × {args.kd_batch})")
            balanced, report = abconv_model(model, reg)
            acc0 = accuracy_of(model.module, xt, yt)
            acc_swap = accuracy_of(balanced.module, xt, yt)
            t0 = time.perf_counter()
            distill_loop(balanced.module, model.module, xs, ys, steps=args.kd_steps, batch=args.kd_batch, lr=3e-3)
            kd_s = time.perf_counter() - t0
            acc_kd = accuracy_of(balanced.module, xt, yt)
            out["abconv_accuracy_delta"][demo] = {
                "accuracy_original": round(acc0, 4), "accuracy_after_swap": round(acc_swap, 4),
                "accuracy_after_kd": round(acc_kd, 4), "delta": round(acc_kd - acc0, 4),
                "kd_steps": args.kd_steps, "kd_batch": args.kd_batch, "kd_seconds": round(kd_s, 1),
                "replaced": report["replaced"], "flops_ratio": round(report["flops_after"] / report["flops_before"], 4),
                "conv_weight_bytes_ratio": round(report["weight_bytes_after"] / report["weight_bytes_before"], 4)}
            log(f"{demo}: accuracy {acc0:.4f} -> swap {acc_swap:.4f} -> kd {acc_kd:.4f}")
            # latency before/after, torch and onnxruntime
            paths = {}
            for name, m in (("before", model), ("after", balanced)):
                paths[name] = str(Path(tmp) / f"{demo}-{name}.convnet.onnx")
                ops.export(m, "convnet-onnx", paths[name], registry=reg)
            fns = {("torch", "before"): model.impl.bench_runner(model, 1, None, "forward").fn,
                   ("torch", "after"): balanced.impl.bench_runner(balanced, 1, None, "forward").fn,
                   ("onnxruntime", "before"): onnx_runner(paths["before"], 1, None, "forward", threads=args.threads).fn,
                   ("onnxruntime", "after"): onnx_runner(paths["after"], 1, None, "forward", threads=args.threads).fn}
            ms = interleaved(fns)
            out["abconv_latency_ratio"][demo] = {
                rt: {"before_ms": round(ms[(rt, "before")], 4), "after_ms": round(ms[(rt, "after")], 4),
                     "ratio": round(ms[(rt, "after")] / ms[(rt, "before")], 4)} for rt in ("torch", "onnxruntime")}
            log(f"{demo}: abconv latency ratio {json.dumps(out['abconv_latency_ratio'][demo])}")
            # latency budgets: three plans, predicted vs measured
            scores = ops.analyze(model, "magnitude", registry=reg)
            graph = ops.graph_of(model, reg)
            table = latency_table(prof)
            plans = []
            for share in (0.9, 0.8, 0.7):
                budget = share * prof["total_ms"]
                try:
                    remove = select_by_latency(graph, scores, table, prof["total_ms"], budget)
                except Exception as exc:  # a budget the blocks cannot reach: said, not hidden
                    plans.append({"budget_share": share, "budget_ms": round(budget, 4), "error": str(exc)})
                    continue
                pred = predicted_latency_ms(graph, table, prof["total_ms"], remove)
                small = ops.prune(model, PruningPlan(remove=remove), registry=reg)
                plans.append({"budget_share": share, "budget_ms": round(budget, 4), "remove": remove,
                              "predicted_ms": round(pred, 4), "small": small})
            measured = interleaved({("plan", i): p["small"].impl.bench_runner(p["small"], 1, None, "forward").fn
                                    for i, p in enumerate(plans) if "small" in p}
                                   | {("plan", "full"): fns[("torch", "before")]})
            rows = []
            for i, p in enumerate(plans):
                p.pop("small", None)
                if ("plan", i) in measured:
                    p["measured_ms"] = round(measured[("plan", i)], 4)
                    p["error"] = round(abs(p["predicted_ms"] - p["measured_ms"]) / p["measured_ms"], 4)
                    # the same as shares of the full pass (each against its own full-pass time: the profile's and
                    # this run's), which leaves out how the machine's speed moved between the two measurements
                    share_pred = p["predicted_ms"] / prof["total_ms"]
                    share_meas = measured[("plan", i)] / measured[("plan", "full")]
                    p["share_error"] = round(abs(share_pred - share_meas) / share_meas, 4)
                rows.append(p)
            errs = [p["error"] for p in rows if isinstance(p.get("error"), float)]
            share_errs = [p["share_error"] for p in rows if isinstance(p.get("share_error"), float)]
            out["latency_budget_error"][demo] = {"full_ms_profiled": round(prof["total_ms"], 4),
                                                 "full_ms_measured": round(measured[("plan", "full")], 4),
                                                 "plans": rows,
                                                 "mean_error": round(statistics.mean(errs), 4) if errs else None,
                                                 "mean_share_error": round(statistics.mean(share_errs), 4)
                                                 if share_errs else None}
            log(f"{demo}: latency budget errors {errs}")
    out["machine_load"] = machine_load(args.threads, before=load_before)
    out["seconds"] = round(time.time() - t_start, 1)
    text = json.dumps(out)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
