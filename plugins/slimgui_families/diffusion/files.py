"""The files the diffusion family writes beside a model, and the demo a model was made from.

Light (no torch, no diffusers), so the adapter, the training, the generation and the evaluator all import
it without importing each other.
"""

from __future__ import annotations

from pathlib import Path

from slimgui.core.model import origin_with

MAP_FILE = "slimgui_unet_map.json"  # a slimmed U-Net: which teacher block each kept block came from
FEWSTEP_FILE = "slimgui_fewstep.json"  # a few-step (LCM) model: its own steps, guidance and timesteps
HEALED_FILE = "slimgui_healed_from.json"  # a retrained model: what it was trained from, and how
DEMO_FILE = "slimgui_demo.json"  # the demo pipeline's folder


def demo_root(source: str | Path) -> Path | None:
    """The demo folder a model was made from (following plan / healing links), if any."""
    return origin_with(source, DEMO_FILE)
