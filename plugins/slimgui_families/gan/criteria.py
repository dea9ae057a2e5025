"""The gan family's criteria (higher = more important), scoring the units of :mod:`.adapter`:

- ``filter-l1`` / ``filter-l2``: an eighth ``f{j}`` scores the mean, over its filters, of the per-filter norm divided
  by the fan-in (mean |w|, or root-mean-square of w), the filters ordered by that norm within the layer — the global
  pruning baseline (one threshold across layers compares like with like); a level ``down.k`` scores the mean over
  every filter of levels k..n-1.
- ``bn-scale``: the same with |γ| of the filter's batch norm (layers without one — the outermost down conv, the
  innermost, instance-norm U-Nets — fall back to mean |w|, listed in ``last_info["fallback"]``).
- ``sensitivity-scan`` (Cut Inner Layers): each layer pruned alone (its least-|w| filters zeroed after the norm: the masked
  model, equal to the physically pruned one) by every eighth, and each inner level cut alone; score = mean |G'(x) −
  G(x)| of the outputs (in [-1, 1]) on the calibration inputs.  ``last_info`` keeps the sensitivity-vs-fraction table
  per layer, the PSNR to the targets at each fraction, and the scan's cost in forward passes.
"""

from __future__ import annotations

from typing import Any

import torch

from slimgui.core.progress import CancelToken, ProgressFn, check, report

from . import pruning as P
from .adapter import STEPS, steps


def _graph(model):
    return model.impl.to_graph(model) if model.impl is not None else None


def _eighths(model, kind: str) -> dict[str, float]:
    cfg = model.config
    out = {}
    for layer in P.prunable_layers(cfg):
        v = sorted(float(x) for x in P.filter_norms(model.module, layer, kind))
        prev = 0
        for j, c in steps(len(v)):
            out[f"{layer}.f{j}"] = sum(v[prev:c]) / (c - prev)
            prev = c
    for k in range(2, cfg.levels):
        vals = [float(x) for k2 in range(k, cfg.levels) for side in ("down", "up")
                for x in P.filter_norms(model.module, f"{side}.{k2}", kind)]
        out[f"down.{k}"] = sum(vals) / len(vals)
    return out


class FilterL1:
    name = "filter-l1"
    kind = "l1"

    def __init__(self):
        self.last_info: dict[str, Any] = {}

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        with torch.no_grad():
            out = _eighths(model, self.kind)
        fallback = [layer for layer in P.prunable_layers(model.config) if self.kind == "bn"
                    and P.bn_scale(model.module, layer) is None]
        self.last_info = {"order": self.kind, "fallback": fallback} if fallback else {"order": self.kind}
        report(progress, 1, 1, self.name)
        return out


class FilterL2(FilterL1):
    name = "filter-l2"
    kind = "l2"


class BNScale(FilterL1):
    name = "bn-scale"
    kind = "bn"


def sensitivity_scan(model, inputs: list[torch.Tensor], targets: list[torch.Tensor] | None = None, *,
                     fractions: list[int] | None = None, progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None) -> dict[str, Any]:
    """{"scores": unit → change, "table": layer → {fraction: change}, "psnr": layer → {fraction: dB}, "cut": level →
    change, "forward_passes": n}.  ``fractions``: which eighths to scan (default all)."""
    from .data import psnr

    module = model.module.eval()
    cfg = model.config
    layers = P.prunable_layers(cfg)
    with torch.no_grad():
        base = [module(x) for x in inputs]
    passes = len(inputs)
    jobs = [(layer, j, c) for layer in layers for j, c in steps(P.width(cfg, layer))
            if fractions is None or j in fractions]
    cuts = list(range(2, cfg.levels))
    scores: dict[str, float] = {}
    table: dict[str, dict[str, float]] = {}
    quality: dict[str, dict[str, float]] = {}
    total = len(jobs) + len(cuts)

    def change(keep=None, cut=None) -> tuple[float, float | None]:
        nonlocal passes
        diffs, dbs = [], []
        with torch.no_grad(), P.masked(module, keep or {}, cut) as m:
            for i, x in enumerate(inputs):
                y = m(x)
                diffs.append((y - base[i]).abs().mean().item() * len(x))
                if targets is not None:
                    dbs.append(float(psnr(y, targets[i]).sum()))
                passes += 1
        n = sum(len(x) for x in inputs)
        return sum(diffs) / n, (sum(dbs) / n if dbs else None)

    orders = {layer: P.order(module, layer, "l1") for layer in layers}
    for i, (layer, j, c) in enumerate(jobs):
        check(cancel)
        w = P.width(cfg, layer)
        gone = set(orders[layer][:c])
        d, q = change({layer: [f for f in range(w) if f not in gone]})
        scores[f"{layer}.f{j}"] = d
        table.setdefault(layer, {})[f"{j / STEPS:g}"] = d
        if q is not None:
            quality.setdefault(layer, {})[f"{j / STEPS:g}"] = q
        report(progress, i + 1, total, f"sensitivity of {layer} at {j}/{STEPS}")
    cut_scores = {}
    for i, k in enumerate(cuts):
        check(cancel)
        d, _ = change(cut=k)
        scores[f"down.{k}"] = d
        cut_scores[str(k)] = d
        report(progress, len(jobs) + i + 1, total, f"sensitivity of cutting levels {k}..{cfg.levels - 1}")
    base_q = None
    if targets is not None:
        base_q = sum(float(psnr(b, t).sum()) for b, t in zip(base, targets)) / sum(len(x) for x in inputs)
    return {"scores": scores, "table": table, "psnr": quality, "psnr_original": base_q, "cut": cut_scores,
            "forward_passes": passes, "batches": len(inputs), "scanned": len(jobs) + len(cuts)}


class Sensitivity:
    """The per-layer sensitivity scan (module docstring)."""

    name = "sensitivity-scan"

    def __init__(self):
        self.last_info: dict[str, Any] = {}

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        batches = model.impl.calibration_batches(model, data)
        res = sensitivity_scan(model, [b["input"] for b in batches], [b["target"] for b in batches],
                               progress=progress, cancel=cancel)
        per_layer = {layer: {"0.5": row.get("0.5"), "0.75": row.get("0.75")} for layer, row in res["table"].items()}
        self.last_info = {"measure": "mean |G'(x) - G(x)| on [-1, 1] outputs", "table": res["table"],
                          "psnr_to_target": res["psnr"], "psnr_original": res["psnr_original"],
                          "cut_levels": res["cut"], "per_layer": per_layer,
                          "forward_passes": res["forward_passes"], "calibration_batches": res["batches"],
                          "forward_passes_per_layer_and_fraction": res["batches"]}
        return res["scores"]
