"""SlimGUI's gan family: Pix2Pix U-Net generators (junyanz/pytorch-CycleGAN-and-pix2pix) slimmed the Cut Inner Layers
way — a per-layer sensitivity scan, filter pruning of the inner layers, and inner-layer removal.

This module is the plugin manifest only; it imports nothing heavy.  The code behind each entry is imported the first
time it is used: :mod:`.probe` (what opens, from keys and shapes), :mod:`.modeling` (the generator class, junyanz's
keys), :mod:`.adapter` (graph, plans, save), :mod:`.pruning` (the dependency table, masked and physically pruned
models), :mod:`.plans` (inner / global plans), :mod:`.criteria`, :mod:`.data` (paired folders, PSNR, SSIM),
:mod:`.evaluate`, :mod:`.preview`, :mod:`.training`, :mod:`.export` and :mod:`.demo`; the options are in :mod:`.options`.
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

ME = "slimgui_families.gan"
PAIRS = DataSpec(kind="folder", label="paired image folder", required=False,
                 help="A/ and B/ sub-folders with the same file names (input, target), or side-by-side AB images; "
                      "the demo brings its own held-out pairs")

plugin = Plugin(
    name="gan",
    version="1",
    description="U-Net GAN generators (Pix2Pix): Cut Inner Layers — sensitivity scan, inner-filter pruning, "
                "inner-layer removal",
    adapters=[
        AdapterSpec("pix2pix", "gan", f"{ME}.adapter:Pix2PixAdapter", f"{ME}.probe:match",
                    "Pix2Pix U-Net generators as pytorch-CycleGAN-and-pix2pix saves them (*_net_G.pth, .safetensors) "
                    "and SlimGUI's slimmed ones",
                    capabilities=("calibration", "default-data", "presets", "bench", "abconv"), items="images",
                    unit_word="unit", layout="u", native="latest_net_G.pth + .safetensors (+ slimgui_gan.json)",
                    data=PAIRS, default_criterion="sensitivity-scan", default_criterion_no_data="filter-l1",
                    default_method="kd", file_kinds=("*_net_G.pth", "*.safetensors"),
                    train_options=f"{ME}.options:PairDataOptions"),
    ],
    criteria=[
        CriterionSpec("sensitivity-scan", f"{ME}.criteria:Sensitivity",
                      "Cut Inner Layers' sensitivity scan: each layer pruned alone by every eighth of its filters "
                      "(and each inner level cut alone); score = mean |output change| on the calibration inputs",
                      families=("gan",), needs_data=True, needs=("calibration",)),
        CriterionSpec("filter-l1", f"{ME}.criteria:FilterL1",
                      "mean |w| of the filters (per filter, divided by the fan-in: one scale across layers)",
                      families=("gan",)),
        CriterionSpec("filter-l2", f"{ME}.criteria:FilterL2", "root-mean-square of the filters' weights",
                      families=("gan",)),
        CriterionSpec("bn-scale", f"{ME}.criteria:BNScale",
                      "|γ| of the filters' batch norm (mean |w| where a layer has none)", families=("gan",)),
    ],
    methods=[
        MethodSpec("kd", f"{ME}.training:build_kd", label="Distillation", families=("gan",),
                   description="The slimmed generator learns from the original without an adversarial loss: L1 to "
                               "its output and MSE of every kept layer's features.",
                   options=f"{ME}.options:DistillOptions", default_lr=1e-3, teacher="original"),
        MethodSpec("finetune", f"{ME}.training:build_finetune", label="Fine-tune (Pix2Pix)", families=("gan",),
                   description="L1 to the paired targets (+ a PatchGAN discriminator's loss, off by default).",
                   options=f"{ME}.options:FinetuneOptions", default_lr=1e-3),
    ],
    evaluators=[
        EvaluatorSpec("pairs", f"{ME}.evaluate:pair_quality",
                      "PSNR and SSIM to the targets of a paired folder (and to the original generator's output)",
                      families=("gan",), options=f"{ME}.options:PairEvalOptions",
                      metrics=(Metric("psnr", "PSNR to target", unit="dB", better="higher", fmt="{:.2f}",
                                      headline=True),
                               Metric("ssim", "SSIM to target", better="higher", fmt="{:.4f}"),
                               Metric("psnr_to_original", "PSNR to original", unit="dB", better="higher",
                                      fmt="{:.2f}"),
                               Metric("ssim_to_original", "SSIM to original", better="higher", fmt="{:.4f}"),
                               Metric("pairs", "Pairs", fmt="{:,}")),
                      data=DataSpec(kind="folder", label="paired folder", required=False, help=PAIRS.help)),
    ],
    previewers=[
        PreviewerSpec("translate", f"{ME}.preview:translate_preview", "image",
                      "input | original output | this generator's output | target, on the same pairs",
                      families=("gan",), options=f"{ME}.options:TranslatePreviewOptions", label="Translations"),
        PreviewerSpec("sensitivity-chart", f"{ME}.preview:sensitivity_chart", "image",
                      "the sensitivity-vs-fraction chart: output change when one layer loses 1/8 … 7/8 of its filters, "
                      "one line per layer", families=("gan",), options=f"{ME}.options:SensitivityChartOptions",
                      label="Sensitivity vs fraction"),
    ],
    exporters=[
        ExporterSpec("gan-onnx", f"{ME}.export:export_onnx", label="ONNX (generator)",
                     description="an ONNX file of the generator (input -> output), FP32 or dynamic INT8, checked "
                                 "against torch", families=("gan",), options=f"{ME}.options:GanOnnxOptions",
                     output="file", suffix=".gan.onnx", runner=f"{ME}.export:bench_runner",
                     metrics=(Metric("cosine", "Cosine to torch", better="higher", fmt="{:.5f}"),
                              Metric("max_abs_diff", "Max abs diff", better="lower", fmt="{:.3g}"),
                              Metric("psnr_to_torch", "PSNR to torch", unit="dB", better="higher", fmt="{:.1f}"),
                              Metric("bytes", "File size", unit="bytes", fmt="{:,}"))),
    ],
    demos=[DemoSpec("gan", f"{ME}.demo:ensure_demo",
                    "Pix2Pix U-Net (6 downs, ngf 8) trained on edges -> photo patches of scikit-learn's sample images")],
)
