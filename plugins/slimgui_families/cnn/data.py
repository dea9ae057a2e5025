"""scikit-learn's 8×8 digits as the demo CNNs see them: 1×16×16 images in [0, 1] (bilinear ×2), labels 0–9; every
5th image is held out (``split="test"``, 360 images), the rest train (1437)."""

from __future__ import annotations

SIZE = 16


def digits(split: str):
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    y = torch.tensor(d.target, dtype=torch.long)
    held = torch.arange(len(y)) % 5 == 0
    keep = held if split == "test" else ~held
    return x[keep].contiguous(), y[keep]


def accuracy_of(module, x, y, batch: int = 256) -> float:
    import torch

    module.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            right += int((module(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return right / max(1, len(y))
