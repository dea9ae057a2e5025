"""`make bench`, vision-transformer part: the demo ViT, measured side by side in one run.

- ``vit_snp_vs_head_accuracy``: held-out accuracy of an SNP-pruned model (``snp-qk`` choosing query/key pairs,
  ``snp-v`` value neurons) and of a head-pruned model (``head-attn`` choosing whole heads), both with half of the
  attention MACs removed (matched as closely as the 4-dim groups allow; both counts reported), before and after
  the same healing (fine-tuning: same steps, batch, data, seed).  The SNP paper claims SNP keeps more.
- ``vit_speedup_over_mac_ratio``: the SNP-pruned model's measured latency speedup over the original divided by
  its MAC ratio (whole forward pass), batch 1 and 32, torch and onnxruntime (the family's FP32 exporter), all
  models and runtimes interleaved round by round, medians.  The headline keys (``torch_b1`` ...) are at one
  intra-op thread, what the smaller matrices themselves give; the same at ``--threads`` is beside them
  (``torch_b1_t2`` ...), because on a shared 2-core machine a second thread's wake-ups and spin-waits (torch's
  OpenMP, onnxruntime's pool) can dominate a forward pass of this tiny model.
- attention preservation: mean KL(original ‖ pruned) of the kept heads' attention maps on held-out digits when
  half of every head's query/key groups go, chosen by ``snp-qk`` vs by weight magnitude.

Calibration is the demo's own training digits (32 images); accuracies and attention maps are on its held-out
digits, which no criterion sees.  Prints progress on stderr and, as the last line of stdout, one JSON object
(also written to --out).
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

QK_PER_HEAD_KL = 4  # of a head's 8 query/key groups, removed in every head for the attention-KL figure


def log(msg: str) -> None:
    print(f"[bench-vit] {msg}", file=sys.stderr, flush=True)


def attention_dims(cfg) -> int:
    return sum(sum(qk) + sum(v) for qk, v in zip(cfg.qk_dims, cfg.v_dims))


def attention_macs(cfg) -> int:
    """Multiply-accumulates of the attention of one image: q/k/v/o projections, scores and weighted sums (the
    attention terms of ``modeling.macs_per_image``)."""
    d, t = cfg.hidden_size, cfg.seq_len
    return int(sum(t * d * (2 * sum(qk) + 2 * sum(v)) + t * t * (sum(qk) + sum(v))
                   for qk, v in zip(cfg.qk_dims, cfg.v_dims)))


def accuracy(model, heldout) -> float:
    x, y = heldout
    with torch.no_grad():
        pred = torch.cat([model.module(pixel_values=xb).logits.argmax(-1) for xb in x.split(256)])
    return round(float((pred == y).float().mean()), 4)


def of_kind(graph, kind: str) -> list[str]:
    return [u.id for u in graph.prunable() if u.kind == kind]


def ranked(scores, pool: list[str]) -> list[str]:
    keep = set(pool)
    return [u for u in scores.ranking() if u in keep]


def snp_plan(graph, cfg, groups: dict, qk_scores, v_scores, remove_fraction: float) -> list[str]:
    """Half of the q/k groups by ``snp-qk``, then value groups by ``snp-v`` until the kept attention width (hence
    its MACs: every q/k or value dim costs the same) is ``1 - remove_fraction`` of the original.  A head that
    loses every q/k pair (or value neuron) goes whole; the simulation counts that, and skips a value group
    that would overshoot the target."""
    gq, gv = groups["qk"], groups["v"]
    width = {(li, h): (wq, wv) for li, (qk, v) in enumerate(zip(cfg.qk_dims, cfg.v_dims))
             for h, (wq, wv) in enumerate(zip(qk, v))}
    target = round(sum(a + b for a, b in width.values()) * (1 - remove_fraction))
    gone = {k: [0, 0] for k in width}

    def kept() -> int:
        total = 0
        for k, (wq, wv) in width.items():
            q, v = wq - gq * gone[k][0], wv - gv * gone[k][1]
            total += q + v if q > 0 and v > 0 else 0
        return total

    def head(uid: str) -> tuple[int, int]:
        parts = uid.split(".")
        return int(parts[1]), int(parts[3])

    qk_units, v_units = of_kind(graph, "qk"), of_kind(graph, "value")
    remove = ranked(qk_scores, qk_units)[:len(qk_units) // 2]
    for u in remove:
        gone[head(u)][0] += 1
    for u in ranked(v_scores, v_units):
        if kept() <= target:
            break
        k = head(u)
        if gone[k][0] * gq >= width[k][0]:
            continue  # the head is already gone
        gone[k][1] += 1
        if kept() < target:
            gone[k][1] -= 1
            continue
        remove.append(u)
    return remove


def heal(reg, folder: Path, out: Path, steps: int, batch: int) -> tuple[Path, dict]:
    from slimgui.core.train import TrainConfig, run_training

    cfg = TrainConfig(model=str(folder), data=[], out=str(out), method="finetune", steps=steps, batch_size=batch,
                      save_every=steps, eval_every=steps, warmup=max(1, steps // 10), seed=0)
    t0 = time.perf_counter()
    res = run_training(cfg, registry=reg)
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return out / "model", res


def latency(models: dict, onnx: dict, threads: int, batches=(1, 32), rounds: int = 4, repeats: int = 5) -> dict:
    """Median forward time of every (runtime, model) pair per batch, all pairs interleaved round by round (the
    order reversed every other round, so no pair always follows the same one), at ``threads`` intra-op threads."""
    from slimgui_families.vit.export import bench_runner

    from slimgui.core.bench import measure

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    out: dict = {}
    try:
        for b in batches:
            runs = {("torch", name): m.impl.bench_runner(m, b, None, "forward").fn for name, m in models.items()}
            runs.update({("onnx", name): bench_runner(str(path), b, None, "forward", threads=threads).fn
                         for name, path in onnx.items()})
            times: dict = {k: [] for k in runs}
            for r in range(rounds):
                for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                    times[k].append(measure(runs[k], warmup=1, repeats=repeats if b == 1 else 2)["median_s"])
            for (rt, name), t in times.items():
                out.setdefault(rt, {}).setdefault(name, {})[f"ms_b{b}"] = round(statistics.median(t) * 1e3, 3)
    finally:
        torch.set_num_threads(before)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-vit.json")
    ap.add_argument("--heal-steps", type=int, default=40, help="fine-tuning steps per healing run (0: skip healing)")
    ap.add_argument("--heal-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()

    from slimgui_families.vit.criteria import attention_kl
    from slimgui_families.vit.data import digits_for, preprocess_of
    from slimgui_families.vit.export import export_onnx
    from slimgui_families.vit.modeling import macs_per_image

    from slimgui.core import ops
    from slimgui.core.data import CalibrationData
    from slimgui.core.model import open_model
    from slimgui.core.plan import PruningPlan
    from slimgui.core.plugins import discover

    reg = discover()
    demo = reg.demo("vit")()
    model = open_model(demo["model"], registry=reg)
    graph = ops.graph_of(model, reg)
    heldout = digits_for(preprocess_of(model), "test")
    calib = CalibrationData(model.impl.default_data(model), samples=32, batch_size=8)
    report: dict = {"vit_threads": torch.get_num_threads(), "vit_heal_steps": args.heal_steps,
                    "vit_heal_batch": args.heal_batch, "vit_heldout_images": int(heldout[1].numel()),
                    "vit_calibration_images": calib.samples}

    log("scoring: snp-qk, snp-v, head-attn (32 calibration digits), magnitude")
    t0 = time.perf_counter()
    scores = {name: ops.analyze(model, name, registry=reg, data=calib) for name in ("snp-qk", "snp-v", "head-attn")}
    scores["magnitude"] = ops.analyze(model, "magnitude", registry=reg)
    report["vit_scoring_seconds"] = round(time.perf_counter() - t0, 1)

    def pruned(remove):
        return ops.prune(model, PruningPlan(remove=list(remove), model=model.source), registry=reg)

    # -- SNP vs heads at equal attention MACs -------------------------------------------------------------------
    cfg = model.config
    snp_remove = snp_plan(graph, cfg, model.impl.groups(cfg), scores["snp-qk"], scores["snp-v"], 0.5)
    heads = of_kind(graph, "head")
    head_remove = ranked(scores["head-attn"], heads)[:len(heads) // 2]
    models = {"original": model, "snp": pruned(snp_remove), "head": pruned(head_remove)}
    macs_attn = {k: attention_macs(m.config) for k, m in models.items()}
    macs = {k: macs_per_image(m.config) for k, m in models.items()}
    acc = {k: accuracy(m, heldout) for k, m in models.items()}
    log(f"attention MACs: original {macs_attn['original']:,}, snp {macs_attn['snp']:,} "
        f"({sum(graph.get(u).kind == 'qk' for u in snp_remove)} q/k + {sum(graph.get(u).kind == 'value' for u in snp_remove)}"
        f" value groups), head {macs_attn['head']:,} ({len(head_remove)} heads)")
    log(f"held-out accuracy before healing: {acc}")
    cmp: dict = {"original_accuracy": acc["original"], "snp_accuracy_before": acc["snp"],
                 "head_accuracy_before": acc["head"],
                 "attention_macs": macs_attn, "macs_per_image": macs,
                 "snp_attention_macs_removed": round(1 - macs_attn["snp"] / macs_attn["original"], 4),
                 "head_attention_macs_removed": round(1 - macs_attn["head"] / macs_attn["original"], 4),
                 "snp_removed": {"qk_groups": sum(graph.get(u).kind == "qk" for u in snp_remove),
                                 "value_groups": sum(graph.get(u).kind == "value" for u in snp_remove),
                                 "notes": models["snp"].extra.get("notes", [])},
                 "head_removed": head_remove}
    with tempfile.TemporaryDirectory(prefix="slimgui-bench-vit-") as tmp:
        work = Path(tmp)
        if args.heal_steps:
            for name in ("snp", "head"):
                folder = ops.save(models[name], work / name, registry=reg)
                log(f"healing the {name}-pruned model: finetune, {args.heal_steps} steps of {args.heal_batch}")
                healed, res = heal(reg, folder, work / f"{name}-heal", args.heal_steps, args.heal_batch)
                cmp[f"{name}_accuracy_after"] = accuracy(open_model(str(healed), registry=reg), heldout)
                cmp[f"{name}_heal_seconds"] = res["wall_seconds"]
                log(f"{name} after healing: {cmp[f'{name}_accuracy_after']}")
            cmp["heal"] = {"method": "finetune", "steps": args.heal_steps, "batch": args.heal_batch, "seed": 0,
                           "data": "the demo's training digits"}
        n = report["vit_heldout_images"]
        cmp["snp_minus_head_images_before"] = round((cmp["snp_accuracy_before"] - cmp["head_accuracy_before"]) * n)
        if args.heal_steps:
            cmp["snp_minus_head_images_after"] = round((cmp["snp_accuracy_after"] - cmp["head_accuracy_after"]) * n)
        cmp["snp_keeps_more_before"] = cmp["snp_accuracy_before"] > cmp["head_accuracy_before"]
        if args.heal_steps:
            cmp["snp_keeps_more_after"] = cmp["snp_accuracy_after"] > cmp["head_accuracy_after"]
        cmp["claim_holds"] = all(v for k, v in cmp.items() if k.startswith("snp_keeps_more_"))
        report["vit_snp_vs_head_accuracy"] = cmp
        for k in ("snp_accuracy_before", "head_accuracy_before", "snp_accuracy_after", "head_accuracy_after"):
            if k in cmp:
                report[f"vit_{k}"] = cmp[k]
        report["vit_snp_keeps_more"] = cmp["claim_holds"]

        # -- attention preservation: snp-qk vs magnitude, the same width in every head ----------------------------
        log(f"attention KL: {QK_PER_HEAD_KL} of every head's q/k groups by snp-qk vs by magnitude")
        x = heldout[0][:256]
        kl = {}
        for name in ("snp-qk", "magnitude"):
            remove = []
            for h in heads:
                kids = [u.id for u in graph.children(h) if u.kind == "qk"]
                remove += sorted(kids, key=lambda u, s=scores[name]: s.values[u])[:QK_PER_HEAD_KL]
            kl[name] = attention_kl(model, pruned(remove), x)
        report["vit_attention_kl_snp_qk"] = round(kl["snp-qk"], 5)
        report["vit_attention_kl_magnitude"] = round(kl["magnitude"], 5)
        report["vit_attention_kl_ratio"] = round(kl["snp-qk"] / kl["magnitude"], 4)
        report["vit_attention_kl_images"] = int(x.shape[0])
        log(f"attention KL: snp-qk {kl['snp-qk']:.4g}, magnitude {kl['magnitude']:.4g}")

        # -- latency over MACs --------------------------------------------------------------------------------------
        log("exporting original and SNP-pruned to ONNX (FP32)")
        onnx = {}
        for name in ("original", "snp"):
            onnx[name] = work / f"{name}.vit.onnx"
            export_onnx(models[name], str(onnx[name]), mode="fp32", check_images=16)
        lat = {}
        for th in sorted({1, args.threads}):
            log(f"latency: torch and onnxruntime, batch 1 and 32, interleaved, {th} thread(s)")
            lat[th] = latency({k: models[k] for k in ("original", "snp")}, onnx, th)
    mac_ratio = macs["original"] / macs["snp"]
    ratio: dict = {}
    for th, by_rt in lat.items():
        for rt, rows in by_rt.items():
            for b in (1, 32):
                speedup = rows["original"][f"ms_b{b}"] / rows["snp"][f"ms_b{b}"]
                ratio[f"{rt}_b{b}_t{th}"] = round(speedup / mac_ratio, 3)
                report[f"vit_{rt}_speedup_b{b}_t{th}"] = round(speedup, 3)
    for k in [k for k in ratio if k.endswith("_t1")]:  # the headline: one thread (see the module docstring)
        ratio[k.removesuffix("_t1")] = ratio[k]
    report["vit_mac_ratio"] = round(mac_ratio, 4)
    report["vit_speedup_over_mac_ratio"] = ratio
    report["vit_latency_ms"] = {f"t{th}": v for th, v in lat.items()}
    report["vit_seconds"] = round(time.perf_counter() - t_start, 1)
    log(f"MAC ratio {mac_ratio:.3f}; speedup / MAC ratio: {ratio}")
    log(f"done in {report['vit_seconds']} s")
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
