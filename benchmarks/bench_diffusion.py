"""`make bench`, diffusion part: the demo digits pipeline, measured side by side in one run.

For the original U-Net, each BK-SDM preset before and after distillation, and the few-step (LCM) model:
digit accuracy of generated samples (the demo's classifier, against the digit asked for), Fréchet distance
of the classifier's features to real held-out digits, U-Net latency (batch 1 and 8) and parameters.  It also
distils one preset twice at equal steps — feature + output KD (BK-SDM) and output-only KD — to see whether
feature distillation wins here as BK-SDM reports.

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
    print(f"[bench-diffusion] {msg}", file=sys.stderr, flush=True)


def unet_latency(models: dict, batches=(1, 8), repeats: int = 15) -> dict:
    """Median U-Net forward time per model and batch, the models interleaved round by round."""
    from slimgui.core.bench import measure

    out: dict = {}
    for b in batches:
        runners = {name: m.impl.bench_runner(m, b, None, "forward").fn for name, m in models.items()}
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(3):  # rounds
            for name, run in runners.items():
                times[name].append(measure(run, warmup=2, repeats=max(3, repeats // 3))["median_s"])
        for name in models:
            out.setdefault(name, {})[f"unet_ms_b{b}"] = round(statistics.median(times[name]) * 1e3, 3)
    return out


def quality(model, demo_dir: str, per_digit: int, steps: int | None, seed: int = 0) -> dict:
    from slimgui_families.diffusion.evaluate import digit_quality

    r = digit_quality(model, demo_dir, per_digit=per_digit, steps=steps, seed=seed)
    return {"accuracy": round(r["accuracy"], 4), "fid": round(r["fid"], 3), "steps": r["steps"],
            "gen_seconds_per_image": r["seconds_per_image"]}


def distil(reg, student_dir: Path, teacher: str, data: str, out: Path, steps: int, *, method: str = "kd",
           feat: float = 1.0, batch: int = 64, lr: float | None = None) -> tuple[Path, dict]:
    from slimgui.core.train import TrainConfig, run_training

    cfg = TrainConfig(model=str(student_dir), teacher=teacher, data=[data], out=str(out), method=method, steps=steps,
                      batch_size=batch, save_every=steps, eval_every=steps, warmup=min(20, steps // 5),
                      lr=lr, options={"kd_ce": 1.0, "kd_kl": 1.0, "kd_hidden": feat})
    t0 = time.perf_counter()
    res = run_training(cfg, registry=reg)
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return out / "model", res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench-diffusion.json")
    ap.add_argument("--steps", type=int, default=400, help="distillation steps per model")
    ap.add_argument("--lcm-steps", type=int, default=400, help="latent consistency distillation steps")
    ap.add_argument("--per-digit", type=int, default=20, help="generated images per digit for the quality figures")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from slimgui.core.model import open_model
    from slimgui.core.ops import preset_plan, prune, save
    from slimgui.core.plugins import discover

    reg = discover()
    demo = reg.demo("diffusion")()
    demo_dir, data = demo["model"], demo["train"]
    report: dict = {"diffusion_threads": torch.get_num_threads(), "diffusion_distill_steps": args.steps,
                    "diffusion_per_digit": args.per_digit}
    original = open_model(demo_dir, registry=reg)
    models = {"original": original}
    q: dict = {"original": quality(original, demo_dir, args.per_digit, 25)}
    log(f"original: {q['original']}")
    with tempfile.TemporaryDirectory(prefix="slimgui-bench-diff-") as tmp:
        work = Path(tmp)
        for preset in ("bk-base", "bk-small", "bk-tiny"):
            slim = prune(original, preset_plan(original, preset, registry=reg), registry=reg)
            folder = save(slim, work / preset, registry=reg)
            models[preset] = open_model(str(folder), registry=reg)
            q[preset] = quality(models[preset], demo_dir, args.per_digit, 25)
            log(f"{preset} before distillation: {q[preset]}")
            healed, res = distil(reg, folder, demo_dir, data, work / f"{preset}-kd", args.steps)
            models[f"{preset}-kd"] = open_model(str(healed), registry=reg)
            q[f"{preset}-kd"] = {**quality(models[f"{preset}-kd"], demo_dir, args.per_digit, 25),
                                 "distill_seconds": res["wall_seconds"], "val_loss": round(res["val_loss"], 5)}
            log(f"{preset} after feature KD: {q[f'{preset}-kd']}")
        # feature vs output-only distillation, equal steps, on the smallest preset: at the full budget and at a
        # quarter of it (BK-SDM's advantage is also one of convergence speed)
        healed, res = distil(reg, work / "bk-tiny", demo_dir, data, work / "bk-tiny-outkd", args.steps, feat=0.0)
        models["bk-tiny-outkd"] = open_model(str(healed), registry=reg)
        q["bk-tiny-outkd"] = {**quality(models["bk-tiny-outkd"], demo_dir, args.per_digit, 25),
                              "distill_seconds": res["wall_seconds"], "val_loss": round(res["val_loss"], 5)}
        log(f"bk-tiny after output-only KD: {q['bk-tiny-outkd']}")
        short = max(1, args.steps // 4)
        for name, feat in (("bk-tiny-kd-short", 1.0), ("bk-tiny-outkd-short", 0.0)):
            healed, res = distil(reg, work / "bk-tiny", demo_dir, data, work / name, short, feat=feat)
            q[name] = {**quality(open_model(str(healed), registry=reg), demo_dir, args.per_digit, 25),
                       "distill_steps": short, "val_loss": round(res["val_loss"], 5)}
            log(f"{name} ({short} steps): {q[name]}")
        # few-step: latent consistency distillation of the distilled bk-small model (EdgeFusion's recipe)
        few, res = distil(reg, work / "bk-small-kd" / "model", str(work / "bk-small-kd" / "model"), data,
                          work / "bk-small-lcm", args.lcm_steps, method="lcm")
        models["bk-small-lcm"] = open_model(str(few), registry=reg)
        q["bk-small-lcm"] = {**quality(models["bk-small-lcm"], demo_dir, args.per_digit, None),
                             "distill_seconds": res["wall_seconds"]}
        q["bk-small-kd-4steps"] = quality(models["bk-small-kd"], demo_dir, args.per_digit, 4)
        log(f"few-step: {q['bk-small-lcm']} vs the same model at 4 DDIM steps {q['bk-small-kd-4steps']}")
        log("U-Net latency, interleaved")
        lat = unet_latency({k: models[k] for k in ("original", "bk-base", "bk-small", "bk-tiny")})
    params = {k: sum(p.numel() for p in m.module.parameters()) for k, m in models.items()}
    for name, row in q.items():
        key = name.replace("-", "_")
        report[f"diffusion_{key}_accuracy"] = row["accuracy"]
        report[f"diffusion_{key}_fid"] = row["fid"]
    for name, row in lat.items():
        key = name.replace("-", "_")
        report[f"diffusion_{key}_unet_ms_b1"] = row["unet_ms_b1"]
        report[f"diffusion_{key}_unet_ms_b8"] = row["unet_ms_b8"]
        report[f"diffusion_{key}_params"] = params[name]
        report[f"diffusion_{key}_unet_speedup_b1"] = round(lat["original"]["unet_ms_b1"] / row["unet_ms_b1"], 3)
    compare = {}
    for budget, (f, o) in ((args.steps, ("bk-tiny-kd", "bk-tiny-outkd")),
                           (max(1, args.steps // 4), ("bk-tiny-kd-short", "bk-tiny-outkd-short"))):
        compare[str(budget)] = {"feature_fid": q[f]["fid"], "output_fid": q[o]["fid"],
                                "feature_accuracy": q[f]["accuracy"], "output_accuracy": q[o]["accuracy"],
                                "feature_val_loss": q[f]["val_loss"], "output_val_loss": q[o]["val_loss"]}
    report["diffusion_feature_vs_output_kd"] = compare
    report["diffusion_feature_kd_fid"] = q["bk-tiny-kd"]["fid"]
    report["diffusion_output_kd_fid"] = q["bk-tiny-outkd"]["fid"]
    # "beats" = lower held-out denoising loss AND no worse FID (within 1.0), at both budgets
    report["diffusion_feature_kd_beats_output_kd"] = all(
        c["feature_val_loss"] < c["output_val_loss"] and c["feature_fid"] <= c["output_fid"] + 1.0
        for c in compare.values())
    report["diffusion_fewstep_steps"] = q["bk-small-lcm"]["steps"]
    report["diffusion_fewstep_speedup_per_image"] = round(
        q["original"]["gen_seconds_per_image"] / q["bk-small-lcm"]["gen_seconds_per_image"], 2)
    report["diffusion_details"] = q
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
