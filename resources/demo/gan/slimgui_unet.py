"""The Pix2Pix U-Net generator, written so its state-dict keys are exactly those of junyanz/pytorch-CycleGAN-and-pix2pix.

junyanz's ``UnetGenerator`` nests ``UnetSkipConnectionBlock``\\ s; each block's ``model`` is an ``nn.Sequential``:

- outermost (level 0):  ``[downconv, submodule, ReLU, ConvTranspose2d(2·ngf → output_nc, bias), Tanh]``
- middle (level k):     ``[LeakyReLU(0.2), downconv, downnorm, submodule, ReLU, upconv, upnorm(, Dropout(0.5))]``
- innermost (level n-1): ``[LeakyReLU(0.2), downconv, ReLU, upconv, upnorm]``

every conv 4×4 stride 2 padding 1.  A block other than the outermost returns ``cat([x, model(x)], 1)``; since its
LeakyReLU is in place, the ``x`` concatenated is LeakyReLU(x) — this class writes that out (``_skip``) instead of
relying on in-place activations, which gives the same numbers and lets hooks and ONNX see clean tensors.  With batch
norm (``BatchNorm2d(affine, running stats)``) the convolutions but the outermost up conv carry no bias; with instance
norm (``InstanceNorm2d(affine=False)``, no parameters) they all do.

This class is more general than junyanz's in two ways SlimGUI needs, both recorded in :class:`UNetConfig`: every
level has its own widths (``down[k]``: filters of level k's down conv, ``up[k]``: of its up conv; junyanz's class
ties them to ngf), and a U-Net cut by inner-layer removal keeps the norm after its new innermost down conv
(``inner_norm``, which junyanz's innermost block lacks).  The file is self-contained (torch only): SlimGUI copies it
beside a slimmed generator as ``slimgui_unet.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

NORMS = ("batch", "instance")


@dataclass
class UNetConfig:
    """Shapes of a U-Net generator: ``down[k]`` / ``up[k]`` filters of level k's down / up conv (``up[0]`` is
    ``output_nc``), ``norm`` "batch" or "instance", ``image_size`` the resolution its MACs are counted at."""

    down: list[int]
    up: list[int]
    input_nc: int = 3
    output_nc: int = 3
    norm: str = "batch"
    use_dropout: bool = False
    inner_norm: bool = False
    image_size: int = 256
    origin_levels: int | None = None  # levels of the generator it was cut from (None: not cut)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> int:
        return len(self.down)

    @property
    def use_bias(self) -> bool:
        return self.norm == "instance"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def standard(cls, num_downs: int, ngf: int = 64, input_nc: int = 3, output_nc: int = 3, norm: str = "batch",
                 use_dropout: bool = False, image_size: int | None = None) -> UNetConfig:
        """junyanz's ``UnetGenerator(input_nc, output_nc, num_downs, ngf)`` (unet_256: 8 downs, unet_128: 7)."""
        down = [min(ngf * 2 ** k, ngf * 8) for k in range(num_downs)]
        down[-1] = ngf * 8
        up = [output_nc] + down[:-1]
        return cls(down=down, up=up, input_nc=input_nc, output_nc=output_nc, norm=norm, use_dropout=use_dropout,
                   image_size=image_size or 2 ** num_downs)

    def is_standard(self) -> tuple[bool, int]:
        """(whether junyanz's class builds exactly this generator, its ngf)."""
        ngf = self.down[0]
        try:
            std = UNetConfig.standard(self.levels, ngf, self.input_nc, self.output_nc, self.norm)
        except Exception:  # pragma: no cover
            return False, ngf
        return (self.levels >= 5 and std.down == self.down and std.up == self.up and not self.inner_norm), ngf


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


