"""Cheap probing for the diffusion adapter: reads JSON only, never weights or torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.io import MAX_CONFIG_BYTES, read_json_file

UNET_CLASSES = {"UNet2DConditionModel", "UNet2DModel"}


def _json(path: Path) -> dict | None:
    try:
        doc = read_json_file(path, "JSON file", limit=MAX_CONFIG_BYTES)
    except SlimError:
        return None
    return doc if isinstance(doc, dict) else None


def match(path: str) -> tuple[float, dict[str, Any] | None]:
    """``(confidence, info)``: 0.95 for a diffusers pipeline folder or a U-Net folder, 0.4 for one whose JSON
    cannot be read (``load`` then says what is wrong with it), 0 for anything else.

    ``info`` is what was read, handed to :meth:`DiffusersAdapter.load` as ``match=`` so the folder is not read
    twice: ``{"folder": the folder, "kind": "pipeline" or "unet", "doc": model_index.json or config.json}``
    (None when the JSON could not be read)."""
    p = Path(path)
    if p.is_file() and p.name in ("model_index.json", "config.json"):
        p = p.parent
    if not p.is_dir():
        return 0.0, None
    if (p / "model_index.json").is_file():
        doc = _json(p / "model_index.json")
        if doc is None:
            return 0.4, None  # let load() say what is wrong with it
        info = {"folder": str(p), "kind": "pipeline", "doc": doc}
        return (0.95 if "unet" in doc or str(doc.get("_class_name", "")).endswith("Pipeline") else 0.3), info
    if (p / "config.json").is_file():
        doc = _json(p / "config.json")
        if doc is None:
            return 0.0, None
        info = {"folder": str(p), "kind": "unet", "doc": doc}
        if doc.get("_class_name") in UNET_CLASSES:
            return 0.95, info
        if "_diffusers_version" in doc and "down_block_types" in doc and "up_block_types" in doc:
            return 0.6, info
    return 0.0, None
