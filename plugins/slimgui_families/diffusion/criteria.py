"""Importance of U-Net units: LD-Pruner's latent-space metric and, for comparison, the change of final images.

Both run the model with one unit bypassed (its blocks pass their input through, which for these units is
exactly the slimmed U-Net's computation: checked in the tests) on a fixed set of inputs and measure how far
the outputs move.  Higher score = more important.
"""

from __future__ import annotations

from typing import Any

import torch

from slimgui.core.errors import SlimError
from slimgui.core.model import LoadedModel
from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .calibration import calibration_batches, encode_prompts
from .unet import bypassed


def _prunable(model: LoadedModel) -> list[str]:
    return [u.id for u in model.impl.to_graph(model).prunable()]


def latent_distance(ref: torch.Tensor, out: torch.Tensor) -> float:
    """LD-Pruner's distance between two sets of latents (N×...): ‖Δ mean‖₂ + ‖Δ std‖₂ over the set."""
    ref, out = ref.flatten(1).double(), out.flatten(1).double()
    return float((ref.mean(0) - out.mean(0)).norm() + (ref.std(0) - out.std(0)).norm())


class LDPruner:
    """LD-Pruner: distance between the original's output latents and the unit-bypassed model's."""

    name = "ldpruner"

    def __init__(self) -> None:
        self.last_info: dict[str, Any] = {}

    def score(self, model: LoadedModel, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        ids = _prunable(model)
        unet = model.module.eval()
        report(progress, 0, len(ids) + 1, "preparing noisy latents")
        batches = calibration_batches(model.impl, model, data)
        call = model.impl.unet_call
        with torch.no_grad():
            ref = torch.cat([call(unet, b) for b in batches])
            out, mse = {}, {}
            report(progress, 1, len(ids) + 1, "original outputs")
            for i, uid in enumerate(ids):
                check(cancel)
                with bypassed(unet, uid):
                    got = torch.cat([call(unet, b) for b in batches])
                out[uid] = latent_distance(ref, got)
                mse[uid] = float(torch.mean((ref - got) ** 2))
                report(progress, i + 2, len(ids) + 1, f"bypassed {uid}")
        self.last_info = {"samples": int(ref.shape[0]), "metric": "||mean diff||2 + ||std diff||2 of output latents",
                          "mse": mse}
        return out


class OutputChange:
    """Mean squared change of the final decoded images (a short DDIM run from fixed noise and prompts)."""

    name = "output-change"

    def __init__(self, steps: int = 10, samples: int = 8) -> None:
        self.steps = steps
        self.samples = samples
        self.last_info: dict[str, Any] = {}

    def score(self, model: LoadedModel, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        pipe = model.extra.get("pipeline")
        if pipe is None or getattr(pipe, "vae", None) is None:
            raise SlimError("output-change decodes images, so it needs a pipeline folder with a VAE",
                            hint="use --criterion ldpruner for a bare U-Net")
        ids = _prunable(model)
        unet = model.module.eval()
        pipe.unet = unet
        batches = calibration_batches(model.impl, model, data, samples=self.samples)
        cfg = unet.config
        n = sum(len(b["latents"]) for b in batches)
        gen = torch.Generator().manual_seed(1)
        start = torch.randn(n, cfg.in_channels, *batches[0]["latents"].shape[2:], generator=gen)
        has_text = getattr(pipe, "text_encoder", None) is not None
        embeds = torch.cat([b["encoder_hidden_states"] for b in batches]) if has_text else None
        negative = encode_prompts(pipe, [""] * n) if has_text else None

        def run() -> torch.Tensor:
            if has_text:
                return pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, latents=start.clone(),
                            num_inference_steps=self.steps, output_type="pt").images.float()
            return torch.stack([torch.from_numpy(pipe(batch_size=1, generator=torch.Generator().manual_seed(i),
                                                      num_inference_steps=self.steps, output_type="np").images[0])
                                for i in range(n)]).float()

        total = len(ids) + 1
        report(progress, 0, total, "original images")
        with torch.no_grad():
            ref = run()
            out = {}
            for i, uid in enumerate(ids):
                check(cancel)
                with bypassed(unet, uid):
                    out[uid] = float(torch.mean((run() - ref) ** 2))
                report(progress, i + 2, total, f"bypassed {uid}")
        self.last_info = {"samples": n, "steps": self.steps, "metric": "mean squared change of decoded images"}
        return out
