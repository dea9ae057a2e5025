"""The built-in demo generator: a Pix2Pix U-Net (6 downs, ngf 8, batch norm, 64×64) trained to turn edge maps into
photos, on patches of the two sample photographs that ship with scikit-learn.  Reproducible with::

    nice -n 10 python -m slimgui_families.gan.demo --out resources/demo/gan     # a few minutes on 2 CPU cores

Data: each photo (china.jpg, flower.jpg, 427×640) is halved (area), its Canny edges (OpenCV, thresholds 80/160 on
the grey image) drawn white on black as the 3-channel input, the colour photo the target.  64×64 patches at a seeded
random place: training patches from the left 3/4 of each photo (with horizontal flips), the held-out pairs from the
right 1/4 (never trained on).  Training: L1 to the target only (the pix2pix reconstruction term; no discriminator),
Adam.  The result is ``latest_net_G.pth`` (junyanz's format: a plain state dict that junyanz's
``UnetGenerator(3, 3, 6, 8)`` loads), the same as ``latest_net_G.safetensors``, ``slimgui_gan.json`` and the training
log ``slimgui_demo.json``; the held-out pairs are shipped as ``pairs/test/A`` and ``pairs/test/B``.  When the shipped
copy is missing, :func:`ensure_demo` rebuilds it into the user cache with this same script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from slimgui.core.io import atomic_write_text, cache_dir, replace_folder, resources_dir, shipped_or_built
from slimgui.core.progress import CancelToken, ProgressFn, check, report

DEMO_VERSION = 1
MARKER = "slimgui_demo.json"
SIZE = 64
MODEL = dict(num_downs=6, ngf=8, norm="batch", use_dropout=False)
TRAIN = dict(steps=3000, batch=16, lr=2e-3, train_patches=1536, test_patches=48, seed=0, canny=(80, 160), scale=0.5)


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return [np.asarray(img) for img in load_sample_images().images]


def make_pairs(split: str, count: int | None = None, seed: int = TRAIN["seed"]) -> tuple[np.ndarray, np.ndarray]:
    """(edges, photos) of ``split`` ("train" / "test"): N×64×64×3 uint8 each, deterministic."""
    import cv2

    count = count or (TRAIN["train_patches"] if split == "train" else TRAIN["test_patches"])
    rng = np.random.default_rng(seed + (0 if split == "train" else 1))
    xs, ys = [], []
    photos = []
    for img in _photos():
        h, w = img.shape[:2]
        small = cv2.resize(img, (int(w * TRAIN["scale"]), int(h * TRAIN["scale"])), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        edges = cv2.Canny(grey, *TRAIN["canny"])
        photos.append((small, edges))
    for i in range(count):
        small, edges = photos[i % len(photos)]
        h, w = edges.shape
        split_x = int(w * 0.75)
        lo, hi = (0, split_x - SIZE) if split == "train" else (split_x, w - SIZE)
        x0 = int(rng.integers(lo, hi + 1))
        y0 = int(rng.integers(0, h - SIZE + 1))
        e = edges[y0:y0 + SIZE, x0:x0 + SIZE]
        p = small[y0:y0 + SIZE, x0:x0 + SIZE]
        if split == "train" and rng.random() < 0.5:
            e, p = e[:, ::-1], p[:, ::-1]
        xs.append(np.repeat(e[..., None], 3, axis=2))
        ys.append(p)
    return np.ascontiguousarray(np.stack(xs)), np.ascontiguousarray(np.stack(ys))


def _tensor(a: np.ndarray):
    import torch

    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def write_pairs(folder: Path, split: str) -> Path:
    """The pairs of ``split`` as a paired folder (A/ edges, B/ photos, PNG) written once."""
    import cv2

    if (folder / "A").is_dir() and (folder / "B").is_dir() and any((folder / "B").iterdir()):
        return folder
    x, y = make_pairs(split)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "A").mkdir(parents=True)
    (tmp / "B").mkdir(parents=True)
    for i, (a, b) in enumerate(zip(x, y)):
        cv2.imwrite(str(tmp / "A" / f"{i:04d}.png"), cv2.cvtColor(a, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp / "B" / f"{i:04d}.png"), cv2.cvtColor(b, cv2.COLOR_RGB2BGR))
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def pairs_folder(split: str = "test") -> Path:
    """The demo's pairs of ``split``: the shipped held-out pairs, else written into the cache."""
    shipped = shipped_model_dir() / "pairs" / split
    if (shipped / "B").is_dir():
        return shipped
    return write_pairs(cache_dir() / f"demo-gan-v{DEMO_VERSION}" / f"pairs-{split}", split)


