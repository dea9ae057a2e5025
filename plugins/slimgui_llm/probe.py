"""Cheap probing of paths for the language-model adapter: reads JSON, never weights or torch."""

from __future__ import annotations

import json
import re
from pathlib import Path

# block-stack transformers that depth pruning is known to work on
DECODERS = {"llama", "mistral", "qwen2", "qwen3", "gpt2", "opt", "gpt_neox", "phi", "phi3", "gemma", "gemma2",
            "falcon", "gptj", "bloom", "stablelm", "starcoder2", "olmo", "olmo2", "granite", "smollm3", "mixtral"}
ENCODERS = {"bert", "roberta", "xlm-roberta", "electra", "distilbert", "camembert", "modernbert", "deberta-v2"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pth", ".pt"}


def model_folder(path: str | Path) -> Path | None:
    p = Path(path)
    if p.is_dir():
        return p
    if p.is_file() and (p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES):
        return p.parent if (p.parent / "config.json").is_file() else None
    return None


def match(path: str) -> float:
    p = Path(path)
    if not p.exists():
        return 0.5 if HUB_ID.match(path) else 0.0
    folder = model_folder(p)
    if folder is None:
        return 0.0
    cfg = folder / "config.json"
    if not cfg.is_file() or (folder / "model_index.json").is_file():
        return 0.0
    try:
        doc = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return 0.3  # let load() explain what is wrong with it
    if not isinstance(doc, dict) or "_class_name" in doc or "_diffusers_version" in doc:
        return 0.0
    model_type = str(doc.get("model_type", ""))
    if model_type in DECODERS or model_type in ENCODERS:
        return 0.9
    if any(str(a).endswith(("ForCausalLM", "LMHeadModel", "ForMaskedLM")) for a in doc.get("architectures") or []):
        return 0.6
    return 0.3 if model_type or "architectures" in doc else 0.1
