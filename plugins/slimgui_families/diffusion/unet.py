"""The U-Net's structure: its unit graph, BK-SDM presets, physical block removal and bypassing.

What a diffusers U-Net can lose while staying a diffusers U-Net (so that ``from_pretrained`` loads it):

- a **layer** of a level: ResNet block j (and its attention block) of down stage i, together with layer j of
  the mirrored up stage (diffusers gives each up stage one layer more than its down stage, so the two go
  together, as in BK-SDM where ``layers_per_block`` drops from 2 to 1).  Layer 0 changes the channel
  count and the last up layer takes the skip from the level above, so layers 1..L-1 are removable;
- the **mid block** (``mid_block_type: null``), as BK-SDM-Small does;
- the **innermost level** (the deepest down stage and the first up stage), as BK-SDM-Tiny does, when the
  two deepest stages have the same width (true of SD 1.x/2.x).

Unit ids are module paths (``down_blocks.1.layers.1`` names the pair ``down_blocks.1.resnets.1`` +
``down_blocks.1.attentions.1``), so a score or a plan reads like the model's own state dict.  The graph
carries ``attrs["layout"] = "u"`` (the app's U layout) and the stage lists, so views draw it as a U with skip connections.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from slimgui.core.errors import SlimError
from slimgui.core.graph import Unit, UnitGraph

PRESETS = {
    "bk-base": "one ResNet/attention pair per down stage, two per up stage (layers_per_block 1)",
    "bk-small": "bk-base without the mid block",
    "bk-tiny": "bk-small without the innermost down stage and its matching up stage",
}
# per-down-stage config entries that may be lists (one value per down stage)
PER_STAGE_KEYS = ("layers_per_block", "attention_head_dim", "num_attention_heads", "transformer_layers_per_block",
                  "cross_attention_dim", "only_cross_attention", "down_block_types", "block_out_channels")


# What a U-Net config may ask for (lowest, highest).  Generous for real models (SD 1.x/2.x/XL have 3-4 levels of
# 320-1280 channels, latents of 64-128, DDPM pixel U-Nets up to 1024); outside is a broken or hostile config,
# refused before diffusers builds anything.
MAX_LEVELS = 16
CHANNELS = (1, 16_384)
LAYERS_PER_BLOCK = (1, 64)
SAMPLE_SIZE = (1, 4096)
IO_CHANNELS = (1, 1024)
GROUPS = (1, 1024)
CROSS_DIM = (1, 65_536)
HEAD_DIM = (1, 16_384)
CLASS_EMBEDS = (1, 1_000_000)


def _bad(where: str, msg: str) -> SlimError:
    return SlimError(f"{where}: {msg}", hint="repair or replace it with a diffusers UNet2DConditionModel or "
                                             "UNet2DModel config")


def _whole(where: str, key: str, v: Any, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(where, f"{key} must be a whole number, got {v!r:.60}")
    if not lo <= v <= hi:
        raise _bad(where, f"{key} is {v:,}, outside the range SlimGUI accepts ({lo:,} to {hi:,})")
    return v


def _whole_or_list(where: str, key: str, v: Any, bounds: tuple[int, int], n: int, nested: bool = False) -> None:
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise _bad(where, f"{key} has {len(v)} entries for {n} down stages")
        for i, x in enumerate(v):
            if nested and isinstance(x, (list, tuple)):
                for j, y in enumerate(x):
                    _whole(where, f"{key}[{i}][{j}]", y, bounds)
            else:
                _whole(where, f"{key}[{i}]", x, bounds)
    else:
        _whole(where, key, v, bounds)


def _known_block_types() -> tuple[set[str], set[str]] | None:
    """The down and up block type names diffusers' block factories accept (None when they cannot be read)."""
    global _BLOCK_TYPES
    if _BLOCK_TYPES is None:
        try:
            import inspect
            import re

            from diffusers.models.unets import unet_2d_blocks as blocks

            names = [set(re.findall(r'_block_type == "(\w+)"', inspect.getsource(fn)))
                     for fn in (blocks.get_down_block, blocks.get_up_block)]
            _BLOCK_TYPES = (names[0], names[1]) if all(names) else False
        except Exception:  # another diffusers layout: leave the check to diffusers
            _BLOCK_TYPES = False
    return _BLOCK_TYPES or None


