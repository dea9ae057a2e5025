"""Image generation through the model's own diffusers pipeline: the family's previewer.

The previewer draws one model's row of images (a prompt, or a demo digit, from seeds SEED..SEED+N-1); a front
end runs it on each model with the same options and stacks the rows (:func:`slimgui.core.media.stack_images`),
so the original, the slimmed, the healed and the few-step model can be compared image by image.  Each row
carries its label (the model's name, its steps) in its tiles and ``meta["rows"]``.  A few-step
(latent-consistency) model says its own step count and guidance in ``slimgui_fewstep.json`` and is run with
diffusers' ``LCMScheduler``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimgui.core.errors import SlimError
from slimgui.core.media import ImageMedia
from slimgui.core.model import LoadedModel
from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .files import DEMO_FILE, FEWSTEP_FILE, demo_root


def fewstep_settings(model: LoadedModel) -> dict[str, Any] | None:
    """{"steps": 4, "guidance": 1.0, ...} for a few-step model, else None."""
    f = Path(model.source) / FEWSTEP_FILE
    if not f.is_file():
        return None
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def demo_prompt(model: LoadedModel, label: int) -> str:
    """The prompt for class ``label`` of a model made from the demo (e.g. "a handwritten digit 7")."""
    root = demo_root(model.source)
    if root is None:
        raise SlimError("this model's classes are unknown: --class works for models made from the demo",
                        hint="give a --prompt instead")
    if not 0 <= int(label) <= 9:
        raise SlimError(f"the demo draws digits 0-9, not {label}")
    template = "a handwritten digit {digit}"
    try:
        doc = json.loads((root / DEMO_FILE).read_text(encoding="utf-8"))
        template = str(doc.get("prompt_template") or doc.get("class_prompt") or template)
    except (OSError, json.JSONDecodeError):
        pass
    return template.replace("{digit}", str(int(label))).replace("{}", str(int(label)))


def _pipeline(model: LoadedModel):
    pipe = model.extra.get("pipeline")
    if pipe is None:
        if not model.has_weights:
            raise SlimError(f"{model.source} has no weights (config only)", hint="open a folder with weights")
        raise SlimError("generating images needs a pipeline folder (U-Net + VAE + scheduler), not a bare U-Net",
                        hint="open the pipeline folder that holds model_index.json")
    return pipe


def run_pipeline(model: LoadedModel, prompt: str | list[str], *, seeds: list[int], steps: int,
                 guidance: float | None = None, scheduler: str | None = None, timesteps: list[int] | None = None,
                 cancel: CancelToken | None = None) -> torch.Tensor:
    """Images N×C×H×W in [0, 1], one per seed (or per prompt when ``prompt`` is a list of len(seeds))."""
    pipe = _pipeline(model)
    check(cancel)
    pipe.unet = model.module  # the pipeline runs the model's (possibly slimmed) U-Net
    original_scheduler = pipe.scheduler
    if scheduler == "lcm":
        from diffusers import LCMScheduler

        pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    prompts = prompt if isinstance(prompt, list) else [prompt] * len(seeds)
    if len(prompts) != len(seeds):
        raise SlimError("give one prompt, or one prompt per seed")
    has_text = getattr(pipe, "text_encoder", None) is not None and getattr(pipe, "tokenizer", None) is not None
    try:
        if has_text:
            gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
            kwargs: dict[str, Any] = {}
            if guidance is not None:
                kwargs["guidance_scale"] = float(guidance)
            if cancel is not None:
                def stop(p, i, t, kw):
                    if cancel.cancelled:
                        p._interrupt = True
                    return kw
                kwargs["callback_on_step_end"] = stop
            if timesteps:  # a few-step model's own timesteps (those it was distilled on)
                kwargs["timesteps"] = [int(t) for t in timesteps]
            else:
                kwargs["num_inference_steps"] = int(steps)
            out = pipe(prompts, generator=gens, output_type="pt", **kwargs).images
        else:
            if any(p.strip() for p in prompts):
                raise SlimError("this model has no text encoder, so it cannot follow a prompt",
                                hint="leave the prompt empty to generate unconditionally")
            imgs = []
            for s in seeds:
                check(cancel)
                res = pipe(batch_size=1, generator=torch.Generator().manual_seed(int(s)), num_inference_steps=int(steps),
                           output_type="np")
                imgs.append(torch.from_numpy(np.asarray(res.images)).permute(0, 3, 1, 2))
            out = torch.cat(imgs)
    finally:
        pipe.scheduler = original_scheduler
    check(cancel)
    out = out.float()
    if out.dim() == 4 and out.shape[-1] in (1, 3) and out.shape[1] not in (1, 3):
        out = out.permute(0, 3, 1, 2)
    return out.clamp(0, 1)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """C×H×W in [0, 1] → H×W (grey) or H×W×3 uint8."""
    arr = (img.detach().cpu().clamp(0, 1) * 255).round().byte().numpy()
    return arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))


def grid(rows: list[tuple[str, torch.Tensor]], *, col_labels: list[str], scale: int | None = None,
         gap: int = 4, title: str = "", meta: dict[str, Any] | None = None) -> ImageMedia:
    """A grid image: each row one model's images (N×C×H×W in [0, 1]), each column one seed."""
    if not rows:
        raise SlimError("nothing to put in the grid")
    c, h, w = rows[0][1].shape[1:]
    scale = scale or max(1, 128 // max(h, w))
    th, tw = h * scale, w * scale
    ncol = max(len(r[1]) for r in rows)
    height = len(rows) * th + (len(rows) + 1) * gap
    width = ncol * tw + (ncol + 1) * gap
    canvas = np.full((height, width) if c == 1 else (height, width, 3), 255, dtype=np.uint8)
    tiles = []
    for r, (label, imgs) in enumerate(rows):
        for k in range(len(imgs)):
            tile = to_uint8(imgs[k])
            tile = np.kron(tile, np.ones((scale, scale), dtype=np.uint8)) if tile.ndim == 2 else \
                np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
            if c != 1 and tile.ndim == 2:
                tile = np.stack([tile] * 3, axis=-1)
            y, x = gap + r * (th + gap), gap + k * (tw + gap)
            canvas[y:y + th, x:x + tw] = tile
            tiles.append({"label": f"{label} · {col_labels[k] if k < len(col_labels) else k}",
                          "row": label, "box": [x, y, tw, th]})
    return ImageMedia(canvas, title=title, tiles=tiles, meta={"rows": [r[0] for r in rows], "columns": col_labels,
                                                               "scale": scale, **(meta or {})})


def model_settings(model: LoadedModel, steps: int | None, guidance: float | None) -> dict[str, Any]:
    """Steps, guidance and scheduler for one model: a few-step model uses its own unless told otherwise."""
    few = fewstep_settings(model)
    if few is not None:
        own = few.get("timesteps") if isinstance(few.get("timesteps"), list) else None
        mine = steps is None or steps > 8  # more steps than a few-step model takes: it uses its own
        n = int(few.get("steps", 4) if mine else steps)
        return {"steps": n, "guidance": float(few.get("guidance", 1.0) if guidance is None else guidance),
                "scheduler": few.get("scheduler", "lcm"),
                "timesteps": own if own and (mine or steps == len(own)) else None}
    return {"steps": int(steps or 25), "guidance": guidance, "scheduler": None, "timesteps": None}


def row_label(model: LoadedModel) -> str:
    """A model's name in a comparison: its folder's name, with its parent's for a retraining run's ``OUT/model``."""
    p = Path(model.source)
    return f"{p.parent.name}/{p.name}" if p.name == "model" and p.parent.name else (p.name or str(p))


def generate_images(model: LoadedModel, prompt: str = "", *, class_label: int | None = None, seed: int = 0,
                    n: int = 4, steps: int | None = 25, guidance: float | None = None, label: str | None = None,
                    progress: ProgressFn | None = None, cancel: CancelToken | None = None, **_: Any) -> ImageMedia:
    """The previewer: ``n`` images of ``prompt`` (or of the demo's digit ``class_label``) from seeds
    seed..seed+n-1, as one labelled row (``label``, default the model folder's name, and the steps used).

    ``meta`` holds the ``prompt``, the ``seeds`` and ``models`` (this model's label, source, steps, guidance,
    scheduler), so the front ends can say what each row of a stacked grid was drawn with."""
    if class_label is not None:
        if prompt and prompt.strip():
            raise SlimError("give --prompt or --class, not both", hint="a class stands for the demo's prompt of it")
        prompt = demo_prompt(model, int(class_label))
    name = label or row_label(model)
    seeds = list(range(int(seed), int(seed) + int(n)))
    report(progress, 0, 1, f"generating with {name}")
    s = model_settings(model, steps, guidance)
    imgs = run_pipeline(model, prompt, seeds=seeds, steps=s["steps"], guidance=s["guidance"],
                        scheduler=s["scheduler"], timesteps=s["timesteps"], cancel=cancel)
    text = f"{name} ({s['steps']} steps{', LCM' if s['scheduler'] == 'lcm' else ''})"
    report(progress, 1, 1, "done")
    meta: dict[str, Any] = {"prompt": prompt, "seeds": seeds, "models": [{"label": name, "model": model.source, **s}]}
    if class_label is not None:
        meta["class_label"] = int(class_label)
    return grid([(text, imgs)], col_labels=[f"seed {x}" for x in seeds], title=prompt or "(unconditional)",
                meta=meta)