def _skip(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U (module docstring); ``in_nc`` its input channels, ``inner`` its down conv's filters, ``outer``
    its up conv's, ``sub_out`` the channels its submodule's up path adds to the skip (0 for the innermost)."""

    def __init__(self, in_nc: int, inner: int, outer: int, sub_out: int = 0, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch", use_dropout: bool = False,
                 inner_norm: bool = False):
        super().__init__()
        self.outermost, self.innermost = outermost, innermost
        bias = norm == "instance"
        downconv = nn.Conv2d(in_nc, inner, kernel_size=4, stride=2, padding=1, bias=bias)
        if outermost:
            upconv = nn.ConvTranspose2d(inner + sub_out, outer, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, nn.ReLU(), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner, outer, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), downconv] + ([_norm(norm, inner)] if inner_norm else []) + \
                [nn.ReLU(), upconv, _norm(norm, outer)]
        else:
            upconv = nn.ConvTranspose2d(inner + sub_out, outer, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), downconv, _norm(norm, inner), submodule, nn.ReLU(), upconv, _norm(norm, outer)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)
        # indices into ``model`` (plain ints: module aliases would repeat the state-dict keys)
        self._down_i = 0 if outermost else 1
        self._up_i = 3 if outermost else len(layers) - (2 if use_dropout and not innermost else 1) - 1
        has_down_norm = not outermost and (not innermost or inner_norm)
        self._down_out_i = self._down_i + 1 if has_down_norm else self._down_i
        self._up_out_i = self._up_i if outermost else len(layers) - 1

    @property
    def downconv(self) -> nn.Conv2d:
        return self.model[self._down_i]

    @property
    def upconv(self) -> nn.ConvTranspose2d:
        return self.model[self._up_i]

    @property
    def down_norm(self) -> nn.Module | None:
        return self.model[self._down_i + 1] if self._down_out_i != self._down_i else None

    @property
    def up_norm(self) -> nn.Module | None:
        return None if self.outermost else self.model[self._up_i + 1]

    @property
    def submodule(self) -> UnetSkipConnectionBlock | None:
        if self.innermost:
            return None
        return self.model[1] if self.outermost else self.model[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([_skip(x), self.model(x)], 1)


class UnetGenerator(nn.Module):
    """junyanz's ``UnetGenerator`` with per-level widths (:class:`UNetConfig`); ``model`` is the outermost block."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        c = config
        n = c.levels
        if n < 2 or len(c.up) != n:
            raise ValueError(f"a U-Net needs at least 2 levels and one up width per level, got down={c.down} up={c.up}")
        if c.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {c.norm!r}")
        self.config = c
        block = None
        for k in range(n - 1, -1, -1):
            in_nc = c.input_nc if k == 0 else c.down[k - 1]
            block = UnetSkipConnectionBlock(
                in_nc, c.down[k], c.up[k], sub_out=c.up[k + 1] if k < n - 1 else 0, submodule=block,
                outermost=k == 0, innermost=k == n - 1, norm=c.norm, use_dropout=c.use_dropout and 4 <= k < n - 1,
                inner_norm=c.inner_norm and k == n - 1)
        self.model = block

    def blocks(self) -> list[UnetSkipConnectionBlock]:
        """The blocks from the outermost (level 0) to the innermost."""
        out, b = [], self.model
        while b is not None:
            out.append(b)
            b = b.submodule
        return out

    def taps(self) -> dict[str, nn.Module]:
        """The module whose output is each layer's output (after its norm): ``down.k`` and ``up.k``."""
        out: dict[str, nn.Module] = {}
        for k, b in enumerate(self.blocks()):
            out[f"down.{k}"] = b.model[b._down_out_i]
            out[f"up.{k}"] = b.model[b._up_out_i]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def level_prefix(k: int) -> str:
    """The state-dict prefix of level k's block's Sequential: ``model.model``, ``model.model.1.model``,
    ``model.model.1.model.3.model``, ..."""
    return "model.model" + ".1.model" * (k >= 1) + ".3.model" * max(0, k - 1)


def conv_macs(config: UNetConfig, size: int | None = None) -> dict[str, int]:
    """Multiply-accumulates of every conv (``down.k``, ``up.k``) on one ``size``×``size`` image (4×4 kernels)."""
    s = size or config.image_size
    n = config.levels
    out = {}
    for k in range(n):
        res = max(1, s >> (k + 1))  # the down conv's output, the up conv's input
        cin = config.input_nc if k == 0 else config.down[k - 1]
        out[f"down.{k}"] = cin * config.down[k] * 16 * res * res
        up_in = config.down[k] + (config.up[k + 1] if k < n - 1 else 0)
        out[f"up.{k}"] = up_in * config.up[k] * 16 * res * res
    return out
