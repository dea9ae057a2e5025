"""Wav2Lip generators as a U (face encoder down the left, decoder up the right, a skip per resolution, the audio
encoder beside them), pruned the unified way: residual blocks removed and channel widths cut.

Unit ids (every conv block a unit, parameters and MACs for one 96×96 frame)::

    face.{i} / dec.{i}      face-encoder stage i / decoder block i (level 6 − i: decoder block i meets face stage 6 − i)
    audio, out              the audio encoder, the output block
    face.{i}.{j}, audio.{j}, dec.{i}.{j}, out.0, out.1
                            a conv block (``face_encoder_blocks.i.j`` ...); a residual one is prunable: removing it
                            makes the block's output its input
    nef / naf / ndf         the base widths of the face encoder / audio encoder (+ the decoder's first 1×1 block) /
                            the decoder and the output block, as the paper's (and NotaWav2Lip's) nef, naf, ndf
    nef.f{j} ...            j/8 of every channel group of that part removed (the least important channels: mean |w|
                            · |γ| of their filters); f{j} takes the lower eighths along
    face.5.0.f{j} ...       j/8 of one channel group's filters (the group of a plain block and the residual blocks
                            after it): Cut Inner Layers' filter pruning of single layers, drawn as cells in the
                            block's box; combined with a part's eighths, the narrower width wins

Presets: ``nota`` (every residual block removed and 6/8 of every width: 16/32/32 → 4/8/8, the official generator
becomes exactly NotaWav2Lip(4, 8, 8), 36.3 M → 1.26 M parameters), ``no-residual`` (residual blocks only), and
``half`` (half of every width, residual blocks kept).
"""

from __future__ import annotations

import json
import re
import shutil
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
from slimgui_families.gan.adapter import steps

from . import probe
from . import pruning as P
from .modeling import Wav2Lip, Wav2LipConfig, layer_table, standard

FAMILY = "wav2lip"
ADAPTER = "wav2lip"
STEPS = 8
WEIGHTS = "wav2lip.pth"
SAFE = "wav2lip.safetensors"
NOTA = "nota_wav2lip.pth"
MODELING_COPY = "slimgui_wav2lip.py"
WIDTH_ID = re.compile(r"^(nef|naf|ndf)\.f(\d)$")
GROUP_ID = re.compile(r"^((?:face|dec)\.\d+\.\d+|audio\.\d+|out\.0)\.f(\d)$")
PRESETS = {
    "nota": "every residual block removed and 6/8 of every width (16/32/32 → 4/8/8): NotaWav2Lip(4, 8, 8) from the "
            "official generator",
    "no-residual": "every residual block removed, widths kept",
    "half": "half of every width (nef, naf, ndf), residual blocks kept",
}
PART_LABEL = {"nef": "face encoder width (nef)", "naf": "audio encoder width (naf)", "ndf": "decoder width (ndf)"}


def residual_ids(cfg: Wav2LipConfig) -> list[str]:
    out = [f"face.{i}.{j}" for i, blk in enumerate(cfg.face) for j, b in enumerate(blk) if b.res]
    out += [f"audio.{j}" for j, b in enumerate(cfg.audio) if b.res]
    out += [f"dec.{i}.{j}" for i, blk in enumerate(cfg.decoder) for j, b in enumerate(blk) if b.res]
    return out


def base_widths(cfg: Wav2LipConfig) -> dict[str, int]:
    """nef / naf / ndf as NotaWav2Lip defines them (face stage 0, audio block 0, output conv)."""
    return {"nef": cfg.face[0][0].c, "naf": cfg.audio[0].c, "ndf": cfg.out_mid}


def nota_args(cfg: Wav2LipConfig) -> dict[str, int] | None:
    """(nef, naf, ndf, x_size) when NotaWav2Lip builds exactly this generator (no residual blocks), else None."""
    if residual_ids(cfg):
        return None
    b = base_widths(cfg)
    try:
        ref = standard(b["nef"], b["naf"], b["ndf"], residual=False, x_size=cfg.image_size)
    except Exception:  # pragma: no cover
        return None
    if ref.to_json() | {"extra": {}} == cfg.to_json() | {"extra": {}}:
        return {**b, "x_size": cfg.image_size}
    return None


