"""Does a (pruned, distilled, few-step) diffusion model still draw the digits it is asked for?

The demo pipeline (:mod:`slimgui_families.diffusion.demo`) draws 16×16 handwritten digits on request
("a handwritten digit 7").  This module measures that the same way for the original and for any
slimmed copy of it:

* a small CNN digit classifier, trained by the demo script on the training split of the digits and
  shipped inside the demo folder (``classifier/model.safetensors`` + ``classifier/config.json``),
  says which digit each generated image shows -> **accuracy** against the requested digits;
* the classifier's penultimate layer (64 features) gives a **Fréchet distance** (an "FID" in the
  classifier's feature space) between generated images and the held-out real digits, whose features
  the demo script stored next to the classifier (``classifier/reference_features.safetensors``).

Images everywhere here are float tensors ``N×1×16×16`` in ``[-1, 1]`` (the pipeline's own range).
Generation goes through the real :class:`diffusers.StableDiffusionPipeline` ``__call__``, so a caller
can swap ``pipe.unet`` (a pruned U-Net) or pass another scheduler (e.g. an LCM scheduler for 2–4
steps) and measure exactly what a user of that pipeline would get.

Only safetensors are read; nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimgui.core.errors import SlimError
from slimgui.core.io import atomic_write_bytes, atomic_write_text

IMAGE_SIZE = 16
NUM_CLASSES = 10
PROMPT_TEMPLATE = "a handwritten digit {digit}"
CLASSIFIER_SUBDIR = "classifier"
CLASSIFIER_WEIGHTS = "model.safetensors"
CLASSIFIER_CONFIG_FILE = "config.json"
REFERENCE_FEATURES = "reference_features.safetensors"
CLASSIFIER_CONFIG: dict[str, Any] = {
    "architecture": "DigitClassifier",
    "channels": [32, 64],
    "feature_dim": 64,
    "num_classes": NUM_CLASSES,
    "image_size": IMAGE_SIZE,
}

_RETRAIN_HINT = "rebuild the demo with `python -m slimgui_families.diffusion.demo --out resources/demo/diffusion`"


class DigitClassifier(nn.Module):
    """A small CNN for 16×16 grayscale digits in [-1, 1].

    conv(32) → conv(32) → pool → conv(64) → pool → linear(64) = features → linear(10) = logits.
    The 64 post-ReLU features of the penultimate layer are what the Fréchet distance compares.
    """

    def __init__(self, channels: Sequence[int] = (32, 64), feature_dim: int = 64, num_classes: int = NUM_CLASSES,
                 image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        c0, c1 = int(channels[0]), int(channels[1])
        self.body = nn.Sequential(
            nn.Conv2d(1, c0, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c0, c0, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c0, c1, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c1 * (image_size // 4) ** 2, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features, ``N×feature_dim``."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits, ``N×num_classes``."""
        return self.head(self.body(images))


# ---------------------------------------------------------------------------------------------------------------
# the classifier on disk


def classifier_dir(demo_dir: str | Path) -> Path:
    """The classifier folder for ``demo_dir``: the demo pipeline folder or the classifier folder itself."""
    path = Path(demo_dir)
    if (path / CLASSIFIER_SUBDIR / CLASSIFIER_CONFIG_FILE).is_file():
        return path / CLASSIFIER_SUBDIR
    if (path / CLASSIFIER_CONFIG_FILE).is_file() and (path / CLASSIFIER_WEIGHTS).is_file():
        try:
            doc = json.loads((path / CLASSIFIER_CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            doc = {}
        if isinstance(doc, dict) and doc.get("architecture") == CLASSIFIER_CONFIG["architecture"]:
            return path
    raise SlimError(f"{path} holds no digit classifier (expected {CLASSIFIER_SUBDIR}/{CLASSIFIER_CONFIG_FILE} and "
                    f"{CLASSIFIER_SUBDIR}/{CLASSIFIER_WEIGHTS})",
                    hint="pass the demo diffusion folder from `slimgui demo diffusion`, or " + _RETRAIN_HINT)


def save_classifier(model: DigitClassifier, folder: str | Path, reference_features: torch.Tensor,
                    reference_labels: torch.Tensor, info: Mapping[str, Any] | None = None) -> Path:
    """Write ``model.safetensors``, ``config.json`` and the held-out reference features into ``folder``."""
    from safetensors.torch import save

    folder = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / CLASSIFIER_WEIGHTS, save(state, metadata={"format": "pt"}))
    atomic_write_bytes(folder / REFERENCE_FEATURES, save({
        "features": reference_features.detach().float().contiguous().cpu(),
        "labels": reference_labels.detach().long().contiguous().cpu(),
    }, metadata={"what": "penultimate features of the held-out real digits"}))
    config = dict(CLASSIFIER_CONFIG) | dict(info or {})
    atomic_write_text(folder / CLASSIFIER_CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return folder


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise SlimError(f"{path} is missing", hint=_RETRAIN_HINT)
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
        raise SlimError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})",
                        hint="the file is damaged; " + _RETRAIN_HINT) from exc


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def load_classifier(demo_dir: str | Path) -> DigitClassifier:
    """Load the digit classifier shipped with the demo (safetensors only), in eval mode on the CPU.

    ``demo_dir`` is the demo pipeline folder or its ``classifier`` subfolder.  Raises :class:`SlimError`
    when the folder has no classifier or its files are damaged.
    """
    folder = classifier_dir(demo_dir)
    weights = folder / CLASSIFIER_WEIGHTS
    if not weights.is_file():
        raise SlimError(f"{weights} is missing", hint=_RETRAIN_HINT)
    return _load_classifier_cached(*_file_key(folder / CLASSIFIER_CONFIG_FILE), *_file_key(weights))


