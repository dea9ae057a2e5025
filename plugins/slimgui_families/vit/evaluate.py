"""Top-1 / top-5 accuracy of a ViT on an image folder (one sub-folder per class) or the demo's held-out digits."""

from __future__ import annotations

import time
from typing import Any

import torch

from slimgui.core.errors import SlimError
from slimgui.core.model import origin_with
from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .data import digits_are_labels, digits_for, label_ids, load_batch, preprocess_of, scan_folder, spread


def _need_logits(model) -> None:
    if model.module.classifier is None:
        raise SlimError("this model has no classifier (a ViTModel backbone): there is no accuracy to measure",
                        hint="open a ViT/DeiT image classifier")


def uses_digits(model) -> bool:
    """Whether the demo's digits are this model's own data (the demo, models made from it, digit classifiers)."""
    return digits_are_labels(model.config) or origin_with(model.source, "slimgui_demo.json") is not None


def top_k(model, data_path: str | None = None, *, eval_batch_size: int = 64, max_images: int | None = None,
          progress: ProgressFn | None = None, cancel: CancelToken | None = None, **_: Any) -> dict[str, Any]:
    """Top-1 (``accuracy``) and top-5 (``top5``) accuracy.  ``data_path``: an image folder whose sub-folders are
    named after the model's labels (or label numbers); None: the demo's held-out digits (digit classifiers only).
    The keywords are :class:`~slimgui_families.vit.options.TopKOptions`."""
    _need_logits(model)
    pre = preprocess_of(model)
    module = model.module
    k = min(5, int(model.config.num_labels))
    t0 = time.perf_counter()
    correct1 = correct5 = seen = 0
    was_training = module.training
    module.eval()
    try:
        if data_path is None or not str(data_path).strip():
            if not uses_digits(model):
                raise SlimError("top-k needs an image folder for this model (its labels are not the demo's digits)",
                                hint="pass --data FOLDER with one sub-folder of images per class")
            x, y = digits_for(pre, "test")
            if max_images:
                keep = spread(len(y), max_images)
                x, y = x[keep], y[keep]
            batches = [(xb, yb) for xb, yb in zip(x.split(eval_batch_size), y.split(eval_batch_size))]
            source = "the demo's held-out digits"
            loader = iter(batches)
            total = len(y)
        else:
            folder = scan_folder(data_path, need_classes=True)
            ids = label_ids(folder.classes, model.config)
            files = folder.files
            if max_images:
                files = [files[i] for i in spread(len(files), max_images)]
            total = len(files)
            source = str(data_path)

            def load():
                for i in range(0, len(files), eval_batch_size):
                    chunk = files[i:i + eval_batch_size]
                    yield load_batch([p for p, _ in chunk], pre), torch.tensor([ids[c] for _, c in chunk])
            loader = load()
        with torch.no_grad():
            for xb, yb in loader:
                check(cancel)
                logits = module(pixel_values=xb).logits
                top = logits.topk(k, dim=-1).indices
                correct1 += int((top[:, 0] == yb).sum())
                correct5 += int((top == yb[:, None]).any(-1).sum())
                seen += len(yb)
                report(progress, seen, total, "top-k accuracy")
    finally:
        module.train(was_training)
    return {"accuracy": correct1 / max(1, seen), "top5": correct5 / max(1, seen), "images": seen, "k": k,
            "data": source, "seconds": round(time.perf_counter() - t0, 3)}
