"""Plain CNNs with torchvision's state-dict layout: ResNet (BasicBlock) and MobileNetV1, built from a small config.

ResNet keys are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.bn1``, ``layer1.0.downsample.0``,
``fc`` …), so a torchvision ``resnet18`` / ``resnet34`` state dict loads with ``stem="imagenet"`` (7×7 stride-2
conv and max-pool) and the widths ``[64, 128, 256, 512]``; ``stem="small"`` (3×3 stride-1, no pool) suits small
images.  MobileNetV1 (no torchvision model exists) uses ``stem.conv``/``stem.bn`` and ``blocks.N.dw``, ``.dw_bn``,
``.pw``, ``.pw_bn`` (a depthwise 3×3 then a pointwise 1×1, each with batch norm and ReLU), then ``fc``.

The config (``cnn.json``)::

    {"family": "cnn", "arch": "resnet" | "mobilenetv1", "in_channels": 1, "num_classes": 10, "image_size": 16,
     "stem": "small" | "imagenet", "stem_width": 16,
     "stages": [[width, [stride of each block]], ...],      # resnet: a stage's blocks
     "blocks": [[out_channels, stride], ...],                # mobilenetv1: depthwise-separable blocks
     "abconv": {"layer1.0.conv2": 4, ...}}                   # convolutions replaced by ABConv (fold g)
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from slimgui.core.errors import SlimError

FAMILY = "cnn"
CONFIG = "cnn.json"
WEIGHTS = "model.safetensors"
ARCHS = ("resnet", "mobilenetv1")


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (same attribute names)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        stem, w0 = cfg.get("stem", "small"), int(cfg["stem_width"])
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(cfg["in_channels"], w0, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(cfg["in_channels"], w0, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(w0)
        self.relu = nn.ReLU(inplace=True)
        c = w0
        self.stage_names = []
        for i, (width, strides) in enumerate(cfg["stages"], 1):
            blocks = []
            for s in strides:
                blocks.append(BasicBlock(c, int(width), int(s)))
                c = int(width)
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            self.stage_names.append(f"layer{i}")
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, cfg["num_classes"])

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class DepthwiseSeparable(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.dw = nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False)
        self.dw_bn = nn.BatchNorm2d(c_in)
        self.pw = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = torch.relu(self.dw_bn(self.dw(x)))
        return torch.relu(self.pw_bn(self.pw(x)))


class MobileNetV1(nn.Module):
    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        w0 = int(cfg["stem_width"])
        stride = 2 if cfg.get("stem") == "imagenet" else 1
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(cfg["in_channels"], w0, 3, stride, 1, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(w0))
        self.stem.add_module("relu", nn.ReLU(inplace=True))
        c, blocks = w0, []
        for width, s in cfg["blocks"]:
            blocks.append(DepthwiseSeparable(c, int(width), int(s)))
            c = int(width)
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, cfg["num_classes"])

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.blocks(self.stem(x))), 1))


def check_config(cfg: Any, where: str) -> dict[str, Any]:
    """The config, checked: one SlimError naming the first field that is wrong."""
    if not isinstance(cfg, dict):
        raise SlimError(f"{where}: {CONFIG} is not a JSON object")
    if cfg.get("arch") not in ARCHS:
        raise SlimError(f"{where}: 'arch' must be one of {', '.join(ARCHS)}, got {cfg.get('arch')!r}")

    def whole(key: str, lo: int, hi: int, value: Any = None) -> int:
        v = cfg.get(key) if value is None else value
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise SlimError(f"{where}: '{key}' must be a whole number from {lo} to {hi}, got {v!r}")
        return v

    for key, lo, hi in (("in_channels", 1, 64), ("num_classes", 1, 100_000), ("image_size", 4, 4096),
                        ("stem_width", 1, 4096)):
        whole(key, lo, hi)
    if cfg.get("stem", "small") not in ("small", "imagenet"):
        raise SlimError(f"{where}: 'stem' must be 'small' or 'imagenet'")
    if cfg["arch"] == "resnet":
        stages = cfg.get("stages")
        if not isinstance(stages, list) or not stages:
            raise SlimError(f"{where}: a resnet needs 'stages', a list of [width, [strides]]")
        for st in stages:
            if not (isinstance(st, list) and len(st) == 2 and isinstance(st[1], list)):
                raise SlimError(f"{where}: each stage is [width, [stride of each block]], got {st!r}"[:200])
            whole("stage width", 1, 4096, st[0])
            for s in st[1]:
                whole("stride", 1, 2, s)
    else:
        blocks = cfg.get("blocks")
        if not isinstance(blocks, list) or not blocks:
            raise SlimError(f"{where}: a mobilenetv1 needs 'blocks', a list of [out_channels, stride]")
        for b in blocks:
            if not (isinstance(b, list) and len(b) == 2):
                raise SlimError(f"{where}: each block is [out_channels, stride], got {b!r}"[:200])
            whole("block width", 1, 4096, b[0])
            whole("stride", 1, 2, b[1])
    ab = cfg.get("abconv", {})
    if not isinstance(ab, dict) or not all(isinstance(k, str) and isinstance(v, int) and v >= 1 for k, v in ab.items()):
        raise SlimError(f"{where}: 'abconv' must map layer names to fold factors (whole numbers)")
    return cfg


def build(cfg: dict[str, Any]) -> nn.Module:
    """The network of a (checked) config, ABConv layers included (initialised; weights come from the file)."""
    from slimgui.core.abconv import ABConv2d, replace_module

    net = ResNet(cfg) if cfg["arch"] == "resnet" else MobileNetV1(cfg)
    mods = dict(net.named_modules())
    for name, fold in (cfg.get("abconv") or {}).items():
        conv = mods.get(name)
        if not isinstance(conv, nn.Conv2d):
            raise SlimError(f"the config's abconv layer '{name}' is not a convolution of this network")
        replace_module(net, name, ABConv2d.shaped_like(conv, fold))
    return net.eval()


def blocks_of(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, block) of every residual / depthwise-separable block, in order."""
    if isinstance(net, ResNet):
        return [(f"{s}.{i}", b) for s in net.stage_names for i, b in enumerate(getattr(net, s))]
    return [(f"blocks.{i}", b) for i, b in enumerate(net.blocks)]


