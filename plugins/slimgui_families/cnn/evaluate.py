"""Accuracy on the held-out digits (the demo's task; a model trained elsewhere on 1-channel 16×16 inputs too)."""

from __future__ import annotations

from typing import Any

from slimgui.core.errors import SlimError


def accuracy(model, data_path: str | None = None, *, progress=None, cancel=None, **_: Any) -> dict[str, Any]:
    from .data import SIZE, accuracy_of, digits

    cfg = model.config
    if cfg["in_channels"] != 1 or cfg["num_classes"] != 10:
        raise SlimError("the held-out digits need a network with 1 input channel and 10 classes",
                        hint=f"this one has {cfg['in_channels']} input channels and {cfg['num_classes']} classes")
    x, y = digits("test")
    if cfg["image_size"] != SIZE:
        import torch

        x = torch.nn.functional.interpolate(x, size=(cfg["image_size"],) * 2, mode="bilinear", align_corners=False)
    return {"accuracy": accuracy_of(model.module, x, y), "images": int(len(y))}