_BLOCK_TYPES: Any = None


def validate_config(config: Any, where: str = "the U-Net config") -> None:
    """Check a U-Net config's structure-deciding entries before anything is built: types, lengths and the bounds
    above (block lists, channels divisible by ``norm_num_groups``, sample size, per-stage lists)."""
    if not isinstance(config, dict):
        try:
            config = dict(config)
        except (TypeError, ValueError):
            raise _bad(where, "it is not a JSON object") from None
    cfg = config
    down, up, ch = cfg.get("down_block_types"), cfg.get("up_block_types"), cfg.get("block_out_channels")
    for key, v in (("down_block_types", down), ("up_block_types", up), ("block_out_channels", ch)):
        if not isinstance(v, (list, tuple)) or not v:
            raise _bad(where, f"{key} must be a non-empty list, got {v!r:.60}")
        if len(v) > MAX_LEVELS:
            raise _bad(where, f"{key} has {len(v)} entries; SlimGUI accepts at most {MAX_LEVELS} levels")
    if not len(down) == len(up) == len(ch):
        raise _bad(where, f"down_block_types, up_block_types and block_out_channels have different lengths "
                          f"({len(down)}, {len(up)}, {len(ch)})")
    known = _known_block_types()
    for key, names, ok in (("down_block_types", down, known[0] if known else None),
                           ("up_block_types", up, known[1] if known else None)):
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise _bad(where, f"{key}[{i}] must be a block type name, got {name!r:.60}")
            if ok is not None and name.removeprefix("UNetRes") not in ok:
                raise _bad(where, f"{key}[{i}] names an unknown block type '{name[:60]}'")
    for i, c in enumerate(ch):
        _whole(where, f"block_out_channels[{i}]", c, CHANNELS)
    n = len(down)
    _whole_or_list(where, "layers_per_block", cfg.get("layers_per_block", 2), LAYERS_PER_BLOCK, n)
    size = cfg.get("sample_size")
    if size is not None:
        if isinstance(size, (list, tuple)):
            if len(size) != 2:
                raise _bad(where, f"sample_size must be a number or [height, width], got {size!r:.60}")
            for i, x in enumerate(size):
                _whole(where, f"sample_size[{i}]", x, SAMPLE_SIZE)
        else:
            _whole(where, "sample_size", size, SAMPLE_SIZE)
    for key in ("in_channels", "out_channels"):
        if cfg.get(key) is not None:
            _whole(where, key, cfg[key], IO_CHANNELS)
    groups = cfg.get("norm_num_groups", 32)
    if groups is not None:
        _whole(where, "norm_num_groups", groups, GROUPS)
        odd = [c for c in ch if c % groups]
        if odd:
            raise _bad(where, f"block_out_channels {odd[0]} is not divisible by norm_num_groups {groups}")
    for key, bounds, nested in (("cross_attention_dim", CROSS_DIM, False), ("attention_head_dim", HEAD_DIM, False),
                                ("num_attention_heads", HEAD_DIM, False),
                                ("transformer_layers_per_block", LAYERS_PER_BLOCK, True)):
        if cfg.get(key) is not None:
            _whole_or_list(where, key, cfg[key], bounds, n, nested)
    if cfg.get("num_class_embeds") is not None:
        _whole(where, "num_class_embeds", cfg["num_class_embeds"], CLASS_EMBEDS)
    mid = cfg.get("mid_block_type")
    if mid is not None and not isinstance(mid, str):
        raise _bad(where, f"mid_block_type must be a block type name or null, got {mid!r:.60}")


