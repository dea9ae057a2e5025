"""A fixed set of noisy latents, timesteps and conditions: what the criteria run the U-Net on.

With data (an image folder in the Hugging Face ``imagefolder`` layout: images + ``metadata.jsonl`` with a
``text`` column, or a text file of prompts, one per line), the clean latents are the VAE encodings of the
images and the conditions their captions.  Without data the set is task-agnostic, as in LD-Pruner: standard
normal latents and, for a text-conditioned pipeline, an empty prompt.  Everything is drawn from a fixed seed,
so two runs (and the original and each bypassed model) see exactly the same inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimgui.core.data import CalibrationData, read_text_file
from slimgui.core.errors import SlimError
from slimgui.core.model import LoadedModel

from .unet import UNetShape

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def read_image_folder(folder: Path, limit: int | None = None) -> list[tuple[Path, str, int | None]]:
    """(image path, caption, label) from an imagefolder ``metadata.jsonl`` (or every image, no caption)."""
    meta = folder / "metadata.jsonl"
    rows: list[tuple[Path, str, int | None]] = []
    if meta.is_file():
        for n, line in enumerate(read_text_file(meta, "metadata file").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SlimError(f"{meta} line {n} is not JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or "file_name" not in obj:
                raise SlimError(f"{meta} line {n} has no file_name", hint="imagefolder metadata needs file_name")
            rows.append((folder / str(obj["file_name"]), str(obj.get("text", "")), obj.get("label")))
            if limit is not None and len(rows) >= limit:
                break
    else:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        rows = [(p, "", None) for p in files[:limit]]
    if not rows:
        raise SlimError(f"{folder} holds no images", hint="give an image folder (with metadata.jsonl captions)")
    return rows


def load_image(path: Path, size: tuple[int, int], channels: int) -> torch.Tensor:
    """An image as a C×H×W float tensor in [-1, 1], resized to ``size``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    except FileNotFoundError:
        raise SlimError(f"image {path} is missing") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise SlimError(f"{path} is not a readable image ({exc})") from None
    t = torch.from_numpy(arr)
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def encode_prompts(pipe: Any, prompts: list[str]) -> torch.Tensor:
    """Text-encoder hidden states for ``prompts`` (the pipeline's own tokenizer and encoder)."""
    tok, enc = pipe.tokenizer, pipe.text_encoder
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    with torch.no_grad():
        return enc(ids.to(enc.device))[0]


def vae_scale(pipe: Any) -> float:
    return float(getattr(pipe.vae.config, "scaling_factor", 1.0) or 1.0)


def encode_images(pipe: Any, images: torch.Tensor) -> torch.Tensor:
    """Scaled VAE latents of images in [-1, 1] (the mean of the posterior: deterministic)."""
    with torch.no_grad():
        dist = pipe.vae.encode(images.to(pipe.vae.dtype)).latent_dist
        return dist.mean * vae_scale(pipe)


def resolve(adapter: Any, model: LoadedModel, data: Any) -> CalibrationData | None:
    if isinstance(data, CalibrationData):
        return data
    if isinstance(data, (str, Path)):
        return CalibrationData(str(data))
    if data is None:
        path = adapter.default_data(model)
        return CalibrationData(path) if path else None
    raise SlimError(f"unsupported calibration data {data!r}")


def calibration_batches(adapter: Any, model: LoadedModel, data: Any, *, samples: int | None = None,
                        seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``samples`` (default: the data spec's) noisy latents with timesteps, conditions and the true noise."""
    from diffusers import DDPMScheduler

    spec = resolve(adapter, model, data)
    n = samples or (spec.samples if spec else 32)
    batch_size = spec.batch_size if spec else 8
    unet = model.module
    cfg = unet.config
    shape = UNetShape.from_config(cfg)
    pipe = model.extra.get("pipeline")
    gen = torch.Generator().manual_seed(seed)
    prompts = [""] * n
    clean = None
    if spec is not None:
        p = Path(spec.path)
        if p.is_dir():
            rows = read_image_folder(p)
            pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:n].tolist()
            rows = [rows[i] for i in pick]
            while len(rows) < n:
                rows += rows[: n - len(rows)]
            prompts = [r[1] for r in rows]
            if pipe is not None and getattr(pipe, "vae", None) is not None:
                vae_in = pipe.vae.config.in_channels
                size = tuple(s * (2 ** (len(pipe.vae.config.block_out_channels) - 1)) for s in shape.sample_size)
                imgs = torch.stack([load_image(r[0], size, vae_in) for r in rows])
                clean = torch.cat([encode_images(pipe, b) for b in imgs.split(16)])
        elif p.is_file():
            lines = [ln.strip() for ln in read_text_file(p, "prompt file").splitlines() if ln.strip()]
            prompts = [lines[i % len(lines)] for i in range(n)]
        else:
            raise SlimError(f"calibration data {p} does not exist")
    if clean is None:
        clean = torch.randn(n, cfg.in_channels, *shape.sample_size, generator=gen)
    if pipe is not None and getattr(pipe, "scheduler", None) is not None:
        sched = DDPMScheduler.from_config(pipe.scheduler.config)
    else:
        sched = DDPMScheduler(num_train_timesteps=1000)
    total = sched.config.num_train_timesteps
    # timesteps spread evenly over the schedule, in a fixed shuffled order
    steps = ((torch.arange(n) + 0.5) * total / n).long().clamp(0, total - 1)
    steps = steps[torch.randperm(n, generator=gen)]
    noise = torch.randn(clean.shape, generator=gen)
    noisy = sched.add_noise(clean, noise, steps)
    cond = None
    if getattr(cfg, "cross_attention_dim", None):
        if pipe is not None and getattr(pipe, "text_encoder", None) is not None:
            cond = torch.cat([encode_prompts(pipe, prompts[i:i + 32]) for i in range(0, n, 32)])
        else:
            dim = cfg.cross_attention_dim
            dim = dim[0] if isinstance(dim, (list, tuple)) else dim
            cond = torch.randn(n, adapter.context_len(model), dim, generator=gen)
    out = []
    for i in range(0, n, batch_size):
        b = {"latents": noisy[i:i + batch_size], "timesteps": steps[i:i + batch_size],
             "noise": noise[i:i + batch_size], "clean": clean[i:i + batch_size]}
        if cond is not None:
            b["encoder_hidden_states"] = cond[i:i + batch_size]
        out.append(b)
    return out
