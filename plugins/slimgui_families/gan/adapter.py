"""Pix2Pix U-Net generators as a U of convolutions, pruned by filters and by inner levels into smaller generators.

Unit ids (levels: 0 = outermost, n-1 = innermost; the graph is drawn as a U: down convs left, the innermost level at
the bottom, up convs right, a skip arrow per level)::

    down.{k}        level k's down conv (+ its norm)            prunable for k >= 2: removes levels k..n-1 (a shallower
                                                                U-Net: the paper's inner-layer removal)
    up.{k}          level k's up conv (+ its norm)               goes with down.{k}; up.0 makes the image
    down.{k}.f{j}   the j-th eighth of the layer's filters,      prunable; takes the lower eighths along, so removing
    up.{k}.f{j}     least important first (j = 1..7)             f{j} removes j/8 of the layer's filters

Which filters an eighth is depends on the plan's criterion: ``bn-scale`` orders them by |γ| of their batch norm,
``filter-l2`` by the root-mean-square of their weights, anything else by the mean |w| (L1, the paper's choice).  The
dependencies a filter drags along are in :mod:`.pruning`.  A unit's parameters and MACs are what removing it saves
(the filters' own weights and those of the inputs they feed), at ``image_size`` (the demo's 64, else the resolution
the generator was trained at: ``crop_size`` of junyanz's train_opt.txt, else 2^levels).
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimgui.core.abconv import (
    abconv_layers,
    abconv_map,
    describe_abconv,
    plain_shapes,
    refuse_abconv,
    restore_abconv,
)
from slimgui.core.bench import BenchRun
from slimgui.core.errors import SlimError
from slimgui.core.graph import Unit, UnitGraph
from slimgui.core.model import LoadedModel, origin_with
from slimgui.core.plan import PruningPlan
from slimgui.core.plugins import ModelAdapter
from slimgui.core.progress import CancelToken, ProgressFn, report

from . import probe
from . import pruning as P
from .modeling import UNetConfig, UnetGenerator, conv_macs

FAMILY = "gan"
ADAPTER = "pix2pix"
STEPS = 8
WEIGHTS = "latest_net_G.pth"
SAFE = "latest_net_G.safetensors"
MODELING_COPY = "slimgui_unet.py"
ID = re.compile(r"^(down|up)\.(\d+)(?:\.f(\d+))?$")
ORDER_OF = {"bn-scale": "bn", "filter-l2": "l2"}
PRESETS = {
    "inner-75": "the 4 convs nearest the bottleneck (down/up of the two innermost levels) pruned by 75 %",
    "inner-50": "the 6 convs of the three innermost levels pruned by 50 %",
    "global-50": "global pruning: one mean-|w| threshold across every layer, removing about half of the MACs",
    "cut-1": "remove the innermost level (a U-Net one level shallower)",
    "cut-2": "remove the two innermost levels",
}


def steps(width: int) -> list[tuple[int, int]]:
    """(j, filters removed with f{j}, cumulative) of a layer of ``width`` filters: eighths that remove at least one
    more filter and leave at least one."""
    out, prev = [], 0
    for j in range(1, STEPS):
        c = j * width // STEPS
        if prev < c < width:
            out.append((j, c))
            prev = c
    return out


def fraction_count(width: int, fraction: float, layer: str = "") -> int:
    """Filters removed by ``fraction`` of a layer (rounded down to the eighths grid); refused at 1 or above."""
    if not 0 <= fraction < 1:
        raise SlimError(f"a fraction of {fraction:g} would remove every filter of {layer or 'the layer'} "
                        f"({width})", hint=f"use a fraction below 1 (at most {STEPS - 1}/{STEPS})")
    j = int(fraction * STEPS + 1e-9)
    got = [c for jj, c in steps(width) if jj <= j]
    return got[-1] if got else 0


class Pix2PixAdapter(ModelAdapter):
    """Opens junyanz Pix2Pix U-Net generators (``*_net_G.pth`` / ``.safetensors``, or a folder of one) and SlimGUI's
    slimmed ones.  Capabilities (manifest): calibration, default-data, presets, bench."""

    family = FAMILY

    # -- opening -------------------------------------------------------------------------------------------------
    def load(self, path: str, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
             match: Any = None, weights: bool = True, **_: Any) -> LoadedModel:
        p = Path(path).expanduser()
        file = probe.weight_file(p) if p.exists() else None
        if file is None:
            raise SlimError(f"{path} is not a Pix2Pix generator file or folder",
                            hint="open latest_net_G.pth (or *_net_G.pth / .safetensors) or a folder holding one")
        report(progress, 0, 2, f"reading {file.name}")
        folder = file.parent
        side = probe.read_sidecar(folder)
        train_opt = probe.read_train_opt(folder)
        ab = abconv_map(side.get("abconv"), str(folder / probe.CONFIG))
        shapes = plain_shapes(probe.read_shapes(file), ab)  # ABConv layers read as the convs they replaced
        cfg, notes = probe.infer(shapes, file.name, side, train_opt)
        module = restore_abconv(UnetGenerator(cfg), ab, str(folder / probe.CONFIG))
        if ab:
            notes = [*notes, f"ABConv layers: {', '.join(f'{k} (fold {v})' for k, v in ab.items())}"]
        if weights:
            state = self._read_state(file)
            state = {k: v for k, v in state.items() if k in module.state_dict()}
            module.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()},
                                   strict=True)
        module.eval()
        report(progress, 2, 2, "loaded")
        source = str(folder if (p.is_dir() or (folder / probe.CONFIG).is_file()) else file)
        extra = {"notes": notes, "weight_file": str(file), "demo": side.get("demo")}
        return LoadedModel(FAMILY, ADAPTER, source, module, cfg, has_weights=weights, impl=self, extra=extra)

    @staticmethod
    def _read_state(file: Path) -> dict[str, torch.Tensor]:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return probe.strip_prefix(load_file(str(file)))
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
        return probe.strip_prefix(probe.unwrap(state, file))

    # -- graph -----------------------------------------------------------------------------------------------------
    def to_graph(self, model: LoadedModel) -> UnitGraph:
        cfg: UNetConfig = model.config
        module: UnetGenerator = model.module
        n, size = cfg.levels, cfg.image_size
        macs = conv_macs(cfg)
        blocks = module.blocks()
        units: list[Unit] = []

        def own(mods) -> int:  # a conv and its norm (an ABConv layer's parameters are its shared kernel's)
            return int(sum(p.numel() for m in mods if m is not None for p in m.parameters()))

        for k in range(n):
            b = blocks[k]
            res = max(1, size >> (k + 1))
            did = f"down.{k}"
            attrs = {"stage": "down", "level": k, "channels": cfg.down[k], "resolution": [res, res], "cells": "children",
                     "filters": cfg.down[k]}
            if k >= 2:
                attrs["removes_with"] = [f"up.{k}"] + ([f"down.{k + 1}"] if k + 1 < n else [])
                attrs["note"] = f"removing it cuts levels {k}..{n - 1}: a U-Net of {k} levels"
            units.append(Unit(did, "down_conv", f"Down {k} · {cfg.down[k]} filters · {res}×{res}", params=own(
                [b.downconv, b.down_norm]), macs=macs[did], prunable=k >= 2, attrs=attrs))
            units += self._steps(cfg, module, did, macs)
        for k in range(n - 1, -1, -1):
            b = blocks[k]
            res = max(1, size >> k)
            uid = f"up.{k}"
            attrs = {"stage": "up", "level": k, "channels": cfg.up[k], "resolution": [res, res], "filters": cfg.up[k]}
            if k >= 1:
                attrs["cells"] = "children"
            if k >= 2:
                attrs["removed_with"] = f"down.{k}"
            label = f"Up {k} · {cfg.up[k]} filters · {res}×{res}" if k else f"Output conv · {cfg.up[0]} channels · " \
                f"{res}×{res} · tanh"
            units.append(Unit(uid, "up_conv", label, params=own([b.upconv, b.up_norm]), macs=macs[uid], attrs=attrs))
            if k >= 1:
                units += self._steps(cfg, module, uid, macs)
        down_ids = [f"down.{k}" for k in range(n)]
        up_ids = [f"up.{k}" for k in range(n - 1, -1, -1)]
        chain = down_ids + up_ids
        skips = [[f"down.{k}", f"up.{k}"] for k in range(n - 1)]
        edges = list(zip(chain, chain[1:])) + [tuple(s) for s in skips]
        total = int(sum(p.numel() for p in module.parameters()))
        std, ngf = cfg.is_standard()
        attrs = {
            "layout": "u", "architecture": probe.name_of(cfg), "levels": n, "norm": cfg.norm, "widths": {
                "down": list(cfg.down), "up": list(cfg.up)}, "image_size": [size, size], "total_params": total,
            "total_macs": int(sum(macs.values())), "macs_per": "image", "macs_note": f"MACs per {size}×{size} image",
            "stages": {"down": down_ids, "mid": None, "up": up_ids}, "skips": skips, "unit_word": "unit",
            "presets": {name: self._preset_fits(cfg, name) is None for name in PRESETS},
            "preset_notes": {name: self._preset_fits(cfg, name) or PRESETS[name] for name in PRESETS},
            "junyanz_compatible": bool(std), "steps": STEPS,
            "rules": "f{j} removes j/8 of the layer's filters (the least important by the plan's criterion: |γ| for "
                     "bn-scale, RMS for filter-l2, mean |w| otherwise); removing down.k (k ≥ 2) cuts levels k..n-1",
        }
        return UnitGraph(FAMILY, units, edges, attrs)

    @staticmethod
    def _steps(cfg: UNetConfig, module: UnetGenerator, layer: str, macs: dict[str, int]) -> list[Unit]:
        """The layer's eighths as units: params and MACs saved by their filters (own weights and those they feed)."""
        side, k = layer.split(".")
        k = int(k)
        n = cfg.levels
        w = P.width(cfg, layer)
        if side == "down":
            cin = cfg.input_nc if k == 0 else cfg.down[k - 1]
            own = cin * 16 + (1 if cfg.use_bias else 0) + (2 if cfg.norm == "batch" and 0 < k and (
                k < n - 1 or cfg.inner_norm) else 0)
            fed = (cfg.down[k + 1] * 16 if k + 1 < n else 0) + cfg.up[k] * 16  # next down conv + up conv k (skip)
            res = max(1, cfg.image_size >> (k + 1))
            res_next = max(1, cfg.image_size >> (k + 2))
            mac_own = cin * 16 * res * res
            mac_fed = (cfg.down[k + 1] * 16 * res_next * res_next if k + 1 < n else 0) + cfg.up[k] * 16 * res * res
        else:
            up_in = cfg.down[k] + (cfg.up[k + 1] if k < n - 1 else 0)
            own = up_in * 16 + (1 if cfg.use_bias else 0) + (2 if cfg.norm == "batch" else 0)
            fed = cfg.up[k - 1] * 16
            res_in = max(1, cfg.image_size >> (k + 1))
            mac_own = up_in * 16 * res_in * res_in
            res_prev = max(1, cfg.image_size >> k)
            mac_fed = cfg.up[k - 1] * 16 * res_prev * res_prev
        out, prev, prev_id = [], 0, None
        for j, c in steps(w):
            m = c - prev
            uid = f"{layer}.f{j}"
            # width_of / channels: the contract's width slice (core snaps a plan's widths to latency steps with it)
            attrs = {"fraction": j / STEPS, "filters": m, "cumulative": c, "layer": layer, "width_of": layer,
                     "channels": m}
            if prev_id:
                attrs["removes_with"] = [prev_id]
            out.append(Unit(uid, "filters", f"{j}/{STEPS} · {c} of {w} filters", parent=layer, params=m * (own + fed),
                            macs=m * (mac_own + mac_fed), prunable=True, attrs=attrs))
            prev, prev_id = c, uid
        return out

    def _parse(self, model: LoadedModel, uid: str) -> tuple[str, int, int | None]:
        m = ID.match(uid)
        if m:
            side, k, j = m.group(1), int(m.group(2)), m.group(3)
            if k < model.config.levels:
                return side, k, int(j) if j is not None else None
        raise SlimError(f"unknown unit '{uid}'", hint="`slimgui inspect MODEL` lists the unit ids")

    def unit_module(self, model: LoadedModel, unit_id: str) -> nn.Module:
        """The conv (+ norm) of a layer unit; for an eighth, a holder of copies of its filters' weights."""
        side, k, j = self._parse(model, unit_id)
        b = model.module.blocks()[k]
        if j is not None:
            refuse_abconv(model.module, "scored by filter")
        if j is None:
            mods = [b.downconv, b.down_norm] if side == "down" else [b.upconv, b.up_norm]
            return nn.ModuleList([m for m in mods if m is not None])
        layer = f"{side}.{k}"
        counts = dict(steps(P.width(model.config, layer)))
        if j not in counts:
            raise SlimError(f"unknown unit '{unit_id}'")
        prev = max([c for jj, c in counts.items() if jj < j], default=0)
        idx = P.order(model.module, layer, "l1")[prev:counts[j]]
        holder = nn.Module()
        holder.weight = nn.Parameter(P.filter_weights(model.module, layer)[idx].clone(), requires_grad=False)
        b = model.module.blocks()[k]
        conv = b.downconv if side == "down" else b.upconv
        if conv.weight.grad is not None:  # what core's taylor reads: the gradients of the same filters
            g = conv.weight.grad
            g = g.reshape(g.shape[0], -1) if side == "down" else g.transpose(0, 1).reshape(g.shape[1], -1)
            holder.weight.grad = g[idx].detach().clone()
        return holder

    # -- plans -------------------------------------------------------------------------------------------------------
    def removal(self, model: LoadedModel, remove: list[str]) -> tuple[dict[str, int], int | None]:
        """(filters removed per layer, kept levels or None) of a list of unit ids (their closure included)."""
        cfg = model.config
        drop: dict[str, int] = {}
        cut = None
        for uid in remove:
            side, k, j = self._parse(model, uid)
            layer = f"{side}.{k}"
            if j is None:
                if side != "down" or k < 2:
                    raise SlimError(f"unit '{uid}' cannot be removed",
                                    hint="remove down.k (k ≥ 2) to cut inner levels, or eighths of filters (….f1-f7)")
                cut = k if cut is None else min(cut, k)
                continue
            counts = dict(steps(P.width(cfg, layer)))
            if j not in counts or layer == "up.0":
                raise SlimError(f"unknown unit '{uid}'", hint="`slimgui inspect MODEL` lists the unit ids")
            drop[layer] = max(drop.get(layer, 0), counts[j])
        if cut is not None:
            drop = {lay: c for lay, c in drop.items() if int(lay.split(".")[1]) < cut}
        return drop, cut

    def apply_plan(self, model: LoadedModel, plan: PruningPlan, *, copy: bool = True) -> LoadedModel:
        """A physically smaller generator: the plan's eighths of filters and inner levels removed (module docstring)."""
        if not model.has_weights:
            raise SlimError("a generator opened without weights cannot be pruned")
        refuse_abconv(model.module, "pruned by filter")
        drop, cut = self.removal(model, list(plan.remove))
        kind = ORDER_OF.get(str(plan.criterion or ""), "l1")
        keep = P.keep_lists(model.module, drop, kind)
        module = P.prune(model.module, keep, cut)
        # which filters of the generator it was pruned from each layer kept (distillation matches features by it)
        module.config.extra = {"kept": {k: list(v) for k, v in keep.items()}, "cut": cut,
                               "parent": {"down": list(model.config.down), "up": list(model.config.up)}}
        notes = []
        if cut is not None:
            notes.append(f"levels {cut}..{model.config.levels - 1} removed: a {cut}-level U-Net; level {cut - 1} is now "
                         "the innermost and keeps its down norm")
        for layer, c in drop.items():
            notes.append(f"{layer}: {c} of {P.width(model.config, layer)} filters removed (by "
                         f"{ {'l1': 'mean |w|', 'l2': 'RMS of w', 'bn': '|γ|'}[kind] })")
        if isinstance(getattr(plan, "meta", None), dict):
            plan.meta["notes"] = list(notes)
            plan.meta["filter_order"] = kind
        extra = {"notes": notes, "demo": model.extra.get("demo"), "kept": keep, "cut": cut}
        return LoadedModel(FAMILY, model.adapter, model.source, module, module.config, has_weights=True, impl=self,
                           extra=extra)

    @staticmethod
    def _preset_fits(cfg: UNetConfig, name: str) -> str | None:
        need = {"inner-75": 3, "inner-50": 4, "global-50": 2, "cut-1": 3, "cut-2": 4}.get(name)
        if need is None:
            return f"unknown preset '{name}'"
        if cfg.levels < need:
            return f"{name} needs a U-Net of at least {need} levels; this one has {cfg.levels}"
        return None

    def preset_plan(self, model: LoadedModel, preset: str) -> PruningPlan:
        from .plans import global_plan, inner_plan

        why = self._preset_fits(model.config, preset)
        if why:
            raise SlimError(why, hint=f"presets: {', '.join(PRESETS)}")
        n = model.config.levels
        if preset.startswith("cut-"):
            remove = [f"down.{n - int(preset[4:])}"]
        elif preset == "global-50":
            remove, _ = global_plan(model, self.to_graph(model), 0.5, "l1")
            return PruningPlan(remove=remove, model=model.source, criterion="filter-l1", meta={"preset": preset})
        else:
            layers, frac = (4, 0.75) if preset == "inner-75" else (6, 0.5)
            remove = inner_plan(self.to_graph(model), layers, frac)
        return PruningPlan(remove=remove, model=model.source, meta={"preset": preset})

    # -- saving -----------------------------------------------------------------------------------------------------
    def save(self, model: LoadedModel, out_dir: str) -> str:
        """``latest_net_G.pth`` (a plain state dict with junyanz's keys), the same as ``latest_net_G.safetensors``,
        ``slimgui_gan.json`` (the widths and norm: junyanz's class cannot express uneven widths or a cut U-Net's
        innermost norm) and ``slimgui_unet.py`` (the class that loads it, torch only)."""
        from safetensors.torch import save_file

        if not model.has_weights:
            raise SlimError("a generator opened without weights cannot be saved")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
        torch.save(state, out / WEIGHTS)
        save_file(state, str(out / SAFE), metadata={"format": "pt"})
        cfg: UNetConfig = model.module.config
        ab = abconv_layers(model.module)  # convolutions replaced by ABConv: their shared kernels are stored
        doc = cfg.to_json() | {"format": "junyanz UnetGenerator state dict (per-level widths)",
                               "junyanz_compatible": bool(cfg.is_standard()[0]) and not ab, "weights": WEIGHTS}
        if ab:
            doc["abconv"] = ab
            doc["format"] += "; the abconv layers hold slimgui.core.abconv.ABConv2d kernels (L.conv.weight)"
        if model.extra.get("demo"):
            doc["demo"] = model.extra["demo"]
        (out / probe.CONFIG).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        shutil.copy(Path(__file__).parent / "modeling.py", out / MODELING_COPY)
        return str(out)

    # -- data ----------------------------------------------------------------------------------------------------------
    def default_data(self, model: LoadedModel) -> str | None:
        """The demo's held-out pairs (A/ and B/ folders) for the demo and the generators made from it."""
        if not model.extra.get("demo") and origin_with(model.source, "slimgui_demo.json") is None:
            return None
        from .demo import pairs_folder

        return str(pairs_folder("test"))

    def calibration_batches(self, model: LoadedModel, data: Any) -> list[dict[str, torch.Tensor]]:
        """``samples`` pairs of a paired folder (or the demo's held-out pairs), ``batch_size`` at a time:
        ``{"input", "target"}`` in [-1, 1] at the generator's image size."""
        from slimgui.core.data import CalibrationData

        from .data import load_pairs

        if data is None:
            path = self.default_data(model)
            if path is None:
                raise SlimError("this criterion needs paired calibration images",
                                hint="pass --data FOLDER (A/ and B/ sub-folders, or side-by-side AB images)")
            data = CalibrationData(path)
        spec = data if isinstance(data, CalibrationData) else CalibrationData(str(data))
        x, y = load_pairs(spec.path, model.config, limit=spec.samples)
        return [{"input": a, "target": b} for a, b in zip(x.split(spec.batch_size), y.split(spec.batch_size))]

    def loss(self, model: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The L1 distance of the generator's output to the target (pix2pix's reconstruction term)."""
        return (model.module(batch["input"]) - batch["target"]).abs().mean()

    def bench_runner(self, model: LoadedModel, batch: int, options: Any, mode: str) -> BenchRun | None:
        if mode != "forward":
            return None
        cfg = model.config
        x = torch.randn(batch, cfg.input_nc, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
        module = model.module.eval()

        def run():
            with torch.no_grad():
                module(x)
        return BenchRun("forward", run, items=batch, label="forward pass")

    def describe_result(self, model: LoadedModel) -> dict[str, Any]:
        cfg = model.config
        return {"architecture": probe.name_of(cfg), "levels": cfg.levels, "norm": cfg.norm,
                "image size": f"{cfg.image_size}×{cfg.image_size}", "down widths": list(cfg.down),
                "MACs per image": f"{sum(conv_macs(cfg).values()):,}",
                "format": "junyanz UnetGenerator" if cfg.is_standard()[0] and not abconv_layers(model.module)
                          else "U-Net with per-level widths (slimgui_gan.json)",
                "ABConv layers": describe_abconv(model.module)}
