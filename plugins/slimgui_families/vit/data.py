"""Images for the ViT family: image folders (one sub-folder per class) and the demo's digits.

An image folder holds one sub-folder per class (``data/cat/1.jpg``, ``data/dog/2.png``); calibration also takes a
flat folder of images (their labels are then the model's own predictions).  Every image is opened with Pillow,
converted to the model's channel count, resized to the model's input size and normalised with its mean and std
(``preprocessor_config.json`` beside the weights; 0.5/0.5 without one, what ViT's image processor uses).

The demo's data are scikit-learn's 8×8 digits, upsampled to 32×32 and repeated over 3 channels, with a fixed
held-out split: an image is held out when the SHA-256 of ``"slimgui-digits-{index}"`` is 0 modulo 5 (about 20 %).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MAX_IMAGES = 2_000_000  # files listed in one folder
DIGITS_SIZE = 32
DIGITS_VERSION = 1


@dataclass(frozen=True)
class Preprocess:
    """How images become the model's input: size (H, W), channels, and the per-channel mean and std."""

    size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalize(self, x):
        import torch

        mean = torch.tensor(self.mean[: x.shape[1]], dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std[: x.shape[1]], dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std


def preprocess_of(model) -> Preprocess:
    """The :class:`Preprocess` of a loaded ViT (its config and the preprocessor settings read at load)."""
    from .modeling import _pair

    cfg = model.config
    pre = model.extra.get("preprocess") or {}
    c = int(cfg.num_channels)

    def per_channel(v: Any, default: float) -> tuple[float, ...]:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (float(v),) * c
        if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
            vals = [float(x) for x in v]
            return tuple((vals * c)[:c]) if len(vals) < c else tuple(vals[:c])
        return (default,) * c

    mean, std = per_channel(pre.get("image_mean"), 0.5), per_channel(pre.get("image_std"), 0.5)
    if pre.get("do_normalize") is False:
        mean, std = (0.0,) * c, (1.0,) * c
    if any(s == 0 for s in std):
        std = tuple(s if s else 1.0 for s in std)
    return Preprocess(_pair(cfg.image_size), c, mean, std)


# -- image folders -------------------------------------------------------------------------------------------
@dataclass
class ImageFolder:
    """The images of a folder: ``files`` [(path, class index or None)], ``classes`` (sub-folder names, sorted)."""

    root: Path
    classes: list[str]
    files: list[tuple[Path, int | None]]

    @property
    def labelled(self) -> bool:
        return bool(self.classes)


def _images_in(folder: Path) -> list[Path]:
    out = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                out.append(Path(entry.path))
                if len(out) > MAX_IMAGES:
                    raise SlimError(f"{folder} holds more than {MAX_IMAGES:,} images", hint="use a smaller folder")
    return sorted(out)


def scan_folder(path: str | Path, *, need_classes: bool = False, what: str = "image folder") -> ImageFolder:
    """List an image folder: one sub-folder per class, or (``need_classes`` False) images directly inside."""
    if path is None or not str(path).strip():
        raise SlimError(f"no {what} given", hint="give a folder with one sub-folder of images per class")
    root = Path(path).expanduser()
    if not root.exists():
        raise SlimError(f"{what} {root} does not exist", hint="give a folder with one sub-folder of images per class")
    if not root.is_dir():
        raise SlimError(f"{what} {root} is not a folder",
                        hint="give a folder with one sub-folder of images per class (e.g. data/cat/1.jpg)")
    try:
        entries = [e for e in sorted(root.iterdir()) if not e.name.startswith(".")]
    except OSError as exc:
        raise SlimError(f"cannot read {what} {root}: {exc.strerror or exc}") from None
    if not entries:
        raise SlimError(f"{what} {root} is empty", hint="put one sub-folder of images per class in it")
    subdirs = [e for e in entries if e.is_dir()]
    classes: list[str] = []
    files: list[tuple[Path, int | None]] = []
    for sub in subdirs:
        imgs = _images_in(sub)
        if imgs:
            files.extend((p, len(classes)) for p in imgs)
            classes.append(sub.name)
    if not files:
        loose = _images_in(root)
        if loose and not need_classes:
            return ImageFolder(root, [], [(p, None) for p in loose])
        if loose:
            raise SlimError(f"{what} {root} holds images but no class sub-folders",
                            hint="put the images of each class in a sub-folder named after the class")
        kinds = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise SlimError(f"{what} {root} holds no images ({kinds})" + (" in its sub-folders" if subdirs else ""),
                        hint="put one sub-folder of images per class in it")
    return ImageFolder(root, classes, files)


def read_image(path: Path, pre: Preprocess):
    """One image as a float tensor (C, H, W) in [0, 1], converted and resized for the model (not normalised)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if pre.channels == 1 else "RGB")
            h, w = pre.size
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SlimError(f"{path} is not a readable image ({msg[:120]})",
                        hint="remove or replace the file, or give another folder") from None
    t = torch.from_numpy(arr)
    t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
    if pre.channels not in (1, 3):  # e.g. a 4-channel model: repeat the grey/RGB planes
        t = t.repeat((pre.channels + t.shape[0] - 1) // t.shape[0], 1, 1)[: pre.channels]
    return t.contiguous()


def load_batch(paths: list[Path], pre: Preprocess):
    """Normalised pixel values (N, C, H, W) of ``paths``."""
    import torch

    return pre.normalize(torch.stack([read_image(p, pre) for p in paths]))


def label_ids(classes: list[str], config) -> list[int]:
    """The model's label id of every class sub-folder: by the model's label names (``id2label``), else folder names
    that are label numbers; one SlimError naming a folder that matches no label."""
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    n = int(getattr(config, "num_labels", 0) or len(id2label))
    by_name = {v.strip().lower(): k for k, v in id2label.items()}
    out = []
    for name in classes:
        key = name.strip().lower()
        if key in by_name:
            out.append(by_name[key])
        elif key.isdigit() and int(key) < n:
            out.append(int(key))
        else:
            sample = ", ".join(list(id2label.values())[:5])
            raise SlimError(f"class folder '{name}' matches none of the model's {n} labels"
                            + (f" ({sample}, ...)" if sample else ""),
                            hint="name each sub-folder after one of the model's labels (or its label number)")
    return out


def spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (first and last included)."""
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


# -- the demo's digits ---------------------------------------------------------------------------------------
def held_out(index: int) -> bool:
    """Whether digit ``index`` is in the fixed held-out split (by hash of the index, about 20 %)."""
    digest = hashlib.sha256(f"slimgui-digits-{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 5 == 0


def digits(split: str = "train", size: int = DIGITS_SIZE):
    """scikit-learn's digits for a ViT: (N, 3, size, size) floats in [0, 1] (bilinear upsampling) and labels.
    ``split``: "train", "test" (the held-out fifth) or "all"."""
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(0, 1).repeat(1, 3, 1, 1)
    y = torch.tensor(d.target, dtype=torch.long)
    if split == "all":
        return x, y
    held = torch.tensor([held_out(i) for i in range(len(y))])
    keep = held if split == "test" else ~held
    return x[keep], y[keep]


def digits_for(pre: Preprocess, split: str = "test"):
    """The digits in the model's input form (its size, channels and normalisation) and their labels."""
    import torch

    x, y = digits(split)
    if tuple(pre.size) != (DIGITS_SIZE, DIGITS_SIZE):
        x = torch.nn.functional.interpolate(x, size=tuple(pre.size), mode="bilinear", align_corners=False)
    if pre.channels == 1:
        x = x[:, :1]
    elif pre.channels != 3:
        x = x[:, :1].repeat(1, pre.channels, 1, 1)
    return pre.normalize(x), y


def digits_are_labels(config) -> bool:
    """Whether a model's labels are the ten digits (the demo's and models pruned from it)."""
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    return len(id2label) == 10 and all(id2label.get(i, "").strip() == str(i) for i in range(10))


def write_digits_folder(out: Path, split: str = "train") -> Path:
    """The digits of ``split`` as an image folder (``out/<digit>/<index>.png``), written atomically; kept if there."""
    import numpy as np
    from PIL import Image

    out = Path(out)
    if (out / ".complete").is_file():
        return out
    x, y = digits(split)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for i, (img, label) in enumerate(zip(x, y.tolist())):
        folder = tmp / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        arr = (img.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:04d}.png")
    (tmp / ".complete").write_text(f"digits {split} v{DIGITS_VERSION}\n")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out
