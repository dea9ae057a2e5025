"""The ViT family's options, as data: what its evaluator and previewer take.  The CLI builds its flags and the app
its forms from these schemas; sessions store the values by field name.  Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass

from slimgui.core.options import option

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp *.tif *.tiff);;All files (*)"


@dataclass
class TopKOptions:
    """Top-1 / top-5 accuracy on an image folder (or the demo's held-out digits)."""

    eval_batch_size: int = option(64, label="batch size", lo=1, hi=4096, advanced=True,
                                  help="images per forward pass")
    max_images: int | None = option(None, label="max images", lo=1, hi=10_000_000, none_label="all",
                                    gui_default=2000, help="evaluate at most this many images (spread over the classes)")


@dataclass
class AttentionPreviewOptions:
    """An image, the model's top-5 predictions and where its class token looks."""

    image: str | None = option(None, label="image", path="file", filter=IMAGE_FILTER,
                               none_label="a held-out digit of the demo", help="the image to classify")
    digit: int = option(0, label="held-out digit", lo=0, hi=10_000,
                        help="which of the demo's held-out digits to show when no image is given")
    attention: str = option("last", label="attention map",
                            choices=(("last", "last block"), ("rollout", "attention rollout")),
                            help="the class token's attention in the last block, or rolled out over all blocks")
    view_size: int = option(224, label="shown size", lo=32, hi=1024, step=32, advanced=True,
                       help="pixels of the shown image's side")


WEIGHT_MAX = 1e6  # the largest weight of a distillation term (the language models' bound, same flags)


@dataclass
class ImageDataOptions:
    """How the training images are used (the family's training-data options, ``AdapterSpec.train_options``)."""

    max_train_images: int | None = option(None, label="max training images", lo=2, hi=10_000_000, none_label="all",
                                          help="use at most this many images of the training folder (spread over "
                                               "the classes); a share of them (--val-fraction) is held out")


@dataclass
class FinetuneOptions:
    """Fine-tuning: every weight trains on the images with cross-entropy."""

    label_smoothing: float = option(0.0, label="label smoothing", lo=0.0, hi=0.5, step=0.05,
                                    help="share of each target spread over the other classes")


@dataclass
class DistillOptions:
    """Distillation from the original: CE + KL(teacher‖student, T) on the logits + MSE of the kept blocks' outputs
    + squared error of the kept heads' attention maps.  The flags --kd-ce/--kd-kl/--kd-hidden/--kd-temperature mean
    what they mean for the language models; --kd-attn is the attention-map term."""

    kd_ce: float = option(1.0, label="cross-entropy", lo=0.0, hi=WEIGHT_MAX, step=0.1, aliases=("--lambda-task",),
                          help="weight of the cross-entropy on the images' labels")
    kd_kl: float = option(1.0, label="KL", lo=0.0, hi=WEIGHT_MAX, step=0.1, aliases=("--lambda-out",),
                          help="weight of the KL divergence to the original's logits")
    kd_hidden: float = option(1.0, label="hidden-state", lo=0.0, hi=WEIGHT_MAX, step=0.1, aliases=("--lambda-feat",),
                              help="weight of the MSE between the outputs of matching (kept) blocks")
    kd_attn: float = option(1.0, label="attention maps", lo=0.0, hi=WEIGHT_MAX, step=0.1,
                            help="weight of the squared error between the attention maps of matching (kept) heads "
                                 "(summed over keys, averaged over queries)")
    kd_temperature: float = option(2.0, label="temperature", lo=0.0, lo_open=True, hi=100.0, step=0.5,
                                   advanced=True, help="softmax temperature of the KL term")


@dataclass
class VitOnnxOptions:
    """ONNX export of a ViT: FP32 or dynamic INT8, checked against torch on real images."""

    mode: str = option("fp32", label="precision", choices=(("fp32", "FP32"), ("int8", "INT8 (dynamic)")),
                       consts=(("--int8", "int8", "dynamic INT8 quantisation of every weight MatMul"),),
                       help="FP32, or dynamic INT8 (weights INT8, activations quantised on the fly)")
    check_images: int = option(32, label="check images", lo=1, hi=4096, advanced=True,
                               help="images the export is compared with torch on (the demo's held-out digits for a "
                                    "digit classifier, else seeded random images)")
