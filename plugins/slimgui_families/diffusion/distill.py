"""Learning from a teacher U-Net: BK-SDM's stage-feature taps (:class:`StageTap`, :func:`feature_pairs`) and latent
consistency distillation (:class:`ConsistencyDistiller`, EdgeFusion / LCM)."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimgui.core.errors import SlimError

from .options import ConsistencyOptions
from .schedule import FEWSTEP_STEPS, MIN_ALPHA_BAR, SIGMA_DATA, TIMESTEP_SCALING, NoiseSchedule, _move, predict  # noqa: F401


# -- feature taps (BK-SDM) -------------------------------------------------------------------------
def _stage_hidden(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _stage_candidates(out: Any) -> list[torch.Tensor]:
    """The stage's hidden state, then (for a down stage) its skip states from the last to the first."""
    if isinstance(out, (tuple, list)):
        skips = list(out[1]) if len(out) > 1 and isinstance(out[1], (tuple, list)) else []
        return [out[0], *reversed(skips)]
    return [out]


class StageTap:
    """Forward hooks that keep the outputs of named U-Net stages while ``active``."""

    def __init__(self, unet: nn.Module, stages: list[str]):
        self.outputs: dict[str, Any] = {}
        self.active = False
        self.handles = []
        for name in stages:
            self.handles.append(unet.get_submodule(name).register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(_module: nn.Module, _args: Any, out: Any) -> None:
            if self.active:
                self.outputs[name] = out
        return hook

    def start(self) -> None:
        self.outputs.clear()
        self.active = True

    def stop(self) -> None:
        self.active = False

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
        return True
    except AttributeError:
        return False


def feature_pairs(student: nn.Module, teacher: nn.Module, stage_map: dict[str, str], sample: dict[str, torch.Tensor],
                  timestep: int) -> tuple[list[tuple[str, str, int]], list[str]]:
    """(student stage, teacher stage, which teacher tensor) for every mapped stage whose features match in shape.

    The student stage's hidden output is compared with the teacher stage's hidden output, or — where a removed
    innermost stage took the last downsampler away — with the teacher's last skip state of that shape.
    Found with one no-grad forward pass of both U-Nets on one sample.
    """
    pairs = [(s, t) for s, t in stage_map.items() if _has(student, s) and _has(teacher, t)]
    s_tap, t_tap = StageTap(student, [s for s, _ in pairs]), StageTap(teacher, [t for _, t in pairs])
    x = sample["latents"][:1]
    cond = sample.get("encoder_hidden_states")
    cond = cond[:1] if cond is not None else None
    t = torch.tensor([timestep])
    try:
        s_tap.start()
        t_tap.start()
        with torch.no_grad():
            predict(student, x, t, cond)
            predict(teacher, x, t, cond)
    finally:
        s_tap.stop()
        t_tap.stop()
        s_tap.remove()
        t_tap.remove()
    found, skipped = [], []
    for s, t_name in pairs:
        shape = _stage_hidden(s_tap.outputs[s]).shape
        cands = _stage_candidates(t_tap.outputs[t_name])
        pick = next((k for k, c in enumerate(cands) if c.shape == shape), None)
        if pick is None:
            skipped.append(s)
        else:
            found.append((s, t_name, pick))
    return found, skipped


# -- latent consistency distillation ---------------------------------------------------------------
class ConsistencyDistiller:
    """LCM distillation (Luo et al. 2023; diffusers' ``train_lcm_distill_sd_wds.py``), written for this loop.

    With N = ``options.lcm_ddim_steps`` skipped DDIM timesteps τ_n = (n+1)·T/N − 1 and k = T/N:

    1. draw n, noise x0 to x_{τ_n} (start), and let the student give the consistency output
       ``f_S(x, τ) = c_skip(τ)·x + c_out(τ)·x̂0_S(x, τ)`` with ``c_skip = σ_d²/((10τ)² + σ_d²)``,
       ``c_out = 10τ/√((10τ)² + σ_d²)`` (so f(x, 0) = x, the boundary condition);
    2. the frozen teacher takes one DDIM step from τ_n to τ_{n}−k with classifier-free guidance
       ``ε̂ = ε̂_u + s·(ε̂_c − ε̂_u)`` (same for x̂0), s = ``lcm_guidance``;
    3. the target network (EMA of the student, decay ``lcm_ema_decay``) gives f at the teacher's x_{τ_n−k};
    4. loss = MSE (or pseudo-Huber, the job's ``extra["lcm_loss"] = "huber"``) between the two consistency outputs.

    The w-embedding of the LCM paper (a guidance-scale input to the U-Net) is not added: the student is distilled
    at the one fixed guidance and is then sampled without guidance (``guidance 1.0``).  Solver timesteps whose
    ᾱ is below ``MIN_ALPHA_BAR`` (the last step of near-zero-terminal-SNR schedules) are not trained, because the
    ε → x0 conversion there amplifies any error by 1/√ᾱ; :meth:`inference_timesteps` then starts below them.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, schedule: NoiseSchedule, uncond: torch.Tensor | None,
                 options: ConsistencyOptions, extra: dict[str, Any] | None = None):
        T = schedule.num_train_timesteps
        extra = extra or {}
        n = int(options.lcm_ddim_steps)
        if not 1 <= n <= T:
            raise SlimError(f"lcm-ddim-steps must be between 1 and {T}, got {n}")
        if not 0.0 <= options.lcm_ema_decay < 1.0:
            raise SlimError(f"the EMA decay must be in [0, 1), got {options.lcm_ema_decay}")
        self.schedule, self.teacher, self.uncond = schedule, teacher, uncond
        self.guidance = float(options.lcm_guidance)
        self.decay = float(options.lcm_ema_decay)
        self.skip = T // n
        self.ddim_timesteps = (torch.arange(1, n + 1) * self.skip - 1).long()
        acp = schedule.alphas_cumprod
        self.alpha_prev = torch.cat([acp[:1], acp[self.ddim_timesteps[:-1]]])
        self.valid = torch.nonzero(acp[self.ddim_timesteps] >= MIN_ALPHA_BAR).flatten()
        if len(self.valid) == 0:
            raise SlimError("the scheduler's noise schedule leaves no usable solver timestep for consistency "
                            "distillation", hint="use a pipeline with a standard (scaled_linear or cosine) schedule")
        self.loss_type = str(extra.get("lcm_loss", "l2"))
        if self.loss_type not in ("l2", "huber"):
            raise SlimError(f"unknown lcm loss '{self.loss_type}'", hint="use l2 or huber")
        self.huber_c = float(extra.get("lcm_huber_c", 0.001))
        # the target network starts as a copy of the student and follows it by EMA
        self.target = copy.deepcopy(student).eval()
        for p in self.target.parameters():
            p.requires_grad_(False)

    def inference_timesteps(self, steps: int = FEWSTEP_STEPS) -> list[int] | None:
        """The few-step schedule when the solver's top timestep was not trained (else None: LCMScheduler's own).

        Picked as LCMScheduler picks its default: every (M // steps)-th trained solver timestep from the top.
        """
        if len(self.valid) == len(self.ddim_timesteps):
            return None
        grid = self.ddim_timesteps[self.valid].flip(0).tolist()
        return grid[:: max(1, len(grid) // steps)][:steps]

    @staticmethod
    def boundary(t: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = TIMESTEP_SCALING * t.float()
        c_skip = SIGMA_DATA ** 2 / (scaled ** 2 + SIGMA_DATA ** 2)
        c_out = scaled / (scaled ** 2 + SIGMA_DATA ** 2) ** 0.5
        shape = (-1,) + (1,) * (ndim - 1)
        return c_skip.view(shape), c_out.view(shape)

    def consistency(self, unet: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        c_skip, c_out = self.boundary(t, x.dim())
        return c_skip * x + c_out * self.schedule.pred_x0(predict(unet, x, t, cond), x, t)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x0 = batch["latents"]
        device = x0.device
        cond = batch.get("encoder_hidden_states")
        b = x0.shape[0]
        index = self.valid[torch.randint(0, len(self.valid), (b,))]
        noise = torch.randn(x0.shape, dtype=x0.dtype).to(device)
        index = index.to(device)
        start = self.ddim_timesteps.to(device)[index]
        prev = (start - self.skip).clamp(min=0)
        x_start = self.schedule.add_noise(x0, noise, start)
        pred = self.consistency(model, x_start, start, cond)
        teacher, target = _move(self.teacher, device), _move(self.target, device)
        with torch.no_grad():
            out_c = predict(teacher, x_start, start, cond)
            x0_hat = self.schedule.pred_x0(out_c, x_start, start)
            eps_hat = self.schedule.pred_eps(out_c, x_start, start)
            if cond is not None and self.uncond is not None and self.guidance != 1.0:
                out_u = predict(teacher, x_start, start, self.uncond.to(device).expand(b, -1, -1))
                x0_u = self.schedule.pred_x0(out_u, x_start, start)
                eps_u = self.schedule.pred_eps(out_u, x_start, start)
                x0_hat = x0_u + self.guidance * (x0_hat - x0_u)
                eps_hat = eps_u + self.guidance * (eps_hat - eps_u)
            a_prev = self.alpha_prev.to(device)[index].view(-1, *([1] * (x0.dim() - 1)))
            x_prev = a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * eps_hat  # one DDIM step (η = 0)
            goal = self.consistency(target, x_prev, prev, cond)
        if self.loss_type == "huber":
            loss = torch.mean(torch.sqrt((pred.float() - goal.float()) ** 2 + self.huber_c ** 2) - self.huber_c)
        else:
            loss = F.mse_loss(pred.float(), goal.float())
        return loss, {"lcm": loss.item()}

    def ema_update(self, student: nn.Module) -> None:
        """θ⁻ ← μ·θ⁻ + (1 − μ)·θ after every optimizer step."""
        with torch.no_grad():
            for tp, sp in zip(_move(self.target, next(student.parameters()).device).parameters(),
                              student.parameters(), strict=True):
                tp.mul_(self.decay).add_(sp.detach(), alpha=1 - self.decay)

    def state(self) -> dict[str, torch.Tensor]:
        return {f"target.{k}": v for k, v in self.target.named_parameters()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.target.named_parameters())
        with torch.no_grad():
            for k, v in state.items():
                if k.startswith("target.") and k[7:] in params:
                    params[k[7:]].copy_(v)


