"""The gan family's previewer: input | original output | this generator's output | target, one row per pair, on
the same inputs (the demo's held-out pairs or a paired folder's; or one image without a target).  The original is
the generator this one was slimmed from (its column is left out for a generator that was not slimmed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from slimgui.core.media import ImageMedia
from slimgui.core.model import original_of

from .data import load_image, load_pairs, to_uint8
from .evaluate import resolve_data

GAP = 4


def translate_preview(model, *, pairs: int = 4, first: int = 0, image: str | None = None, view_scale: int = 2,
                      data: str | None = None, label: str | None = None, **_: Any) -> ImageMedia:
    cfg = model.config
    if image:
        x, y = load_image(image, cfg), None
    else:
        xa, ya = load_pairs(resolve_data(model, data), cfg)
        first = min(first, max(0, len(xa) - 1))
        x, y = xa[first:first + pairs], ya[first:first + pairs]
    original = original_of(model)
    with torch.no_grad():
        g = model.module.eval()(x)
        o = original.module.eval()(x) if original is not None else None
    cols = [("input", x)] + ([("original", o)] if o is not None else []) + \
        [(label or "this model", g)] + ([("target", y)] if y is not None else [])
    s = cfg.image_size * view_scale
    h = len(x) * (s + GAP) - GAP
    w = len(cols) * (s + GAP) - GAP
    canvas = np.full((h, w, 3), 255, dtype=np.uint8)
    tiles = []
    for r in range(len(x)):
        for c, (name, t) in enumerate(cols):
            img = to_uint8(t[r])
            if view_scale > 1:
                img = img.repeat(view_scale, 0).repeat(view_scale, 1)
            y0, x0 = r * (s + GAP), c * (s + GAP)
            canvas[y0:y0 + s, x0:x0 + s] = img
            tiles.append({"label": name, "row": (f"{label} · " if label else "") + (f"pair {first + r}" if not image else "image"), "box": [x0, y0, s, s]})
    title = " | ".join(n for n, _ in cols)
    return ImageMedia(canvas, title=title, tiles=tiles, meta={"columns": [n for n, _ in cols], "pairs": len(x)})


def _palette(t: float) -> tuple[int, int, int]:
    """Dark blue (t = 0, the bottleneck) → yellow (t = 1, the outermost layer)."""
    stops = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    v = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(v), len(stops) - 2)
    f = v - i
    return tuple(int(round(stops[i][c] * (1 - f) + stops[i + 1][c] * f)) for c in range(3))


def sensitivity_chart(model, *, samples: int = 16, data: str | None = None, label: str | None = None,
                      **_: Any) -> ImageMedia:
    """Cut Inner Layers' chart: for every prunable layer, the output change (mean |G'(x) − G(x)|) when only that
    layer loses 1/8 … 7/8 of its filters (least mean |w| first), one line per layer coloured by its distance to the
    bottleneck (dark: innermost)."""
    from PIL import Image, ImageDraw, ImageFont

    from .criteria import sensitivity_scan
    from .pruning import prunable_layers

    x, _ = load_pairs(resolve_data(model, data), model.config, limit=samples)
    res = sensitivity_scan(model, list(x.split(16)))
    table = res["table"]
    n = model.config.levels
    layers = [lay for lay in prunable_layers(model.config) if lay in table]
    w, h, left, right, top, bottom = 760, 420, 60, 170, 30, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    ymax = max((v for row in table.values() for v in row.values()), default=1.0) or 1.0
    pw, ph = w - left - right, h - top - bottom
    d.rectangle([left, top, left + pw, top + ph], outline=(120, 120, 120))

    def px(frac: float, val: float) -> tuple[float, float]:
        return left + (frac - 0.125) / 0.75 * pw, top + ph - val / ymax * ph

    for j in range(1, 8):
        xx, _ = px(j / 8, 0)
        d.line([xx, top + ph, xx, top + ph + 4], fill=(120, 120, 120))
        d.text((xx - 8, top + ph + 8), f"{j}/8", fill=(60, 60, 60), font=font)
    for i in range(5):
        val = ymax * i / 4
        _, yy = px(0.125, val)
        d.line([left - 4, yy, left, yy], fill=(120, 120, 120))
        d.text((6, yy - 6), f"{val:.3f}", fill=(60, 60, 60), font=font)
    d.text((left, 8), "output change (mean |G'(x) - G(x)|) vs share of one layer's filters removed", fill=(0, 0, 0),
           font=font)
    for idx, layer in enumerate(layers):
        k = int(layer.split(".")[1])
        colour = _palette(1 - k / max(1, n - 1))
        pts = [px(float(f), v) for f, v in sorted(table[layer].items(), key=lambda t: float(t[0]))]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for p in pts:
            d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
        ly = top + idx * 16
        d.line([left + pw + 14, ly + 6, left + pw + 34, ly + 6], fill=colour, width=3)
        d.text((left + pw + 40, ly), f"{layer} (level {k})", fill=(0, 0, 0), font=font)
    title = f"sensitivity vs fraction · {label or model.source}"
    return ImageMedia(np.asarray(img), title=title, meta={"table": table, "forward_passes": res["forward_passes"]})
