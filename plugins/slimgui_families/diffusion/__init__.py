"""SlimGUI's diffusion family: BK-SDM block removal, LD-Pruner scoring, distillation and few-step generation.

This module is the plugin manifest only; it imports nothing heavy.  The code behind each entry is
imported the first time it is used; the options schemas are in :mod:`slimgui_families.diffusion.options`.
"""

from slimgui.core.metrics import Metric
from slimgui.core.plugins import (
    AdapterSpec,
    CriterionSpec,
    DataSpec,
    DemoSpec,
    EvaluatorSpec,
    MethodSpec,
    Plugin,
    PreviewerSpec,
)

IMAGES = DataSpec(kind="folder", label="image folder",
                  help="a folder of images, with captions (metadata.jsonl / .txt files) when the model takes prompts")

plugin = Plugin(
    name="diffusion",
    version="2",
    description="Diffusion U-Nets (Stable Diffusion-style pipelines, UNet2DModel): BK-SDM, LD-Pruner, LCM",
    adapters=[
        AdapterSpec("diffusers", "diffusion", "slimgui_families.diffusion.adapter:DiffusersAdapter",
                    "slimgui_families.diffusion.probe:match",
                    "diffusers pipeline folders (model_index.json) and U-Net folders",
                    capabilities=("calibration", "default-data", "presets", "bench"),
                    items="images", unit_word="unit", layout="u", native="diffusers folder",
                    default_method="lora",
                    data=DataSpec(kind="folder", label="calibration images", help=IMAGES.help),
                    default_criterion="ldpruner", default_criterion_no_data="ldpruner",
                    file_kinds=("model_index.json", "unet/config.json")),
    ],
    criteria=[
        CriterionSpec("ldpruner", "slimgui_families.diffusion.criteria:LDPruner",
                      "LD-Pruner: change of the output latents' distribution with the unit bypassed",
                      families=("diffusion",)),
        CriterionSpec("output-change", "slimgui_families.diffusion.criteria:OutputChange",
                      "mean squared change of the final decoded images with the unit bypassed",
                      families=("diffusion",)),
    ],
    methods=[
        MethodSpec("kd", "slimgui_families.diffusion.training:build_kd", label="Distillation (BK-SDM)", families=("diffusion",),
                   description="Learns from the original U-Net: denoising loss (λ_task), the original's output "
                               "(λ_out) and stage features (λ_feat).",
                   options="slimgui_families.diffusion.options:DistillOptions", default_lr=2e-4, teacher="original"),
        MethodSpec("lora", "slimgui_families.diffusion.training:build_lora", label="LoRA", families=("diffusion",),
                   description="Low-rank adapters on the U-Net's attention and projection layers, merged at the end.",
                   options="slimgui_families.diffusion.options:LoraOptions", default_lr=1e-3),
        MethodSpec("cpt", "slimgui_families.diffusion.training:build_cpt", label="Continued training", families=("diffusion",),
                   description="Every weight of the U-Net trains on the images with the denoising loss.",
                   default_lr=2e-4),
        MethodSpec("lcm", "slimgui_families.diffusion.training:build_lcm", label="Few-step (LCM)", families=("diffusion",),
                   description="Latent consistency distillation (EdgeFusion): learns to draw in 1–4 steps from "
                               "itself run with a many-step solver.",
                   options="slimgui_families.diffusion.options:ConsistencyOptions", default_lr=1e-4, teacher="self",
                   role="few-step"),
    ],
    evaluators=[EvaluatorSpec("digits", "slimgui_families.diffusion.evaluate:digit_quality",
                              "demo digits: classifier accuracy and Fréchet distance of generated samples",
                              families=("diffusion",), options="slimgui_families.diffusion.options:DigitsOptions",
                              metrics=(Metric("accuracy", "Digit accuracy", better="higher", fmt="{:.1%}",
                                              headline=True,
                                              help="share of generated images the demo's classifier reads as the "
                                                   "digit asked for"),
                                       Metric("fid", "Fréchet distance", better="lower", fmt="{:.2f}",
                                              help="between the classifier features of generated and real digits"),
                                       Metric("n", "Images", fmt="{:,}")),
                              data=DataSpec(kind="folder", label="demo folder",
                                            help="the diffusion demo folder holding the digit classifier"))],
    previewers=[PreviewerSpec("generate", "slimgui_families.diffusion.generate:generate_images", "image",
                              "images of a prompt from fixed seeds", families=("diffusion",),
                              options="slimgui_families.diffusion.options:ImageOptions", label="Images")],
    demos=[DemoSpec("diffusion", "slimgui_families.diffusion.demo:ensure_demo",
                    "Stable-Diffusion-shaped pipeline trained on scikit-learn's digits, conditioned on the digit")],
)
