"""SlimGUI's vision-transformer family: ViT and DeiT pruned by blocks, heads, query/key pairs, value neurons and
MLP neurons into physically smaller models (the SNP paper's granularity).

This module is the plugin manifest only; it imports nothing heavy.  The code behind each entry is imported the
first time it is used: :mod:`.probe` (what opens), :mod:`.modeling` (the one model class, self-contained, copied
beside the weights of models transformers' own ViT cannot express), :mod:`.adapter` (graph, plan, save),
:mod:`.data` (image folders and the demo's digits), :mod:`.evaluate`, :mod:`.preview`, :mod:`.demo`; the options
schemas are in :mod:`.options`.
"""

from slimgui.core.metrics import Metric
from slimgui.core.plugins import AdapterSpec, DataSpec, DemoSpec, EvaluatorSpec, Plugin, PreviewerSpec

ME = "slimgui_families.vit"
IMAGES = DataSpec(kind="folder", label="image folder", required=False,
                  help="one sub-folder of images per class (named after the model's labels); the demo brings its "
                       "own digits")

plugin = Plugin(
    name="vit",
    version="1",
    description="Vision transformers (ViT, DeiT): blocks, heads, query/key pairs, value neurons and MLP neurons",
    adapters=[
        AdapterSpec("vit", "vit", f"{ME}.adapter:ViTAdapter", f"{ME}.probe:match",
                    "transformers ViT / DeiT folders (config.json + safetensors) and SlimGUI's pruned ViTs",
                    capabilities=("calibration", "default-data", "bench"), items="images", unit_word="unit",
                    layout="vit", native="transformers folder (pruned ViTs: with modeling_slimgui_vit.py)",
                    data=IMAGES, default_criterion="taylor", default_criterion_no_data="magnitude",
                    file_kinds=("config.json", "*.safetensors")),
    ],
    evaluators=[
        EvaluatorSpec("top-k", f"{ME}.evaluate:top_k", "top-1 and top-5 accuracy on an image folder (one sub-folder "
                      "per class), or on the demo's held-out digits", families=("vit",),
                      options=f"{ME}.options:TopKOptions",
                      metrics=(Metric("accuracy", "Top-1 accuracy", better="higher", fmt="{:.1%}", headline=True),
                               Metric("top5", "Top-5 accuracy", better="higher", fmt="{:.1%}"),
                               Metric("images", "Images", fmt="{:,}")),
                      data=DataSpec(kind="folder", label="evaluation images", required=False,
                                    help="one sub-folder of images per class; none: the demo's held-out digits")),
    ],
    previewers=[
        PreviewerSpec("attention", f"{ME}.preview:attention_preview", "image",
                      "an image with the top-5 predictions and the class token's attention overlaid",
                      families=("vit",), options=f"{ME}.options:AttentionPreviewOptions",
                      label="Predictions and attention"),
    ],
    demos=[DemoSpec("vit", f"{ME}.demo:ensure_demo",
                    "6-block ViT (4 heads, width 128, patch 4) trained from scratch on scikit-learn's digits")],
)
