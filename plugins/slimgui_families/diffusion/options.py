"""The diffusion family's options, as data: what its healing methods (BK-SDM distillation, LCM few-step
distillation, LoRA), its evaluator and its previewer take.  The CLI builds its flags and the app its
forms from these schemas; sessions and job files store the values by field name.  Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass

from slimgui.core.options import option

SEED_MAX = 2**32 - 1
WEIGHT_MAX = 1e6


@dataclass
class LoraOptions:
    """Low-rank adapters on the U-Net's attention and projection layers."""

    lora_r: int = option(8, label="rank", lo=1, hi=4096, help="LoRA rank")
    lora_alpha: int = option(16, label="alpha", lo=1, hi=65_536, help="LoRA alpha")
    lora_dropout: float = option(0.05, label="dropout", lo=0.0, hi=1.0, hi_open=True, step=0.01,
                                 help="LoRA dropout")
    lora_targets: list[str] | None = option(None, label="targets", none_label="to_q, to_k, to_v, to_out.0",
                                            help="comma-separated module names")
    lora_merge: bool = option(True, label="merge into the weights", negate="--keep-adapter",
                              help="merge the adapter into the U-Net (--keep-adapter saves it instead)")


@dataclass
class DistillOptions:
    """BK-SDM: λ_task·MSE(noise) + λ_out·MSE(teacher output) + λ_feat·Σ MSE(stage features)."""

    kd_ce: float = option(1.0, label="λ_task", lo=0.0, hi=WEIGHT_MAX, step=0.1, aliases=("--lambda-task",),
                          help="weight of the denoising loss (MSE between the predicted and the true noise)")
    kd_kl: float = option(1.0, label="λ_out", lo=0.0, hi=WEIGHT_MAX, step=0.1, aliases=("--lambda-out",),
                          help="weight of the output-level distillation (MSE to the original U-Net's prediction)")
    kd_hidden: float = option(1.0, label="λ_feat", lo=0.0, hi=WEIGHT_MAX, step=0.1, aliases=("--lambda-feat",),
                              help="weight of the feature-level distillation (MSE between matching stage outputs)")


@dataclass
class ConsistencyOptions:
    """Latent consistency distillation (EdgeFusion)."""

    lcm_ddim_steps: int = option(50, label="solver steps", lo=1, hi=10_000, help="teacher solver steps")
    lcm_guidance: float = option(3.0, label="guidance", lo=0.0, hi=100.0, step=0.5,
                                 help="classifier-free guidance of the teacher")
    lcm_ema_decay: float = option(0.95, label="EMA decay", lo=0.0, hi=1.0, hi_open=True, step=0.01,
                                  help="EMA decay of the target network")


@dataclass
class DigitsOptions:
    per_digit: int = option(10, label="samples per digit", flag="--samples", lo=1, hi=10_000,
                            help="images generated per digit")
    steps: int | None = option(None, label="steps", lo=1, hi=1000, none_label="25, a few-step model's own",
                               help="sampler steps")
    guidance: float | None = option(None, label="guidance", lo=0.0, hi=100.0, step=0.5, none_label="3",
                                    help="classifier-free guidance")
    seed: int = option(0, label="seed", lo=0, hi=SEED_MAX, help="random seed")


@dataclass
class ImageOptions:
    prompt: str = option("", label="prompt", legacy=("image_prompt",),
                         help="text prompt (empty: unconditional / empty prompt)")
    class_label: int | None = option(None, label="class", flag="--class", lo=0, hi=1_000_000, none_label="none",
                                     help="a class instead of a prompt (the demo: a digit 0-9)")
    seed: int = option(0, label="first seed", lo=0, hi=SEED_MAX - 256, help="first seed")
    n: int = option(4, label="images", lo=1, hi=256, legacy=("images",), help="images per model: seeds SEED..SEED+N-1")
    steps: int | None = option(25, label="steps", lo=1, hi=1000, none_label="the model's own",
                               help="sampler steps (a few-step model uses its own)")
    guidance: float | None = option(None, label="guidance", lo=0.0, hi=100.0, step=0.5,
                                    none_label="the pipeline's", help="classifier-free guidance scale")
