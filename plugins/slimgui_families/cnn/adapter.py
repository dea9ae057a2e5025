"""The cnn adapter: opens a folder with ``cnn.json`` + ``model.safetensors`` (or a bare torchvision-layout state
dict, its config inferred from the shapes), draws the network as stem / blocks (each with its convolutions) / head,
removes whole blocks (those whose output has their input's shape), saves the same layout back — ABConv layers
included (``cnn.json``'s ``abconv``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from slimgui.core.abconv import describe_abconv
from slimgui.core.errors import SlimError
from slimgui.core.graph import Unit, UnitGraph
from slimgui.core.model import LoadedModel
from slimgui.core.plugins import ModelAdapter

from . import modeling as M


def _load_weights(net: nn.Module, file: Path, where: str) -> None:
    from safetensors.torch import load_file

    try:
        state = load_file(str(file))
    except Exception as exc:
        raise SlimError(f"{where}: {file.name} is not a readable safetensors file ({type(exc).__name__})") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise SlimError(f"{where}: the weights do not fit the config ({(first[1] if len(first) > 1 else first[0]).strip()[:160]})",
                        hint="the config's widths and blocks must match the state dict") from None


def abconv_layers(net: nn.Module) -> dict[str, int]:
    """{layer: fold} of the network's ABConv layers (core's, shared with the other conv families)."""
    from slimgui.core.abconv import abconv_layers as core_abconv_layers

    return core_abconv_layers(net)


class CnnAdapter(ModelAdapter):
    family = M.FAMILY

    def load(self, path: str, *, progress=None, cancel=None, match: Any = None, **_: Any) -> LoadedModel:
        p = Path(path)
        notes = []
        if (p / M.CONFIG).is_file() if p.is_dir() else False:
            doc = match if isinstance(match, dict) else None
            if doc is None:
                from slimgui.core.io import MAX_CONFIG_BYTES, read_json_file

                doc = read_json_file(p / M.CONFIG, M.CONFIG, limit=MAX_CONFIG_BYTES)
            cfg = M.check_config(doc, str(p))
            weights = p / M.WEIGHTS
            if not weights.is_file():
                raise SlimError(f"{p}: {M.WEIGHTS} is missing", hint="a cnn folder holds cnn.json and model.safetensors")
        else:
            from safetensors.torch import load_file

            weights = p / M.WEIGHTS if p.is_dir() else p
            cfg = M.check_config(M.infer_config(load_file(str(weights)), str(p)), str(p))
            notes.append("config inferred from the state dict's shapes (strides of depthwise layers are not stored: "
                         "1 assumed)" if cfg["arch"] == "mobilenetv1" else "config inferred from the state dict's shapes")
        net = M.build(cfg)
        _load_weights(net, weights, str(p))
        return LoadedModel(family=M.FAMILY, adapter="cnn", source=str(p), module=net.eval(), config=cfg, impl=self,
                           extra={"notes": notes, "made_from": cfg.get("made_from")})

    # -- graph ---------------------------------------------------------------------------------------------------
    def _macs(self, model: LoadedModel) -> dict[str, int]:
        """MACs per image of every conv / linear module, from one forward at the config's image size."""
        macs: dict[str, int] = {}
        handles = []
        for name, mod in model.module.named_modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                def hook(m, args, out, name=name):
                    per = (m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                           if isinstance(m, nn.Conv2d) else m.in_features)
                    macs[name] = macs.get(name, 0) + out[0].numel() * per  # per image (batch 1)
                handles.append(mod.register_forward_hook(hook))
        cfg = model.config
        try:
            with torch.no_grad():
                model.module.eval()(torch.zeros(1, cfg["in_channels"], cfg["image_size"], cfg["image_size"]))
        finally:
            for h in handles:
                h.remove()
        return macs

    def to_graph(self, model: LoadedModel) -> UnitGraph:
        net = model.module
        macs = self._macs(model)
        ab = abconv_layers(net)

        def count(mod: nn.Module) -> int:
            return sum(p.numel() for p in mod.parameters())

        def conv_label(name: str, mod: nn.Module) -> str:
            inner = getattr(mod, "conv", mod)
            k = "×".join(map(str, inner.kernel_size))
            kind = "depthwise " if getattr(inner, "groups", 1) > 1 else ""
            extra = f" · ABConv fold {ab[name]}" if name in ab else ""
            return f"{name.split('.')[-1]} {kind}{k} {mod.in_channels}→{mod.out_channels}{extra}"

        def conv_units(prefix: str, parent: str) -> list[Unit]:
            out = []
            for name, mod in net.named_modules():
                if not name.startswith(prefix + ".") and name != prefix:
                    continue
                if isinstance(mod, nn.Conv2d) and not any(name.startswith(a + ".") for a in ab) or name in ab:
                    out.append(Unit(name, "conv", conv_label(name, mod), parent=parent, params=count(mod),
                                    macs=sum(v for k, v in macs.items() if k == name or k.startswith(name + ".")),
                                    attrs={"abconv_fold": ab[name]} if name in ab else {}))
            return out

        units: list[Unit] = []
        stem = "conv1" if isinstance(net, M.ResNet) else "stem"
        stem_mods = [net.conv1, net.bn1] if isinstance(net, M.ResNet) else [net.stem]
        units.append(Unit("stem", "stem", "Stem", params=sum(count(m) for m in stem_mods),
                          macs=sum(v for k, v in macs.items() if k == stem or k.startswith(stem + "."))))
        units += conv_units(stem, "stem")
        for name, block in M.blocks_of(net):
            inner = block.conv1 if isinstance(block, M.BasicBlock) else block.dw
            conv = inner.conv if hasattr(inner, "conv") else inner
            label = f"{'Residual' if isinstance(block, M.BasicBlock) else 'Depthwise-separable'} block {name}"
            out_c = block.conv2.out_channels if isinstance(block, M.BasicBlock) else block.pw.out_channels
            stride = conv.stride[0]
            size = f" · {out_c} ch" + (" · stride 2" if stride == 2 else "")
            ok = M.removable(block)
            units.append(Unit(name, "block", label + size, params=count(block),
                              macs=sum(v for k, v in macs.items() if k.startswith(name + ".")), prunable=ok,
                              attrs={} if ok else {"note": "changes the width or resolution: it cannot be removed"}))
            units += conv_units(name, name)
        units.append(Unit("fc", "head", f"Classifier {net.fc.in_features}→{net.fc.out_features}",
                          params=count(net.fc), macs=macs.get("fc", 0)))
        top = [u.id for u in units if u.parent is None]
        return UnitGraph(M.FAMILY, units, edges=list(zip(top, top[1:])),
                         attrs={"layout": "stack", "macs_per": "image", "total_params": count(net),
                                "total_macs": sum(macs.values()), "abconv": ab})

    def unit_module(self, model: LoadedModel, unit_id: str) -> Any:
        net = model.module
        if unit_id == "stem":
            return net.stem if isinstance(net, M.MobileNetV1) else nn.ModuleList([net.conv1, net.bn1])
        if unit_id == "fc":
            return net.fc
        try:
            return net.get_submodule(unit_id)
        except AttributeError:
            raise SlimError(f"unknown unit '{unit_id}'", hint="`slimgui inspect MODEL` lists the unit ids") from None

    # -- plans and files --------------------------------------------------------------------------------------
    def apply_plan(self, model: LoadedModel, plan: Any, *, copy: bool = True) -> LoadedModel:
        names = {n for n, _ in M.blocks_of(model.module)}
        bad = [u for u in plan.remove if u not in names]
        if bad:
            raise SlimError(f"unit(s) {', '.join(bad)} are not blocks of this network", hint="remove whole blocks")
        fixed = [u for u in plan.remove if not M.removable(model.module.get_submodule(u))]
        if fixed:
            raise SlimError(f"block(s) {', '.join(fixed)} change the width or resolution and cannot be removed")
        net, cfg = M.without_blocks(model.module, model.config, set(plan.remove))
        return LoadedModel(family=M.FAMILY, adapter=model.adapter, source=model.source, module=net.eval(), config=cfg,
                           impl=self, extra={"plan": plan, "made_from": model.source})

    def save(self, model: LoadedModel, out_dir: str) -> str:
        from safetensors.torch import save_file

        from slimgui.core.io import atomic_file, atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        cfg = dict(model.config)
        cfg["abconv"] = abconv_layers(model.module)
        if model.extra.get("made_from"):
            cfg["made_from"] = str(model.extra["made_from"])
        with atomic_file(out / M.WEIGHTS) as tmp:
            save_file({k: v.detach().contiguous() for k, v in model.module.state_dict().items()}, str(tmp))
        atomic_write_text(out / M.CONFIG, json.dumps(cfg, indent=1) + "\n")
        return str(out)

    def default_data(self, model: LoadedModel) -> str | None:
        return None

    def bench_runner(self, model: LoadedModel, batch: int, options: Any, mode: str):
        from slimgui.core.bench import BenchRun

        if mode != "forward":
            return None
        cfg = model.config
        x = torch.rand(batch, cfg["in_channels"], cfg["image_size"], cfg["image_size"],
                       generator=torch.Generator().manual_seed(0))
        net = model.module.eval()

        def run():
            with torch.no_grad():
                net(x)
        return BenchRun("forward", run, items=batch, label="forward pass")

    def describe_result(self, model: LoadedModel) -> dict[str, Any]:
        cfg = model.config
        return {"architecture": cfg["arch"], "image size": f"{cfg['image_size']}×{cfg['image_size']}",
                "ABConv layers": describe_abconv(model.module)}
