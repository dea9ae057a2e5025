"""Options of the cnn family's methods and exporter (dataclasses of :func:`slimgui.core.options.option` fields)."""

from __future__ import annotations

from dataclasses import dataclass

from slimgui.core.options import option


@dataclass
class DistillOptions:
    temperature: float = option(4.0, label="temperature", lo=1.0, hi=20.0, step=0.5,
                                help="softmax temperature of the teacher's and the student's logits")
    hard_weight: float = option(0.1, label="label weight", lo=0.0, hi=1.0, step=0.05,
                                help="share of the loss given to the true labels (the rest: the teacher's logits)")


@dataclass
class ConvNetOnnxOptions:
    check_images: int = option(32, label="check images", lo=1, hi=360, help="held-out digits the export is checked on")
