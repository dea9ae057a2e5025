"""SlimGUI's language-model family: depth pruning of transformers LMs (Shortened LLaMA).

This module is the plugin manifest only; it imports nothing heavy.  The code behind each entry is
imported the first time it is used; the options schemas are in :mod:`slimgui_families.llm.options`.
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

TEXT = DataSpec(kind="file", label="text", filter="Text (*.txt *.md *.py *.jsonl *.json);;All files (*)",
                help="a text file, JSONL, or a saved datasets folder")

plugin = Plugin(
    name="llm",
    version="2",
    description="Depth pruning of transformers language models (LLaMA, Mistral, Qwen2, GPT-2, OPT, BERT-style)",
    adapters=[
        AdapterSpec("transformers", "llm", "slimgui_families.llm.adapter:TransformersAdapter", "slimgui_families.llm.probe:match",
                    "transformers folders (config.json + safetensors), GGUF files or hub ids whose model is a stack of blocks",
                    capabilities=("calibration", "default-data", "width", "bench", "decode"),
                    items="tokens", unit_word="block", layout="stack", native="transformers folder",
                    default_method="lora",
                    data=DataSpec(kind="file", label="calibration text", filter=TEXT.filter,
                                  help="text the criteria measure the blocks on"),
                    default_criterion="ppl", default_criterion_no_data="magnitude",
                    calibration_options="slimgui_families.llm.options:CalibrationOptions",
                    train_options="slimgui_families.llm.options:TextDataOptions",
                    bench_options="slimgui_families.llm.options:BenchOptions",
                    file_kinds=("config.json", "*.safetensors", "*.gguf")),
    ],
    criteria=[
        CriterionSpec("ppl", "slimgui_families.llm.criteria:PerplexityDrop",
                      "perplexity on calibration text with the block removed (encoders: change of final hidden states)",
                      families=("llm",), needs_data=True, needs=("calibration",)),
        CriterionSpec("bi", "slimgui_families.llm.criteria:BlockInfluence",
                      "block influence: mean 1 - cos(h_in, h_out) over tokens", families=("llm",),
                      needs_data=True, needs=("calibration",)),
    ],
    methods=[
        MethodSpec("lora", "slimgui_families.llm.training:build_lora", label="LoRA", families=("llm",),
                   description="Low-rank adapters (peft) on the blocks' linear layers: few parameters train, little "
                               "memory; merged into the weights at the end.",
                   options="slimgui_families.llm.options:LoraOptions", default_lr=1e-3),
        MethodSpec("cpt", "slimgui_families.llm.training:build_cpt", label="Continued pretraining", families=("llm",),
                   description="Every weight trains on the text: the strongest healing, and the most memory.",
                   default_lr=2e-4),
        MethodSpec("kd", "slimgui_families.llm.training:build_kd", label="Distillation", families=("llm",),
                   description="The slimmed model learns from the original: its logits (KL), its block outputs "
                               "(hidden-state MSE) and the next-token loss; an encoder learns its block outputs "
                               "and final hidden states.",
                   options="slimgui_families.llm.options:DistillOptions", default_lr=2e-4, teacher="original"),
    ],
    evaluators=[EvaluatorSpec("perplexity", "slimgui_families.llm.evaluate:perplexity",
                              "perplexity on a text file (sliding windows)", families=("llm",),
                              options="slimgui_families.llm.options:PerplexityOptions",
                              metrics=(Metric("perplexity", "Perplexity", better="lower", fmt="{:.3f}", headline=True,
                                              help="exp of the mean next-token loss (masked-LM loss for encoders)"),
                                       Metric("nll_per_token", "NLL per token", better="lower", fmt="{:.4f}"),
                                       Metric("tokens", "Tokens", fmt="{:,}")),
                              data=DataSpec(kind="file", label="evaluation text", filter=TEXT.filter,
                                            help="a held-out text file"))],
    previewers=[PreviewerSpec("generate", "slimgui_families.llm.evaluate:generate_text", "text",
                              "greedy continuation of a prompt", families=("llm",),
                              options="slimgui_families.llm.options:GenerateOptions", label="Text generation")],
    exporters=[ExporterSpec("onnx", "slimgui_families.llm.exporter:export_task", label="ONNX",
                            description="an ONNX file checked against torch (FP32, INT8 or mixed precision)",
                            families=("llm",), options="slimgui_families.llm.options:OnnxOptions", output="file",
                            suffix=".onnx", runner="slimgui_families.llm.exporter:bench_runner",
                            advice="slimgui_families.llm.exporter:int8_advice", advice_when=(("mode", ("int8", "mixed")),),
                            layers_option="keep_fp32",
                            metrics=(Metric("cosine", "Cosine to torch", better="higher", fmt="{:.5f}"),
                                     Metric("max_abs_diff", "Max abs diff", better="lower", fmt="{:.3g}"),
                                     Metric("output_rel_error", "Output error", better="lower", fmt="{:.3g}"),
                                     Metric("size_ratio", "Size ratio", better="lower", fmt="{:.3f}"),
                                     Metric("bytes", "Size", fmt="{:,}", unit="bytes")))],
    demos=[DemoSpec("llm", "slimgui_families.llm.demo:ensure_demo",
                    "12-block LLaMA trained on the Python standard library's source")],
)