@lru_cache(maxsize=4)
def _load_classifier_cached(config_path: str, _c_mtime: int, _c_size: int,
                            weights_path: str, _w_mtime: int, _w_size: int) -> DigitClassifier:
    # keyed by path, modification time and size: a rewritten file is read again
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SlimError(f"{config_path} is not a valid classifier config ({exc})", hint=_RETRAIN_HINT) from exc
    if not isinstance(config, dict) or config.get("architecture") != CLASSIFIER_CONFIG["architecture"]:
        raise SlimError(f"{config_path} does not describe a {CLASSIFIER_CONFIG['architecture']}", hint=_RETRAIN_HINT)
    try:
        model = DigitClassifier(channels=config["channels"], feature_dim=int(config["feature_dim"]),
                                num_classes=int(config["num_classes"]), image_size=int(config["image_size"]))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SlimError(f"{config_path} lacks a valid classifier shape ({exc})", hint=_RETRAIN_HINT) from exc
    state = _read_safetensors(Path(weights_path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise SlimError(f"{weights_path} does not match the classifier described in {config_path}",
                        hint=_RETRAIN_HINT) from exc
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def reference_features(demo_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out real digits' classifier features and labels, as stored by the demo script."""
    folder = classifier_dir(demo_dir)
    tensors = _read_safetensors(folder / REFERENCE_FEATURES)
    if "features" not in tensors or "labels" not in tensors:
        raise SlimError(f"{folder / REFERENCE_FEATURES} lacks the 'features' / 'labels' tensors", hint=_RETRAIN_HINT)
    return tensors["features"].float(), tensors["labels"].long()


# ---------------------------------------------------------------------------------------------------------------
# measures


def _as_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Check and normalise a batch of digit images to float ``N×1×16×16`` in [-1, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise SlimError(f"expected a tensor of images, got {type(images).__name__}")
    x = images.detach().float().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise SlimError(f"expected digit images shaped N×1×{IMAGE_SIZE}×{IMAGE_SIZE}, got {tuple(images.shape)}",
                        hint="generate with sample_digits(), which returns that shape")
    if x.numel() and (x.abs().max().item() > 1.5 or not torch.isfinite(x).all()):
        raise SlimError(f"digit images must be finite values in [-1, 1] (max |x| = {x.abs().max().item():.3g})",
                        hint="convert [0, 1] images with x * 2 - 1 and [0, 255] images with x / 127.5 - 1")
    return x.clamp(-1, 1)


@torch.no_grad()
def features(model: DigitClassifier, images: torch.Tensor | np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """Penultimate-layer classifier features of ``images`` (``N×1×16×16`` in [-1, 1]) as ``N×64``."""
    x = _as_images(images)
    if len(x) == 0:
        return torch.zeros(0, model.head.in_features)
    return torch.cat([model.features(chunk) for chunk in x.split(batch_size)])


@torch.no_grad()
def classify(model: DigitClassifier, images: torch.Tensor | np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """The digit (0–9) that the classifier sees in each image, as a LongTensor of length N."""
    x = _as_images(images)
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([model(chunk).argmax(dim=1) for chunk in x.split(batch_size)])


def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples).

    ``|mu_a - mu_b|² + tr(S_a + S_b - 2 (S_a S_b)^½)``, computed in float64.  Small sets have singular
    covariances (fewer samples than features), so ``eps`` (relative to the mean variance) is added to
    both diagonals; a non-finite square root is retried with a larger offset, and the numerically
    imaginary part of the square root is dropped.
    """
    from scipy import linalg

    a = np.asarray(feats_a.detach().cpu() if isinstance(feats_a, torch.Tensor) else feats_a, dtype=np.float64)
    b = np.asarray(feats_b.detach().cpu() if isinstance(feats_b, torch.Tensor) else feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise SlimError(f"feature sets must be N×D with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise SlimError(f"a Fréchet distance needs at least 2 samples per set, got {len(a)} and {len(b)}",
                        hint="generate more images per digit")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    scale = max(float(np.trace(sigma_a) + np.trace(sigma_b)) / (2 * a.shape[1]), 1e-12)
    eye = np.eye(a.shape[1])
    offset = eps * scale
    covmean = None
    for _ in range(6):
        sa, sb = sigma_a + offset * eye, sigma_b + offset * eye
        covmean = linalg.sqrtm(sa @ sb)
        if np.all(np.isfinite(covmean)):
            break
        offset *= 100
    if covmean is None or not np.all(np.isfinite(covmean)):
        raise SlimError("the Fréchet distance did not converge (degenerate features)",
                        hint="check that the images are not all identical")
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(sa) + np.trace(sb) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def score_samples(images: torch.Tensor | np.ndarray, labels: torch.Tensor | Sequence[int],
                  demo_dir: str | Path) -> dict[str, Any]:
    """Score generated digits: classifier accuracy against ``labels`` and Fréchet distance to held-out real digits.

    Returns ``{"accuracy": float, "fid": float, "n": N, "per_digit_accuracy": [10 values or None]}``.
    """
    x = _as_images(images)
    y = torch.as_tensor(labels, dtype=torch.long).flatten()
    if len(y) != len(x):
        raise SlimError(f"{len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise SlimError("no images to score", hint="generate at least one image per digit")
    model = load_classifier(demo_dir)
    ref, _ = reference_features(demo_dir)
    with torch.no_grad():
        feats = torch.cat([model.features(chunk) for chunk in x.split(512)])
        predicted = model.head(feats).argmax(dim=1)
    correct = predicted == y
    per_digit: list[float | None] = []
    for d in range(NUM_CLASSES):
        mask = y == d
        per_digit.append(round(correct[mask].float().mean().item(), 4) if mask.any() else None)
    fid = frechet_distance(feats, ref) if len(x) >= 2 else math.nan
    return {"accuracy": correct.float().mean().item(), "fid": fid, "n": len(x), "per_digit_accuracy": per_digit}


# ---------------------------------------------------------------------------------------------------------------
# generation through the real StableDiffusionPipeline


def _as_pipeline(pipe: Any) -> Any:
    """A StableDiffusionPipeline from a pipeline, a pipeline folder, or a mapping of its parts."""
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    if isinstance(pipe, DiffusionPipeline):
        return pipe
    if isinstance(pipe, str | Path):
        path = Path(pipe)
        if not (path / "model_index.json").is_file():
            raise SlimError(f"{path} is not a diffusers pipeline folder (no model_index.json)",
                            hint="pass the demo diffusion folder or a saved StableDiffusionPipeline")
        from slimgui.core.model import LOADING

        with LOADING:  # one model built at a time in the process (see slimgui.core.model.LOADING)
            return StableDiffusionPipeline.from_pretrained(str(path), local_files_only=True)
    if isinstance(pipe, Mapping):
        needed = {"vae", "text_encoder", "tokenizer", "unet", "scheduler"}
        missing = needed - set(pipe)
        if missing:
            raise SlimError(f"pipeline parts are missing {sorted(missing)}", hint=f"pass all of {sorted(needed)}")
        return StableDiffusionPipeline(**{k: pipe[k] for k in needed}, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    raise SlimError(f"cannot sample from a {type(pipe).__name__}",
                    hint="pass a StableDiffusionPipeline, its folder, or a dict of its parts")


def sample_digits(pipe: Any, digits: Sequence[int], per_digit: int, seed: int = 0, steps: int = 25,
                  guidance: float = 3.0, scheduler: Any = None, batch_size: int = 100,
                  prompt_template: str = PROMPT_TEMPLATE) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``per_digit`` images of each digit in ``digits`` with the pipeline's own ``__call__``.

    ``pipe`` is a :class:`StableDiffusionPipeline` (swap ``pipe.unet`` first to measure a pruned U-Net),
    its folder, or a dict of its parts (``vae``, ``text_encoder``, ``tokenizer``, ``unet``, ``scheduler``).
    ``scheduler``, when given, replaces ``pipe.scheduler`` for this call only (e.g. an LCMScheduler for
    2–4 steps).  The starting noise is drawn once from ``torch.Generator().manual_seed(seed)`` in a fixed
    layout (digit-major), so the same seed gives every model the same noise for the same image, however
    the work is batched.  Prompts are ``prompt_template.format(digit=d)``; ``guidance`` > 1 turns on
    classifier-free guidance against the empty prompt.

    Returns ``(images, labels)``: float ``N×1×16×16`` in [-1, 1] and the requested digits, N = len(digits)·per_digit.
    """
    digits = [int(d) for d in digits]
    if per_digit < 1 or not digits:
        raise SlimError("nothing to sample", hint="pass at least one digit and per_digit >= 1")
    if any(d < 0 or d > 9 for d in digits):
        raise SlimError(f"digits must be 0..9, got {digits}")
    if steps < 1:
        raise SlimError(f"steps must be >= 1, got {steps}")
    pipe = _as_pipeline(pipe)
    unet = pipe.unet
    scale = getattr(pipe, "vae_scale_factor", 2)
    latent_size = int(unet.config.sample_size)
    height = latent_size * scale
    labels = torch.tensor([d for d in digits for _ in range(per_digit)], dtype=torch.long)
    generator = torch.Generator("cpu").manual_seed(int(seed))
    noise = torch.randn(len(labels), int(unet.config.in_channels), latent_size, latent_size, generator=generator)
    device, dtype = unet.device, unet.dtype
    old_scheduler = pipe.scheduler
    if scheduler is not None:
        pipe.scheduler = scheduler
    pipe.set_progress_bar_config(disable=True)
    chunks = []
    try:
        for start in range(0, len(labels), batch_size):
            part = labels[start:start + batch_size]
            prompts = [prompt_template.format(digit=int(d)) for d in part]
            out = pipe(prompt=prompts, height=height, width=height, num_inference_steps=int(steps),
                       guidance_scale=float(guidance), latents=noise[start:start + batch_size].to(device, dtype),
                       generator=torch.Generator("cpu").manual_seed(int(seed) + start), output_type="pt")
            chunks.append(out.images.detach().float().cpu())
    finally:
        if scheduler is not None:
            pipe.scheduler = old_scheduler
    images = torch.cat(chunks) * 2 - 1
    if images.shape[1] != 1:  # a pipeline whose VAE decodes RGB: average to grayscale
        images = images.mean(dim=1, keepdim=True)
    return images.clamp(-1, 1), labels


def evaluate_pipeline(pipe: Any, demo_dir: str | Path, per_digit: int = 10, steps: int = 25, guidance: float = 3.0,
                      seed: int = 0, scheduler: Any = None, digits: Sequence[int] = tuple(range(10))
                      ) -> dict[str, Any]:
    """Generate ``per_digit`` images of each digit and score them (see :func:`score_samples`).

    Returns the scores plus ``steps``, ``guidance``, ``seed``, ``seconds`` (generation wall time) and
    ``seconds_per_image``.
    """
    t0 = time.perf_counter()
    images, labels = sample_digits(pipe, list(digits), per_digit, seed=seed, steps=steps, guidance=guidance,
                                   scheduler=scheduler)
    seconds = time.perf_counter() - t0
    scores = score_samples(images, labels, demo_dir)
    return scores | {"steps": int(steps), "guidance": float(guidance), "seed": int(seed), "per_digit": int(per_digit),
                     "seconds": round(seconds, 3), "seconds_per_image": round(seconds / len(labels), 4)}


def image_grid(images: torch.Tensor, columns: int, pad: int = 1) -> np.ndarray:
    """Tile ``N×1×H×W`` images in [-1, 1] into one uint8 grayscale array (rows of ``columns`` images)."""
    x = _as_images(images)
    n, _, h, w = x.shape
    rows = max(1, math.ceil(n / columns))
    grid = np.zeros((rows * (h + pad) + pad, columns * (w + pad) + pad), dtype=np.uint8)
    pixels = ((x[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for i in range(n):
        r, c = divmod(i, columns)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = pixels[i]
    return grid
