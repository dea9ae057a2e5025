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
