"""The diffusion family's healing methods: image data, denoising / BK-SDM / LoRA / LCM losses, and the save.

The manifest names one builder per method, each ``(adapter, cfg, options, *, registry=None) -> TrainTask`` with
``options`` an instance of the method's schema (:mod:`slimgui_families.diffusion.options`): :func:`build_kd`
(:class:`DistillOptions`), :func:`build_cpt` (none), :func:`build_lcm` (:class:`ConsistencyOptions`) and
:func:`build_lora` (:class:`LoraOptions`).

Every method trains the pipeline's U-Net; the VAE and text encoder stay frozen and are used once, up front,
to turn the image folder into latents and caption embeddings (``train_blocks = {"latents", "encoder_hidden_states"}``).
Noise and timesteps are drawn inside ``loss()`` from torch's global CPU generator, which the training loop
checkpoints and restores, so a resumed run continues bit for bit.

Notation: ``x0`` a clean latent, ``ε ~ N(0, I)``, ``ᾱ_t`` the scheduler's cumulative alpha, and
``x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε`` the noised latent at timestep ``t``.  A U-Net predicts ε (or v, or x0, per the
scheduler's ``prediction_type``; the *target* below is the matching quantity).

- ``cpt`` (denoising fine-tuning): ``L = ‖ε̂_S(x_t, t, c) − target‖²``.
- ``lora``: the same loss, training peft LoRA adapters on the attention projections only.
- ``kd`` (BK-SDM): ``L = λ_task·‖ε̂_S − target‖² + λ_out·‖ε̂_S − ε̂_T‖² + λ_feat·Σ_stages ‖f_S − f_T‖²`` with the
  stage outputs ``f`` of the student's down/mid/up stages and the teacher's stages they came from.
- ``lcm`` (latent consistency distillation, EdgeFusion / LCM): see :class:`ConsistencyDistiller`.

λ_task, λ_out and λ_feat are ``DistillOptions.kd_ce``, ``kd_kl`` and ``kd_hidden`` (the CLI's ``--kd-ce`` /
``--lambda-task``, ``--kd-kl`` / ``--lambda-out``, ``--kd-hidden`` / ``--lambda-feat``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimgui.core.errors import SlimError
from slimgui.core.io import atomic_write_text
from slimgui.core.model import LoadedModel
from slimgui.core.train import TrainConfig, TrainTask

from .calibration import encode_images, encode_prompts, load_image, read_image_folder
from .distill import ConsistencyDistiller, StageTap, _stage_candidates, _stage_hidden, feature_pairs  # noqa: E402,F401
from .files import FEWSTEP_FILE, HEALED_FILE, MAP_FILE
from .options import ConsistencyOptions, DistillOptions, LoraOptions
from .schedule import (  # noqa: E402,F401
    CAPTION_DROPOUT,
    DEFAULT_LORA_TARGETS,
    FEWSTEP_STEPS,
    MIN_ALPHA_BAR,
    SIGMA_DATA,
    TIMESTEP_SCALING,
    VAL_TIMESTEPS_PER_IMAGE,
    NoiseSchedule,
    _move,
    predict,
)


# -- data ------------------------------------------------------------------------------------------
@dataclass
class EncodedImages:
    """The image folders as frozen-encoder outputs, split into training and validation samples."""

    train: dict[str, torch.Tensor]
    val: dict[str, torch.Tensor]
    uncond: torch.Tensor | None  # the "" caption's embedding (1×L×D), None without a text encoder
    n_images: int
    n_train: int
    n_val: int
    dropped_captions: int


def _image_rows(paths: list[str]) -> list[tuple[Path, str]]:
    rows: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise SlimError(f"data {p} does not exist", hint="give an image folder with metadata.jsonl captions")
        if not p.is_dir():
            raise SlimError(f"{p} is not an image folder", hint="diffusion models train on a folder of images "
                            "with a metadata.jsonl (file_name, text) — the Hugging Face imagefolder layout")
        rows += [(path, caption) for path, caption, _label in read_image_folder(p)]
    return rows


def split_indices(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """Every k-th sample (k = round(1/val_fraction)) is held out for validation, at least one, never all."""
    if n < 2:
        raise SlimError(f"the image data holds {n} image{'s' if n != 1 else ''}: too few to train and validate",
                        hint="give at least two images (a few hundred for a useful result)")
    every = max(2, round(1 / val_fraction))
    val = list(range(every - 1, n, every)) or [n - 1]
    held = set(val)
    return [i for i in range(n) if i not in held], val


def _frozen_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def encode_image_data(pipe: Any, unet: nn.Module, schedule: NoiseSchedule, cfg: TrainConfig, *,
                      drop_captions: bool = True) -> EncodedImages:
    """Encode every image once with the frozen VAE (posterior mean × scaling factor) and text encoder.

    A deterministic ``CAPTION_DROPOUT`` share of the training captions becomes "" (classifier-free guidance
    training).  Validation samples carry their own fixed ``noise`` and ``timesteps`` (each held-out image at
    several timesteps spread over the schedule), so validation is deterministic and comparable across methods.
    """
    if not cfg.data:
        raise SlimError("no training data given", hint="pass --data IMAGE_FOLDER (images with captions)")
    rows = _image_rows(cfg.data)
    train_idx, val_idx = split_indices(len(rows), cfg.val_fraction)
    vae = getattr(pipe, "vae", None)
    size = tuple(int(s) for s in _sample_size(unet.config))
    device = _frozen_device()
    if vae is not None:
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        pixel_size = (size[0] * factor, size[1] * factor)
        channels = int(vae.config.in_channels)
    else:  # pixel-space U-Net (DDPM pipelines): the images themselves are what it denoises
        pixel_size, channels = size, int(unet.config.in_channels)
    latents = []
    chunk = 16
    for start in range(0, len(rows), chunk):
        imgs = torch.stack([load_image(path, pixel_size, channels) for path, _ in rows[start:start + chunk]])
        if vae is None:
            latents.append(imgs)
        else:
            with _on(vae, device):
                latents.append(encode_images(pipe, imgs.to(device)).float().cpu())
    latents_t = torch.cat(latents)
    if latents_t.shape[1] != unet.config.in_channels:
        raise SlimError(f"the images encode to {latents_t.shape[1]} channels but the U-Net takes "
                        f"{unet.config.in_channels}", hint="the pipeline's VAE and U-Net do not belong together")

    text = _needs_text(unet)
    captions = [caption for _, caption in rows]
    drop = _dropped(len(train_idx), cfg.seed) if (text and drop_captions) else []
    for k in drop:
        captions[train_idx[k]] = ""
    emb = uncond = None
    if text:
        unique = sorted(set(captions) | {""})
        with _on(pipe.text_encoder, device):
            table = torch.cat([encode_prompts(pipe, unique[i:i + 64]).float().cpu() for i in range(0, len(unique), 64)])
        where = {c: i for i, c in enumerate(unique)}
        emb = table[torch.tensor([where[c] for c in captions])]
        uncond = table[where[""]][None].clone()

    def pick(idx: list[int]) -> dict[str, torch.Tensor]:
        out = {"latents": latents_t[idx].contiguous()}
        if emb is not None:
            out["encoder_hidden_states"] = emb[idx].contiguous()
        return out

    train = pick(train_idx)
    k = max(1, min(VAL_TIMESTEPS_PER_IMAGE, math.ceil(32 / len(val_idx))))
    val = pick([i for i in val_idx for _ in range(k)])
    n_val = len(val["latents"])
    gen = torch.Generator().manual_seed(cfg.seed + 104_729)
    total = schedule.num_train_timesteps
    steps = ((torch.arange(n_val) + 0.5) * total / n_val).long().clamp(0, total - 1)
    val["timesteps"] = steps[torch.randperm(n_val, generator=gen)]
    val["noise"] = torch.randn(val["latents"].shape, generator=gen)
    return EncodedImages(train, val, uncond, len(rows), len(train_idx), len(val_idx), len(drop))


def _dropped(n: int, seed: int) -> list[int]:
    k = round(CAPTION_DROPOUT * n)
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7_741))[:k].tolist())


class _on:
    """Run a frozen module on ``device`` (float32 on the CPU), then put it back as it was."""

    def __init__(self, module: nn.Module, device: torch.device):
        self.module, self.device = module, device
        p = next(module.parameters())
        self.old_device, self.old_dtype = p.device, p.dtype

    def __enter__(self) -> nn.Module:
        dtype = torch.float32 if self.device.type == "cpu" else self.old_dtype
        return self.module.to(self.device, dtype)

    def __exit__(self, *exc: Any) -> None:
        self.module.to(self.old_device, self.old_dtype)


def _sample_size(config: Any) -> tuple[int, int]:
    size = config.sample_size or 64
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _needs_text(unet: nn.Module) -> bool:
    return bool(getattr(unet.config, "cross_attention_dim", None)) and type(unet).__name__ == "UNet2DConditionModel"


# -- models ----------------------------------------------------------------------------------------
def _load(adapter: Any, path: str, what: str) -> LoadedModel:
    if not Path(path).exists():
        raise SlimError(f"the {what} {path} does not exist")
    model = adapter.load(path)
    if not model.has_weights:
        raise SlimError(f"the {what} {path} has no weights (config only)", hint="give a folder with its weights")
    return model


def _check_pipeline(model: LoadedModel) -> Any:
    pipe = model.extra.get("pipeline")
    if pipe is None:
        raise SlimError(f"{model.source} is a bare U-Net folder; retraining needs the whole pipeline",
                        hint="give the pipeline folder (model_index.json with unet, vae, text_encoder, tokenizer, "
                             "scheduler) so images can be encoded and the healed model saved as a pipeline")
    unet = model.module
    if getattr(unet.config, "num_class_embeds", None) or getattr(unet.config, "class_embed_type", None):
        raise SlimError("class-conditioned U-Nets cannot be retrained yet", hint="use a text-conditioned pipeline")
    if getattr(pipe, "scheduler", None) is None:
        raise SlimError(f"the pipeline in {model.source} has no scheduler", hint="restore its scheduler folder")
    if _needs_text(unet):
        if getattr(pipe, "vae", None) is None:
            raise SlimError(f"the pipeline in {model.source} has no VAE to encode the training images",
                            hint="give a Stable-Diffusion-style pipeline folder (vae, text_encoder, tokenizer)")
        if getattr(pipe, "text_encoder", None) is None or getattr(pipe, "tokenizer", None) is None:
            raise SlimError(f"the pipeline in {model.source} has no text encoder/tokenizer for its text-conditioned "
                            "U-Net", hint="give a Stable-Diffusion-style pipeline folder (vae, text_encoder, tokenizer)")
    return pipe


def _unet_map(folder: Path) -> dict[str, Any] | None:
    f = folder / MAP_FILE
    if not f.is_file():
        return None
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SlimError(f"{f} is not valid JSON ({getattr(exc, 'msg', exc)})",
                        hint="prune the model again, or pass --teacher") from None
    return doc if isinstance(doc, dict) else None


def _frozen_teacher(adapter: Any, path: str, student: nn.Module, what: str = "teacher") -> nn.Module:
    teacher = _load(adapter, path, what).module
    for key in ("in_channels", "out_channels", "cross_attention_dim"):
        a, b = getattr(student.config, key, None), getattr(teacher.config, key, None)
        if a != b:
            raise SlimError(f"the {what} {path} does not fit the student: {key} {b} vs {a}",
                            hint="give the model the student was pruned from")
    teacher.float().eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- LoRA ------------------------------------------------------------------------------------------
def lora_targets(unet: nn.Module, options: LoraOptions) -> list[str]:
    """The LoRA target modules (default: the attention projections), checked against the U-Net's linear layers."""
    linear = [name for name, mod in unet.named_modules() if isinstance(mod, nn.Linear)]
    targets = list(options.lora_targets or DEFAULT_LORA_TARGETS)
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in linear)]
    if unknown:
        available = sorted({".".join(n.split(".")[-2:]) if n.split(".")[-1].isdigit() else n.rsplit(".", 1)[-1]
                            for n in linear})
        raise SlimError(f"unknown LoRA target module(s) {', '.join(unknown)}",
                        hint=f"this U-Net's linear layers are: {', '.join(available[:24])}")
    if options.lora_r < 1:
        raise SlimError(f"LoRA rank must be at least 1, got {options.lora_r}")
    return targets


