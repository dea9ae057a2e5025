"""Paired image folders, as Pix2Pix datasets ship them: ``A/`` and ``B/`` sub-folders with the same file names, or
a folder of side-by-side ``AB`` images (input left, target right, width twice the height).  Images are read with
OpenCV, resized to the generator's image size (area interpolation) and scaled to [-1, 1]; a one-channel generator
gets them in grey.  Anything unpaired or mismatched is one SlimError naming the first file that does not fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slimgui.core.errors import SlimError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MAX_PAIRS = 1_000_000


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan_pairs(path: str | Path) -> tuple[str, list[tuple[Path, Path | None]]]:
    """("ab" | "split", [(A file, B file or None for side-by-side)]) of a paired folder; a SlimError otherwise."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise SlimError(f"{path} is not a folder", hint="give a paired folder: A/ and B/, or side-by-side AB images")
    a, b = p / "A", p / "B"
    if a.is_dir() or b.is_dir():
        if not (a.is_dir() and b.is_dir()):
            raise SlimError(f"{p} is unpaired: it has {'A/' if a.is_dir() else 'B/'} but no "
                            f"{'B/' if a.is_dir() else 'A/'}", hint="put the inputs in A/ and the targets in B/, "
                            "with the same file names")
        fa, fb = _images(a), _images(b)
        names_b = {f.stem: f for f in fb}
        names_a = {f.stem for f in fa}
        lone = [f"A/{f.name}" for f in fa if f.stem not in names_b] + [f"B/{f.name}" for f in fb if f.stem not in names_a]
        if lone:
            raise SlimError(f"{p} is mismatched: {lone[0]} has no partner of the same name in "
                            f"{'B/' if lone[0].startswith('A/') else 'A/'}" + (f" ({len(lone)} unpaired files)"
                                                                                 if len(lone) > 1 else ""),
                            hint="A/ and B/ must hold the same file names (input and target)")
        if not fa:
            raise SlimError(f"{p}/A holds no images", hint="PNG, JPEG, BMP, WebP or TIFF")
        return "split", [(f, names_b[f.stem]) for f in fa]
    files = _images(p)
    if not files:
        raise SlimError(f"{p} holds no images and no A/ and B/ folders",
                        hint="give a paired folder: A/ and B/, or side-by-side AB images")
    return "ab", [(f, None) for f in files]


def _read(path: Path, channels: int) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise SlimError(f"{path.name} is not a readable image")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 1:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
    return img


def _to_tensor(img: np.ndarray, size: int) -> torch.Tensor:
    import cv2

    if img.shape[0] != size or img.shape[1] != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        if img.ndim == 2:
            img = img[..., None]
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
    return t / 127.5 - 1.0


def spread(n: int, k: int | None) -> list[int]:
    if not k or k >= n:
        return list(range(n))
    return sorted({int(i * n / k) for i in range(k)})


def load_pairs(path: str | Path, cfg, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of a paired folder, each (N, C, S, S) in [-1, 1]."""
    kind, pairs = scan_pairs(path)
    pairs = [pairs[i] for i in spread(len(pairs), limit)]
    xs, ys = [], []
    for fa, fb in pairs:
        if kind == "ab":
            img = _read(fa, 3)
            h, w = img.shape[:2]
            if w != 2 * h:
                raise SlimError(f"{fa.name} is {w}×{h}: not a side-by-side AB pair (its width must be twice its "
                                "height)", hint="give A/ and B/ folders, or images holding input and target side by side")
            a, b = img[:, :h], img[:, h:]
            if cfg.input_nc == 1:
                a = a.mean(-1, keepdims=True).astype(np.uint8)
            if cfg.output_nc == 1:
                b = b.mean(-1, keepdims=True).astype(np.uint8)
        else:
            a, b = _read(fa, cfg.input_nc), _read(fb, cfg.output_nc)
        xs.append(_to_tensor(a, cfg.image_size))
        ys.append(_to_tensor(b, cfg.image_size))
    return torch.stack(xs), torch.stack(ys)


def load_image(path: str | Path, cfg) -> torch.Tensor:
    p = Path(path).expanduser()
    if not p.is_file():
        raise SlimError(f"{path} is not an image file")
    return _to_tensor(_read(p, cfg.input_nc), cfg.image_size)[None]


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] → H×W×3 uint8."""
    a = ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(4.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004: 11×11 Gaussian window, σ 1.5, K1 0.01, K2 0.03) on [0, 1] images, averaged
    over channels."""
    from torch.nn import functional as F  # noqa: N812

    x, y = (a.float() + 1) / 2, (b.float() + 1) / 2
    c = x.shape[1]
    g = torch.exp(-((torch.arange(11) - 5).float() ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(c, 1, 11, 11).contiguous()
    size = min(11, x.shape[-1])
    if size < 11:
        win = torch.ones(c, 1, size, size) / size ** 2

    def f(t):
        return F.conv2d(t, win, groups=c)
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return m.flatten(1).mean(1)
