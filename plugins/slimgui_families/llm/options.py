"""The language-model family's options, as data: what its calibration, retraining data, healing methods,
evaluator, previewer, ONNX exporter and benchmark take.  The CLI builds its flags and the app its forms
from these schemas; sessions and job files store the values by field name.  Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass

from slimgui.core.options import option

INT_MAX = 2**31 - 1
SEQ_MAX = 1_048_576  # tokens; the model's own context (max_position_embeddings) is checked once it is open
WEIGHT_MAX = 1e6


def bos_option():
    """``bos``: whether each calibration segment, evaluation window and prompt starts with the tokenizer's BOS
    token.  None (the default) follows the tokenizer: BOS where it adds one itself (Gemma, LLaMA), none where it
    does not (GPT-2, OPT's own tokenizer adds one, encoders have no BOS)."""
    return option(None, label="BOS token", none_label="as the tokenizer does", advanced=True,
                  consts=(("--bos", True, "start every segment/window/prompt with the tokenizer's BOS token"),
                          ("--no-bos", False, "no BOS token, even where the tokenizer adds one")),
                  help="start each segment, window and prompt with the BOS token (default: as the tokenizer does)")


@dataclass
class CalibrationOptions:
    """How calibration text is cut (analysis with ppl, bi, taylor)."""

    seq_len: int = option(128, label="segment length", lo=2, hi=SEQ_MAX, step=16, context=True,
                          help="tokens per calibration segment, at most the model's context")
    bos: bool | None = bos_option()


@dataclass
class TextDataOptions:
    """How retraining text is read and cut into token blocks."""

    seq_len: int = option(128, label="sequence length", lo=2, hi=SEQ_MAX, step=16, context=True,
                          help="tokens per training sequence, at most the model's context")
    max_train_tokens: int | None = option(None, label="max tokens", lo=2, hi=2**40, none_label="all",
                                          advanced=True, help="use at most this many training tokens")
    bos: bool | None = bos_option()
    text_field: str = option("text", label="text field", advanced=True,
                             help="the JSONL / dataset field holding the text")
    prompt_template: str = option("### Instruction:\n{instruction}\n\n### Response:\n{response}",
                                  label="prompt template", advanced=True, cli=False,
                                  help="how instruction/response records become text")


@dataclass
class LoraOptions:
    """Low-rank adapters (peft) on the blocks' linear layers."""

    lora_r: int = option(8, label="rank", lo=1, hi=4096, help="LoRA rank")
    lora_alpha: int = option(16, label="alpha", lo=1, hi=65_536, help="LoRA alpha")
    lora_dropout: float = option(0.05, label="dropout", lo=0.0, hi=1.0, hi_open=True, step=0.01,
                                 help="LoRA dropout")
    lora_targets: list[str] | None = option(None, label="targets", none_label="every linear layer in the blocks",
                                            help="comma-separated module names")
    lora_merge: bool = option(True, label="merge into the weights", negate="--keep-adapter",
                              help="merge the adapter into the weights (--keep-adapter saves it instead)")


@dataclass
class DistillOptions:
    """Distillation from the original: CE + KL(teacher‖student, T) + MSE of matching block outputs."""

    kd_ce: float = option(1.0, label="next-token", lo=0.0, hi=WEIGHT_MAX, step=0.1, aliases=("--lambda-task",),
                          help="weight of the next-token loss")
    kd_kl: float = option(1.0, label="KL", lo=0.0, hi=WEIGHT_MAX, step=0.1, aliases=("--lambda-out",),
                          help="weight of the KL divergence to the original's logits")
    kd_hidden: float = option(1.0, label="hidden-state", lo=0.0, hi=WEIGHT_MAX, step=0.1, aliases=("--lambda-feat",),
                              help="weight of the MSE between matching block outputs")
    kd_temperature: float = option(2.0, label="temperature", lo=0.0, lo_open=True, hi=100.0, step=0.5,
                                   advanced=True, help="softmax temperature of the KL term")


@dataclass
class PerplexityOptions:
    seq_len: int = option(128, label="window", lo=2, hi=SEQ_MAX, step=16, legacy=("eval_seq_len",), context=True,
                          help="window length in tokens, at most the model's context")
    stride: int | None = option(None, label="stride", lo=1, hi=SEQ_MAX, none_label="the window length",
                                advanced=True, help="window stride (at most the window length)")
    max_tokens: int | None = option(None, label="max tokens", lo=2, hi=INT_MAX, none_label="all", gui_default=4096,
                                    legacy=("eval_max_tokens",), help="evaluate only the first N tokens")
    bos: bool | None = bos_option()


@dataclass
class GenerateOptions:
    prompt: str = option("def ", label="prompt", help="the text to continue")
    max_new_tokens: int = option(40, label="new tokens", lo=1, hi=100_000, context=True,
                                 help="tokens to generate, within the model's context")
    bos: bool | None = bos_option()


@dataclass
class OnnxOptions:
    mode: str = option("fp32", label="precision",
                       choices=(("fp32", "FP32"), ("int8", "INT8 (dynamic)"), ("mixed", "Mixed INT8/FP32")),
                       consts=(("--int8", "int8", "dynamic INT8 quantisation of every weight MatMul"),
                               ("--mixed", "mixed", "INT8 except the layers a sensitivity scan marks sensitive")),
                       help="FP32, dynamic INT8, or INT8 except the most sensitive layers")
    with_past: bool = option(False, label="past key/values", flag="--past", when=(("mode", ("fp32",)),),
                             help="ONNX with past key/values inputs for incremental decoding (FP32 only)")
    fp32_fraction: float = option(0.1, label="FP32 share", lo=0.0, hi=1.0, step=0.05, when=(("mode", ("mixed",)),),
                                  help="--mixed: share of the weight MatMuls kept FP32 (the most sensitive)")
    keep_fp32: list[str] | None = option(None, label="keep FP32", none_label="the scan's choice", gui=False,
                                         help="--mixed: comma-separated layers to keep FP32 instead of the scan's choice")
    sample_text: str | None = option(None, label="comparison text", flag="--data", path="file",
                                     none_label="random tokens",
                                     filter="Text files (*.txt *.md *.py);;All files (*)",
                                     help="text to draw the comparison inputs from")


@dataclass
class BenchOptions:
    seq: list[int] = option([128], label="sequence length", lo=1, hi=SEQ_MAX, sweep=True, context=True,
                            help="tokens per sequence; several comma-separated lengths give one row each")
    new_tokens: int = option(16, label="new tokens", lo=1, hi=100_000, help="tokens generated per decode run")
    decode: bool = option(True, label="decode", negate="--no-decode",
                          help="also time step-by-step decoding (--no-decode: forward passes only)")