def removable(block: nn.Module) -> bool:
    """A block whose output has its input's shape (stride 1, same width): the network works without it."""
    if isinstance(block, BasicBlock):
        return block.downsample is None
    if isinstance(block, DepthwiseSeparable):
        return block.dw.stride == (1, 1) and block.dw.in_channels == block.pw.out_channels
    return False


def without_blocks(net: nn.Module, cfg: dict[str, Any], remove: set[str]) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``net`` without the named blocks and its config (layers renumbered as torchvision would)."""
    net = copy.deepcopy(net)
    cfg = copy.deepcopy(cfg)
    renamed: dict[str, str] = {}
    if isinstance(net, ResNet):
        stages = []
        for si, s in enumerate(net.stage_names):
            seq = getattr(net, s)
            keep = [(i, b) for i, b in enumerate(seq) if f"{s}.{i}" not in remove]
            # a stage may lose every block: only blocks that keep the shape are removable, so an empty stage is
            # the identity
            for new, (old, _) in enumerate(keep):
                renamed[f"{s}.{old}."] = f"{s}.{new}."
            setattr(net, s, nn.Sequential(*[b for _, b in keep]))
            stages.append([cfg["stages"][si][0], [cfg["stages"][si][1][i] for i, _ in keep]])
        cfg["stages"] = stages
    else:
        keep = [(i, b) for i, b in enumerate(net.blocks) if f"blocks.{i}" not in remove]
        for new, (old, _) in enumerate(keep):
            renamed[f"blocks.{old}."] = f"blocks.{new}."
        net.blocks = nn.Sequential(*[b for _, b in keep])
        cfg["blocks"] = [cfg["blocks"][i] for i, _ in keep]
    ab = {}
    for name, g in (cfg.get("abconv") or {}).items():
        prefix = next((p for p in renamed if name.startswith(p)), None)
        if prefix is not None:
            ab[renamed[prefix] + name[len(prefix):]] = g
        elif not any(name.startswith(r + ".") for r in remove):
            ab[name] = g
    cfg["abconv"] = ab
    return net, cfg


def infer_config(state: dict[str, Any], where: str) -> dict[str, Any]:
    """The config of a bare torchvision-layout ResNet (BasicBlock) or MobileNetV1 state dict, from its shapes."""
    def shape(key: str) -> list[int]:
        return list(state[key].shape)

    if "conv1.weight" in state and "layer1.0.conv1.weight" in state and "fc.weight" in state:
        if any(k.endswith("conv3.weight") for k in state):
            raise SlimError(f"{where} is a Bottleneck ResNet (resnet50 and larger)",
                            hint="the cnn family reads BasicBlock ResNets (resnet18/34 layout)")
        c1 = shape("conv1.weight")
        stages = []
        i = 1
        while f"layer{i}.0.conv1.weight" in state:
            j, strides = 0, []
            while f"layer{i}.{j}.conv1.weight" in state:
                down = f"layer{i}.{j}.downsample.0.weight" in state
                first_stride = 2 if (down and i > 1) else 1
                strides.append(first_stride if j == 0 else 1)
                j += 1
            stages.append([shape(f"layer{i}.0.conv1.weight")[0], strides])
            i += 1
        return {"family": FAMILY, "arch": "resnet", "in_channels": c1[1], "num_classes": shape("fc.weight")[0],
                "image_size": 224 if c1[2] == 7 else 32, "stem": "imagenet" if c1[2] == 7 else "small",
                "stem_width": c1[0], "stages": stages, "abconv": {}}
    if "stem.conv.weight" in state and "blocks.0.dw.weight" in state:
        c1 = shape("stem.conv.weight")
        blocks, i = [], 0
        while f"blocks.{i}.pw.weight" in state:
            blocks.append([shape(f"blocks.{i}.pw.weight")[0], 1])
            i += 1
        return {"family": FAMILY, "arch": "mobilenetv1", "in_channels": c1[1], "num_classes": shape("fc.weight")[0],
                "image_size": 32, "stem": "small", "stem_width": c1[0], "blocks": blocks, "abconv": {}}
    raise SlimError(f"{where} is not a ResNet or MobileNetV1 state dict the cnn family knows")
