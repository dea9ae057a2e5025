"""SlimGUI's vision-transformer family: ViT and DeiT pruned by blocks, heads, query/key pairs, value neurons and
MLP neurons into physically smaller models (the SNP paper's granularity).

This module is the plugin manifest only; it imports nothing heavy.  The code behind each entry is imported the
first time it is used: :mod:`.probe` (what opens), :mod:`.modeling` (the one model class, self-contained, copied
beside the weights of models transformers' own ViT cannot express), :mod:`.adapter` (graph, plan, save),
:mod:`.data` (image folders and the demo's digits), :mod:`.evaluate`, :mod:`.preview`, :mod:`.demo`; the options
schemas are in :mod:`.options`; the criteria ``snp-qk``, ``snp-v`` and ``head-attn`` are in :mod:`.criteria` (their
formulas in its docstring), the healing methods ``finetune`` and ``kd`` in :mod:`.training`, the ONNX exporter and its
benchmark runner in :mod:`.export`.
"""

from slimgui.core.metrics import Metric
from slimgui.core.plugins import (
    AdapterSpec,
    CriterionSpec,
    DataSpec,
    DemoSpec,
    EvaluatorSpec,
    ExporterSpec,
    MethodSpec,
    Plugin,
    PreviewerSpec,
)

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
                    data=IMAGES, default_criterion="snp-qk", default_criterion_no_data="magnitude",
                    file_kinds=("config.json", "*.safetensors"), train_options=f"{ME}.options:ImageDataOptions",
                    default_method="finetune"),
    ],
    criteria=[
        CriterionSpec("snp-qk", f"{ME}.criteria:SnpQK",
                      "SNP query/key pairs: per head, the pair groups removed greedily so the remaining pairs keep the "
                      "attention maps; score = mean KL(original || masked) of the head's attention rows when the group "
                      "goes (SlimGUI's formula: the paper's is not public)", families=("vit",), needs_data=True,
                      needs=("calibration",)),
        CriterionSpec("snp-v", f"{ME}.criteria:SnpV",
                      "SNP value neurons: the energy of a group's residual-stream contribution that the other heads' "
                      "value outputs cannot express (least-squares residual; SlimGUI's formula: the paper's is not "
                      "public)", families=("vit",), needs_data=True, needs=("calibration",)),
        CriterionSpec("head-attn", f"{ME}.criteria:HeadAttention",
                      "heads: relative change of the block's output with the head removed (its q/k and value masks "
                      "zeroed)", families=("vit",), needs_data=True, needs=("calibration",)),
    ],
    methods=[
        MethodSpec("finetune", f"{ME}.training:build_finetune", label="Fine-tune", families=("vit",),
                   description="Every weight trains with cross-entropy on the images (the demo's training digits "
                               "when none are given).", options=f"{ME}.options:FinetuneOptions", default_lr=3e-4),
        MethodSpec("kd", f"{ME}.training:build_kd", label="Distillation", families=("vit",),
                   description="The slimmed model learns from the original: cross-entropy, KL to its logits, MSE of "
                               "the kept blocks' outputs and of the kept heads' attention maps.",
                   options=f"{ME}.options:DistillOptions", default_lr=3e-4, teacher="original"),
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
                      label="Predictions and attention", joint=f"{ME}.preview:same_scale"),
    ],
    exporters=[
        ExporterSpec("onnx", f"{ME}.export:export_onnx", label="ONNX (ViT)",
                     description="an ONNX file of the classifier (pixel_values -> logits), FP32 or dynamic INT8, "
                                 "checked against torch on images", families=("vit",),
                     options=f"{ME}.options:VitOnnxOptions", output="file", suffix=".vit.onnx",
                     runner=f"{ME}.export:bench_runner",
                     metrics=(Metric("cosine", "Cosine to torch", better="higher", fmt="{:.5f}"),
                              Metric("max_abs_diff", "Max abs diff", better="lower", fmt="{:.3g}"),
                              Metric("agreement", "Top-1 agreement", better="higher", fmt="{:.1%}"),
                              Metric("bytes", "File size", unit="bytes", fmt="{:,}"))),
    ],
    demos=[DemoSpec("vit", f"{ME}.demo:ensure_demo",
                    "6-block ViT (4 heads, width 128, patch 4) trained from scratch on scikit-learn's digits")],
)
