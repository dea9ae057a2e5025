"""The wav2lip family's criteria (higher = more important) over the prunable units of :mod:`.adapter` (residual
blocks and the width eighths ``nef/naf/ndf.f{j}``):

- ``sensitivity-scan`` (as the U-Net GAN family's, Cut Inner Layers'): each residual block removed alone (the
  identity in its place), each part's width and each channel group's filters cut alone by every eighth (the masked equivalent of the physically
  smaller generator, :func:`.pruning.masked`); score = mean |G'(x) − G(x)| of the generated frames ([0, 1]) on the
  calibration frames.  ``last_info`` keeps the sensitivity-vs-fraction table per part and the scan's cost.
- ``filter-magnitude`` (no data): a residual block scores the mean, over its filters, of mean |w| · |γ| (per filter,
  divided by the fan-in); an eighth ``part.f{j}`` the mean of the same over the channels it removes in every group of
  its part (its lower eighths are the least important ones, as pruning takes them); a group's eighth
  ``face.5.0.f{j}`` the same over its own filters.
"""

from __future__ import annotations

from typing import Any

import torch

from slimgui.core.progress import CancelToken, ProgressFn, check, report
from slimgui_families.gan.adapter import steps

from . import pruning as P
from .adapter import STEPS, residual_ids


def _block_score(module, bid: str) -> float:
    blk = P.conv_of(module, bid)
    conv, bn = blk.conv_block[0], blk.conv_block[1]
    w = conv.weight.detach()
    w = w.transpose(0, 1) if isinstance(conv, torch.nn.ConvTranspose2d) else w
    return float((w.abs().flatten(1).mean(1) * bn.weight.detach().abs()).mean())


class FilterMagnitude:
    name = "filter-magnitude"

    def __init__(self):
        self.last_info: dict[str, Any] = {}

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        cfg, module = model.config, model.module
        out = {rid: _block_score(module, rid) for rid in residual_ids(cfg)}
        with torch.no_grad():
            for part in P.PARTS:
                gids = [g for g in P.groups(cfg) if P.part_of_group(g, cfg) == part]
                imps = [torch.sort(P.filter_importance(module, g)).values for g in gids]
                for j in range(1, STEPS):
                    vals = []
                    for v in imps:
                        w = len(v)
                        lo, hi = (j - 1) * w // STEPS, j * w // STEPS
                        if hi > lo:
                            vals.append(v[lo:hi])
                    if vals:
                        out[f"{part}.f{j}"] = float(torch.cat(vals).mean())
            for g in P.groups(cfg):
                v = torch.sort(P.filter_importance(module, g)).values
                prev = 0
                for j, c in steps(len(v)):
                    out[f"{g}.f{j}"] = float(v[prev:c].mean())
                    prev = c
        self.last_info = {"measure": "mean |w|·|γ| of the filters a unit removes"}
        report(progress, 1, 1, self.name)
        return out


def sensitivity_scan(model, batches: list[dict[str, torch.Tensor]], *, progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None) -> dict[str, Any]:
    module = model.module.eval()
    cfg = model.config
    with torch.no_grad():
        base = [module(b["mel"], b["face"]) for b in batches]
    jobs: list[tuple[str, set[str], dict[str, list[int]]]] = [(rid, {rid}, {}) for rid in residual_ids(cfg)]
    for part in P.PARTS:
        for j in range(1, STEPS):
            widths = P.scaled_widths(cfg, {part: j})
            jobs.append((f"{part}.f{j}", set(), P.keep_lists(module, widths)))
    for g in P.groups(cfg):
        w = P.group_width(cfg, g)
        for j, c in steps(w):
            jobs.append((f"{g}.f{j}", set(), P.keep_lists(module, {g: w - c})))
    scores: dict[str, float] = {}
    table: dict[str, dict[str, float]] = {}
    n = sum(len(b["mel"]) for b in batches)
    for i, (uid, drop, keep) in enumerate(jobs):
        check(cancel)
        m = P.masked(module, drop, keep)
        with torch.no_grad():
            d = sum(float((m(b["mel"], b["face"]) - base[k]).abs().mean()) * len(b["mel"])
                    for k, b in enumerate(batches)) / n
        scores[uid] = d
        if ".f" in uid:
            row, j = uid.rsplit(".f", 1)
            table.setdefault(row, {})[f"{int(j) / STEPS:g}"] = d
        report(progress, i + 1, len(jobs), f"sensitivity of {uid}")
    return {"scores": scores, "table": table, "forward_passes": len(batches) * (len(jobs) + 1), "scanned": len(jobs)}


class Sensitivity:
    name = "sensitivity-scan"

    def __init__(self):
        self.last_info: dict[str, Any] = {}

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        batches = model.impl.calibration_batches(model, data)
        res = sensitivity_scan(model, batches, progress=progress, cancel=cancel)
        self.last_info = {"measure": "mean |G'(x) - G(x)| of the generated frames in [0, 1]", "table": res["table"],
                          "forward_passes": res["forward_passes"], "calibration_batches": len(batches)}
        return res["scores"]
