"""PSNR and SSIM of a generator on a paired folder (or the demo's held-out pairs): to the targets, and to the output of
the generator it was slimmed from (found through its ``slimgui_plan.json`` / ``slimgui_healed_from.json``, followed
back to the first generator that was not made by SlimGUI)."""

from __future__ import annotations

import time
from typing import Any

import torch

from slimgui.core.errors import SlimError
from slimgui.core.model import original_of
from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .data import load_pairs, psnr, ssim


def resolve_data(model, data_path: str | None) -> str:
    if data_path and str(data_path).strip():
        return str(data_path)
    path = model.impl.default_data(model)
    if path is None:
        raise SlimError("this generator needs a paired folder to be evaluated on",
                        hint="pass --data FOLDER (A/ and B/ sub-folders, or side-by-side AB images)")
    return path


def pair_quality(model, data_path: str | None = None, *, max_pairs: int | None = None, eval_batch_size: int = 16,
                 progress: ProgressFn | None = None, cancel: CancelToken | None = None, **_: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    path = resolve_data(model, data_path)
    x, y = load_pairs(path, model.config, limit=max_pairs)
    original = original_of(model)
    if original is not None and (original.config.input_nc, original.config.image_size) != (
            model.config.input_nc, model.config.image_size):
        original = None
    module = model.module.eval()
    out: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": [], "psnr_orig": [], "ssim_orig": []}
    with torch.no_grad():
        for i in range(0, len(x), eval_batch_size):
            check(cancel)
            xb, yb = x[i:i + eval_batch_size], y[i:i + eval_batch_size]
            g = module(xb)
            out["psnr"].append(psnr(g, yb))
            out["ssim"].append(ssim(g, yb))
            if original is not None:
                o = original.module.eval()(xb)
                out["psnr_orig"].append(psnr(g, o))
                out["ssim_orig"].append(ssim(g, o))
            report(progress, min(len(x), i + eval_batch_size), len(x), "PSNR / SSIM")
    res: dict[str, Any] = {"psnr": float(torch.cat(out["psnr"]).mean()), "ssim": float(torch.cat(out["ssim"]).mean()),
                           "pairs": len(x), "data": path, "seconds": round(time.perf_counter() - t0, 3)}
    if original is not None:
        po = torch.cat(out["psnr_orig"])
        res["psnr_to_original"] = float(po.clamp_max(100).mean())
        res["ssim_to_original"] = float(torch.cat(out["ssim_orig"]).mean())
        res["original"] = original.source
    return res
