"""The built-in demo diffusion model: a tiny Stable-Diffusion-shaped pipeline that draws handwritten digits.

It has every part of Stable Diffusion 1.x, only small: a VAE (16×16 grayscale image ↔ 4×8×8 latent), a CLIP
text encoder with a real CLIP BPE tokenizer, a conditional U-Net with cross-attention (two ResNet/attention
pairs per down stage, three per up stage, a cross-attention mid block, an innermost stage without
attention) and a DDIM scheduler on SD 1.x's scaled_linear noise schedule.  It is trained on the 8×8
digits that ship with scikit-learn (upsampled to 16×16), conditioned on prompts such as "a handwritten digit 7", "seven" or "the number 7", with 10% empty
prompts so that classifier-free guidance works.  It is saved as a real diffusers folder::

    StableDiffusionPipeline.from_pretrained("resources/demo/diffusion")("a handwritten digit 7", output_type="np")

Reproducible from scratch with::

    python -m slimgui_families.diffusion.demo --out resources/demo/diffusion      # ~13-16 min on 2 CPU cores

The same script trains the digit classifier that :mod:`slimgui_families.diffusion.quality` uses to check that a
(pruned, distilled, few-step) model still draws the digits it is asked for; it is stored in the
pipeline folder under ``classifier/``.  A fixed subset of the digits is held out (a hash of the index
below 15%: 236 of the 1797): no model sees it in training, and the quality measure compares generated images against it.

The repository ships the result (fp32 safetensors, ~16 MB) so that ``slimgui demo diffusion`` is ready at
once; when the shipped copy is missing it is rebuilt with this same script into the user cache.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimgui.core.errors import SlimError
from slimgui.core.io import atomic_write_text, cache_dir, resources_dir
from slimgui.core.progress import CancelToken, ProgressFn, check, report

if TYPE_CHECKING:
    from torch import Tensor
    from transformers import CLIPTokenizer

    from .quality import DigitClassifier

from .demo_data import (  # noqa: E402,F401  (the data and tokenizer, re-exported for older imports)
    CAPTION_TEMPLATES,
    DEMO_VERSION,
    DIGIT_WORDS,
    HELD_OUT_PERCENT,
    IMAGE_SIZE,
    MAX_TOKENS,
    NOISE_SCHEDULE,
    NUMERALS,
    OTHER_WORDS,
    PROMPT_TEMPLATE,
    PUNCTUATION,
    SAMPLER_SETTINGS,
    TEXT_ENCODER_CONFIG,
    UNET_CONFIG,
    VAE_CONFIG,
    build_tokenizer,
    captions_for,
    digit_split,
    is_held_out,
    load_digit_images,
    tokenizer_vocab,
    write_tokenizer_files,
)

TRAIN: dict[str, Any] = dict(
    seed=0,
    vae_steps=500, vae_batch=128, vae_lr=2e-3, kl_weight=1e-3,
    classifier_steps=500, classifier_batch=128, classifier_lr=2e-3,
    unet_steps=1500, unet_batch=128, unet_lr=2e-3, warmup=100, weight_decay=0.01,
    caption_dropout=0.1, snr_gamma=5.0, ema_decay=0.995,
    eval_per_digit=10, eval_steps=25, eval_guidance=3.0,
)

MODEL_FILES = (
    "model_index.json",
    "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json", "text_encoder/model.safetensors",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
    "classifier/config.json", "classifier/model.safetensors", "classifier/reference_features.safetensors",
)


# ---------------------------------------------------------------------------------------------------------------
# training


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def _log(record: dict) -> None:
    print(json.dumps(record), file=sys.stderr, flush=True)


class _Progress:
    """Counts steps across the training phases and reports them as one bar."""

    def __init__(self, progress: ProgressFn | None, cancel: CancelToken | None, total: int) -> None:
        self.progress, self.cancel, self.total, self.done = progress, cancel, total, 0
        self._phase = ""

    def step(self, message: str) -> None:
        """Count one step; report every 10th, the last, and the first of each phase (the text before "(")."""
        check(self.cancel)
        self.done += 1
        phase = message.split("(")[0]
        if phase != self._phase or self.done % 10 == 0 or self.done == self.total:
            report(self.progress, self.done, self.total, message)
        self._phase = phase


def train_vae(train_x: Tensor, cfg: dict, bar: _Progress) -> tuple[Any, dict]:
    """Train the VAE (L1 + MSE reconstruction + a small KL term); set ``scaling_factor`` for unit-std latents."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["vae_lr"], weight_decay=0.0)
    latent_numel = VAE_CONFIG["latent_channels"] * (IMAGE_SIZE // 2) ** 2
    vae.train()
    t0 = time.perf_counter()
    steps = cfg["vae_steps"]
    rec_loss = kl = torch.tensor(0.0)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, cfg["vae_lr"], min(50, steps // 10 + 1))
        x = train_x[torch.randint(0, len(train_x), (cfg["vae_batch"],), generator=gen)]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        rec_loss = (rec - x).abs().mean() + (rec - x).pow(2).mean()
        kl = post.kl().mean() / latent_numel
        loss = rec_loss + cfg["kl_weight"] * kl
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps - 1:
            _log({"phase": "vae", "step": step, "rec": round(rec_loss.item(), 4), "kl": round(kl.item(), 3),
                  "elapsed_s": round(time.perf_counter() - t0)})
        bar.step(f"training the VAE (loss {rec_loss.item():.3f})")
    vae.eval()
    with torch.no_grad():
        post = vae.encode(train_x).latent_dist
        z = post.sample(generator=gen)
        scaling = 1.0 / z.std().item()
    vae.register_to_config(scaling_factor=scaling)
    return vae, {"seconds": round(time.perf_counter() - t0, 1), "final_reconstruction_loss": round(rec_loss.item(), 4),
                 "final_kl": round(kl.item(), 4), "scaling_factor": scaling,
                 "latent_mean": round(z.mean().item(), 4), "latent_std": round(z.std().item(), 4)}


def vae_reconstruction(vae: Any, x: Tensor) -> dict[str, float]:
    """Mean absolute / squared error (in [-1, 1] units) of decoding the posterior mean of ``x``."""
    import torch

    with torch.no_grad():
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    return {"l1": round((rec - x).abs().mean().item(), 4), "mse": round((rec - x).pow(2).mean().item(), 5)}


def train_classifier(train_x: Tensor, train_y: Tensor, cfg: dict, bar: _Progress) -> tuple[DigitClassifier, dict]:
    """Train :class:`~slimgui_families.diffusion.quality.DigitClassifier` with ±1-pixel shifts as augmentation."""
    import torch
    import torch.nn.functional as F

    from .quality import CLASSIFIER_CONFIG, DigitClassifier

    torch.manual_seed(cfg["seed"] + 1)
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    model = DigitClassifier(channels=CLASSIFIER_CONFIG["channels"], feature_dim=CLASSIFIER_CONFIG["feature_dim"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["classifier_lr"], weight_decay=1e-4)
    steps = cfg["classifier_steps"]
    padded = F.pad(train_x, (1, 1, 1, 1), value=-1.0)
    t0 = time.perf_counter()
    loss = torch.tensor(0.0)
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, cfg["classifier_lr"], 20)
        idx = torch.randint(0, len(train_x), (cfg["classifier_batch"],), generator=gen)
        dy, dx = torch.randint(0, 3, (2,), generator=gen).tolist()  # one shift per batch
        x = padded[idx, :, dy:dy + IMAGE_SIZE, dx:dx + IMAGE_SIZE]
        x = x + 0.05 * torch.randn(x.shape, generator=gen)
        loss = F.cross_entropy(model(x), train_y[idx], label_smoothing=0.05)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps - 1:
            _log({"phase": "classifier", "step": step, "loss": round(loss.item(), 4),
                  "elapsed_s": round(time.perf_counter() - t0)})
        bar.step(f"training the digit classifier (loss {loss.item():.3f})")
    model.eval()
    return model, {"seconds": round(time.perf_counter() - t0, 1), "final_loss": round(loss.item(), 4)}


def train_unet(vae: Any, tokenizer: CLIPTokenizer, train_x: Tensor, train_y: Tensor, cfg: dict,
               bar: _Progress) -> tuple[Any, Any, dict]:
    """Train the U-Net and the text encoder jointly on precomputed VAE latents (epsilon MSE, min-SNR weights).

    Captions come from :data:`CAPTION_TEMPLATES`; a ``caption_dropout`` share is the empty prompt, for
    classifier-free guidance.  Returns the EMA weights of both models.
    """
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(cfg["seed"] + 2)
    gen = torch.Generator().manual_seed(cfg["seed"] + 2)
    rng = random.Random(cfg["seed"] + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        **TEXT_ENCODER_CONFIG, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    noise_scheduler = DDPMScheduler(**NOISE_SCHEDULE)
    alphas_cumprod = noise_scheduler.alphas_cumprod
    snr = alphas_cumprod / (1 - alphas_cumprod)
    weight = torch.clamp(snr, max=cfg["snr_gamma"]) / snr if cfg["snr_gamma"] else torch.ones_like(snr)

    with torch.no_grad():
        post = vae.encode(train_x).latent_dist
        lat_mean, lat_std = post.mean, post.std
    scaling = vae.config.scaling_factor
    # every (digit, template) caption, plus the empty prompt in the last row
    caption_table = [c for d in range(10) for c in captions_for(d)] + [""]
    caption_ids = tokenizer(caption_table, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
    n_templates = len(CAPTION_TEMPLATES)

    params = list(unet.parameters()) + list(text_encoder.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg["unet_lr"])
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ema_pairs = list(zip(list(ema_unet.parameters()) + list(ema_text.parameters()), params))

    steps, bs = cfg["unet_steps"], cfg["unet_batch"]
    t0 = time.perf_counter()
    history: list[dict] = []
    running = 0.0
    unet.train()
    text_encoder.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, cfg["unet_lr"], cfg["warmup"])
        idx = torch.randint(0, len(train_x), (bs,), generator=gen)
        z = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)) * scaling
        rows = [len(caption_table) - 1 if rng.random() < cfg["caption_dropout"]
                else int(train_y[i]) * n_templates + rng.randrange(n_templates) for i in idx.tolist()]
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (bs,), generator=gen)
        noisy = noise_scheduler.add_noise(z, noise, t)
        hidden = text_encoder(caption_ids[rows])[0]
        pred = unet(noisy, t, encoder_hidden_states=hidden).sample
        per_sample = (pred - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (weight[t] * per_sample).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        d = min(cfg["ema_decay"], (1 + step) / (10 + step))
        with torch.no_grad():
            for ema_p, p in ema_pairs:
                ema_p.lerp_(p, 1 - d)
        running += per_sample.mean().item()
        if (step + 1) % 100 == 0 or step == steps - 1:
            n = (step % 100) + 1
            history.append({"step": step + 1, "mse": round(running / n, 4),
                            "elapsed_s": round(time.perf_counter() - t0)})
            _log({"phase": "unet"} | history[-1])
            running = 0.0
        bar.step(f"training the U-Net (loss {per_sample.mean().item():.3f})")
    return ema_unet, ema_text, {"seconds": round(time.perf_counter() - t0, 1), "history": history,
                                "final_mse": history[-1]["mse"] if history else None}


def _classifier_accuracy(model: DigitClassifier, x: Tensor, y: Tensor) -> float:
    from .quality import classify

    return round((classify(model, x) == y).float().mean().item(), 4)


def train_demo(out_dir: str | Path, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
               **overrides: Any) -> dict:
    """Train the whole demo from scratch into ``out_dir`` (written as a temporary sibling, then renamed).

    ``overrides`` replace entries of :data:`TRAIN` (e.g. ``unet_steps=200`` for a quick run).  Returns the
    metadata also written to ``out_dir/slimgui_demo.json``: configs, seeds, final losses, timings and the
    held-out quality numbers.
    """
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from . import quality

    unknown = set(overrides) - set(TRAIN)
    if unknown:
        raise SlimError(f"unknown demo training setting(s) {sorted(unknown)}", hint=f"use some of {sorted(TRAIN)}")
    cfg = dict(TRAIN) | overrides
    torch.set_num_threads(2)
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        split = digit_split()
        train_x, train_y, _ = split["train"]
        eval_x, eval_y, _ = split["eval"]
        bar = _Progress(progress, cancel, cfg["vae_steps"] + cfg["classifier_steps"] + cfg["unet_steps"] + 1)
        tokenizer = build_tokenizer(tmp / "tokenizer")

        vae, vae_info = train_vae(train_x, cfg, bar)
        vae_info["heldout_reconstruction"] = vae_reconstruction(vae, eval_x)
        classifier, clf_info = train_classifier(train_x, train_y, cfg, bar)
        clf_info["train_accuracy"] = _classifier_accuracy(classifier, train_x, train_y)
        clf_info["heldout_accuracy"] = _classifier_accuracy(classifier, eval_x, eval_y)
        _log({"phase": "classifier", "heldout_accuracy": clf_info["heldout_accuracy"]})
        unet, text_encoder, unet_info = train_unet(vae, tokenizer, train_x, train_y, cfg, bar)

        ddpm = DDPMScheduler(**NOISE_SCHEDULE)
        scheduler = DDIMScheduler.from_config(ddpm.config, **SAMPLER_SETTINGS)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        quality.save_classifier(classifier, tmp / quality.CLASSIFIER_SUBDIR,
                                reference_features=quality.features(classifier, eval_x), reference_labels=eval_y,
                                info={"heldout_accuracy": clf_info["heldout_accuracy"], "demo_version": DEMO_VERSION})

        # measure what a user gets: load the saved folder back and generate through the pipeline
        check(cancel)
        report(progress, bar.done, bar.total, "measuring the generated digits")
        loaded = StableDiffusionPipeline.from_pretrained(str(tmp), local_files_only=True)
        ev = dict(per_digit=cfg["eval_per_digit"], steps=cfg["eval_steps"], guidance=cfg["eval_guidance"], seed=0)
        generated = quality.evaluate_pipeline(loaded, tmp, **ev)
        train_feats = quality.features(classifier, train_x)
        ref_feats = quality.features(classifier, eval_x)
        noise = torch.rand(len(eval_x), 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
        torch.manual_seed(cfg["seed"] + 3)
        loaded.unet = UNet2DConditionModel(**UNET_CONFIG).eval()
        random_unet = quality.evaluate_pipeline(loaded, tmp, **ev)
        baselines = {
            "real_train_vs_heldout_fid": round(quality.frechet_distance(train_feats, ref_feats), 3),
            "uniform_noise_fid": round(quality.frechet_distance(quality.features(classifier, noise), ref_feats), 3),
            "random_unet": {"accuracy": round(random_unet["accuracy"], 4), "fid": round(random_unet["fid"], 3)},
        }
        bar.step("measuring the generated digits")
        _log({"phase": "eval", "generated": generated, "baselines": baselines})

        sizes = {name: sum(p.numel() for p in m.parameters())
                 for name, m in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder),
                                 ("classifier", classifier))}
        meta = {
            "demo_version": DEMO_VERSION,
            "script": "python -m slimgui_families.diffusion.demo",
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "data": {"source": "sklearn.datasets.load_digits (8x8, upsampled bilinearly to 16x16, [-1, 1])",
                     "held_out": f"{HELD_OUT_PERCENT}% by sha256 of the index (slimgui_families.diffusion.demo.is_held_out)",
                     "train_images": len(train_x), "heldout_images": len(eval_x)},
            "prompt_template": PROMPT_TEMPLATE, "caption_templates": list(CAPTION_TEMPLATES),
            "configs": {"vae": VAE_CONFIG, "text_encoder": TEXT_ENCODER_CONFIG, "unet": UNET_CONFIG,
                        "noise_schedule": NOISE_SCHEDULE, "sampler": SAMPLER_SETTINGS, "classifier": quality.CLASSIFIER_CONFIG},
            "train_config": cfg,
            "parameters": sizes,
            "vae": vae_info, "classifier": clf_info, "unet": unet_info,
            "quality": {"generated": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in generated.items()},
                        **baselines},
            "train_seconds": round(time.perf_counter() - t_start, 1),
        }
        atomic_write_text(tmp / "slimgui_demo.json", json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


# ---------------------------------------------------------------------------------------------------------------
# the shipped model and the cached data


def shipped_model_dir() -> Path:
    """Where the repository keeps the trained demo pipeline."""
    return resources_dir() / "demo" / "diffusion"


def is_complete(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds every file of the demo pipeline and its classifier."""
    return all((Path(model_dir) / name).is_file() for name in MODEL_FILES) and (
        (Path(model_dir) / "tokenizer" / "vocab.json").is_file()
        or (Path(model_dir) / "tokenizer" / "tokenizer.json").is_file())


def _png_bytes(image: Tensor) -> bytes:
    from PIL import Image

    pixels = ((image[0] + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_imagefolder(folder: Path, images: Tensor, labels: Tensor, indices: Tensor) -> Path:
    """Write digits as a Hugging Face "imagefolder": ``NNNNN.png`` (16×16 grayscale) + ``metadata.jsonl``.

    Built in a temporary sibling folder and renamed into place, so ``folder`` is either absent or complete.
    The file name is the digit's index in ``load_digits``; the text is the demo prompt.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        lines = []
        for image, label, index in zip(images, labels.tolist(), indices.tolist()):
            name = f"{index:05d}.png"
            (tmp / name).write_bytes(_png_bytes(image))
            lines.append(json.dumps({"file_name": name, "text": PROMPT_TEMPLATE.format(digit=label), "label": label}))
        (tmp / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "metadata.jsonl").is_file():  # not a concurrent writer's finished copy
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def ensure_demo(progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, str]:
    """Return ``{"model": DIR, "train": DIR, "eval": DIR, "classifier": DIR}``, building what is missing.

    ``model`` is the shipped pipeline folder, or (when that is missing or incomplete) one trained by this
    script into the cache; ``train`` / ``eval`` are imagefolders of the training and held-out digits in
    ``cache_dir()/demo-diffusion-v{DEMO_VERSION}/``; ``classifier`` is the quality classifier's folder.
    """
    root = cache_dir() / f"demo-diffusion-v{DEMO_VERSION}"
    model_dir = shipped_model_dir()
    if not is_complete(model_dir):
        model_dir = root / "model"
        if not is_complete(model_dir):
            train_demo(model_dir, progress, cancel)
    train_dir, eval_dir = root / "train", root / "eval"
    if not ((train_dir / "metadata.jsonl").is_file() and (eval_dir / "metadata.jsonl").is_file()):
        report(progress, 0, 1, "writing the digit images")
        split = digit_split()
        for name, folder in (("train", train_dir), ("eval", eval_dir)):
            check(cancel)
            if not (folder / "metadata.jsonl").is_file():
                if folder.exists():
                    shutil.rmtree(folder)
                write_imagefolder(folder, *split[name])
        report(progress, 1, 1, "writing the digit images")
    return {"model": str(model_dir), "train": str(train_dir), "eval": str(eval_dir),
            "classifier": str(model_dir / "classifier")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train SlimGUI's demo diffusion model (digits) from scratch.")
    ap.add_argument("--out", type=Path, default=shipped_model_dir())
    for key in ("seed", "vae_steps", "classifier_steps", "unet_steps", "unet_batch"):
        ap.add_argument("--" + key.replace("_", "-"), type=int, default=TRAIN[key])
    ap.add_argument("--unet-lr", type=float, default=TRAIN["unet_lr"])
    args = ap.parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("seed", "vae_steps", "classifier_steps", "unet_steps", "unet_batch",
                                               "unet_lr")}
    try:
        meta = train_demo(args.out, **overrides)
    except SlimError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "seconds": meta["train_seconds"],
                      "vae_heldout_reconstruction": meta["vae"]["heldout_reconstruction"],
                      "classifier_heldout_accuracy": meta["classifier"]["heldout_accuracy"],
                      "unet_final_mse": meta["unet"]["final_mse"], "quality": meta["quality"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
