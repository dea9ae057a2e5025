"""Channel pruning and inner-layer removal of the U-Net generator, with an explicit dependency table.

Why a table and not Torch-Pruning's dependency graph: Torch-Pruning is not installed, and this architecture is fixed
— every tensor a filter reaches is known in advance and fits in a few lines (:data:`DEPENDENCIES`), which a test
checks against the masked model.  Per level k (0 = outermost, n-1 = innermost; ``down[k]`` / ``up[k]`` filters):

====================  =====================================================================================
removing a filter of  cuts
====================  =====================================================================================
down conv k           its row of down conv k (weight dim 0, bias), the same channel of down norm k; the
                      matching input column of down conv k+1 (weight dim 1) — or, for the innermost level, of
                      up conv n-1 (dim 0) — and, through the skip concatenation in block k+1, input row i of
                      up conv k (its input is ``[skip of down k, up k+1]``; a ConvTranspose2d weight is
                      ``[in, out, kh, kw]``, so dim 0)
up conv k (k ≥ 1)     its output column of up conv k (weight dim 1, bias), the same channel of up norm k, and
                      input row ``down[k-1] + i`` of up conv k-1 (the second part of its concatenated input)
up conv 0             nothing: its filters are the output image's channels (not prunable)
====================  =====================================================================================

Inner-layer removal (``cut = L``): levels L..n-1 go; level L-1 becomes the innermost block, keeping its down norm
(``UNetConfig.inner_norm``) and only the skip rows of its up conv's input.  The masked equivalent of each (what the
physically smaller model is tested against): a removed filter's output channel, after its norm, is zeroed; a cut
zeroes the up output of level L.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from slimgui.core.errors import SlimError

from .modeling import UNetConfig, UnetGenerator

DEPENDENCIES = {
    "down": ("down conv k rows + bias", "down norm k", "down conv k+1 input columns (innermost: up conv n-1 rows)",
             "up conv k input rows [0, down[k]) via the skip"),
    "up": ("up conv k output columns + bias", "up norm k", "up conv k-1 input rows [down[k-1], down[k-1] + up[k])"),
}


def prunable_layers(cfg: UNetConfig) -> list[str]:
    """Layers whose filters can go: every down conv, every up conv but the outermost (it makes the image)."""
    n = cfg.levels
    return [f"down.{k}" for k in range(n)] + [f"up.{k}" for k in range(n - 1, 0, -1)]


def width(cfg: UNetConfig, layer: str) -> int:
    side, k = layer.split(".")
    return (cfg.down if side == "down" else cfg.up)[int(k)]


def filter_weights(module: UnetGenerator, layer: str) -> torch.Tensor:
    """The layer's conv weights, one row per filter: (filters, fan-in·16)."""
    side, k = layer.split(".")
    b = module.blocks()[int(k)]
    if side == "down":
        w = b.downconv.weight
        return w.detach().reshape(w.shape[0], -1)
    w = b.upconv.weight  # [in, out, kh, kw]
    return w.detach().transpose(0, 1).reshape(w.shape[1], -1)


def bn_scale(module: UnetGenerator, layer: str) -> torch.Tensor | None:
    side, k = layer.split(".")
    b = module.blocks()[int(k)]
    norm = b.down_norm if side == "down" else b.up_norm
    if isinstance(norm, nn.BatchNorm2d) and norm.weight is not None:
        return norm.weight.detach().abs()
    return None


def filter_norms(module: UnetGenerator, layer: str, kind: str = "l1") -> torch.Tensor:
    """Per-filter importance within a layer: ``l1`` / ``l2`` the mean |w| / root-mean-square of its weights (divided by
    the fan-in so layers compare: one threshold across layers), ``bn`` the |γ| of its batch norm (l1 without one)."""
    if kind == "bn":
        g = bn_scale(module, layer)
        if g is not None:
            return g.float()
        kind = "l1"
    w = filter_weights(module, layer).float()
    if kind == "l2":
        return w.pow(2).mean(1).sqrt()
    return w.abs().mean(1)


def order(module: UnetGenerator, layer: str, kind: str = "l1") -> list[int]:
    """The layer's filters from least to most important by ``kind`` (ties: lower index first)."""
    v = filter_norms(module, layer, kind)
    return sorted(range(len(v)), key=lambda i: (float(v[i]), i))


def keep_lists(module: UnetGenerator, drop: dict[str, int], kind: str = "l1") -> dict[str, list[int]]:
    """Kept filter indices (sorted) per layer when ``drop[layer]`` least important filters go."""
    cfg = module.config
    out = {}
    for layer, count in drop.items():
        w = width(cfg, layer)
        if count <= 0:
            continue
        if count >= w:
            raise SlimError(f"removing {count} of the {w} filters of {layer} would remove every filter of the layer",
                            hint="keep at least one filter per layer (at most 7/8 of a layer in SlimGUI's units)")
        gone = set(order(module, layer, kind)[:count])
        out[layer] = [i for i in range(w) if i not in gone]
    return out