def apply_lora(unet: nn.Module, options: LoraOptions) -> nn.Module:
    """peft LoRA adapters (W + (α/r)·B·A, B = 0 at the start) on the chosen linear layers; the rest is frozen."""
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(unet, options)
    for p in unet.parameters():
        p.requires_grad_(False)
    return get_peft_model(unet, LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha,
                                           lora_dropout=options.lora_dropout, target_modules=targets))


def _lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights in diffusers' LoRA format (``pipe.load_lora_weights`` reads them back)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    raw = get_peft_model_state_dict(model)
    plain = {k.removeprefix("base_model.model."): v.detach().cpu().contiguous() for k, v in raw.items()}
    return convert_state_dict_to_diffusers(plain)


# -- the task --------------------------------------------------------------------------------------
def _activation_bytes(unet: nn.Module, sample: dict[str, torch.Tensor]) -> int:
    """Bytes of every leaf module's output for one sample × 2 (what backward keeps, plus attention scratch)."""
    total = [0]

    def hook(_m: nn.Module, _a: Any, out: Any) -> None:
        for o in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(o, torch.Tensor):
                total[0] += o.numel() * o.element_size()

    handles = [m.register_forward_hook(hook) for m in unet.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            cond = sample.get("encoder_hidden_states")
            predict(unet, sample["latents"][:1], torch.tensor([1]), cond[:1] if cond is not None else None)
    finally:
        for h in handles:
            h.remove()
    return int(total[0] * 2)


METHODS: dict[str, type | None] = {"kd": DistillOptions, "cpt": None, "lcm": ConsistencyOptions, "lora": LoraOptions}


def _options(method: str, options: Any) -> Any:
    """The method's options: an instance of its schema (None: the defaults; a dict: by name, checked)."""
    schema = METHODS[method]
    if schema is None:
        return None
    if options is None:
        return schema()
    if isinstance(options, dict):
        from slimgui.core.options import from_dict

        return from_dict(schema, options, where=f"retraining option ({method})")
    if not isinstance(options, schema):
        raise SlimError(f"the {method} method takes {schema.__name__}, not {type(options).__name__}")
    return options


def build_kd(adapter: Any, cfg: TrainConfig, options: DistillOptions | None, *, registry: Any = None) -> TrainTask:
    """BK-SDM distillation from the original U-Net (``cfg.teacher``, else the one in the model's
    ``slimgui_unet_map.json``): λ_task·denoising + λ_out·output + λ_feat·stage-feature losses."""
    weights = options if options is not None else DistillOptions()
    if isinstance(weights, DistillOptions) and weights.kd_ce == weights.kd_kl == weights.kd_hidden == 0:
        raise SlimError("--lambda-task, --lambda-out and --lambda-feat are all 0: distillation would learn nothing",
                        hint="give at least one a weight above 0")
    return build_method(adapter, cfg, "kd", options, registry=registry)


def build_cpt(adapter: Any, cfg: TrainConfig, options: None = None, *, registry: Any = None) -> TrainTask:
    """Continued training: every U-Net weight on the denoising loss."""
    return build_method(adapter, cfg, "cpt", options, registry=registry)


def build_lcm(adapter: Any, cfg: TrainConfig, options: ConsistencyOptions | None, *,
              registry: Any = None) -> TrainTask:
    """Latent consistency distillation from the model itself (or ``cfg.teacher``); saves a few-step pipeline."""
    return build_method(adapter, cfg, "lcm", options, registry=registry)


def build_lora(adapter: Any, cfg: TrainConfig, options: LoraOptions | None, *, registry: Any = None) -> TrainTask:
    """LoRA adapters on the U-Net's attention projections (or ``lora_targets``), merged at the end unless
    ``lora_merge`` is False (then saved beside the U-Net, for pipelines that can load them)."""
    return build_method(adapter, cfg, "lora", options, registry=registry)


def build_method(adapter: Any, cfg: TrainConfig, method: str, options: Any = None, *, registry: Any = None) -> TrainTask:
    """The loop's task of ``method`` ("kd", "cpt", "lcm" or "lora") for a diffusers pipeline folder ``cfg.model``,
    with the method's ``options`` (see :data:`METHODS`): see the module docstring for the losses."""
    if method not in METHODS:
        raise SlimError(f"unknown retraining method '{method}' for diffusion models",
                        hint="use one of: " + ", ".join(METHODS))
    opts = _options(method, options)
    student_model = _load(adapter, cfg.model, "model")
    pipe = _check_pipeline(student_model)
    source = Path(student_model.source)
    unet = student_model.module
    orig_dtype = next(unet.parameters()).dtype
    unet.float()
    schedule = NoiseSchedule(pipe.scheduler.config)
    # settings that can be wrong are checked before the (possibly long) encoding of the images
    teacher_path: str | None = None
    mapping = _unet_map(source) if method == "kd" else None
    if method == "kd":
        teacher_path = cfg.teacher or (mapping or {}).get("teacher")
        if not teacher_path:
            raise SlimError(f"distillation needs a teacher, and {source} does not say which model it was pruned from "
                            f"(no {MAP_FILE})", hint="pass --teacher ORIGINAL_PIPELINE")
        if not Path(teacher_path).exists():
            raise SlimError(f"the teacher {teacher_path} does not exist", hint="pass --teacher ORIGINAL_PIPELINE")
    elif method == "lcm":
        teacher_path = cfg.teacher or str(source)
        if not Path(teacher_path).exists():
            raise SlimError(f"the teacher {teacher_path} does not exist")
    elif method == "lora":
        lora_targets(unet, opts)
        if not opts.lora_merge and not hasattr(type(pipe), "save_lora_weights"):
            raise SlimError(f"{type(pipe).__name__} cannot save a separate LoRA adapter",
                            hint="merge the adapter into the U-Net (leave out --keep-adapter)")
    data = encode_image_data(pipe, unet, schedule, cfg, drop_captions=method != "lcm")
    T = schedule.num_train_timesteps
    info: dict[str, Any] = {
        "items": "images", "items_per_sample": 1, "val_metric": None, "params": _params(unet),
        "train_images": data.n_train, "val_images": data.n_val, "val_samples": len(data.val["latents"]),
        "train_sequences": data.n_train, "val_sequences": data.n_val, "dropped_captions": data.dropped_captions,
        "prediction_type": schedule.prediction_type, "latent_shape": list(data.train["latents"].shape[1:]),
        "activation_bytes_per_sample": _activation_bytes(unet, data.train)}

    def denoise_terms(model: nn.Module, batch: dict[str, torch.Tensor]):
        x0 = batch["latents"]
        noise = torch.randn(x0.shape, dtype=x0.dtype).to(x0.device)  # CPU generator: the loop checkpoints it
        t = torch.randint(0, T, (x0.shape[0],)).to(x0.device)
        xt = schedule.add_noise(x0, noise, t)
        return xt, t, batch.get("encoder_hidden_states"), schedule.target(x0, noise, t)

    def denoise_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        xt, t, cond, target = denoise_terms(model, batch)
        loss = F.mse_loss(predict(model, xt, t, cond).float(), target.float())
        return loss, {"task": loss.item()}

    def eval_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Plain denoising MSE with the validation samples' own fixed noise and timesteps."""
        x0, noise, t = batch["latents"], batch["noise"], batch["timesteps"]
        xt = schedule.add_noise(x0, noise, t)
        out = predict(model, xt, t, batch.get("encoder_hidden_states"))
        return F.mse_loss(out.float(), schedule.target(x0, noise, t).float())

    module: nn.Module = unet
    loss_fn = denoise_loss
    after_step = extra_state = load_extra_state = None
    lcm: ConsistencyDistiller | None = None

    if method == "lora":
        module = apply_lora(unet, opts)
    else:
        for p in unet.parameters():
            p.requires_grad_(True)

    if method == "kd":
        teacher = _frozen_teacher(adapter, str(teacher_path), unet)
        stage_map = dict((mapping or {}).get("stages") or {})
        if not stage_map:  # same architecture, or a model slimmed elsewhere: match stages by name
            names = [f"down_blocks.{i}" for i in range(len(unet.down_blocks))] + ["mid_block"] + \
                    [f"up_blocks.{k}" for k in range(len(unet.up_blocks))]
            stage_map = {n: n for n in names}
        pairs, skipped = feature_pairs(unet, teacher, stage_map, data.train, T // 2)
        if opts.kd_hidden and not pairs:
            raise SlimError("no student stage's features match a teacher stage in shape, so feature distillation "
                            "has nothing to compare", hint="set --kd-hidden 0 for output-only distillation, or give "
                            "the teacher the student was pruned from")
        s_tap = StageTap(unet, [s for s, _, _ in pairs])
        t_tap = StageTap(teacher, [t for _, t, _ in pairs])
        info.update(teacher=str(teacher_path), teacher_params=_params(teacher),
                    feature_stages={s: t for s, t, _ in pairs}, feature_stages_skipped=skipped)

        def kd_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
            xt, t, cond, target = denoise_terms(model, batch)
            tch = _move(teacher, xt.device)
            s_tap.start()
            t_tap.start()
            try:
                s_out = predict(model, xt, t, cond)
                with torch.no_grad():
                    t_out = predict(tch, xt, t, cond)
            finally:
                s_tap.stop()
                t_tap.stop()
            task = F.mse_loss(s_out.float(), target.float())
            out = F.mse_loss(s_out.float(), t_out.float())
            feats = [F.mse_loss(_stage_hidden(s_tap.outputs[s]).float(),
                                _stage_candidates(t_tap.outputs[tn])[k].float().detach()) for s, tn, k in pairs]
            feat = torch.stack(feats).sum() if feats else s_out.new_zeros(())
            s_tap.outputs.clear()
            t_tap.outputs.clear()
            total = opts.kd_ce * task + opts.kd_kl * out + (opts.kd_hidden * feat if opts.kd_hidden else 0.0)
            return total, {"task": task.item(), "out": out.item(), "feat": feat.item()}

        loss_fn = kd_loss

    if method == "lcm":
        if cfg.teacher and Path(cfg.teacher).resolve() != source.resolve():
            teacher = _frozen_teacher(adapter, cfg.teacher, unet)
        else:
            teacher = copy.deepcopy(unet).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        lcm = ConsistencyDistiller(unet, teacher, schedule, data.uncond, opts, cfg.extra)
        info.update(teacher=str(teacher_path), teacher_params=_params(teacher) + _params(lcm.target),
                    ddim_steps=opts.lcm_ddim_steps, teacher_guidance=opts.lcm_guidance, ema_decay=opts.lcm_ema_decay)
        loss_fn = lcm.loss
        after_step, extra_state, load_extra_state = lcm.ema_update, lcm.state, lcm.load_state

    def save(model: nn.Module, out_dir: str) -> None:
        """The whole pipeline with the trained U-Net, written beside ``out_dir`` and moved into place."""
        out = Path(out_dir)
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        lora_weights = None
        trained = model
        if method == "lora":
            if opts.lora_merge:
                trained = model.merge_and_unload()
            else:
                lora_weights = _lora_state(model)
                trained = model.unload()
        trained.to("cpu", orig_dtype).eval()
        try:
            old_unet, old_sched = pipe.unet, pipe.scheduler
            try:
                pipe.unet = trained
                if method == "lcm":
                    from diffusers import LCMScheduler

                    pipe.scheduler = LCMScheduler.from_config(old_sched.config,
                                                              original_inference_steps=opts.lcm_ddim_steps,
                                                              timestep_scaling=TIMESTEP_SCALING)
                try:
                    pipe.save_pretrained(str(tmp), safe_serialization=True)
                    if lora_weights is not None:
                        type(pipe).save_lora_weights(str(tmp), unet_lora_layers=lora_weights, safe_serialization=True)
                except OSError as exc:
                    raise SlimError(f"cannot write {tmp}: {exc.strerror or exc}", hint="choose a writable --out") from None
            finally:
                pipe.unet, pipe.scheduler = old_unet, old_sched
            for name in (MAP_FILE, "slimgui_plan.json"):
                if (source / name).is_file():
                    shutil.copy(source / name, tmp / name)
            healed = {"model": str(source), "method": method, "teacher": teacher_path, "steps": cfg.steps,
                      "data": list(cfg.data)}
            if method == "kd":
                healed.update(kd_task=opts.kd_ce, kd_out=opts.kd_kl, kd_feat=opts.kd_hidden)
            if method == "lora":
                healed.update(lora_r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_targets=opts.lora_targets or
                              DEFAULT_LORA_TARGETS, lora_merged=opts.lora_merge)
            atomic_write_text(tmp / HEALED_FILE, json.dumps(healed, indent=1))
            if method == "lcm":
                atomic_write_text(tmp / FEWSTEP_FILE, json.dumps({
                    "steps": FEWSTEP_STEPS, "guidance": 1.0, "scheduler": "lcm", "method": "lcm", "source": str(source),
                    "teacher": teacher_path, "ddim_steps": opts.lcm_ddim_steps, "teacher_guidance": opts.lcm_guidance,
                    "ema_decay": opts.lcm_ema_decay,
                    **({"timesteps": ts} if lcm is not None and (ts := lcm.inference_timesteps()) else {})}, indent=1))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)

    return TrainTask(model=module, train_blocks=data.train, val_blocks=data.val, loss=loss_fn, save=save,
                     eval_loss=eval_loss, info=info, after_step=after_step, extra_state=extra_state,
                     load_extra_state=load_extra_state)