def official_like(cfg: Wav2LipConfig) -> bool:
    b = base_widths(cfg)
    return standard(b["nef"], b["naf"], b["ndf"], residual=True, x_size=cfg.image_size).to_json() | {"extra": {}} == \
        cfg.to_json() | {"extra": {}}


def name_of(cfg: Wav2LipConfig) -> str:
    b = base_widths(cfg)
    if official_like(cfg):
        return "Wav2Lip (official layout)" + ("" if b == {"nef": 16, "naf": 32, "ndf": 32} else
                                              f", widths {b['nef']}/{b['naf']}/{b['ndf']}")
    n = nota_args(cfg)
    if n:
        return f"NotaWav2Lip(nef={n['nef']}, naf={n['naf']}, ndf={n['ndf']})"
    return f"slimmed Wav2Lip ({len(residual_ids(cfg))} residual blocks)"


class Wav2LipAdapter(ModelAdapter):
    """Opens Wav2Lip generators (official checkpoints, nota-wav2lip's, safetensors, SlimGUI's outputs).
    Capabilities (manifest): calibration, default-data, presets, width, bench."""

    family = FAMILY

    # -- opening ---------------------------------------------------------------------------------------------------
    def load(self, path: str, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
             match: Any = None, weights: bool = True, **_: Any) -> LoadedModel:
        p = Path(path).expanduser()
        file = probe.weight_file(p) if p.exists() else None
        if file is None:
            raise SlimError(f"{path} is not a Wav2Lip checkpoint or folder",
                            hint="open wav2lip.pth / wav2lip_gan.pth, a nota-wav2lip .pth, a .safetensors or a folder "
                                 "holding one")
        report(progress, 0, 2, f"reading {file.name}")
        folder = file.parent
        side = probe.read_sidecar(folder) if (folder / probe.CONFIG).is_file() else {}
        state = probe.read_state(file, meta=not weights)
        ab = abconv_map(side.get("abconv"), str(folder / probe.CONFIG))
        shapes = plain_shapes(probe.shapes_of(state), ab)  # ABConv layers read as the convs they replaced
        if side.get("config"):
            try:
                cfg = Wav2LipConfig.from_json(side["config"])
            except (KeyError, TypeError, ValueError) as exc:
                raise SlimError(f"{folder / probe.CONFIG} has a broken config ({exc})",
                                hint="delete it to read the layout from the weights") from None
            probe.refuse_other(probe.kind_of(shapes), file.name)
            probe.check(cfg, shapes, file.name)
        else:
            cfg = probe.infer(shapes, file.name)
        module = restore_abconv(Wav2Lip(cfg), ab, str(folder / probe.CONFIG))
        if weights:
            own = module.state_dict()
            missing = {k: v for k, v in own.items() if k.endswith("num_batches_tracked") and k not in state}
            sd = {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in state.items()} | missing
            bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
            if bad:
                raise SlimError(f"{file.name}: {bad[0]} holds NaN or infinite values ({len(bad)} tensors)",
                                hint="the checkpoint is broken; use an earlier one")
            module.load_state_dict(sd, strict=True)
        module.eval()
        report(progress, 2, 2, "loaded")
        source = str(folder if (p.is_dir() or (folder / probe.CONFIG).is_file()) else file)
        notes = []
        if isinstance(state, dict) and file.suffix != ".safetensors":
            notes.append(f"read {file.name} with torch.load(weights_only=True)")
        if ab:
            notes.append(f"ABConv layers: {', '.join(f'{k} (fold {v})' for k, v in ab.items())}")
        extra = {"notes": notes, "weight_file": str(file), "demo": side.get("demo"), "expert": side.get("expert"),
                 "parent": side.get("parent")}
        return LoadedModel(FAMILY, ADAPTER, source, module, cfg, has_weights=weights, impl=self, extra=extra)

    # -- graph -------------------------------------------------------------------------------------------------------
    def to_graph(self, model: LoadedModel) -> UnitGraph:
        cfg: Wav2LipConfig = model.config
        rows = layer_table(cfg)
        units: list[Unit] = []
        by_stage: dict[str, list[dict]] = {}
        for r in rows:
            key = {"face": f"face.{r['stage']}", "decoder": f"dec.{r['stage']}", "audio": "audio",
                   "output": "out"}[r["part"]]
            by_stage.setdefault(key, []).append(r)

        gids = P.groups(cfg)

        def block_unit(r, parent):
            b = r["block"]
            kind = "residual_block" if b.res else ("conv_transpose_block" if b.t else "conv_block")
            hw = r["hw"]
            label = (f"{'Residual ' if b.res else ''}{'ConvT' if b.t else 'Conv'} {b.k[0]}×{b.k[1]}"
                     f"{' /' + str(b.s[0]) if b.s != (1, 1) and not b.t else ''}{' ×' + str(b.s[0]) if b.t and b.s != (1, 1) else ''}"
                     f" · {r['cin']}→{b.c} · {hw[0]}×{hw[1]}")
            attrs = {"prefix": r["prefix"], "cin": r["cin"], "cout": b.c, "kernel": list(b.k), "stride": list(b.s),
                     "resolution": list(hw), "residual": b.res, "transposed": b.t}
            if b.res:
                attrs["note"] = "residual: removing it makes the block's output its input"
            if r["id"] in gids and steps(P.group_width(cfg, r["id"])):
                attrs["cells"] = "children"
                attrs["channels"] = P.group_width(cfg, r["id"])  # the full width its slices (….f{j}) cut
                attrs["group"] = gids[r["id"]]
            return Unit(r["id"], kind, label, parent=parent, params=r["params"], macs=r["macs"], prunable=b.res,
                        attrs=attrs)

        base_p = sum(r["params"] for r in rows)
        base_m = sum(r["macs"] for r in rows)

        def group_units(gid):
            w = P.group_width(cfg, gid)
            out, prev_p, prev_m, prev_id, prev_c = [], base_p, base_m, None, 0
            for j, c in steps(w):
                t = layer_table(P.new_config(cfg, set(), {gid: w - c}))
                p, m = sum(x["params"] for x in t), sum(x["macs"] for x in t)
                uid = f"{gid}.f{j}"
                # width_of / channels: the contract's width slice (the group's first conv is the layer timed)
                attrs = {"fraction": j / STEPS, "filters": c, "layer": gid, "group": gids[gid], "width_of": gid,
                         "channels": c - prev_c}
                if prev_id:
                    attrs["removes_with"] = [prev_id]
                out.append(Unit(uid, "filters", f"{j}/{STEPS} · {c} of {w} filters", parent=gid,
                                params=max(0, prev_p - p), macs=max(0, prev_m - m), prunable=True, attrs=attrs))
                prev_p, prev_m, prev_id, prev_c = p, m, uid, c
            return out

        def with_cells(rs, parent):
            us = []
            for r in rs:
                us.append(block_unit(r, parent))
                if r["id"] in gids:
                    us += group_units(r["id"])
            return us

        face_ids = [f"face.{i}" for i in range(len(cfg.face))]
        dec_ids = [f"dec.{i}" for i in range(len(cfg.decoder))]
        n = len(cfg.face)
        for i, sid in enumerate(face_ids):
            rs = by_stage[sid]
            hw = rs[-1]["hw"]
            units.append(Unit(sid, "face_stage", f"Face encoder {i} · {rs[-1]['block'].c} ch · {hw[0]}×{hw[1]}",
                              params=sum(r["params"] for r in rs), macs=sum(r["macs"] for r in rs),
                              attrs={"stage": "down", "level": i, "channels": rs[-1]["block"].c,
                                     "resolution": list(hw), "blocks": len(rs)}))
            units += with_cells(rs, sid)
        rs = by_stage["audio"]
        units.append(Unit("audio", "audio_encoder", f"Audio encoder · mel 80×16 → {rs[-1]['block'].c} ch",
                          params=sum(r["params"] for r in rs), macs=sum(r["macs"] for r in rs),
                          attrs={"blocks": len(rs), "channels": rs[-1]["block"].c}))
        units += with_cells(rs, "audio")
        for i, sid in enumerate(dec_ids):
            rs = by_stage[sid]
            hw = rs[-1]["hw"]
            units.append(Unit(sid, "decoder_stage", f"Decoder {i} · {rs[-1]['block'].c} ch · {hw[0]}×{hw[1]}",
                              params=sum(r["params"] for r in rs), macs=sum(r["macs"] for r in rs),
                              attrs={"stage": "up", "level": n - 1 - i, "channels": rs[-1]["block"].c,
                                     "resolution": list(hw), "blocks": len(rs),
                                     "skip_from": f"face.{n - 1 - i}"}))
            units += with_cells(rs, sid)
        rs = by_stage["out"]
        units.append(Unit("out", "output_block", "Output block · conv 3×3, conv 1×1 → 3, sigmoid",
                          params=sum(r["params"] for r in rs), macs=sum(r["macs"] for r in rs)))
        units += with_cells(rs, "out")
        units += self._width_units(model)
        edges = list(zip(face_ids, face_ids[1:])) + [("audio", dec_ids[0])] + list(zip(dec_ids, dec_ids[1:])) + \
            [(dec_ids[-1], "out")]
        skips = [[f"face.{n - 1 - i}", dec_ids[i]] for i in range(n)]
        edges += [tuple(s) for s in skips]
        total = int(sum(p.numel() for p in model.module.parameters()))
        total_macs = int(sum(r["macs"] for r in rows))
        nargs = nota_args(cfg)
        attrs = {
            "layout": "u", "architecture": name_of(cfg), "image_size": [cfg.image_size, cfg.image_size],
            "total_params": total, "total_macs": total_macs, "macs_per": "frame",
            "macs_note": f"MACs per {cfg.image_size}×{cfg.image_size} frame and its 80×16 mel chunk (transposed convs "
                         "per output position, as the Wav2Lip compression paper counts)",
            "stages": {"down": face_ids, "mid": None, "up": dec_ids}, "skips": skips, "unit_word": "block",
            "widths": base_widths(cfg), "residual_blocks": len(residual_ids(cfg)),
            "presets": {name: self._preset_fits(cfg, name) is None for name in PRESETS},
            "preset_notes": {name: self._preset_fits(cfg, name) or PRESETS[name] for name in PRESETS},
            "nota_compatible": nargs, "steps": STEPS,
            "rules": "removing a residual block makes its output its input; nef/naf/ndf.f{j} remove j/8 of every "
                     "channel group of the face encoder / audio encoder / decoder, BLOCK.f{j} j/8 of one group's "
                     "filters (lowest mean |w|·|γ| first; the narrower width wins)",
        }
        return UnitGraph(FAMILY, units, edges, attrs)

    def _width_units(self, model: LoadedModel) -> list[Unit]:
        """nef/naf/ndf and their eighths: params and MACs each eighth saves (the cut from j−1 to j eighths)."""
        cfg = model.config
        base_rows = layer_table(cfg)
        base_p, base_m = sum(r["params"] for r in base_rows), sum(r["macs"] for r in base_rows)
        widths = base_widths(cfg)
        out = []
        for part, label in PART_LABEL.items():
            out.append(Unit(part, "width", f"{label} · {widths[part]}", params=0, macs=0,
                            attrs={"cells": "children", "part": P.PARTS[part], "width": widths[part]}))
            prev_p, prev_m, prev_id = base_p, base_m, None
            for j in range(1, STEPS):
                c = P.new_config(cfg, set(), P.scaled_widths(cfg, {part: j}))
                rows = layer_table(c)
                p, m = sum(r["params"] for r in rows), sum(r["macs"] for r in rows)
                uid = f"{part}.f{j}"
                attrs = {"fraction": j / STEPS, "part": P.PARTS[part], "width_after": base_widths(c)[part]}
                if prev_id:
                    attrs["removes_with"] = [prev_id]
                out.append(Unit(uid, "width_eighth", f"{j}/{STEPS} of every {P.PARTS[part]} width → "
                                f"{base_widths(c)[part]}", parent=part, params=max(0, prev_p - p),
                                macs=max(0, prev_m - m), prunable=True, attrs=attrs))
                prev_p, prev_m, prev_id = p, m, uid
        return out

    def _known(self, model: LoadedModel) -> set[str]:
        return {r["id"] for r in layer_table(model.config)}

    def unit_module(self, model: LoadedModel, unit_id: str) -> nn.Module:
        """The conv block of a block unit; the Sequentials of a stage; for a width eighth, every conv of its part."""
        m: Wav2Lip = model.module
        if unit_id in self._known(model):
            if unit_id == "out.1":
                return m.output_block[1]
            return P.conv_of(m, unit_id)
        if re.match(r"^face\.\d+$", unit_id):
            return m.face_encoder_blocks[int(unit_id.split(".")[1])]
        if re.match(r"^dec\.\d+$", unit_id):
            return m.face_decoder_blocks[int(unit_id.split(".")[1])]
        if unit_id == "audio":
            return m.audio_encoder
        if unit_id == "out":
            return m.output_block
        w = WIDTH_ID.match(unit_id) or re.match(r"^(nef|naf|ndf)$", unit_id)
        if w:
            part = w.group(1)
            gids = [g for g in P.groups(model.config) if P.part_of_group(g, model.config) == part]
            return nn.ModuleList([P.conv_of(m, b) for g in gids for b in P.groups(model.config)[g]])
        raise SlimError(f"unknown unit '{unit_id}'", hint="`slimgui inspect MODEL` lists the unit ids")

    # -- plans ---------------------------------------------------------------------------------------------------------
    def removal(self, model: LoadedModel, remove: list[str]) -> tuple[set[str], dict[str, int]]:
        """(residual blocks dropped, {channel group: its new width}) of a list of unit ids."""
        cfg = model.config
        res = set(residual_ids(cfg))
        gids = P.groups(cfg)
        drop: set[str] = set()
        fr: dict[str, int] = {}
        cut: dict[str, int] = {}
        for uid in remove:
            if uid in res:
                drop.add(uid)
                continue
            w = WIDTH_ID.match(uid)
            if w and 1 <= int(w.group(2)) < STEPS:
                fr[w.group(1)] = max(fr.get(w.group(1), 0), int(w.group(2)))
                continue
            g = GROUP_ID.match(uid)
            if g and g.group(1) in gids:
                counts = dict(steps(P.group_width(cfg, g.group(1))))
                if int(g.group(2)) in counts:
                    cut[g.group(1)] = max(cut.get(g.group(1), 0), counts[int(g.group(2))])
                    continue
            if uid in self._known(model) or re.match(r"^(?:(?:face|dec)\.\d+|audio|out|nef|naf|ndf)$", uid):
                raise SlimError(f"unit '{uid}' cannot be removed",
                                hint="remove residual blocks (their ids are marked residual in `slimgui inspect`) or "
                                     "width eighths (nef.f1 … ndf.f7)")
            raise SlimError(f"unknown unit '{uid}'", hint="`slimgui inspect MODEL` lists the unit ids")
        widths = P.scaled_widths(cfg, fr)
        for g, c in cut.items():
            widths[g] = min(widths.get(g, P.group_width(cfg, g)), P.group_width(cfg, g) - c)
        return drop, widths

    def apply_plan(self, model: LoadedModel, plan: PruningPlan, *, copy: bool = True) -> LoadedModel:
        if not model.has_weights:
            raise SlimError("a generator opened without weights cannot be pruned")
        refuse_abconv(model.module, "pruned by channel")
        drop, widths = self.removal(model, list(plan.remove))
        keep = P.keep_lists(model.module, widths)
        module = P.prune(model.module, drop, keep)
        module.config.extra = {"kept": {g: list(v) for g, v in keep.items()}, "dropped": sorted(drop),
                               "parent": model.config.to_json() | {"extra": {}}}
        notes = []
        if drop:
            notes.append(f"{len(drop)} residual blocks removed (of {len(residual_ids(model.config))})")
        for part in PART_LABEL:
            before, after = base_widths(model.config)[part], base_widths(module.config)[part]
            if before != after:
                notes.append(f"{PART_LABEL[part]}: {before} → {after}")
        narrowed = [g for g in widths if widths[g] != P.group_width(model.config, g)]
        if narrowed:
            notes.append(f"{len(narrowed)} channel groups narrowed (the least important filters by mean |w|·|γ|)")
        nargs = nota_args(module.config)
        if nargs:
            notes.append(f"the result is NotaWav2Lip(nef={nargs['nef']}, naf={nargs['naf']}, ndf={nargs['ndf']}); "
                         f"{NOTA} loads into nota-wav2lip's class")
        if isinstance(getattr(plan, "meta", None), dict):
            plan.meta["notes"] = list(notes)
        extra = {"notes": notes, "demo": model.extra.get("demo"), "expert": model.extra.get("expert"), "kept": keep,
                 "dropped": sorted(drop)}
        return LoadedModel(FAMILY, model.adapter, model.source, module, module.config, has_weights=True, impl=self,
                           extra=extra)

    @staticmethod
    def _preset_fits(cfg: Wav2LipConfig, name: str) -> str | None:
        if name not in PRESETS:
            return f"unknown preset '{name}'"
        if name == "no-residual" and not residual_ids(cfg):
            return "this generator has no residual blocks left"
        return None

    def preset_plan(self, model: LoadedModel, preset: str) -> PruningPlan:
        why = self._preset_fits(model.config, preset)
        if why:
            raise SlimError(why, hint=f"presets: {', '.join(PRESETS)}")
        res = residual_ids(model.config)
        if preset == "nota":
            remove = res + ["nef.f6", "naf.f6", "ndf.f6"]
        elif preset == "no-residual":
            remove = res
        else:
            remove = ["nef.f4", "naf.f4", "ndf.f4"]
        return PruningPlan(remove=remove, model=model.source, meta={"preset": preset})

    def width_variant(self, model: LoadedModel, target_params: int) -> LoadedModel:
        """The generator with every residual block kept and the same eighth of nef, naf and ndf removed, the eighth
        whose parameter count comes closest to ``target_params`` (the benchmark's equal-size baseline for a plan
        that removed residual blocks)."""
        cfg = model.config
        best = None
        for j in range(STEPS):
            c = P.new_config(cfg, set(), P.scaled_widths(cfg, {p: j for p in P.PARTS}))
            n = sum(r["params"] for r in layer_table(c))
            if best is None or abs(n - target_params) < abs(best[0] - target_params):
                best = (n, j)
        remove = [f"{p}.f{best[1]}" for p in P.PARTS] if best[1] else []
        return self.apply_plan(model, PruningPlan(remove=remove, model=model.source,
                                                  meta={"width_variant": f"{best[1]}/{STEPS} of every width"}))

    # -- saving --------------------------------------------------------------------------------------------------------
    def save(self, model: LoadedModel, out_dir: str) -> str:
        """``wav2lip.pth`` ({"state_dict", "global_step", "global_epoch"}: what Wav2Lip's inference and training
        load, with the matching class), the same as ``wav2lip.safetensors``, ``nota_wav2lip.pth`` (a plain state
        dict, as nota-wav2lip loads it) when NotaWav2Lip builds the generator, ``slimgui_wav2lip.json`` (every
        block's width, stride and residual flag, and nef/naf/ndf) and ``slimgui_wav2lip.py`` (the class, torch only)."""
        from safetensors.torch import save_file

        if not model.has_weights:
            raise SlimError("a generator opened without weights cannot be saved")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
        torch.save({"state_dict": state, "global_step": 0, "global_epoch": 0}, out / WEIGHTS)
        save_file(state, str(out / SAFE), metadata={"format": "pt"})
        cfg: Wav2LipConfig = model.module.config
        ab = abconv_layers(model.module)  # convolutions replaced by ABConv: their shared kernels are stored
        nargs = nota_args(cfg) if not ab else None  # nota-wav2lip's class has no ABConv layer
        if nargs:
            torch.save(state, out / NOTA)
        doc = {"kind": "wav2lip", "config": cfg.to_json(), "weights": SAFE, "widths": base_widths(cfg),
               "residual_blocks": len(residual_ids(cfg)), "architecture": name_of(cfg), "nota": nargs,
               "format": "Wav2Lip state dict (Rudrabha/Wav2Lip keys); wav2lip.pth as Wav2Lip's checkpoints, "
                         "nota_wav2lip.pth as nota-wav2lip's", "demo": model.extra.get("demo"),
               "expert": _expert_path(model)}
        if ab:
            doc["abconv"] = ab
            doc["format"] += "; the abconv layers hold slimgui.core.abconv.ABConv2d kernels (L.conv.weight)"
        (out / probe.CONFIG).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        shutil.copy(Path(__file__).parent / "modeling.py", out / MODELING_COPY)
        return str(out)

    # -- data ------------------------------------------------------------------------------------------------------------
    def default_data(self, model: LoadedModel) -> str | None:
        """The demo's held-out talking-face clips, for the demo and the generators made from it."""
        if not model.extra.get("demo") and origin_with(model.source, "slimgui_demo.json") is None:
            return None
        return "demo:wav2lip"

    def calibration_batches(self, model: LoadedModel, data: Any) -> list[dict[str, torch.Tensor]]:
        """``{"mel", "face", "target"}`` batches of frames of the talking-face data (a folder of videos with sound,
        or the demo's clips)."""
        from slimgui.core.data import CalibrationData

        from .data import clips_for, frame_batches

        spec = data if isinstance(data, CalibrationData) else (CalibrationData(str(data)) if data else None)
        path = spec.path if spec is not None else self.default_data(model)
        if path is None:
            raise SlimError("this criterion needs talking-face videos",
                            hint="pass --data FOLDER (videos of one speaking face, with their sound)")
        clips = clips_for(path, split="test")
        return frame_batches(clips, samples=spec.samples if spec else 32, batch=spec.batch_size if spec else 16)

    def loss(self, model: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """L1 of the generated frames to the real ones (Wav2Lip's reconstruction term)."""
        return (model.module(batch["mel"], batch["face"]) - batch["target"]).abs().mean()

    def bench_runner(self, model: LoadedModel, batch: int, options: Any, mode: str) -> BenchRun | None:
        if mode != "forward":
            return None
        s = model.config.image_size
        g = torch.Generator().manual_seed(0)
        face = torch.rand(batch, 6, s, s, generator=g)
        mel = torch.randn(batch, 1, 80, 16, generator=g)
        module = model.module.eval()

        def run():
            with torch.no_grad():
                module(mel, face)
        return BenchRun("forward", run, items=batch, label="frames")

    def describe_result(self, model: LoadedModel) -> dict[str, Any]:
        cfg = model.config
        b = base_widths(cfg)
        return {"architecture": name_of(cfg), "base widths (nef/naf/ndf)": f"{b['nef']}/{b['naf']}/{b['ndf']}",
                "residual blocks": len(residual_ids(cfg)), "frame": f"{cfg.image_size}×{cfg.image_size}",
                "MACs per frame": f"{sum(r['macs'] for r in layer_table(cfg)):,}",
                "ABConv layers": describe_abconv(model.module)}


def _expert_path(model: LoadedModel) -> str | None:
    """The SyncNet expert beside the model (the demo's), as an absolute path, if any."""
    e = model.extra.get("expert")
    if not e:
        return None
    p = Path(e)
    if not p.is_absolute():
        src = Path(model.source)
        p = (src if src.is_dir() else src.parent) / e
    return str(p.resolve()) if p.exists() else None
