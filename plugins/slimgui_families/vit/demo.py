"""The built-in demo vision transformer: a small ViT trained from scratch on scikit-learn's digits.

Reproducible with::

    python -m slimgui_families.vit.demo --out resources/demo/vit        # a few minutes on 2 CPU cores

6 blocks, 4 heads of 32, width 128, MLP 256, patch 4 on 32×32 images (the 8×8 digits upsampled, 3 channels),
trained with random shifts and label smoothing on the training split; the fixed held-out split (by hash of the
index, :func:`slimgui_families.vit.data.held_out`) is never trained on.  The result is a plain transformers
``ViTForImageClassification`` folder (config.json, model.safetensors, preprocessor_config.json) with its training
log (``slimgui_demo.json``).  The repository ships it in ``resources/demo/vit``; when that copy is missing,
:func:`ensure_demo` rebuilds it into the user cache with this same script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from slimgui.core.io import atomic_write_text, cache_dir, replace_folder, resources_dir, shipped_or_built
from slimgui.core.progress import CancelToken, ProgressFn, report

from . import data

DEMO_VERSION = 1
MARKER = "slimgui_demo.json"
MODEL_CONFIG = dict(
    hidden_size=128, num_hidden_layers=6, num_attention_heads=4, intermediate_size=256, image_size=32, patch_size=4,
    num_channels=3, hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True, hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
TRAIN = dict(epochs=40, batch=64, lr=1.5e-3, warmup_epochs=3, weight_decay=0.05, label_smoothing=0.1, shift=3,
             seed=0)
PREPROCESSOR = {
    "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32},
    "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}


def _augment(x, gen, shift: int):
    """Random translations of up to ``shift`` pixels (zero padding), one per image."""
    import torch

    if shift <= 0:
        return x
    n, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, (shift, shift, shift, shift))
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen).tolist()
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen).tolist()
    return torch.stack([pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train_demo(out_dir: Path, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
               epochs: int | None = None) -> dict:
    """Train the demo ViT from scratch into ``out_dir`` (written as a whole folder, then moved into place)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    cfg = dict(TRAIN)
    if epochs is not None:
        cfg["epochs"] = int(epochs)
    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    x_train, y_train = data.digits("train")
    x_test, y_test = data.digits("test")
    norm = lambda x: (x - 0.5) / 0.5  # noqa: E731  (PREPROCESSOR's mean and std)
    labels = {i: str(i) for i in range(10)}
    model = ViTForImageClassification(ViTConfig(**MODEL_CONFIG, id2label=labels, label2id={v: k for k, v in labels.items()}))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embeddings" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embeddings" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg["lr"])
    bs = cfg["batch"]
    steps_per_epoch = math.ceil(len(y_train) / bs)
    total = cfg["epochs"] * steps_per_epoch
    warm = cfg["warmup_epochs"] * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warm:
            return cfg["lr"] * (step + 1) / warm
        return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(pixel_values=norm(b)).logits.argmax(-1) for b in x_test.split(256)])
        model.train()
        return float((pred == y_test).float().mean())

    history = []
    t0 = time.time()
    step = 0
    model.train()
    for epoch in range(cfg["epochs"]):
        order = torch.randperm(len(y_train), generator=gen)
        losses = []
        for i in range(0, len(order), bs):
            if cancel is not None:
                cancel.raise_if_cancelled()
            idx = order[i:i + bs]
            xb = norm(_augment(x_train[idx], gen, cfg["shift"]))
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            logits = model(pixel_values=xb).logits
            loss = torch.nn.functional.cross_entropy(logits, y_train[idx], label_smoothing=cfg["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            step += 1
            report(progress, step, total, f"training the demo ViT (epoch {epoch + 1}, loss {loss.item():.3f})")
        if epoch % 5 == 4 or epoch == cfg["epochs"] - 1:
            history.append({"epoch": epoch + 1, "train_loss": round(sum(losses) / len(losses), 4),
                            "heldout_accuracy": round(accuracy(), 4), "elapsed_s": round(time.time() - t0)})
            print(json.dumps(history[-1]), file=sys.stderr, flush=True)
    final = accuracy()
    meta = {
        "demo_version": DEMO_VERSION, "script": "python -m slimgui_families.vit.demo", "python": sys.version.split()[0],
        "torch": torch.__version__, "data": "scikit-learn digits, 8x8 upsampled to 32x32 (bilinear), 3 channels",
        "split": "held out when sha256('slimgui-digits-{index}') % 5 == 0",
        "train_images": int(len(y_train)), "heldout_images": int(len(y_test)),
        "model_config": MODEL_CONFIG, "train_config": cfg, "history": history,
        "heldout_accuracy": round(final, 4), "train_seconds": round(time.time() - t0),
    }
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval().save_pretrained(tmp)
    atomic_write_text(tmp / "preprocessor_config.json", json.dumps(PREPROCESSOR, indent=2) + "\n")
    atomic_write_text(tmp / MARKER, json.dumps(meta, indent=2) + "\n")
    replace_folder(tmp, out_dir)
    return meta


def shipped_model_dir() -> Path:
    return resources_dir() / "demo" / "vit"


def demo_model_dir(progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Path:
    """The demo model's folder: the shipped one, else the one built into the cache (built now when missing)."""
    return shipped_or_built("vit", DEMO_VERSION, ("config.json", "model.safetensors", MARKER), train_demo, progress, cancel)


def digits_folder(split: str = "train") -> Path:
    """The demo's digits of ``split`` as an image folder in the cache (written once)."""
    return data.write_digits_folder(cache_dir() / f"demo-vit-v{DEMO_VERSION}" / f"digits-{split}", split)


def ensure_demo(progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, str]:
    """{"model": DIR, "train": the training digits as an image folder, "eval": the held-out digits}."""
    model_dir = demo_model_dir(progress, cancel)
    report(progress, 0, 1, "writing the demo digits")
    out = {"model": str(model_dir), "train": str(digits_folder("train")), "eval": str(digits_folder("test"))}
    report(progress, 1, 1, "demo ready")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train SlimGUI's demo ViT from scratch on scikit-learn's digits.")
    ap.add_argument("--out", type=Path, default=shipped_model_dir())
    ap.add_argument("--epochs", type=int, default=TRAIN["epochs"])
    args = ap.parse_args(argv)
    meta = train_demo(args.out, epochs=args.epochs)
    print(json.dumps({"out": str(args.out), "heldout_accuracy": meta["heldout_accuracy"],
                      "seconds": meta["train_seconds"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
