"""Cheap probing and checking of SpeechT5 folders: reads ``config.json`` (never weights, never torch).

:func:`match` says how sure the voice family is that it opens a path: a folder (or its config.json / weights file)
whose config has ``model_type`` "speecht5" and names ``SpeechT5ForSpeechToSpeech`` or ``SpeechT5ForTextToSpeech``
(no architecture: speech-to-speech).  :func:`check` is the gate every load passes: the numbers that decide the
model's size within :data:`BOUNDS`, the shapes that must agree (heads divide the width, one stride and kernel per
feature-encoder layer), one SlimError, one line, for anything wrong.  :func:`find_vocoder` looks for a
``SpeechT5HifiGan`` folder beside the model (``vocoder/`` inside it, or a sibling folder whose config is a HiFi-GAN's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.io import MAX_CONFIG_BYTES, read_json_file

MODEL_TYPE = "speecht5"
VOCODER_TYPE = "hifigan"
ARCHITECTURES = {"SpeechT5ForSpeechToSpeech": "speech", "SpeechT5ForTextToSpeech": "text"}
REFUSED = {"SpeechT5ForSpeechToText": "a speech recogniser (speech to text), not a voice converter",
           "SpeechT5HifiGan": "a vocoder: open the converter and keep the vocoder beside it"}
WEIGHT_SUFFIXES = {".safetensors", ".bin"}
BOUNDS: dict[str, tuple[int, int]] = {
    "hidden_size": (1, 16_384),
    "encoder_layers": (1, 256),
    "decoder_layers": (1, 256),
    "encoder_attention_heads": (1, 256),
    "decoder_attention_heads": (1, 256),
    "encoder_ffn_dim": (1, 262_144),
    "decoder_ffn_dim": (1, 262_144),
    "num_mel_bins": (1, 512),
    "reduction_factor": (1, 16),
    "speaker_embedding_dim": (1, 8192),
    "vocab_size": (1, 1_000_000),
    "speech_decoder_prenet_units": (1, 16_384),
    "speech_decoder_postnet_units": (1, 16_384),
    "speech_decoder_postnet_layers": (1, 64),
}


def folder_of(p: Path) -> Path | None:
    if p.is_dir():
        return p
    if p.is_file() and (p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES):
        return p.parent if (p.parent / "config.json").is_file() else None
    return None


def read_config(folder: Path) -> dict[str, Any]:
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise SlimError(f"{folder} has no config.json",
                        hint="a SpeechT5 folder holds config.json and model.safetensors")
    doc = read_json_file(cfg, "the model's config", limit=MAX_CONFIG_BYTES)
    if not isinstance(doc, dict):
        raise SlimError(f"{cfg} is not a JSON object", hint="repair or replace the model's config.json")
    return doc


def match(path: str) -> float | tuple[float, dict[str, Any]]:
    """``(confidence, {"folder", "config"})`` for a SpeechT5 folder; 0 for anything else.  JSON only."""
    p = Path(path)
    if not p.exists():
        return 0.0
    folder = folder_of(p)
    if folder is None or not (folder / "config.json").is_file():
        return 0.0
    try:
        doc = read_config(folder)
    except SlimError:
        return 0.0
    if doc.get("model_type") != MODEL_TYPE:
        return 0.0
    info = {"folder": str(folder), "config": doc}
    archs = doc.get("architectures") or []
    if isinstance(archs, list) and any(a in ARCHITECTURES for a in archs):
        return 0.95, info
    return 0.6, info  # a speecht5 config naming no (or another) architecture: load says what it is


def _whole(doc: dict[str, Any], key: str, where: str) -> int:
    v = doc.get(key)
    lo, hi = BOUNDS[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise SlimError(f"{where}: {key} must be a whole number, got {v!r:.60}", hint="repair or replace config.json")
    if not lo <= v <= hi:
        raise SlimError(f"{where}: {key} is {v:,}, outside the range SlimGUI accepts ({lo:,} to {hi:,})",
                        hint="the config is broken or not a real model's; repair or replace it")
    return v


def check(doc: dict[str, Any], where: str = "config.json") -> tuple[str, dict[str, Any]]:
    """(architecture, the config with transformers' defaults filled in) of a SpeechT5 converter's config, or one
    SlimError saying what is wrong with it."""
    if doc.get("model_type") != MODEL_TYPE:
        raise SlimError(f"{where}: model_type is {doc.get('model_type')!r:.40}, not speecht5",
                        hint="the voice family opens SpeechT5 speech-to-speech and text-to-speech models")
    archs = doc.get("architectures") or ["SpeechT5ForSpeechToSpeech"]
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise SlimError(f"{where}: architectures must be a list of class names, got {archs!r:.60}")
    known = [a for a in archs if a in ARCHITECTURES]
    if not known:
        bad = archs[0]
        raise SlimError(f"{where}: {bad} is {REFUSED.get(bad, 'not a SpeechT5 class the voice family opens')}",
                        hint="the voice family opens " + " and ".join(ARCHITECTURES))
    from transformers import SpeechT5Config

    defaults = SpeechT5Config().to_dict()
    full = {**defaults, **{k: v for k, v in doc.items() if v is not None}}
    for key in BOUNDS:
        _whole(full, key, where)
    for side in ("encoder", "decoder"):
        if full["hidden_size"] % full[f"{side}_attention_heads"]:
            raise SlimError(f"{where}: the hidden size {full['hidden_size']} is not divisible by the "
                            f"{full[f'{side}_attention_heads']} {side} attention heads",
                            hint="repair or replace the model's config.json")
    conv = [full.get(k) for k in ("conv_dim", "conv_stride", "conv_kernel")]
    if not all(isinstance(c, list) and c and all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 65_536
                                                  for x in c) for c in conv) or len({len(c) for c in conv}) != 1:
        raise SlimError(f"{where}: conv_dim, conv_stride and conv_kernel must be lists of whole numbers of one length",
                        hint="repair or replace the model's config.json")
    return known[0], full


def find_vocoder(folder: Path) -> Path | None:
    """A SpeechT5HifiGan folder beside the model: ``folder/vocoder``, else a sibling whose config is a HiFi-GAN's."""
    candidates = [folder / "vocoder"]
    if folder.parent != folder:
        try:
            candidates += sorted(p for p in folder.parent.iterdir() if p.is_dir() and p != folder)
        except OSError:
            pass
    for c in candidates[:200]:
        if is_vocoder(c):
            return c
    return None


def is_vocoder(folder: Path) -> bool:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return False
    try:
        doc = read_json_file(cfg, "the vocoder's config", limit=MAX_CONFIG_BYTES)
    except SlimError:
        return False
    return isinstance(doc, dict) and (doc.get("model_type") == VOCODER_TYPE
                                      or "SpeechT5HifiGan" in (doc.get("architectures") or []))