@dataclass
class UNetShape:
    """The parts of a U-Net config that decide its structure."""

    cls: str
    down_types: list[str]
    up_types: list[str]
    channels: list[int]
    layers: list[int]
    mid: str | None
    sample_size: tuple[int, int]

    @classmethod
    def from_config(cls, config: Any) -> UNetShape:
        cfg = dict(config)
        name = cfg.get("_class_name") or ("UNet2DConditionModel" if "cross_attention_dim" in cfg else "UNet2DModel")
        down = list(cfg.get("down_block_types") or [])
        up = list(cfg.get("up_block_types") or [])
        raw_ch = cfg.get("block_out_channels") or []
        if not down or not isinstance(raw_ch, (list, tuple)) or len(down) != len(up) or len(down) != len(raw_ch):
            raise SlimError("this U-Net config has no matching down_block_types / up_block_types / block_out_channels",
                            hint="SlimGUI opens diffusers UNet2DConditionModel and UNet2DModel configs")
        validate_config(cfg)
        ch = [int(c) for c in raw_ch]
        lpb = cfg.get("layers_per_block", 2)
        layers = [int(lpb)] * len(down) if isinstance(lpb, int) else [int(x) for x in lpb]
        size = cfg.get("sample_size") or 64
        size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        mid = cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn" if name == "UNet2DConditionModel" else "UNetMidBlock2D")
        return cls(name, down, up, ch, layers, mid, size)

    @property
    def levels(self) -> int:
        return len(self.down_types)

    def has_attention(self, block_type: str) -> bool:
        return "Attn" in block_type

    def innermost_removable(self) -> bool:
        return self.levels >= 2 and self.channels[-1] == self.channels[-2]


