"""SlimGUI's diffusion family: BK-SDM block removal, LD-Pruner scoring, distillation and few-step generation.

This module is the plugin manifest only; it imports nothing heavy.  The code behind each entry is
imported the first time it is used.
"""

from slimgui.core.plugins import AdapterSpec, CriterionSpec, DemoSpec, EvaluatorSpec, Plugin, PreviewerSpec

plugin = Plugin(
    name="diffusion",
    version="1",
    description="Diffusion U-Nets (Stable Diffusion-style pipelines, UNet2DModel): BK-SDM, LD-Pruner, LCM",
    adapters=[
        AdapterSpec("diffusers", "diffusion", "slimgui_diffusion.adapter:DiffusersAdapter", "slimgui_diffusion.probe:match",
                    "diffusers pipeline folders (model_index.json) and U-Net folders"),
    ],
    criteria=[
        CriterionSpec("ldpruner", "slimgui_diffusion.criteria:LDPruner",
                      "LD-Pruner: change of the output latents' distribution with the unit bypassed",
                      families=("diffusion",)),
        CriterionSpec("output-change", "slimgui_diffusion.criteria:OutputChange",
                      "mean squared change of the final decoded images with the unit bypassed",
                      families=("diffusion",)),
    ],
    evaluators=[EvaluatorSpec("digits", "slimgui_diffusion.evaluate:digit_quality",
                              "demo digits: classifier accuracy and Fréchet distance of generated samples",
                              families=("diffusion",))],
    previewers=[PreviewerSpec("generate", "slimgui_diffusion.generate:generate_images", "image",
                              "images of a prompt from fixed seeds", families=("diffusion",))],
    demos=[DemoSpec("diffusion", "slimgui_diffusion.demo:ensure_demo",
                    "Stable-Diffusion-shaped pipeline trained on scikit-learn's digits, conditioned on the digit")],
)
