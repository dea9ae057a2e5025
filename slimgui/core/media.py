"""What previewers return: plain media the GUI has one viewer for (plugins never draw).

Besides the media types, the few pure helpers every front end needs for images: stacking several
previews' rows into one grid (:func:`stack_images`) and writing an image as a PNG (:func:`save_png`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SlimError


@dataclass
class TextMedia:
    text: str
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TableMedia:
    columns: list[str]
    rows: list[list[Any]]
    title: str = ""


@dataclass
class ImageMedia:
    """An image or a grid of images: ``image`` is an H×W (grey) or H×W×3 uint8 numpy array.

    ``tiles`` optionally names the cells of a grid: ``[{"label": "seed 0", "box": [x, y, w, h]}, ...]``.
    """

    image: Any
    title: str = ""
    tiles: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


# -- image helpers -------------------------------------------------------------------------------
def image_array(media: ImageMedia) -> Any:
    """``media.image`` checked: a C-contiguous H×W or H×W×3 uint8 array (H×W×1 becomes H×W, H×W×4 drops alpha);
    raises SlimError for anything else."""
    import numpy as np

    arr = np.asarray(media.image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SlimError(f"an image must be H×W or H×W×3, got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = np.nan_to_num(arr) * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def stack_images(rows: Sequence[ImageMedia], *, gap: int = 4, title: str = "",
                 meta: dict[str, Any] | None = None) -> ImageMedia:
    """One image of several, one under another (e.g. the original's, the slimmed and the healed model's
    rows of the same seeds): widths are padded with white, a grey image becomes RGB when another is in
    colour, and every tile keeps its label with its box moved to where it now is.  ``meta["rows"]`` lists
    each part's rows (its ``meta["rows"]``, else its tiles' rows, else its title)."""
    import numpy as np

    parts = [r for r in rows if r is not None]
    if not parts:
        raise SlimError("no images to put together", hint="generate the previews first")
    arrays = [image_array(p) for p in parts]
    colour = any(a.ndim == 3 for a in arrays)
    if colour:
        arrays = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
    width = max(a.shape[1] for a in arrays)
    height = sum(a.shape[0] for a in arrays) + gap * (len(arrays) - 1)
    canvas = np.full((height, width, 3) if colour else (height, width), 255, dtype=np.uint8)
    tiles: list[dict[str, Any]] = []
    names: list[str] = []
    y = 0
    for part, arr in zip(parts, arrays):
        h, w = arr.shape[:2]
        canvas[y:y + h, :w] = arr
        for tile in part.tiles:
            t = dict(tile)
            box = t.get("box")
            if isinstance(box, (list, tuple)) and len(box) == 4:
                t["box"] = [int(box[0]), int(box[1]) + y, int(box[2]), int(box[3])]
            tiles.append(t)
        if not part.tiles:  # a plain image: one tile, so its label is still shown
            tiles.append({"label": part.title or f"image {len(names) + 1}", "box": [0, y, w, h]})
        own = part.meta.get("rows") or list(dict.fromkeys(str(t["row"]) for t in part.tiles if t.get("row")))
        names += [str(n) for n in (own or [part.title or f"image {len(names) + 1}"])]
        y += h + gap
    return ImageMedia(canvas, title=title or " / ".join(dict.fromkeys(p.title for p in parts if p.title)),
                      tiles=tiles, meta={"rows": names, **(meta or {})})


def png_bytes(media: ImageMedia) -> bytes:
    """The image encoded as PNG (lossless, grey or RGB)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_array(media)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(media: ImageMedia, path: str | os.PathLike) -> Path:
    """Write the image to ``path`` as a PNG, atomically (a temporary file in the same folder, then a rename)."""
    from .io import atomic_write_bytes

    out = Path(path).expanduser()
    if out.suffix.lower() != ".png":
        raise SlimError(f"{out.name} does not end in .png", hint="give the image a name ending in .png")
    return atomic_write_bytes(out, png_bytes(media))
