"""ABConv — arithmetic-intensity balancing of small-spatial convolutions — as a transformation of any torch model's
``nn.Conv2d`` layers (no family is named here).

Why.  A convolution ``C_in → C_out`` with a ``k×k`` kernel on an ``H×W`` output does ``F = 2·C_in·C_out·k²·H·W``
FLOPs (per image) while moving ``W = C_in·C_out·k²`` weights and ``A = (C_in·H_in·W_in + C_out·H·W)``
activations.  Its *weight arithmetic intensity* ``F / (W·b) = 2·H·W / b`` (``b`` bytes per element) depends only
on the output's spatial size: deep in a network, where ``H·W`` is small and channels are many, ``W ≫ A`` and the
layer's overall intensity ``F / ((W + A)·b)`` is capped near ``2·H·W / b`` — far below the ridge point of an
accelerator, so the layer is memory-bound however few FLOPs it has.  That observation and the goal — raise the
bound of the overall intensity of such layers, then recover accuracy — are the paper's (Choi & Choi, "Arithmetic
Intensity Balancing Convolution for Hardware-aware Efficient Block Design", arXiv:2304.04016, MLSys 2023 On-Device
Intelligence workshop).  Its operator's exact definition could not be read here (only the abstract was found), so
the operator below is SlimGUI's reading of it, documented as a choice.

The operator (SlimGUI's choice).  ``ABConv(g)`` folds the ``C_in`` input channels into ``g`` groups and moves the
groups into the batch axis — ``(N, C_in, H, W) → (N·g, C_in/g, H, W)`` — so every group is convolved by **one
shared** ``C_in/g → C_out/g`` kernel, then unfolds — ``(N·g, C_out/g, H', W') → (N, C_out, H', W')`` (group ``j``
gives output channels ``j·C_out/g … (j+1)·C_out/g − 1``).  Per image:

- FLOPs ``F/g``; weights ``W/g²``; activations ``A`` (unchanged: a reshape moves nothing);
- weight intensity ``g × 2·H·W / b`` (each weight is reused ``g`` times as often);
- overall intensity ``(F/g) / (W/g² + A)`` — for a weight-bound layer (``W ≫ A``) about ``g`` times the original.

Choices where the paper was not available: a layer is *eligible* when it is an ungrouped ``nn.Conv2d`` whose
weight bytes are at least 4× its activation bytes at the profiled resolution (weight-bound: even a fold of 2
leaves it weight-bound); the fold ``g`` *balances* the two — the largest power of two with ``W/g² ≥ A`` (at most
``max_fold``, default 8) that divides both channel counts; the shared kernel starts as the mean of the original
weight's ``g`` diagonal blocks (``W_shared[o, i] = mean_j W[j·C_out/g + o, j·C_in/g + i]``), so the layer starts
close to the block-diagonal part of the original; the bias (if any) keeps the first group's ``C_out/g`` values,
broadcast to every group.  Accuracy is recovered by distillation from the original (the family's method).  No Qt.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from .errors import SlimError


class ABConv2d(nn.Module):
    """An arithmetic-intensity-balanced convolution (see the module docstring): ``fold`` channel groups share one
    ``in/fold → out/fold`` kernel (``self.conv``), the groups travelling in the batch axis."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, fold: int = 2, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__()
        if fold < 1 or in_channels % fold or out_channels % fold:
            raise SlimError(f"an ABConv fold of {fold} must divide both channel counts ({in_channels}, {out_channels})")
        self.in_channels, self.out_channels, self.fold = in_channels, out_channels, fold
        self.conv = nn.Conv2d(in_channels // fold, out_channels // fold, kernel_size, stride, padding, dilation,
                              bias=bias, padding_mode=padding_mode)

    @classmethod
    def shaped_like(cls, conv: nn.Conv2d, fold: int) -> ABConv2d:
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                   fold, conv.bias is not None, conv.padding_mode)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, fold: int) -> ABConv2d:
        """The balanced form of ``conv``, its shared kernel the mean of the original's diagonal blocks."""
        new = cls.shaped_like(conv, fold)
        ci, co = conv.in_channels // fold, conv.out_channels // fold
        with torch.no_grad():
            w = conv.weight.detach()
            blocks = torch.stack([w[j * co:(j + 1) * co, j * ci:(j + 1) * ci] for j in range(fold)])
            new.conv.weight.copy_(blocks.mean(0))
            if conv.bias is not None:
                new.conv.bias.copy_(conv.bias.detach()[:co])
        return new.to(conv.weight.device, conv.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = self.conv(x.reshape(n * self.fold, c // self.fold, h, w))
        return y.reshape(n, self.out_channels, y.shape[-2], y.shape[-1])

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, fold={self.fold}"


@dataclass
class ConvCost:
    """One convolution's arithmetic at a given input (per image; ``b`` bytes per element)."""

    layer: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    out_hw: tuple[int, int]
    flops: float
    weight_bytes: int
    act_bytes: int
    fold: int = 1
    eligible: bool = False
    reason: str = ""

    @property
    def weight_intensity(self) -> float:
        return self.flops / self.weight_bytes if self.weight_bytes else math.inf

    @property
    def intensity(self) -> float:
        return self.flops / (self.weight_bytes + self.act_bytes)

    def balanced(self, fold: int) -> ConvCost:
        """The same layer as ``ABConv(fold)``: FLOPs / fold, weights / fold², activations unchanged."""
        return ConvCost(self.layer, self.in_channels, self.out_channels, self.kernel, self.out_hw, self.flops / fold,
                        self.weight_bytes // (fold * fold), self.act_bytes, fold, self.eligible, self.reason)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "intensity": self.intensity, "weight_intensity": self.weight_intensity}


def conv_costs(module: nn.Module, example: Any, *, dtype_bytes: int = 4, max_fold: int = 8) -> list[ConvCost]:
    """Every ``nn.Conv2d`` (and :class:`ABConv2d`) of ``module`` with its arithmetic for one forward — of
    ``example`` (a tensor, or a tuple of arguments), or a call of ``example`` when it is a callable that runs the
    model (a family's benchmark run) — per image, whether ABConv applies and the balancing fold."""
    seen: dict[str, tuple[Any, Any]] = {}
    handles = []
    for name, mod in module.named_modules():
        if isinstance(mod, (nn.Conv2d, ABConv2d)) and not _inside_abconv(module, name):
            def hook(m, args, out, name=name):
                seen.setdefault(name, (tuple(args[0].shape), tuple(out.shape)))
            handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            if callable(example) and not isinstance(example, torch.Tensor):
                example()
            elif isinstance(example, tuple):
                module(*example)
            else:
                module(example)
    finally:
        for h in handles:
            h.remove()
    mods = dict(module.named_modules())
    out = []
    for name, (xin, yout) in seen.items():
        mod = mods[name]
        inner = mod.conv if isinstance(mod, ABConv2d) else mod
        fold = mod.fold if isinstance(mod, ABConv2d) else 1
        k = tuple(inner.kernel_size)
        per_out = inner.in_channels // inner.groups * k[0] * k[1]
        hw = (yout[-2], yout[-1])
        flops = 2.0 * mod.out_channels * hw[0] * hw[1] * per_out  # an ABConv's inner C_in is C_in/g
        wbytes = inner.weight.numel() * dtype_bytes
        abytes = (math.prod(xin[1:]) + math.prod(yout[1:])) * dtype_bytes
        cost = ConvCost(name, mod.in_channels, mod.out_channels, k, hw, flops, wbytes, abytes, fold)
        if isinstance(mod, ABConv2d):
            cost.reason = f"already ABConv (fold {fold})"
        elif inner.groups != 1:
            cost.reason = "grouped or depthwise convolution"
        elif wbytes <= abytes:
            cost.reason = "activation-bound (weights move fewer bytes than activations)"
        else:
            g = balancing_fold(cost, max_fold)
            if g < 2:
                cost.reason = ("no fold of 2 or more divides both channel counts"
                               if cost.in_channels % 2 or cost.out_channels % 2 else
                               "nearly balanced already (weights under 4× the activations)")
            else:
                cost.fold, cost.eligible = g, True
                cost.reason = f"weight-bound: fold {g} balances weights and activations"
        out.append(cost)
    return out


def _inside_abconv(root: nn.Module, name: str) -> bool:
    mods = dict(root.named_modules())
    parts = name.split(".")
    return any(isinstance(mods.get(".".join(parts[:i])), ABConv2d) for i in range(1, len(parts)))


def balancing_fold(cost: ConvCost, max_fold: int = 8) -> int:
    """The largest power of two ``g ≤ max_fold`` dividing both channel counts with weights / g² still at least the
    activations (the fold that brings weight and activation bytes closest without going under); 1 when even a
    fold of 2 would (a layer within 4× of balance gains little)."""
    best, g = 1, 2
    while g <= max_fold:
        if cost.in_channels % g or cost.out_channels % g or cost.weight_bytes / (g * g) < cost.act_bytes:
            break
        best, g = g, g * 2
    return best


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def apply_abconv(module: nn.Module, example: Any, *, layers: list[str] | None = None, fold: int | None = None,
                 max_fold: int = 8, dtype_bytes: int = 4) -> tuple[dict[str, int], list[ConvCost]]:
    """Replace the eligible convolutions of ``module`` (in place) by :class:`ABConv2d`.  ``layers``: only these
    (each must be eligible); ``fold``: this fold instead of the balancing one.  Returns ({layer: fold}, the costs
    before).  A model without a convolution, or with none eligible, is a SlimError saying so."""
    costs = conv_costs(module, example, dtype_bytes=dtype_bytes, max_fold=max_fold)
    if not costs:
        raise SlimError("this model has no 2-D convolution layers: ABConv has nothing to balance",
                        hint="ABConv applies to convolution networks (CNNs, U-Net generators)")
    by_name = {c.layer: c for c in costs}
    if layers:
        unknown = [x for x in layers if x not in by_name]
        if unknown:
            raise SlimError(f"no convolution named {', '.join(unknown)}",
                            hint="convolutions: " + ", ".join(list(by_name)[:12]))
        chosen = [by_name[x] for x in layers]
    else:
        chosen = [c for c in costs if c.eligible]
    if not chosen:
        raise SlimError("none of this model's convolutions is weight-bound at this input size: ABConv would not "
                        "raise any layer's arithmetic intensity", hint="`slimgui profile MODEL` shows each layer's")
    done: dict[str, int] = {}
    mods = dict(module.named_modules())
    for c in chosen:
        g = fold or c.fold
        conv = mods[c.layer]
        if isinstance(conv, ABConv2d) or conv.groups != 1:
            raise SlimError(f"{c.layer}: {c.reason}", hint="choose an ungrouped convolution")
        if g < 2 or c.in_channels % g or c.out_channels % g:
            raise SlimError(f"{c.layer}: a fold of {g} does not divide its channels ({c.in_channels}, {c.out_channels})")
        replace_module(module, c.layer, ABConv2d.from_conv(conv, g))
        done[c.layer] = g
    return done, costs


def abconv_model(model: Any, registry: Any, *, layers: list[str] | None = None, fold: int | None = None,
                 max_fold: int = 8) -> tuple[Any, dict[str, Any]]:
    """A copy of a loaded model with its eligible convolutions replaced by ABConv, and a report: each convolution's
    arithmetic before and after (per image, at the family's benchmark input).  The family must declare the
    "abconv" capability (its ``save`` writes :class:`ABConv2d` layers and its ``load`` reads them back)."""
    import copy

    from .bench import _as_run
    from .model import LoadedModel
    from .plan import PruningPlan

    spec = registry.spec_of(model)
    if not spec.can("bench"):
        raise SlimError(f"the {model.family} family declares no benchmark run to size its layers with")
    module = copy.deepcopy(model.module).eval()
    twin = LoadedModel(model.family, model.adapter, model.source, module, copy.deepcopy(model.config),
                       model.tokenizer, model.has_weights, model.impl, dict(model.extra))
    adapter = model.impl if model.impl is not None else registry.adapter(model.adapter)
    run = _as_run(adapter.bench_runner(twin, 1, None, "forward"), "forward", 1)
    if not conv_costs(module, run.fn, max_fold=max_fold):
        raise SlimError("this model has no 2-D convolution layers: ABConv has nothing to balance",
                        hint="ABConv applies to convolution networks (CNNs, U-Net generators)")
    if not spec.can("abconv"):
        raise SlimError(f"the {model.family} family cannot save ABConv layers",
                        hint="its plugin does not declare the 'abconv' capability")
    done, before = apply_abconv(module, run.fn, layers=layers, fold=fold, max_fold=max_fold)
    after = {c.layer: c for c in conv_costs(module, run.fn, max_fold=max_fold)}
    twin.extra["made_from"] = model.source
    twin.extra.pop("graph", None)
    # the link to the original every family's output can follow (core.model.made_from): a plan that removes nothing
    twin.extra["plan"] = PruningPlan(remove=[], model=str(model.source), meta={"abconv": dict(done)})
    rows = []
    for c in before:
        a = after.get(c.layer)
        rows.append({"layer": c.layer, "fold": done.get(c.layer, 1), "reason": c.reason,
                     "before": c.to_json(), "after": a.to_json() if a is not None else None})
    return twin, {"replaced": done, "layers": rows, "flops_before": sum(c.flops for c in before),
                  "flops_after": sum(c.flops for c in after.values()),
                  "weight_bytes_before": sum(c.weight_bytes for c in before),
                  "weight_bytes_after": sum(c.weight_bytes for c in after.values())}


# -- saving and reading ABConv layers in a family's own files (the "abconv" capability) --------------------------
def abconv_layers(module: nn.Module) -> dict[str, int]:
    """{qualified name: fold} of the :class:`ABConv2d` layers of ``module`` (what a family's config records)."""
    return {n: m.fold for n, m in module.named_modules() if isinstance(m, ABConv2d)}


def describe_abconv(module: nn.Module) -> str:
    """The ABConv layers of ``module`` in words, for a result's description ("none" without any)."""
    return ", ".join(f"{k} (fold {v})" for k, v in abconv_layers(module).items()) or "none"


def refuse_abconv(module: nn.Module, what: str) -> None:
    """A SlimError when ``module`` has ABConv layers: their kernels are shared across the folds, so the network is
    not ``what`` (e.g. "pruned by channel") — prune the original first, then balance it."""
    ab = abconv_layers(module)
    if ab:
        raise SlimError(f"this model's layers {', '.join(ab)} are ABConv (shared kernels): it cannot be {what}",
                        hint="prune the original first, then apply ABConv to the pruned model")


def abconv_map(value: Any, where: str) -> dict[str, int]:
    """A config's ``{layer: fold}`` checked (absent: {}); anything else is one SlimError naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 64
            for k, v in value.items()):
        raise SlimError(f"{where}: 'abconv' must map convolution names to fold factors (whole numbers 2-64)")
    return dict(value)


def plain_shapes(shapes: dict[str, tuple[int, ...]], layers: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """A state dict's ``{key: shape}`` as the network had it before ABConv: each ABConv layer ``L`` (fold ``g``)
    stores ``L.conv.weight`` ``[C_out/g, C_in/g, kh, kw]`` and ``L.conv.bias`` ``[C_out/g]``, given back as the
    ``L.weight`` / ``L.bias`` of the ``C_in → C_out`` convolution it replaced — so a family infers its architecture
    from the shapes as usual, then :func:`restore_abconv` puts the layers back."""
    out = dict(shapes)
    for name, g in layers.items():
        for part in ("weight", "bias"):
            key = f"{name}.conv.{part}"
            if key in out:
                s = tuple(out.pop(key))
                out[f"{name}.{part}"] = (s[0] * g, s[1] * g, *s[2:]) if part == "weight" else (s[0] * g,)
    return out


def restore_abconv(module: nn.Module, layers: dict[str, int], where: str = "the config") -> nn.Module:
    """Replace (in place) each named ``nn.Conv2d`` of ``module`` by an :class:`ABConv2d` of its shape and fold (its
    weights come from the file afterwards); a name that is not an ungrouped convolution is one SlimError."""
    mods = dict(module.named_modules())
    for name, fold in layers.items():
        conv = mods.get(name)
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            raise SlimError(f"{where}: the abconv layer '{name}' is not an ungrouped convolution of this network")
        replace_module(module, name, ABConv2d.shaped_like(conv, fold))
    return module