# -- the graph -------------------------------------------------------------------------------------
def _params(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _sub(module: torch.nn.Module, path: str) -> torch.nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


def count_macs(unet: torch.nn.Module, sample_size: tuple[int, int], context_len: int = 77) -> dict[str, int]:
    """Multiply-accumulates per module path for one sample, counted on the meta device (no weights needed)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = unet.config
    if next(unet.parameters()).device.type == "meta":
        meta = unet
    else:  # the same architecture without weights (no copy of a possibly large model)
        with torch.device("meta"):
            meta = type(unet).from_config(unet.config)
    prefix = type(unet).__name__ + "."
    with torch.device("meta"):
        x = torch.zeros(1, cfg.in_channels, *sample_size)
        t = torch.tensor([10])
        kwargs: dict[str, Any] = {}
        if getattr(cfg, "cross_attention_dim", None):
            dim = cfg.cross_attention_dim
            dim = dim[0] if isinstance(dim, (list, tuple)) else dim
            kwargs["encoder_hidden_states"] = torch.zeros(1, context_len, dim)
        if getattr(cfg, "num_class_embeds", None):
            kwargs["class_labels"] = torch.zeros(1, dtype=torch.long)
        try:
            with FlopCounterMode(display=False, depth=None) as counter, torch.no_grad():
                meta(x, t, **kwargs)
        except Exception:  # an exotic block the counter cannot follow: show parameters only
            return {}
    out = {}
    for name, ops in counter.get_flop_counts().items():
        key = "" if name in ("Global", type(unet).__name__) else name.removeprefix(prefix)
        out[key] = int(sum(ops.values()) // 2)
    return out


def unet_graph(unet: torch.nn.Module, *, context_len: int = 77, family: str = "diffusion",
               extra_params: int = 0) -> UnitGraph:
    """The U-Net as units: stages (down, mid, up), their layers, and each ResNet and attention block."""
    shape = UNetShape.from_config(unet.config)
    n = shape.levels
    macs = count_macs(unet, shape.sample_size, context_len)
    h, w = shape.sample_size
    units: list[Unit] = []
    edges: list[tuple[str, str]] = []

    def unit(uid: str, kind: str, label: str, parent: str | None = None, prunable: bool = False, **attrs) -> Unit:
        u = Unit(uid, kind, label, parent, params=_params(_sub(unet, uid)), macs=macs.get(uid), prunable=prunable,
                 attrs=attrs)
        units.append(u)
        return u

    for uid, label in (("conv_in", "Input conv"), ("time_embedding", "Time embedding")):
        if _sub(unet, uid) is not None:
            unit(uid, "stem", label)
    res = [(max(1, h >> i), max(1, w >> i)) for i in range(n)]
    down_ids, up_ids = [], []
    for i in range(n):
        sid = f"down_blocks.{i}"
        down_ids.append(sid)
        attn = shape.has_attention(shape.down_types[i])
        innermost = i == n - 1 and shape.innermost_removable()
        unit(sid, "down_stage", f"Down {i} · {shape.channels[i]} ch · {res[i][0]}×{res[i][1]}", prunable=innermost,
             stage="down", level=i, channels=shape.channels[i], resolution=list(res[i]), block=shape.down_types[i],
             **({"removes_with": ["up_blocks.0", f"down_blocks.{i - 1}.downsamplers.0"]} if innermost else {}))
        for j in range(shape.layers[i]):
            lid = f"{sid}.layers.{j}"
            removable = 1 <= j < shape.layers[i]
            unit(lid, "layer", f"{'ResNet + attention' if attn else 'ResNet'} {j}", sid, prunable=removable,
                 stage="down", level=i, layer=j, channels=shape.channels[i], resolution=list(res[i]),
                 removes_with=[f"up_blocks.{n - 1 - i}.layers.{j}"])
            unit(f"{sid}.resnets.{j}", "resnet", f"ResNet {j}", lid, stage="down", level=i)
            if attn:
                unit(f"{sid}.attentions.{j}", "attention", f"Attention {j}", lid, stage="down", level=i)
        if _sub(unet, f"{sid}.downsamplers.0") is not None:
            unit(f"{sid}.downsamplers.0", "downsample", "Downsample", sid, stage="down", level=i)
    for u in units:  # a layer's params and MACs are those of its blocks
        if u.kind == "layer":
            kids = [k for k in units if k.parent == u.id]
            u.params = sum(k.params for k in kids)
            u.macs = sum(k.macs or 0 for k in kids) if all(k.macs is not None for k in kids) and kids else None
    mid_id = None
    if _sub(unet, "mid_block") is not None:
        mid_id = "mid_block"
        mid = unet.get_submodule("mid_block")
        unit(mid_id, "mid", f"Mid block · {shape.channels[-1]} ch · {res[-1][0]}×{res[-1][1]}", prunable=True,
             stage="mid", level=n - 1, channels=shape.channels[-1], resolution=list(res[-1]), block=type(mid).__name__)
        for j in range(len(getattr(mid, "resnets", []))):
            unit(f"mid_block.resnets.{j}", "resnet", f"ResNet {j}", mid_id, stage="mid")
        for j in range(len(getattr(mid, "attentions", []) or [])):
            unit(f"mid_block.attentions.{j}", "attention", f"Attention {j}", mid_id, stage="mid")
    for k in range(n):
        sid = f"up_blocks.{k}"
        up_ids.append(sid)
        level = n - 1 - k
        attn = shape.has_attention(shape.up_types[k])
        block = unet.get_submodule(sid)
        unit(sid, "up_stage", f"Up {k} · {shape.channels[level]} ch · {res[level][0]}×{res[level][1]}",
             stage="up", level=level, channels=shape.channels[level], resolution=list(res[level]),
             block=shape.up_types[k], **({"removed_with": "down_blocks." + str(n - 1)} if k == 0 and
                                         shape.innermost_removable() else {}))
        for j in range(len(block.resnets)):
            lid = f"{sid}.layers.{j}"
            partner = f"down_blocks.{level}.layers.{j}" if 1 <= j < shape.layers[level] else None
            kids = [unit(f"{sid}.resnets.{j}", "resnet", f"ResNet {j}", lid, stage="up", level=level)]
            if attn and getattr(block, "attentions", None) is not None and j < len(block.attentions):
                kids.append(unit(f"{sid}.attentions.{j}", "attention", f"Attention {j}", lid, stage="up", level=level))
            lu = Unit(lid, "layer", f"{'ResNet + attention' if attn else 'ResNet'} {j}", sid,
                      params=sum(x.params for x in kids),
                      macs=sum(x.macs or 0 for x in kids) if all(x.macs is not None for x in kids) else None,
                      attrs={"stage": "up", "level": level, "layer": j, "channels": shape.channels[level],
                             "resolution": list(res[level]), **({"removed_with": partner} if partner else {})})
            units.insert(units.index(kids[0]), lu)
        if _sub(unet, f"{sid}.upsamplers.0") is not None:
            unit(f"{sid}.upsamplers.0", "upsample", "Upsample", sid, stage="up", level=level)
    if _sub(unet, "conv_out") is not None:
        head = unit("conv_out", "head", "Output norm + conv")
        norm = _sub(unet, "conv_norm_out")
        head.params += _params(norm)
        if head.macs is not None:
            head.macs += macs.get("conv_norm_out", 0)
    covered = sum(u.params for u in units if u.parent is None)
    if covered < _params(unet):  # class/extra embeddings etc.: shown, never prunable
        units.append(Unit("other", "other", "Other (embeddings)", None, params=_params(unet) - covered))
    # data flow: conv_in → down stages → mid → up stages → conv_out, plus one skip per level
    chain = [u for u in ("conv_in", *down_ids, mid_id, *up_ids, "conv_out") if u and any(x.id == u for x in units)]
    edges += list(zip(chain, chain[1:]))
    skips = [[down_ids[i], up_ids[n - 1 - i]] for i in range(n)]
    edges += [tuple(s) for s in skips]
    total = _params(unet)
    graph = UnitGraph(family, units, edges, attrs={
        "layout": "u", "model_class": shape.cls, "architecture": shape.cls, "total_params": total + extra_params, "unet_params": total,
        "total_macs": macs.get(""), "sample_size": list(shape.sample_size), "context_len": context_len,
        "stages": {"down": down_ids, "mid": mid_id, "up": up_ids}, "skips": skips,
        "presets": {name: preset_fits(shape, name) is None for name in PRESETS},
        "preset_notes": {name: preset_fits(shape, name) or PRESETS[name] for name in PRESETS},
        "keeps_unprunable_units": True})
    return graph


# -- presets and plans -----------------------------------------------------------------------------
def preset_fits(shape: UNetShape, name: str) -> str | None:
    """None when the preset applies to this U-Net, else why not."""
    if name not in PRESETS:
        return f"unknown preset '{name}'"
    if min(shape.layers) < 2:
        return (f"{name} needs at least two ResNet/attention pairs per down stage; this U-Net has "
                f"layers_per_block {shape.layers}")
    if name in ("bk-small", "bk-tiny") and shape.mid is None:
        return f"{name} removes the mid block, and this U-Net has none"
    if name == "bk-tiny" and not shape.innermost_removable():
        return ("bk-tiny removes the innermost stage, which needs the two deepest stages to have the same width; "
                f"this U-Net has block_out_channels {shape.channels}")
    return None


def preset_units(config: Any, name: str) -> list[str]:
    """The unit ids a BK-SDM preset removes from a U-Net with this config."""
    shape = UNetShape.from_config(config)
    why = preset_fits(shape, name)
    if why is not None:
        raise SlimError(why, hint=f"presets: {', '.join(PRESETS)}; or choose units with --remove")
    units = [f"down_blocks.{i}.layers.{j}" for i in range(shape.levels) for j in range(1, shape.layers[i])]
    if name in ("bk-small", "bk-tiny"):
        units.append("mid_block")
    if name == "bk-tiny":
        n = shape.levels - 1
        units = [u for u in units if not u.startswith(f"down_blocks.{n}.")] + [f"down_blocks.{n}"]
    return units


@dataclass
class Removal:
    layers: dict[int, list[int]]  # level -> removed layer indices
    mid: bool
    innermost: bool


def parse_removal(shape: UNetShape, unit_ids: list[str], *, buildable: bool = True) -> Removal:
    """What removing ``unit_ids`` means per level; ``buildable`` also checks that diffusers can build the result."""
    layers: dict[int, list[int]] = {}
    mid = innermost = False
    n = shape.levels
    for uid in unit_ids:
        parts = uid.split(".")
        if uid == "mid_block":
            if shape.mid is None:
                raise SlimError("this U-Net has no mid block to remove")
            mid = True
        elif len(parts) == 2 and parts[0] == "down_blocks" and parts[1] == str(n - 1):
            if not shape.innermost_removable():
                raise SlimError(f"the innermost stage cannot be removed: the two deepest stages differ in width "
                                f"({shape.channels[-2]} vs {shape.channels[-1]} channels)")
            innermost = True
        elif len(parts) == 4 and parts[0] == "down_blocks" and parts[2] == "layers":
            i, j = int(parts[1]), int(parts[3])
            if not (0 <= i < n and 1 <= j < shape.layers[i]):
                raise SlimError(f"'{uid}' cannot be removed: only layers 1..{shape.layers[i] - 1 if 0 <= i < n else '?'} "
                                "of a down stage can go (layer 0 changes the width)")
            layers.setdefault(i, []).append(j)
        else:
            raise SlimError(f"'{uid}' is not a removable U-Net unit",
                            hint="remove down-stage layers (down_blocks.I.layers.J), mid_block or the innermost stage")
    if innermost:
        layers.pop(n - 1, None)
    if buildable and shape.cls == "UNet2DModel" and layers:
        counts = {len(layers.get(i, [])) for i in range(n - (1 if innermost else 0))}
        if len(counts) != 1:
            raise SlimError("UNet2DModel has one layers_per_block for all stages: remove the same number of layers "
                            "from every down stage")
    return Removal({i: sorted(set(js)) for i, js in layers.items()}, mid, innermost)


def student_config(config: Any, removal: Removal) -> dict[str, Any]:
    """The config of the U-Net without the removed units."""
    cfg = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    shape = UNetShape.from_config(config)
    n = shape.levels
    layers = [shape.layers[i] - len(removal.layers.get(i, [])) for i in range(n)]
    if removal.mid:
        cfg["mid_block_type"] = None
    if removal.innermost:
        for key in PER_STAGE_KEYS:
            val = cfg.get(key)
            if isinstance(val, (list, tuple)) and len(val) == n:
                cfg[key] = list(val)[:-1]
        cfg["up_block_types"] = list(cfg["up_block_types"])[1:]
        rev = cfg.get("reverse_transformer_layers_per_block")
        if isinstance(rev, (list, tuple)) and len(rev) == n:
            cfg["reverse_transformer_layers_per_block"] = list(rev)[1:]
        layers = layers[:-1]
    if shape.cls == "UNet2DModel" or len(set(layers)) == 1:
        cfg["layers_per_block"] = layers[0]
    else:
        cfg["layers_per_block"] = layers
    return cfg


def weight_map(shape: UNetShape, removal: Removal) -> dict[str, str]:
    """Student module prefix -> teacher module prefix, for every block that moved."""
    n = shape.levels
    mapping: dict[str, str] = {}
    kept_levels = n - 1 if removal.innermost else n
    for i in range(kept_levels):
        keep = [j for j in range(shape.layers[i]) if j not in removal.layers.get(i, [])]
        for new, old in enumerate(keep):
            for part in ("resnets", "attentions"):
                mapping[f"down_blocks.{i}.{part}.{new}"] = f"down_blocks.{i}.{part}.{old}"
    shift = 1 if removal.innermost else 0
    for k_new in range(kept_levels):
        k_old = k_new + shift
        level = n - 1 - k_old
        keep = [j for j in range(shape.layers[level] + 1) if j not in removal.layers.get(level, [])]
        for new, old in enumerate(keep):
            for part in ("resnets", "attentions"):
                mapping[f"up_blocks.{k_new}.{part}.{new}"] = f"up_blocks.{k_old}.{part}.{old}"
        for part in ("upsamplers",):
            mapping[f"up_blocks.{k_new}.{part}"] = f"up_blocks.{k_old}.{part}"
    return mapping


def stage_map(shape: UNetShape, removal: Removal) -> dict[str, str]:
    """Student stage -> teacher stage whose output features the student's should match (BK-SDM's feature KD)."""
    n = shape.levels
    kept = n - 1 if removal.innermost else n
    out = {f"down_blocks.{i}": f"down_blocks.{i}" for i in range(kept)}
    if not removal.mid and shape.mid is not None:
        out["mid_block"] = "mid_block"
    shift = 1 if removal.innermost else 0
    out.update({f"up_blocks.{k}": f"up_blocks.{k + shift}" for k in range(kept)})
    return out


def _teacher_key(key: str, mapping: dict[str, str]) -> str:
    best = ""
    for prefix in mapping:
        if (key == prefix or key.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return mapping[best] + key[len(best):] if best else key


def remove_units(unet: torch.nn.Module, unit_ids: list[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A physically smaller U-Net of the same class, each kept block initialised from its source."""
    shape = UNetShape.from_config(unet.config)
    removal = parse_removal(shape, unit_ids)
    cfg = student_config(unet.config, removal)
    cls = type(unet)
    try:
        student = cls(**{k: v for k, v in cfg.items() if k in _init_keys(cls)})
    except Exception as exc:
        raise SlimError(f"diffusers cannot build the slimmed U-Net ({type(exc).__name__}: {str(exc)[:160]})") from None
    mapping = weight_map(shape, removal)
    teacher_sd = unet.state_dict()
    new_sd = {}
    for key, value in student.state_dict().items():
        src = _teacher_key(key, mapping)
        if src not in teacher_sd or teacher_sd[src].shape != value.shape:
            raise SlimError(f"cannot initialise {key} from the original ({src} is "
                            f"{'missing' if src not in teacher_sd else tuple(teacher_sd[src].shape)})")
        new_sd[key] = teacher_sd[src]
    student.load_state_dict(new_sd, strict=True)
    dtype = next(unet.parameters()).dtype
    if next(student.parameters()).dtype != dtype:
        student.to(dtype=dtype)
    info = {"removed": list(unit_ids), "modules": mapping, "stages": stage_map(shape, removal),
            "removal": {"layers": {str(k): v for k, v in removal.layers.items()}, "mid": removal.mid,
                        "innermost": removal.innermost},
            "params_before": _params(unet), "params_after": _params(student)}
    return student, info


