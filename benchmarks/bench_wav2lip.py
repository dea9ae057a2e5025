"""`make bench`, wav2lip part: the unified compression of Wav2Lip, measured side by side in one run.

- ``wav2lip_param_ratio`` / ``wav2lip_mac_ratio``: the ``nota`` preset on the official generator's config (16/32/32,
  every residual block; random weights: the ratios depend on the shapes only) — the paper reports 36.3 M → 1.26 M
  parameters and 28× fewer MACs.
- ``wav2lip_speedup``: the official generator's time per frame over the nota generator's, at batch 1 and 16, in torch
  and in onnxruntime (the family's FP32 exporter); medians of interleaved rounds, ``--threads`` intra-op threads.
- ``kd_vs_scratch_sync``: the demo generator slimmed by the nota preset, healed by distillation (pixel L1 + feature
  matching + the demo expert's sync loss), vs the same student re-initialised and trained from scratch on the real
  frames (L1 to them + the same sync loss) for the same steps, batch and seed: LSE-D / LSE-C on the held-out clips.
- ``mixed_vs_int8_quality_wav2lip``: the demo generator exported as full INT8 and as mixed precision (the ``keep``
  most INT8-sensitive convs float): the frames' error to torch's (mean |diff|, PSNR) — the paper's claim is that mixed
  keeps the quality that full INT8 loses.

Prints progress on stderr and, as the last line of stdout, one JSON object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def log(msg: str) -> None:
    print(f"[bench-wav2lip] {msg}", file=sys.stderr, flush=True)


def latency(runs: dict, rounds: int, repeats: int) -> dict:
    from slimgui.core.bench import measure

    times: dict = {k: [] for k in runs}
    keys = list(runs)
    for r in range(rounds):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            times[k].append(measure(runs[k], warmup=1, repeats=repeats)["median_s"])
    return {k: statistics.median(v) for k, v in times.items()}


def heal(reg, folder: Path, out: Path, steps: int, batch: int, options: dict) -> dict:
    from slimgui.core.train import TrainConfig, run_training

    cfg = TrainConfig(model=str(folder), data=[], out=str(out), method="kd", steps=steps, batch_size=batch,
                      save_every=steps, eval_every=steps, warmup=max(1, steps // 10), seed=0, options=options)
    t0 = time.perf_counter()
    res = run_training(cfg, registry=reg)
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="also write the JSON report here")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--heal-steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=4, help="5-frame windows per healing step")
    ap.add_argument("--keep", type=int, default=4, help="convs mixed precision keeps float")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()

    from slimgui_families.wav2lip.adapter import Wav2LipAdapter
    from slimgui_families.wav2lip.demo import ensure_demo
    from slimgui_families.wav2lip.evaluate import lipsync_quality
    from slimgui_families.wav2lip.export import bench_runner, export_onnx
    from slimgui_families.wav2lip.modeling import Wav2Lip, standard

    from slimgui.core import ops
    from slimgui.core.model import LoadedModel, open_model
    from slimgui.core.plugins import discover

    reg = discover()
    work = Path(tempfile.mkdtemp(prefix="bench-wav2lip-"))
    report: dict = {"threads": args.threads, "machine": f"{platform.processor() or platform.machine()}, "
                    f"{torch.get_num_threads()} torch threads", "torch": torch.__version__}
    ad = Wav2LipAdapter()
    # 1. the official config and its nota preset
    torch.manual_seed(0)
    official = LoadedModel("wav2lip", "wav2lip", str(work / "official"), Wav2Lip(standard()).eval(), standard(),
                           impl=ad)
    plan = ad.preset_plan(official, "nota")
    nota = ad.apply_plan(official, plan)
    g0, g1 = ad.to_graph(official), ad.to_graph(nota)
    p0, p1 = g0.attrs["total_params"], g1.attrs["total_params"]
    m0, m1 = g0.attrs["total_macs"], g1.attrs["total_macs"]
    report["wav2lip_param_ratio"] = round(p0 / p1, 3)
    report["wav2lip_mac_ratio"] = round(m0 / m1, 3)
    report["official"] = {"params": p0, "macs_per_frame": m0, "architecture": g0.attrs["architecture"]}
    report["nota"] = {"params": p1, "macs_per_frame": m1, "architecture": g1.attrs["architecture"]}
    log(f"nota preset: params {p0:,} -> {p1:,} ({p0 / p1:.1f}x), MACs {m0:,} -> {m1:,} ({m0 / m1:.1f}x)")
    # 2. speed per frame, torch and onnxruntime, batch 1 and 16
    speed = {}
    for batch in (1, 16):
        runs = {"torch:official": ad.bench_runner(official, batch, None, "forward").fn,
                "torch:nota": ad.bench_runner(nota, batch, None, "forward").fn}
        if batch == 1:
            onnx = {}
            for name, m in (("official", official), ("nota", nota)):
                onnx[name] = work / f"{name}.w2l.onnx"
                export_onnx(m, str(onnx[name]), check_frames=2)
        for name, path in onnx.items():
            runs[f"onnxruntime:{name}"] = bench_runner(str(path), batch, None, "forward", threads=args.threads).fn
        lat = latency(runs, args.rounds, 3 if batch == 1 else 1)
        for rt in ("torch", "onnxruntime"):
            speed[f"{rt}_b{batch}"] = {
                "official_ms_per_frame": round(lat[f"{rt}:official"] * 1e3 / batch, 3),
                "nota_ms_per_frame": round(lat[f"{rt}:nota"] * 1e3 / batch, 3),
                "speedup": round(lat[f"{rt}:official"] / lat[f"{rt}:nota"], 2)}
        log(f"batch {batch}: {json.dumps({k: v for k, v in speed.items() if k.endswith(f'b{batch}')})}")
    report["wav2lip_speedup"] = speed
    del official, nota
    # 3. distillation vs scratch on the demo
    demo = ensure_demo()
    model = open_model(demo["model"], registry=reg)
    slim = ops.prune(model, ad.preset_plan(model, "nota"), registry=reg)
    student = ops.save(slim, work / "student", registry=reg)
    scratch = work / "scratch"
    shutil.copytree(student, scratch)
    fresh = ad.load(str(scratch))
    torch.manual_seed(0)
    fresh.module = Wav2Lip(fresh.config)
    ad.save(fresh, str(scratch))
    common = {"kd_sync": 0.03}
    runs = {"kd": heal(reg, Path(student), work / "kd", args.heal_steps, args.batch,
                       {**common, "kd_out": 1.0, "kd_feat": 1.0, "kd_target": 0.0}),
            "scratch": heal(reg, scratch, work / "scr", args.heal_steps, args.batch,
                            {**common, "kd_out": 0.0, "kd_feat": 0.0, "kd_target": 1.0})}
    sync = {}
    for name, out in (("kd", work / "kd" / "model"), ("scratch", work / "scr" / "model"), ("original", None)):
        m = open_model(str(out), registry=reg) if out else model
        r = lipsync_quality(m, None, max_clips=2)
        sync[name] = {"lse_d": round(r["lse_d"], 4), "lse_c": round(r["lse_c"], 4),
                      "sync_distance": round(r["sync_distance"], 4)}
        if "psnr_to_original" in r:
            sync[name]["psnr_to_original"] = round(r["psnr_to_original"], 2)
    report["kd_vs_scratch_sync"] = {**sync, "steps": args.heal_steps, "batch_windows": args.batch,
                                    "kd_better": sync["kd"]["lse_d"] < sync["scratch"]["lse_d"],
                                    "seconds": {k: v["wall_seconds"] for k, v in runs.items()}}
    log(f"kd vs scratch: {json.dumps(report['kd_vs_scratch_sync'])}")
    # 4. mixed precision vs full INT8 on the demo generator
    q = {}
    for mode in ("int8", "mixed"):
        r = export_onnx(model, str(work / f"demo-{mode}.w2l.onnx"), w2l_mode=mode, keep_float=args.keep,
                        check_frames=16)
        q[mode] = {"mean_abs_diff": round(r["mean_abs_diff"], 6), "psnr_to_torch": round(r["psnr_to_torch"], 2),
                   "int8_convs": r["int8_layers"], "convs": r["convs"], "bytes": r["bytes"]}
    report["mixed_vs_int8_quality_wav2lip"] = {**q, "keep_float": args.keep,
                                               "mixed_better": q["mixed"]["mean_abs_diff"] < q["int8"]["mean_abs_diff"]}
    log(f"mixed vs int8: {json.dumps(report['mixed_vs_int8_quality_wav2lip'])}")
    report["seconds"] = round(time.perf_counter() - t_all, 1)
    shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
