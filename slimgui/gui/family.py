"""What the panels need to know about the open model's family, in one place.

The panels are general: a language model's blocks and a diffusion U-Net's stages go through the same
code.  Where they differ — what a throughput is counted in (tokens or images), what the preview shows
(text or images), which retraining methods apply and what their loss weights are called, which evaluator
measures the result — the answer comes from here, asked of the model's adapter first (an adapter may
declare ``bench_items``, ``train_methods``) and of the registry (previewers, evaluators), with defaults
for families that say nothing.  No panel tests a family's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slimgui.core.model import LoadedModel
from slimgui.core.plugins import Registry
from slimgui.core.session import previewers_for

# retraining methods: (key, name, description), per what the family trains on
TOKEN_METHODS = (
    ("lora", "LoRA", "Low-rank adapters (peft) on the blocks' linear layers: few parameters train, little memory; "
                     "merged into the weights at the end."),
    ("cpt", "Continued pretraining", "Every weight trains on the text: the strongest healing, and the most memory."),
    ("kd", "Distillation", "The slimmed model learns from the original: its logits (KL), its block outputs "
                           "(hidden-state MSE) and the next-token loss."),
)
IMAGE_METHODS = (
    ("kd", "Distillation (BK-SDM)", "Learns from the original U-Net: denoising loss (λ_task), the original's "
                                    "output (λ_out) and stage features (λ_feat)."),
    ("cpt", "Continued training", "Every weight of the U-Net trains on the images with the denoising loss."),
    ("lcm", "Few-step (LCM)", "Latent consistency distillation (EdgeFusion): learns to draw in 1–4 steps from "
                              "itself run with a many-step solver."),
    ("lora", "LoRA", "Low-rank adapters on the U-Net's attention and projection layers, merged at the end."),
)
METHOD_TEXT = {
    "tokens": {key: (name, desc) for key, name, desc in TOKEN_METHODS},
    "images": {key: (name, desc) for key, name, desc in IMAGE_METHODS},
}

# the three distillation weights (TrainConfig.kd_ce, kd_kl, kd_hidden): (label, tooltip)
KD_LABELS = {
    "tokens": (("next-token", "weight of the next-token loss"),
               ("KL", "weight of the KL divergence to the original's logits"),
               ("hidden-state", "weight of the MSE between matching block outputs")),
    "images": (("λ_task", "weight of the denoising loss (MSE between the predicted and the true noise)"),
               ("λ_out", "weight of the output-level distillation (MSE to the original U-Net's prediction)"),
               ("λ_feat", "weight of the feature-level distillation (MSE between matching stage outputs)")),
}


@dataclass(frozen=True)
class Traits:
    """How a family's work is counted and shown."""

    family: str = ""
    items: str = "tokens"  # what a throughput counts: "tokens" or "images"
    preview_media: str = "text"  # what the first previewer returns: "text", "image", ...
    methods: tuple[str, ...] = ("lora", "cpt", "kd")
    evaluators: tuple[str, ...] = ()
    unit_word: str = "block"  # what the prunable things are called
    extra: dict = field(default_factory=dict)

    @property
    def images(self) -> bool:
        return self.items == "images" or self.preview_media == "image"

    @property
    def evaluator(self) -> str | None:
        """The family's own evaluator (perplexity for language models, digits for the diffusion demo)."""
        return self.evaluators[0] if self.evaluators else None

    def kd_labels(self) -> tuple[tuple[str, str], ...]:
        return KD_LABELS["images" if self.images else "tokens"]

    def method_text(self, key: str) -> tuple[str, str]:
        """(name, description) of a retraining method as this family means it."""
        own = METHOD_TEXT["images" if self.images else "tokens"]
        other = METHOD_TEXT["tokens" if self.images else "images"]
        return own.get(key) or other.get(key) or (key, "")


def traits(registry: Registry, model: LoadedModel | None, graph=None) -> Traits:
    """The traits of ``model``'s family (defaults when no model is open)."""
    if model is None:
        return Traits()
    impl = model.impl
    previews = previewers_for(registry, model.family)
    media = previews[0][1] if previews else "text"
    items = str(getattr(impl, "bench_items", "") or ("images" if media == "image" else "tokens"))
    declared = getattr(impl, "train_methods", None)
    if declared:
        methods = tuple(str(m) for m in declared)
    else:
        methods = tuple(k for k, _, _ in (IMAGE_METHODS[:3] if items == "images" else TOKEN_METHODS))
    try:
        evaluators = tuple(registry.evaluator_names(model.family))
    except Exception:  # a broken plugin: no evaluator, the panels say so
        evaluators = ()
    layout = (graph.attrs.get("layout") if graph is not None else None) or "stack"
    return Traits(family=model.family, items=items, preview_media=media, methods=methods, evaluators=evaluators,
                  unit_word="unit" if layout == "unet" else "block")