def baselines(x, y) -> dict[str, float]:
    """PSNR to the targets of the identity (the input itself) and of the mean training image."""
    from .data import psnr

    xt, yt = make_pairs("train")
    mean = _tensor(yt).mean(0, keepdim=True)
    return {"identity_psnr": float(psnr(x, y).mean()), "mean_image_psnr": float(psnr(mean.expand_as(y), y).mean())}


def train_demo(out_dir: Path, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
               steps: int | None = None) -> dict:
    import torch


    steps = steps or TRAIN["steps"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small conv net: one thread is many times faster than two fighting (OpenMP barriers)
    try:
        return _train(out_dir, progress, cancel, steps)
    finally:
        torch.set_num_threads(threads)


def _train(out_dir: Path, progress: ProgressFn | None, cancel: CancelToken | None, steps: int) -> dict:
    import torch

    from .adapter import Pix2PixAdapter
    from .data import psnr, ssim
    from .modeling import UNetConfig, UnetGenerator

    torch.manual_seed(TRAIN["seed"])
    gen = torch.Generator().manual_seed(TRAIN["seed"])
    x_train, y_train = (_tensor(a) for a in make_pairs("train"))
    x_test, y_test = (_tensor(a) for a in make_pairs("test"))
    cfg = UNetConfig.standard(MODEL["num_downs"], MODEL["ngf"], norm=MODEL["norm"], use_dropout=MODEL["use_dropout"],
                              image_size=SIZE)
    model = UnetGenerator(cfg)
    for m in model.modules():  # junyanz's init_weights('normal', 0.02)
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.02)
            torch.nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=TRAIN["lr"], betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=TRAIN["lr"], total_steps=steps, pct_start=0.1)
    history = []
    t0 = time.time()
    model.train()
    for step in range(1, steps + 1):
        check(cancel)
        idx = torch.randint(0, len(x_train), (TRAIN["batch"],), generator=gen)
        loss = (model(x_train[idx]) - y_train[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                out = model(x_test)
            model.train()
            history.append({"step": step, "train_l1": round(loss.item(), 4),
                            "heldout_psnr": round(float(psnr(out, y_test).mean()), 3)})
            report(progress, step, steps, f"training the demo generator: held-out PSNR "
                   f"{history[-1]['heldout_psnr']:.2f} dB")
    model.eval()
    with torch.no_grad():
        out = model(x_test)
    meta = {
        "demo_version": DEMO_VERSION, "what": "Pix2Pix U-Net generator (6 downs, ngf 8, batch norm): edges -> photo",
        "torch": torch.__version__, "data": "scikit-learn sample images (china.jpg, flower.jpg) halved; Canny edges "
        f"{TRAIN['canny']} as input; 64x64 patches; train: left 3/4 of each photo, held out: right 1/4",
        "model": MODEL, "train_config": dict(TRAIN, steps=steps), "loss": "L1 to the target (no discriminator)",
        "history": history, "heldout_psnr": round(float(psnr(out, y_test).mean()), 3),
        "heldout_ssim": round(float(ssim(out, y_test).mean()), 4), **{k: round(v, 3) for k, v in
                                                                       baselines(x_test, y_test).items()},
        "train_seconds": round(time.time() - t0),
    }
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    from slimgui.core.model import LoadedModel

    loaded = LoadedModel("gan", "pix2pix", str(tmp), model, cfg, impl=Pix2PixAdapter(), extra={"demo": "gan"})
    Pix2PixAdapter().save(loaded, str(tmp))
    write_pairs(tmp / "pairs" / "test", "test")
    atomic_write_text(tmp / MARKER, json.dumps(meta, indent=2) + "\n")
    replace_folder(tmp, out_dir)
    return meta


def shipped_model_dir() -> Path:
    return resources_dir() / "demo" / "gan"


def demo_model_dir(progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Path:
    """The demo model's folder: the shipped one, else the one built into the cache (built now when missing)."""
    return shipped_or_built("gan", DEMO_VERSION, ("latest_net_G.pth", "slimgui_gan.json", MARKER), train_demo, progress, cancel)


def ensure_demo(progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, str]:
    """{"model": DIR, "eval": the held-out pairs}."""
    model_dir = demo_model_dir(progress, cancel)
    return {"model": str(model_dir), "eval": str(pairs_folder("test"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train SlimGUI's demo Pix2Pix generator (edges -> photo).")
    ap.add_argument("--out", type=Path, default=shipped_model_dir())
    ap.add_argument("--steps", type=int, default=TRAIN["steps"])
    args = ap.parse_args(argv)
    meta = train_demo(args.out, steps=args.steps)
    print(json.dumps({"out": str(args.out), "heldout_psnr": meta["heldout_psnr"],
                      "identity_psnr": meta["identity_psnr"], "mean_image_psnr": meta["mean_image_psnr"],
                      "seconds": meta["train_seconds"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
