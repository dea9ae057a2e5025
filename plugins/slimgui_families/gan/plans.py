"""The paper's plans as unit lists: "inner" (the n convs nearest the bottleneck by a fraction) and "global" (one
per-filter norm threshold across every prunable layer, matched to a MACs budget), and what a plan leaves in MACs."""

from __future__ import annotations

from slimgui.core.errors import SlimError
from slimgui.core.graph import UnitGraph

from . import pruning as P
from .adapter import STEPS, fraction_count, steps
from .modeling import UNetConfig, conv_macs


def inner_layers(graph: UnitGraph) -> list[str]:
    """Prunable convs from the bottleneck outwards: down.n-1, up.n-1, down.n-2, up.n-2, ... (up.0 never)."""
    n = int(graph.attrs["levels"])
    out = []
    for k in range(n - 1, -1, -1):
        out += [f"down.{k}"] + ([f"up.{k}"] if k >= 1 else [])
    return out


def unit_for(graph: UnitGraph, layer: str, count: int) -> str | None:
    """The eighth unit of ``layer`` that removes ``count`` filters (None for 0)."""
    width = int(graph.get(layer).attrs["filters"])
    hit = [j for j, c in steps(width) if c == count]
    if count and not hit:
        raise SlimError(f"{count} filters of {layer} is not on the eighths grid")
    return f"{layer}.f{hit[0]}" if count else None


def inner_plan(graph: UnitGraph, layers: int, fraction: float) -> list[str]:
    """Units pruning the ``layers`` convs nearest the bottleneck by ``fraction`` (rounded down to eighths)."""
    order = inner_layers(graph)
    if not 1 <= layers <= len(order):
        raise SlimError(f"the generator has {len(order)} prunable convs; cannot prune the {layers} nearest the bottleneck")
    out = []
    for layer in order[:layers]:
        c = fraction_count(int(graph.get(layer).attrs["filters"]), fraction, layer)
        u = unit_for(graph, layer, c)
        if u:
            out.append(u)
    if not out:
        raise SlimError(f"a fraction of {fraction:g} removes no filter (the grid is 1/{STEPS} of a layer)")
    return out


def macs_after(cfg: UNetConfig, drop: dict[str, int], cut: int | None = None) -> int:
    levels = cfg.levels if cut is None else cut
    down = [cfg.down[k] - drop.get(f"down.{k}", 0) for k in range(levels)]
    up = [cfg.up[0]] + [cfg.up[k] - drop.get(f"up.{k}", 0) for k in range(1, levels)]
    c = UNetConfig(down=down, up=up, input_nc=cfg.input_nc, output_nc=cfg.output_nc, image_size=cfg.image_size)
    return int(sum(conv_macs(c).values()))


def global_plan(model, graph: UnitGraph, macs_fraction: float, kind: str = "l1") -> tuple[list[str], float]:
    """(units, MACs fraction removed): one threshold on the per-filter norm (``kind``: l1/l2/bn, divided by the fan-in
    so layers compare) across every prunable layer, each layer's count rounded down to the eighths grid, the threshold
    chosen so the removed MACs come closest to ``macs_fraction`` of the generator's."""
    if not 0 < macs_fraction < 1:
        raise SlimError(f"the MACs budget must be between 0 and 1, got {macs_fraction}")
    cfg = model.config
    layers = P.prunable_layers(cfg)
    norms = {layer: sorted(float(v) for v in P.filter_norms(model.module, layer, kind)) for layer in layers}
    total = sum(conv_macs(cfg).values())
    grid = {layer: [0] + [c for _, c in steps(P.width(cfg, layer))] for layer in layers}

    def plan_at(t: float) -> dict[str, int]:
        drop = {}
        for layer in layers:
            below = sum(1 for v in norms[layer] if v < t)
            drop[layer] = max(c for c in grid[layer] if c <= below)
        return drop

    cands = sorted({v for vs in norms.values() for v in vs})
    best, best_err = {}, float("inf")
    lo, hi = 0, len(cands)
    while lo < hi:  # removed MACs grow with the threshold: bisect to the target, keep the closest seen
        mid = (lo + hi) // 2
        drop = plan_at(cands[mid] + 1e-12)
        frac = 1 - macs_after(cfg, drop) / total
        if abs(frac - macs_fraction) < best_err:
            best, best_err = drop, abs(frac - macs_fraction)
        if frac < macs_fraction:
            lo = mid + 1
        else:
            hi = mid
    units = [u for layer, c in best.items() if (u := unit_for(graph, layer, c))]
    return units, 1 - macs_after(cfg, best) / total


def inner_at_macs(model, graph: UnitGraph, macs_fraction: float) -> tuple[list[str], float, dict]:
    """The inner plan closest to removing ``macs_fraction`` of the MACs: for each number of innermost convs and each
    eighth, the one whose removed MACs come closest (ties: fewer layers, i.e. the more inner)."""
    cfg = model.config
    total = sum(conv_macs(cfg).values())
    best = None
    for layers in range(1, len(inner_layers(graph)) + 1):
        for j in range(1, STEPS):
            drop = {}
            for layer in inner_layers(graph)[:layers]:
                drop[layer] = fraction_count(P.width(cfg, layer), j / STEPS, layer)
            frac = 1 - macs_after(cfg, drop) / total
            err = abs(frac - macs_fraction)
            if best is None or err < best[0] - 1e-9:
                best = (err, layers, j, frac)
    _, layers, j, frac = best
    return inner_plan(graph, layers, j / STEPS), frac, {"layers": layers, "fraction": j / STEPS}
