"""The noise schedule of a diffusers scheduler as tensors, and one U-Net call: what every healing loss uses."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimgui.core.errors import SlimError

DEFAULT_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
CAPTION_DROPOUT = 0.1  # share of training captions replaced by "" so the model keeps an unconditional branch
VAL_TIMESTEPS_PER_IMAGE = 8  # at most; each validation image is noised at several fixed timesteps
TIMESTEP_SCALING = 10.0  # LCM boundary condition, as diffusers' LCMScheduler (timestep_scaling)
SIGMA_DATA = 0.5
FEWSTEP_STEPS = 4
# ε → x0 divides by √ᾱ_t; below this ᾱ (e.g. t = 999 of squaredcos_cap_v2, ᾱ ≈ 2e-9) errors grow > 1000×
MIN_ALPHA_BAR = 1e-6


# -- the noise schedule ----------------------------------------------------------------------------
class NoiseSchedule:
    """The forward process of the pipeline's scheduler, and conversions between ε, v and x0 predictions."""

    def __init__(self, scheduler_config: Any):
        from diffusers import DDPMScheduler

        sched = DDPMScheduler.from_config(scheduler_config)
        self.num_train_timesteps = int(sched.config.num_train_timesteps)
        self.prediction_type = str(sched.config.prediction_type)
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise SlimError(f"the scheduler's prediction_type '{self.prediction_type}' is not supported",
                            hint="SlimGUI retrains epsilon, v_prediction and sample U-Nets")
        self.alphas_cumprod = sched.alphas_cumprod.float()

    def _coef(self, t: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        acp = self.alphas_cumprod.to(t.device)[t]
        shape = (-1,) + (1,) * (ndim - 1)
        return acp.sqrt().view(shape), (1 - acp).sqrt().view(shape)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε."""
        a, s = self._coef(t, x0.dim())
        return a * x0 + s * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the U-Net should output: ε, v = √ᾱ·ε − √(1-ᾱ)·x0, or x0."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        a, s = self._coef(t, x0.dim())
        return a * noise - s * x0

    def pred_x0(self, out: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self._coef(t, xt.dim())
        if self.prediction_type == "epsilon":
            return (xt - s * out) / a
        if self.prediction_type == "sample":
            return out
        return a * xt - s * out

    def pred_eps(self, out: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self._coef(t, xt.dim())
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "sample":
            return (xt - a * out) / s
        return a * out + s * xt


def predict(unet: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """The U-Net's raw output (ε, v or x0 per the schedule) for noised latents ``x`` at timesteps ``t``."""
    kwargs = {"encoder_hidden_states": cond} if cond is not None else {}
    return unet(x, t, **kwargs).sample


def _move(module: nn.Module, device: torch.device) -> nn.Module:
    if next(module.parameters()).device != device:
        module.to(device)
    return module


