"""The ViT family's previewer: an image, the model's top-5 predictions, and where its class token looks.

The attention map is the class token's attention to the patches, averaged over the heads, either in the last
block that has attention or rolled out over all blocks (attention rollout, Abnar & Zuidema 2020: per block
0.5·A + 0.5·I with rows renormalised, multiplied through the blocks).  It is scaled to [0, 1] and overlaid on the
image in a fixed colour scale (dark blue = least, yellow = most) with a colour bar saying which attention
probability each colour means.  Alone, a map spans its own smallest to largest value; models compared side by
side are redrawn by :func:`same_scale` (the previewer's ``joint`` step) on one scale, from the smallest to the largest
value over all their maps, so a colour means the same probability in the original and the slimmed model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimgui.core.errors import SlimError
from slimgui.core.media import ImageMedia
from slimgui.core.progress import CancelToken, ProgressFn, report

from .data import digits, digits_for, preprocess_of, read_image

# a perceptual dark-blue -> teal -> yellow colour scale (viridis' anchors)
_SCALE = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)


def colour(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H×W) as RGB (H×W×3 uint8) on the fixed colour scale."""
    v = np.clip(values, 0, 1) * (len(_SCALE) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_SCALE) - 2)
    t = (v - lo)[..., None]
    return (_SCALE[lo] * (1 - t) + _SCALE[lo + 1] * t).round().astype(np.uint8)


def class_token_map(attentions, num_tokens: int, grid: tuple[int, int], mode: str = "last", *,
                    scaled: bool = True) -> np.ndarray | None:
    """The class token's attention over the patch grid (``grid`` rows × columns), from the per-block attention
    probabilities ``attentions`` (batch 1): the last block's, or the rollout over all blocks; None when no block
    has attention.  ``scaled``: stretched to [0, 1] (else the attention probabilities themselves)."""
    maps = [a[0].float().mean(0) for a in attentions if a is not None]  # (T, T) per block
    if not maps:
        return None
    if mode == "rollout":
        t = maps[0].shape[0]
        eye = torch.eye(t)
        r = eye
        for a in maps:
            a = 0.5 * a + 0.5 * eye
            r = (a / a.sum(-1, keepdim=True)) @ r
        row = r[0, num_tokens:]
    else:
        row = maps[-1][0, num_tokens:]
    m = row.reshape(grid).numpy().astype(np.float64)
    if not scaled:
        return m
    span = float(m.max() - m.min())
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


