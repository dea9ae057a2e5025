"""The cnn family's demos: a ResNet-style and a MobileNetV1-style CNN trained on scikit-learn's digits (8×8, shown
to the networks at 16×16).  Reproducible with::

    nice -n 10 python -m slimgui_families.cnn.demo --out resources/demo/cnn     # about a minute on 2 CPU cores

Data: :mod:`.data` (every 5th digit held out).  Training: Adam (lr 3e-3, cosine to 0), batch 64, cross-entropy,
random shifts of up to one pixel, seed 0, one thread.  Each model folder holds ``cnn.json``, ``model.safetensors``
and the training log ``slimgui_demo.json``; when the shipped copy is missing, :func:`ensure_demo` rebuilds it into
the user cache with this same script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from slimgui.core.io import atomic_write_text, replace_folder, shipped_or_built
from slimgui.core.progress import check, report

DEMO_VERSION = 1
MARKER = "slimgui_demo.json"
CONFIGS = {
    "resnet": {"family": "cnn", "arch": "resnet", "in_channels": 1, "num_classes": 10, "image_size": 16,
               "stem": "small", "stem_width": 16,
               "stages": [[16, [1, 1]], [32, [2, 1]], [64, [2, 1]], [96, [2, 1]]], "abconv": {}},
    "mobilenet": {"family": "cnn", "arch": "mobilenetv1", "in_channels": 1, "num_classes": 10, "image_size": 16,
                  "stem": "small", "stem_width": 16,
                  "blocks": [[32, 1], [64, 2], [64, 1], [128, 2], [128, 1], [256, 2], [256, 1], [256, 1]],
                  "abconv": {}},
}
TRAIN = {"epochs": 15, "batch": 64, "lr": 3e-3, "seed": 0, "shift": 1}


def train(arch: str, out_dir: Path, progress=None, cancel=None, epochs: int | None = None) -> dict:
    import torch

    from slimgui.core.model import LoadedModel

    from . import modeling as M
    from .adapter import CnnAdapter
    from .data import accuracy_of, digits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        epochs = epochs or TRAIN["epochs"]
        torch.manual_seed(TRAIN["seed"])
        g = torch.Generator().manual_seed(TRAIN["seed"])
        cfg = json.loads(json.dumps(CONFIGS[arch]))
        net = M.build(cfg).train()
        x, y = digits("train")
        xt, yt = digits("test")
        steps = epochs * ((len(y) + TRAIN["batch"] - 1) // TRAIN["batch"])
        opt = torch.optim.Adam(net.parameters(), lr=TRAIN["lr"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        history, t0, step = [], time.time(), 0
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(len(y), generator=g)
            net.train()
            for i in range(0, len(y), TRAIN["batch"]):
                check(cancel)
                idx = perm[i:i + TRAIN["batch"]]
                xb = x[idx]
                dx, dy = (int(v) for v in torch.randint(-TRAIN["shift"], TRAIN["shift"] + 1, (2,), generator=g))
                xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
                loss = torch.nn.functional.cross_entropy(net(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
            acc = accuracy_of(net, xt, yt)
            history.append({"epoch": epoch, "train_loss": round(float(loss), 4), "heldout_accuracy": round(acc, 4)})
            report(progress, epoch, epochs, f"training the {arch} demo: held-out accuracy {acc:.1%}")
        net.eval()
        meta = {"demo_version": DEMO_VERSION, "what": f"{arch} CNN on scikit-learn digits (16×16)", "config": cfg,
                "params": sum(p.numel() for p in net.parameters()), "torch": torch.__version__,
                "data": "sklearn.datasets.load_digits, bilinear to 16×16, every 5th image held out (360)",
                "train_config": dict(TRAIN, epochs=epochs), "history": history,
                "heldout_accuracy": round(accuracy_of(net, xt, yt), 4), "train_seconds": round(time.time() - t0, 1)}
        out_dir = Path(out_dir)
        tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        CnnAdapter().save(LoadedModel("cnn", "cnn", str(tmp), net, cfg, impl=CnnAdapter()), str(tmp))
        atomic_write_text(tmp / MARKER, json.dumps(meta, indent=1) + "\n")
        replace_folder(tmp, out_dir)
        return meta
    finally:
        torch.set_num_threads(threads)


def _ensure(arch: str, progress=None, cancel=None) -> dict:
    folder = shipped_or_built(f"cnn/{arch}", DEMO_VERSION, ("cnn.json", "model.safetensors", MARKER),
                              lambda out, p, c: train(arch, out, p, c), progress, cancel)
    return {"model": folder}


def ensure_resnet(progress=None, cancel=None) -> dict:
    return _ensure("resnet", progress, cancel)


def ensure_mobilenet(progress=None, cancel=None) -> dict:
    return _ensure("mobilenet", progress, cancel)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="resources/demo/cnn", help="folder for resnet/ and mobilenet/")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    for arch in CONFIGS:
        meta = train(arch, Path(args.out) / arch, epochs=args.epochs,
                     progress=lambda d, t, m: print(m, flush=True))
        print(arch, meta["params"], "params, held-out accuracy", meta["heldout_accuracy"], meta["train_seconds"], "s")


if __name__ == "__main__":
    main()
