"""The gan family's options, as data (the CLI builds its flags and the app its forms from these schemas; sessions
store the values by field name).  Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass

from slimgui.core.options import option

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff);;All files (*)"
WEIGHT_MAX = 1e6


@dataclass
class PairEvalOptions:
    """PSNR and SSIM on a paired folder (A/ and B/, or side-by-side AB images), or the demo's held-out pairs."""

    max_pairs: int | None = option(None, label="max pairs", lo=1, hi=1_000_000, none_label="all",
                                   help="evaluate at most this many pairs (spread over the folder)")
    eval_batch_size: int = option(16, label="batch size", lo=1, hi=1024, advanced=True, help="pairs per forward pass")


@dataclass
class TranslatePreviewOptions:
    """Input | output | target of a few pairs, side by side."""

    pairs: int = option(4, label="pairs", lo=1, hi=16, help="how many of the evaluation pairs to show (one row each)")
    first: int = option(0, label="first pair", lo=0, hi=100_000, help="index of the first pair shown")
    image: str | None = option(None, label="input image", path="file", filter=IMAGE_FILTER,
                               none_label="the demo's held-out pairs",
                               help="translate this image instead (no target is shown)")
    data: str | None = option(None, label="paired folder", path="folder", none_label="the demo's held-out pairs",
                              flag="--pairs-folder", help="the pairs to show: A/ and B/ sub-folders, or side-by-side "
                                                           "AB images")
    view_scale: int = option(2, label="zoom", lo=1, hi=8, advanced=True, help="pixels per generator pixel")


@dataclass
class PairDataOptions:
    """How the training pairs are used (the family's training-data options)."""

    max_train_pairs: int | None = option(None, label="max training pairs", lo=2, hi=10_000_000, none_label="all",
                                         help="use at most this many pairs of the training folder")


@dataclass
class FinetuneOptions:
    """Fine-tuning on pairs with the Pix2Pix loss: λ_L1·|G(x) − y| (+ λ_GAN·adversarial with a PatchGAN, off)."""

    lambda_l1: float = option(100.0, label="L1 weight", lo=0.0, hi=WEIGHT_MAX, step=10.0,
                              help="weight of the L1 distance to the target (pix2pix: 100)")
    lambda_gan: float = option(0.0, label="GAN weight", lo=0.0, hi=WEIGHT_MAX, step=0.5,
                               help="weight of the adversarial loss of a PatchGAN discriminator trained alongside "
                                    "(0: off, the default)")


@dataclass
class DistillOptions:
    """Distillation from the original generator without an adversarial loss: output L1 + feature matching."""

    kd_out: float = option(1.0, label="output L1", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                           help="weight of the L1 distance to the original's output")
    kd_feat: float = option(1.0, label="feature matching", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                            help="weight of the MSE between the kept channels of every kept layer's output and the "
                                 "original's")
    kd_target: float = option(0.0, label="target L1", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                              help="weight of the L1 distance to the paired target (0: learn from the original only)")


@dataclass
class GanOnnxOptions:
    """ONNX export of a generator: FP32 or dynamic INT8, checked against torch."""

    onnx_mode: str = option("fp32", label="precision", choices=(("fp32", "FP32"), ("int8", "INT8 (dynamic)")),
                            help="FP32, or dynamic INT8 (weights INT8, activations quantised on the fly); not called "
                                 "mode / --int8 so as not to shadow the language models' --mixed on the CLI")
    check_images: int = option(8, label="check images", lo=1, hi=1024, advanced=True,
                               help="images the export is compared with torch on")


@dataclass
class SensitivityChartOptions:
    """The sensitivity-vs-fraction chart: each layer pruned alone by every eighth, output change on paired inputs."""

    samples: int = option(16, label="inputs", lo=1, hi=4096, help="calibration inputs of the paired folder (or the "
                          "demo's held-out pairs) the scan runs on")
    data: str | None = option(None, label="paired folder", path="folder", none_label="the demo's held-out pairs",
                              flag="--pairs-folder", help="A/ and B/ sub-folders, or side-by-side AB images")
