"""What the cnn family opens, decided cheaply (no torch import, no weights read): a folder whose ``cnn.json`` says
``"family": "cnn"``, or a bare ``.safetensors`` state dict (a file, or a folder holding ``model.safetensors`` and
no ``config.json``) whose tensor names — read from the safetensors header alone — are torchvision's ResNet layout
or this family's MobileNetV1 layout."""

from __future__ import annotations

import json
import struct
from pathlib import Path

CONFIG = "cnn.json"
WEIGHTS = "model.safetensors"
RESNET_KEYS = {"conv1.weight", "layer1.0.conv1.weight", "fc.weight"}
MOBILENET_KEYS = {"stem.conv.weight", "blocks.0.dw.weight", "fc.weight"}


def safetensors_keys(path: Path, limit: int = 16 << 20) -> set[str]:
    """Tensor names from a safetensors file's JSON header (8-byte little-endian length, then the header)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            return set()
        (n,) = struct.unpack("<Q", head)
        if n > limit:
            return set()
        doc = json.loads(f.read(n).decode("utf-8"))
    return {k for k in doc if k != "__metadata__"} if isinstance(doc, dict) else set()


def match(path: str):
    p = Path(path)
    cfg = p / CONFIG
    if cfg.is_file():
        try:
            doc = json.loads(cfg.read_text(encoding="utf-8"))
        except (ValueError, OSError, UnicodeDecodeError):
            return 0.0
        return (1.0, doc) if isinstance(doc, dict) and doc.get("family") == "cnn" else 0.0
    weights = p / WEIGHTS if p.is_dir() else p
    if weights.is_file() and weights.suffix == ".safetensors" and not (weights.parent / "config.json").exists():
        try:
            keys = safetensors_keys(weights)
        except (OSError, ValueError, UnicodeDecodeError):
            return 0.0
        if RESNET_KEYS <= keys or MOBILENET_KEYS <= keys:
            return 0.6
    return 0.0