def _resize(arr: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(arr)
    return np.asarray(im.resize((size[1], size[0]), Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST))


def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def attention_preview(model, *, image: str | None = None, digit: int = 0, attention: str = "last", view_size: int = 224,
                      label: str | None = None, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                      **_: Any) -> ImageMedia:
    """The image, the image with the class token's attention overlaid, and the top-5 predictions as text.  The
    keywords are :class:`~slimgui_families.vit.options.AttentionPreviewOptions`."""
    if attention not in ("last", "rollout"):
        raise SlimError(f"unknown attention map '{attention}'", hint="use last or rollout")
    pre = preprocess_of(model)
    cfg = model.config
    report(progress, 0, 2, "classifying")
    true_label = None
    if image:
        path = Path(image).expanduser()
        if not path.is_file():
            raise SlimError(f"image {path} does not exist or is not a file", hint="choose an image file")
        raw = read_image(path, pre)
        shown_name = path.name
    else:
        x_all, y_all = digits("test")
        i = int(digit) % len(y_all)
        raw = x_all[i]
        if tuple(pre.size) != tuple(raw.shape[-2:]) or pre.channels != raw.shape[0]:
            raw = digits_for(type(pre)(pre.size, pre.channels, (0.0,) * pre.channels, (1.0,) * pre.channels))[0][i]
        true_label = int(y_all[i])
        shown_name = f"held-out digit #{i}"
    x = pre.normalize(raw.unsqueeze(0))
    module = model.module
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(pixel_values=x, output_attentions=True)
    finally:
        module.train(was_training)
    id2label = {int(k): str(v) for k, v in (cfg.id2label or {}).items()}
    top5: list[dict[str, Any]] = []
    if out.logits is not None:
        probs = out.logits[0].float().softmax(-1)
        p, idx = probs.topk(min(5, probs.numel()))
        top5 = [{"label": id2label.get(int(j), str(int(j))), "index": int(j), "probability": round(float(q), 4)}
                for q, j in zip(p, idx)]
    raw_map = class_token_map(out.attentions, cfg.num_tokens, cfg.grid, attention, scaled=False)
    report(progress, 1, 2, "drawing")
    base = (raw.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    if base.shape[2] == 1:
        base = np.repeat(base, 3, axis=2)
    elif base.shape[2] > 3:
        base = base[:, :, :3]
    side = int(view_size)
    h, w = base.shape[:2]
    shown = (side, max(1, round(side * w / h)))
    pic = _resize(base, shown, smooth=min(h, w) >= 64)
    what = "last block" if attention == "last" else "attention rollout"
    scale = (float(raw_map.min()), float(raw_map.max())) if raw_map is not None else None
    name = label or Path(model.source).name
    canvas, tiles = _draw(pic, raw_map, scale, top5, what, name, shared=False)
    report(progress, 2, 2, "done")
    title = (f"{top5[0]['label']} ({top5[0]['probability']:.1%})" if top5 else shown_name) + f" · {what}"
    meta = {"top5": top5, "image": str(image) if image else shown_name, "attention": attention,
            "true_label": id2label.get(true_label, str(true_label)) if true_label is not None else None,
            # the class token's attention to each patch (rows × columns), unscaled: what the joint redraw needs
            "attention_map": raw_map.round(6).tolist() if raw_map is not None else None,
            "attention_scale": list(scale) if scale is not None else None, "attention_scale_shared": False}
    meta["models"] = [{"label": name, "model": model.source}]
    return ImageMedia(image=np.asarray(canvas), title=f"{name}: {title}", tiles=tiles, meta=meta)


def _draw(pic: np.ndarray, raw_map: np.ndarray | None, scale: tuple[float, float] | None, top5: list[dict[str, Any]],
          what: str, name: str, *, shared: bool):
    """The preview's canvas: the image, the image with ``raw_map`` overlaid (mapped to the colour scale by
    ``scale`` = (value drawn darkest, value drawn brightest)), and the top-5 list with a colour bar."""
    from PIL import Image, ImageDraw

    shown = pic.shape[:2]
    side = shown[0]
    if raw_map is not None and scale is not None:
        lo, hi = scale
        heat = (raw_map - lo) / (hi - lo) if hi > lo else np.zeros_like(raw_map)
        over = _resize(colour(heat), shown, smooth=True).astype(np.float32)
        blend = (0.45 * pic.astype(np.float32) + 0.55 * over).round().astype(np.uint8)
    else:
        blend = pic
    panel_w = max(180, side)
    px = max(11, side // 14)
    font = _font(px)
    small = _font(max(9, px - 3))
    strip = int(px * 2.4)  # under the images: the colour bar and its values, and the caption
    canvas = Image.new("RGB", (shown[1] * 2 + panel_w + 16, shown[0] + strip), "white")
    canvas.paste(Image.fromarray(pic), (0, 0))
    canvas.paste(Image.fromarray(blend), (shown[1] + 8, 0))
    draw = ImageDraw.Draw(canvas)
    x0, y = shown[1] * 2 + 16, 4
    draw.text((x0, y), "top-5" if top5 else "no classifier", fill=(0, 0, 0), font=font)
    y += int(px * 1.6)
    for rank, item in enumerate(top5, 1):
        text = f"{rank}. {item['label'][:22]}  {item['probability']:.1%}"
        draw.text((x0, y), text, fill=(0, 0, 0), font=font)
        bar = int((panel_w - 12) * item["probability"])
        draw.rectangle([x0, y + int(px * 1.35), x0 + max(1, bar), y + int(px * 1.35) + 3], fill=(33, 145, 140))
        y += int(px * 2.0)
    if raw_map is not None and scale is not None:
        # the colour bar under the attention map: which attention probability each colour means
        bx, by, bw = shown[1] + 8, shown[0] + 3, shown[1]
        ramp = colour(np.linspace(0, 1, bw)[None, :].repeat(6, 0))
        canvas.paste(Image.fromarray(ramp), (bx, by))
        draw.text((bx, by + 8), f"{scale[0]:.3f}", fill=(60, 60, 60), font=small)
        hi_text = f"{scale[1]:.3f}"
        draw.text((bx + bw - int(draw.textlength(hi_text, font=small)), by + 8), hi_text, fill=(60, 60, 60),
                  font=small)
        caption = f"class token: {what}" + ("\none scale for all models" if shared else "")
    else:
        caption = "no attention left in this model"
    draw.multiline_text((x0, shown[0] - int(px * (2.2 if "\n" in caption else 1.2))), caption, fill=(90, 90, 90),
                        font=small, spacing=2)
    tiles = [{"label": f"{name}: image", "row": name, "box": [0, 0, shown[1], shown[0]]},
             {"label": f"{name}: attention ({what})", "row": name, "box": [shown[1] + 8, 0, shown[1], shown[0] + strip]},
             {"label": f"{name}: top-5", "row": name, "box": [shown[1] * 2 + 16, 0, panel_w, shown[0]]}]
    return canvas, tiles


def same_scale(medias: list[ImageMedia]) -> list[ImageMedia]:
    """The attention previews of models compared side by side, redrawn on one colour scale: from the smallest to
    the largest attention probability over all of their maps, so a colour means the same probability in every
    model (the previewer's ``joint`` step)."""
    maps = [np.asarray(m.meta["attention_map"], dtype=np.float64) if (m.meta or {}).get("attention_map") is not None
            else None for m in medias]
    present = [m for m in maps if m is not None]
    if not present:
        return list(medias)
    scale = (float(min(m.min() for m in present)), float(max(m.max() for m in present)))
    out = []
    for media, raw_map in zip(medias, maps):
        x, y, w, h = media.tiles[0]["box"]
        pic = np.asarray(media.image)[y:y + h, x:x + w, :3]
        name = media.tiles[0]["label"].rsplit(": image", 1)[0]
        what = "last block" if media.meta.get("attention") == "last" else "attention rollout"
        canvas, tiles = _draw(pic, raw_map, scale if raw_map is not None else None, media.meta.get("top5") or [],
                              what, name, shared=True)
        meta = {**media.meta, "attention_scale": list(scale) if raw_map is not None else None,
                "attention_scale_shared": raw_map is not None}
        out.append(ImageMedia(image=np.asarray(canvas), title=media.title, tiles=tiles, meta=meta))
    return out
