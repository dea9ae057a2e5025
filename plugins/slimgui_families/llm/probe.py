"""Cheap probing of paths for the language-model adapter: reads JSON, never weights or torch.

:func:`check_config` is the gate every load passes before transformers builds anything: it reads the
folder's ``config.json`` with a size limit and checks the numbers that decide the model's size against
the bounds in :data:`CONFIG_BOUNDS`, so a config asking for 10^9 layers is one message instead of a build
that never ends.  The adapter's ``load`` reaches it through :func:`model_folder` (its first step).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.io import MAX_CONFIG_BYTES, read_json_file

# block-stack transformers that depth pruning is known to work on
DECODERS = {"llama", "mistral", "qwen2", "qwen3", "gpt2", "opt", "gpt_neox", "phi", "phi3", "gemma", "gemma2",
            "falcon", "gptj", "bloom", "stablelm", "starcoder2", "olmo", "olmo2", "granite", "smollm3", "mixtral"}
ENCODERS = {"bert", "roberta", "xlm-roberta", "electra", "distilbert", "camembert", "modernbert", "deberta-v2"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pth", ".pt"}

# What a config may ask for: (lowest, highest), for every spelling transformers configs use.  Generous for real
# models (the largest open LLMs have ~126 layers, hidden sizes of 16-18K, vocabularies of 256K and contexts of
# 128K-1M tokens); a value outside is a broken or hostile config, refused before anything is built.
LAYERS = (1, 1024)
HIDDEN = (1, 131_072)
FFN = (1, 1_048_576)
HEADS = (1, 1024)
HEAD_DIM = (1, 16_384)
VOCAB = (1, 4_194_304)
POSITIONS = (1, 16_777_216)
CONFIG_BOUNDS: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("num_hidden_layers", "n_layer", "n_layers", "num_layers"), LAYERS),
    **dict.fromkeys(("hidden_size", "n_embd", "d_model", "word_embed_proj_dim", "embedding_size"), HIDDEN),
    **dict.fromkeys(("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size"), FFN),
    **dict.fromkeys(("num_attention_heads", "n_head", "n_heads", "num_key_value_heads", "num_kv_heads",
                     "multi_query_group_num"), HEADS),
    "head_dim": HEAD_DIM,
    "vocab_size": VOCAB,
    **dict.fromkeys(("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"), POSITIONS),
    "type_vocab_size": (0, 1024),
}
NESTED = ("text_config", "decoder", "language_config", "llm_config")  # sub-configs holding the decoder's numbers


def _folder(p: Path) -> Path | None:
    if p.is_dir():
        return p
    if p.is_file() and (p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES):
        return p.parent if (p.parent / "config.json").is_file() else None
    return None


def model_folder(path: str | Path) -> Path | None:
    """The model folder ``path`` names (the folder itself, or the folder of its config/weights file), its
    ``config.json`` checked by :func:`check_config`; None when ``path`` is no such folder or file."""
    folder = _folder(Path(path))
    if folder is not None:
        check_config(folder)
    return folder


def checked_folder(path: str | Path, match: Any = None) -> tuple[Path | None, dict[str, Any] | None]:
    """(model folder, its checked config) of ``path``, as :func:`model_folder` and :func:`check_config` give them.

    ``match``: what :func:`match` found for this path (``{"folder", "config"}``): its config is checked again
    (cheap) but not read a second time."""
    folder = _folder(Path(path))
    if folder is None:
        return None, None
    if isinstance(match, dict) and match.get("folder") == str(folder) and isinstance(match.get("config"), dict):
        doc = match["config"]
        validate_config(doc, str(folder / "config.json"))
        return folder, doc
    return folder, check_config(folder)


def read_config(folder: str | Path) -> dict[str, Any] | None:
    """A folder's ``config.json`` as a dict, read with a size limit; None when there is none (not even a path).

    A config.json that is not a regular file, too large, not UTF-8, not JSON, nested absurdly deeply or not
    a JSON object is a :class:`SlimError` naming the file."""
    cfg = Path(folder) / "config.json"
    if not cfg.exists() and not cfg.is_symlink():
        return None
    doc = read_json_file(cfg, "the model's config", limit=MAX_CONFIG_BYTES)
    if not isinstance(doc, dict):
        raise SlimError(f"{cfg} is not a JSON object", hint="repair or replace the model's config.json")
    return doc


def validate_config(doc: dict[str, Any], where: str = "config.json") -> None:
    """Check the size-deciding numbers of a transformers config against :data:`CONFIG_BOUNDS` (whole numbers in
    range, or null), ``layer_types`` against the layer count, and hidden size against the head count."""
    def check(d: dict[str, Any], prefix: str) -> None:
        for key, (lo, hi) in CONFIG_BOUNDS.items():
            if key not in d or d[key] is None:
                continue
            v = d[key]
            if isinstance(v, bool) or not isinstance(v, int):
                raise SlimError(f"{where}: {prefix}{key} must be a whole number, got {v!r:.60}",
                                hint="repair or replace the model's config.json")
            if not lo <= v <= hi:
                raise SlimError(f"{where}: {prefix}{key} is {v:,}, outside the range SlimGUI accepts ({lo:,} to {hi:,})",
                                hint="the config is broken or not a real model's; repair or replace it")
        heads = next((d[k] for k in ("num_attention_heads", "n_head", "n_heads") if isinstance(d.get(k), int)), None)
        kv = d.get("num_key_value_heads")
        if isinstance(heads, int) and isinstance(kv, int) and not isinstance(kv, bool) and kv > heads:
            raise SlimError(f"{where}: {prefix}num_key_value_heads ({kv}) is more than num_attention_heads ({heads})")
        hidden = next((d[k] for k in ("hidden_size", "n_embd", "d_model") if isinstance(d.get(k), int)), None)
        if (isinstance(heads, int) and isinstance(hidden, int) and d.get("head_dim") is None
                and hidden % heads != 0):
            raise SlimError(f"{where}: {prefix}the hidden size {hidden} is not divisible by the {heads} attention heads",
                            hint="repair or replace the model's config.json")
        layers = next((d[k] for k in ("num_hidden_layers", "n_layer", "num_layers") if isinstance(d.get(k), int)), None)
        types = d.get("layer_types")
        if types is not None:
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise SlimError(f"{where}: {prefix}layer_types must be a list of names, got {types!r:.60}")
            if isinstance(layers, int) and len(types) != layers:
                raise SlimError(f"{where}: {prefix}layer_types names {len(types)} layers, but num_hidden_layers is "
                                f"{layers}")
        for name in ("architectures",):
            val = d.get(name)
            if val is not None and (not isinstance(val, list) or not all(isinstance(a, str) for a in val)):
                raise SlimError(f"{where}: {prefix}{name} must be a list of class names, got {val!r:.60}")
        mt = d.get("model_type")
        if mt is not None and not isinstance(mt, str):
            raise SlimError(f"{where}: {prefix}model_type must be a name, got {mt!r:.60}")

    check(doc, "")
    for sub in NESTED:
        if isinstance(doc.get(sub), dict):
            check(doc[sub], f"{sub}.")


def check_config(folder: str | Path) -> dict[str, Any] | None:
    """Read and validate ``folder/config.json`` (:func:`read_config`, :func:`validate_config`); the config, or None
    when the folder has none.  Called before transformers reads the config or builds a model."""
    doc = read_config(folder)
    if doc is not None:
        validate_config(doc, str(Path(folder) / "config.json"))
    return doc


def match(path: str) -> float | tuple[float, dict[str, Any]]:
    """How sure the transformers adapter is that it opens ``path``: a confidence, or ``(confidence, info)`` where
    ``info`` (``{"folder", "config"}``: the folder and the config.json read here) is what the adapter's ``load``
    takes as ``match=``, so the config is not read twice.  Reads JSON only, never weights."""
    p = Path(path)
    if not p.exists():
        return 0.5 if HUB_ID.match(path) else 0.0
    if p.suffix.lower() == ".gguf":
        from .gguf_file import match as gguf_match

        return gguf_match(p)
    folder = _folder(p)
    if folder is None:
        return 0.0
    cfg = folder / "config.json"
    if not (cfg.exists() or cfg.is_symlink()) or (folder / "model_index.json").is_file():
        return 0.0
    try:
        doc = read_json_file(cfg, "the model's config", limit=MAX_CONFIG_BYTES)
    except SlimError:
        return 0.3  # a config.json that cannot be read (a FIFO, a folder, a symlink loop, bad bytes): load() explains
    if not isinstance(doc, dict):
        return 0.3  # load() says it is not a JSON object
    if "_class_name" in doc or "_diffusers_version" in doc:
        return 0.0
    info = {"folder": str(folder), "config": doc}
    model_type = str(doc.get("model_type", ""))
    if model_type in DECODERS or model_type in ENCODERS:
        return 0.9, info
    archs = doc.get("architectures") if isinstance(doc.get("architectures"), list) else []
    if any(str(a).endswith(("ForCausalLM", "LMHeadModel", "ForMaskedLM")) for a in archs):
        return 0.6, info
    return (0.3 if model_type or "architectures" in doc else 0.1), info