def _init_keys(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def mapping_json(info: dict[str, Any]) -> str:
    return json.dumps({"schema_version": 1, "kind": "unet-map", **info}, indent=1)


# -- bypassing (for scoring) -----------------------------------------------------------------------
def _hidden(args: tuple, kwargs: dict, name: str = "hidden_states"):
    if args:
        return args[0]
    for key in (name, "hidden_states", "input_tensor", "sample"):
        if key in kwargs:
            return kwargs[key]
    raise RuntimeError("cannot find the block's input")


def _like(output: Any, h: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return h
    if isinstance(output, tuple):
        return (h, *output[1:])
    if hasattr(output, "sample"):
        return type(output)(sample=h)
    return h


@contextmanager
def bypassed(unet: torch.nn.Module, unit_id: str) -> Iterator[None]:
    """Run ``unet`` as if ``unit_id`` were removed: its blocks pass their input through (identity)."""
    shape = UNetShape.from_config(unet.config)
    removal = parse_removal(shape, [unit_id], buildable=False)
    n = shape.levels
    handles = []

    def identity(module, args, kwargs, output):
        return _like(output, _hidden(args, kwargs))

    def up_resnet(module, args, kwargs, output):  # input is cat(hidden, skip): keep the hidden part
        return _hidden(args, kwargs)[:, : output.shape[1]]

    def down_stage(module, args, kwargs, output):  # (hidden, skips): everything passes through
        h = _hidden(args, kwargs)
        return h, tuple(h for _ in output[1])

    targets: list[tuple[str, Any]] = []
    for i, js in removal.layers.items():
        for j in js:
            targets.append((f"down_blocks.{i}.resnets.{j}", identity))
            targets.append((f"down_blocks.{i}.attentions.{j}", identity))
            targets.append((f"up_blocks.{n - 1 - i}.resnets.{j}", up_resnet))
            targets.append((f"up_blocks.{n - 1 - i}.attentions.{j}", identity))
    if removal.mid:
        targets.append(("mid_block", identity))
    if removal.innermost:
        targets += [(f"down_blocks.{n - 1}", down_stage), (f"down_blocks.{n - 2}.downsamplers.0", identity),
                    ("up_blocks.0", identity)]
    for path, fn in targets:
        module = _sub(unet, path)
        if module is not None:
            handles.append(module.register_forward_hook(fn, with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