# -- the masked model ---------------------------------------------------------------------------------------
@contextmanager
def masked(module: UnetGenerator, keep: dict[str, list[int]], cut: int | None = None) -> Iterator[UnetGenerator]:
    """``module`` with the removed filters' outputs zeroed after their norms (and, with ``cut``, the up output of
    level ``cut`` zeroed): what the physically smaller model must compute."""
    taps = module.taps()
    handles = []
    masks = {}
    for layer, kept in keep.items():
        w = width(module.config, layer)
        m = torch.zeros(w)
        m[kept] = 1.0
        masks[layer] = m
    if cut is not None and cut < module.config.levels:
        masks[f"up.{cut}"] = torch.zeros(module.config.up[cut])
    for layer, m in masks.items():
        def hook(_mod, _inp, out, m=m):
            return out * m.to(out)[None, :, None, None]
        handles.append(taps[layer].register_forward_hook(hook))
    try:
        yield module
    finally:
        for h in handles:
            h.remove()


# -- the physically smaller model -------------------------------------------------------------------------------
def _take(t: torch.Tensor, dim: int, idx: list[int] | None) -> torch.Tensor:
    if idx is None:
        return t.detach().clone()
    return t.detach().index_select(dim, torch.tensor(idx, dtype=torch.long)).clone()


def _copy_norm(src: nn.Module | None, dst: nn.Module | None, idx: list[int] | None) -> None:
    if not isinstance(dst, nn.BatchNorm2d) or not isinstance(src, nn.BatchNorm2d):
        return
    for name in ("weight", "bias"):
        getattr(dst, name).data = _take(getattr(src, name), 0, idx)
    for name in ("running_mean", "running_var"):
        setattr(dst, name, _take(getattr(src, name), 0, idx))
    dst.num_batches_tracked = src.num_batches_tracked.detach().clone()


def prune(module: UnetGenerator, keep: dict[str, list[int]] | None = None, cut: int | None = None) -> UnetGenerator:
    """A new, physically smaller generator: the filters not in ``keep[layer]`` removed (the dependency table in the
    module's docstring), and with ``cut`` = L only levels 0..L-1 kept.  ``module`` is not changed."""
    cfg = module.config
    keep = dict(keep or {})
    n = cfg.levels
    levels = n if cut is None else int(cut)
    if not 2 <= levels <= n:
        raise SlimError(f"cannot keep {levels} of the generator's {n} levels", hint="keep at least 2 levels")
    for layer, kept in keep.items():
        if not kept:
            raise SlimError(f"the plan removes every filter of {layer}", hint="keep at least one filter per layer")
        if layer == "up.0":
            raise SlimError("the outermost up conv's filters are the output image's channels: they cannot be pruned")

    def kept(layer: str) -> list[int] | None:
        side, k = layer.split(".")
        return keep.get(layer) if int(k) < levels else None

    def count(layer: str) -> int:
        k_ = kept(layer)
        return len(k_) if k_ is not None else width(cfg, layer)

    down = [count(f"down.{k}") for k in range(levels)]
    up = [cfg.up[0]] + [count(f"up.{k}") for k in range(1, levels)]
    new_cfg = UNetConfig(down=down, up=up, input_nc=cfg.input_nc, output_nc=cfg.output_nc, norm=cfg.norm,
                         use_dropout=cfg.use_dropout, inner_norm=cfg.inner_norm if levels == n else True,
                         image_size=cfg.image_size,
                         origin_levels=cfg.origin_levels if levels == n else (cfg.origin_levels or n),
                         extra=dict(cfg.extra))
    new = UnetGenerator(new_cfg)
    old_blocks, new_blocks = module.blocks(), new.blocks()
    for k in range(levels):
        ob, nb = old_blocks[k], new_blocks[k]
        kd = kept(f"down.{k}")
        kin = None if k == 0 else kept(f"down.{k - 1}")
        w = _take(ob.downconv.weight, 0, kd)
        nb.downconv.weight.data = _take(w, 1, kin)
        if nb.downconv.bias is not None:
            nb.downconv.bias.data = _take(ob.downconv.bias, 0, kd)
        _copy_norm(ob.down_norm, nb.down_norm, kd)
        ku = None if k == 0 else kept(f"up.{k}")
        wt = _take(ob.upconv.weight, 1, ku)  # [in, out, kh, kw]
        skip_rows = list(range(cfg.down[k])) if kd is None else kd
        if k == levels - 1:  # innermost (now): only the down conv's output comes in
            rows = skip_rows
        else:
            kup = kept(f"up.{k + 1}")
            rows = skip_rows + [cfg.down[k] + i for i in (kup if kup is not None else range(cfg.up[k + 1]))]
        nb.upconv.weight.data = _take(wt, 0, rows)
        if nb.upconv.bias is not None:
            nb.upconv.bias.data = _take(ob.upconv.bias, 0, ku)
        _copy_norm(ob.up_norm, nb.up_norm, ku)
    return new.train(module.training)


def params_of(cfg: UNetConfig) -> int:
    """Parameters of a generator with this config (no module built)."""
    n = cfg.levels
    total = 0
    bias = cfg.use_bias
    for k in range(n):
        cin = cfg.input_nc if k == 0 else cfg.down[k - 1]
        total += cin * cfg.down[k] * 16 + (cfg.down[k] if bias else 0)
        if cfg.norm == "batch" and 0 < k and (k < n - 1 or cfg.inner_norm):
            total += 2 * cfg.down[k]
        up_in = cfg.down[k] + (cfg.up[k + 1] if k < n - 1 else 0)
        total += up_in * cfg.up[k] * 16 + (cfg.up[k] if (bias or k == 0) else 0)
        if cfg.norm == "batch" and k > 0:
            total += 2 * cfg.up[k]
    return total
