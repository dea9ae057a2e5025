"""What every part of the language-model family shares about a loaded model: its block stack, whether it is a
decoder, its tokenizer, its context, and the next-token / masked-LM losses.

The adapter, the criteria, the evaluator, the exporter, the training methods and width pruning all import
this module; it imports none of them, so the family has no import loop.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimgui.core.errors import SlimError
from slimgui.core.io import atomic_write_text

if TYPE_CHECKING:  # imported where used, so that opening a config-only folder imports no torch
    import torch
    from torch import nn

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")


def find_stack(model) -> tuple[str, nn.ModuleList]:
    """(dotted path, ModuleList) of the model's blocks: the outermost list of identical modules (cached in
    ``model.extra["stack_path"]``)."""
    from torch import nn

    cached = model.extra.get("stack_path")
    module = model.module
    if cached is not None:
        return cached, module.get_submodule(cached)
    n = getattr(model.config, "num_hidden_layers", None)
    found = []
    for name, sub in module.named_modules():
        if isinstance(sub, nn.ModuleList) and len(sub) > 0 and len({type(c) for c in sub}) == 1:
            if n is None or len(sub) == n:
                found.append(name)
    if not found:
        raise SlimError(f"{model.source}: no stack of transformer blocks found",
                        hint="depth pruning needs a model made of repeated blocks")
    best = min(found, key=lambda s: s.count("."))
    model.extra["stack_path"] = best
    return best, module.get_submodule(best)


def is_decoder(model) -> bool:
    return model.extra.get("kind") == "decoder"


def need_tokenizer(model):
    if model.tokenizer is None:
        raise SlimError(f"{model.source} has no tokenizer", hint="copy the model's tokenizer files into its folder")
    return model.tokenizer


def tokenizer_adds_bos(tok) -> bool:
    """Whether the tokenizer puts its BOS token before a text by itself (``add_special_tokens=True``)."""
    bos = getattr(tok, "bos_token_id", None)
    if bos is None:
        return False
    try:
        plain = tok("a b", add_special_tokens=False)["input_ids"]
        full = tok("a b", add_special_tokens=True)["input_ids"]
    except Exception:  # noqa: BLE001 - an odd tokenizer: no BOS rather than a crash
        return False
    return len(full) > len(plain) and full[0] == bos and full[1:1 + len(plain)] == plain


def bos_token(model, bos: bool | None) -> int | None:
    """The token id every calibration segment, evaluation window and prompt starts with, or None.

    ``bos`` None follows the tokenizer (its BOS where it adds one itself); True asks for the BOS token
    (refused when the tokenizer has none); False: none."""
    tok = need_tokenizer(model)
    if bos is None:
        return tok.bos_token_id if tokenizer_adds_bos(tok) else None
    if not bos:
        return None
    if getattr(tok, "bos_token_id", None) is None:
        raise SlimError(f"--bos: the tokenizer of {Path(str(model.source)).name} has no BOS token",
                        hint="leave out --bos (the default follows the tokenizer)")
    return int(tok.bos_token_id)


def context_limit(model) -> tuple[int, str] | None:
    """(tokens, "<key> in config.json") of the model's context window, when its config states one."""
    lazy = getattr(model, "built", None)
    if callable(lazy) and not lazy():  # a structure from the cache: its config.json, without building the model
        cfg = model.extra.get("config_doc") or {}
    else:
        cfg = getattr(model, "config", None)
    for key in CONTEXT_KEYS:
        value = cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, f"{key} in config.json"
    return None


def check_context(model, flag: str, tokens: int, *, what: str = "") -> None:
    """Refuse ``tokens`` (a --seq-len, --max-new-tokens, ...) beyond the model's context, naming the limit."""
    ctx = context_limit(model)
    if ctx is not None and tokens > ctx[0]:
        key = ctx[1].split(" ", 1)[0]
        raise SlimError(f"{flag} {tokens:,}{what} is more than the model's context of {ctx[0]:,} tokens "
                        f"({key} in {Path(str(model.source)).name}/config.json)", hint=f"use at most {ctx[0]:,}")


def bench_seq(options: Any) -> int:
    """The one sequence length of a benchmark row (the options' swept ``seq`` holds one value per row)."""
    seq = options.seq
    if isinstance(seq, (list, tuple)):
        if len(seq) != 1:
            raise SlimError("one benchmark run takes one sequence length", hint="the benchmark sweeps --seq itself")
        seq = seq[0]
    return int(seq)


# config entries that hold one value per block (transformers configs validate their length against
# num_hidden_layers, and the modelling code indexes them by layer): pruning keeps the kept blocks' entries.
# Besides these, any list attribute whose name says "layer" and that has one entry per block counts too
# (GraniteSWA's layer_rope_theta, Jamba's layers_block_type, ...), so a new architecture is covered without a release.
PER_LAYER_CONFIG_KEYS = ("layer_types", "mlp_layer_types", "no_rope_layers", "num_attention_heads_per_layer",
                         "activation_sparsity_pattern", "layer_rope_theta", "layers_block_type", "swiglu_limits",
                         "swiglu_limits_shared", "kv_sharing_modes", "indexer_types", "layers_num_experts",
                         "per_layer_config")


# config entries that list block *indices* (Qwen2-MoE's mlp_only_layers, ...): pruning keeps the kept blocks'
# indices, renumbered to their new positions
LAYER_INDEX_CONFIG_KEYS = ("mlp_only_layers", "moe_layers", "attn_layers", "rope_scaling_layers", "index_layers",
                           "look_backward_layers", "look_ahead_layers", "subsample_layers", "ple_layer_ids")


def _per_layer_keys(config) -> list[str]:
    names = list(PER_LAYER_CONFIG_KEYS)
    try:
        attrs = vars(config)
    except TypeError:
        attrs = {}
    names += [k for k in attrs if "layer" in k and k not in names and k not in LAYER_INDEX_CONFIG_KEYS
              and not k.startswith("_")]
    return names


def per_layer_config(config, keep: list[int], n: int) -> dict[str, list]:
    """``{key: the kept blocks' entries, in order}`` for each of the config's per-block lists
    (:data:`PER_LAYER_CONFIG_KEYS`, and any other list attribute named ``*layer*``) that has one entry per block
    of the ``n``-block stack, and ``{key: the kept indices, renumbered}`` for its lists of block indices
    (:data:`LAYER_INDEX_CONFIG_KEYS`)."""
    out: dict[str, list] = {}
    for key in _per_layer_keys(config):
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and len(values) == n:
            out[key] = [values[i] for i in keep]
    position = {old: new for new, old in enumerate(keep)}
    for key in LAYER_INDEX_CONFIG_KEYS:
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and values and all(
                isinstance(v, int) and not isinstance(v, bool) for v in values):
            out[key] = [position[v % n] for v in values if v % n in position] if n else []
    return out


# the files that make a transformers folder a sentence-transformers model (pooling, normalisation, dense layers)
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def copy_sentence_transformers(src: Path, out: Path, hidden: int | None) -> list[str]:
    """Copy a sentence-transformers model's own files from ``src`` to the saved ``out``: ``modules.json``, its
    configs and every module folder it lists (``1_Pooling``, ``2_Normalize``, ``2_Dense``, ...), so that
    ``SentenceTransformer(out)`` pools and normalises as the original did.  The pooling's
    ``word_embedding_dimension`` follows the saved model's hidden size.  Returns the names copied."""
    if not (src / "modules.json").is_file() or src.resolve() == out.resolve():
        return []
    copied = []
    for name in SENTENCE_TRANSFORMERS_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
            copied.append(name)
    try:
        modules = json.loads((src / "modules.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return copied
    for entry in modules if isinstance(modules, list) else []:
        rel = str(entry.get("path") or "") if isinstance(entry, dict) else ""
        folder = (src / rel).resolve()
        if not rel or not folder.is_dir() or src.resolve() not in folder.parents:
            continue  # "" is the transformer itself (the saved model); nothing outside the folder is copied
        target = out / rel
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(folder, target)
        copied.append(rel)
        pooling = target / "config.json"
        if hidden and "Pooling" in str(entry.get("type", "")) and pooling.is_file():
            doc = json.loads(pooling.read_text(encoding="utf-8"))
            if doc.get("word_embedding_dimension") not in (None, hidden):
                doc["word_embedding_dimension"] = int(hidden)
                atomic_write_text(pooling, json.dumps(doc, indent=2) + "\n")
    return copied


def causal_lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy; labels are shifted instead of the (large) logits, so nothing is copied."""
    import torch
    from torch import nn

    labels = torch.cat([input_ids[:, 1:], torch.full_like(input_ids[:, :1], -100)], dim=1)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                       ignore_index=-100, reduction=reduction)


def mask_tokens(input_ids: torch.Tensor, tokenizer: Any, rate: float = 0.15, seed: int = 0):
    """Deterministic masked-LM corruption: ``rate`` of the positions become the mask token."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    pick = torch.rand(input_ids.shape, generator=gen) < rate
    pick[:, 0] |= ~pick.any(dim=1)  # at least one masked position per row
    mask_id = getattr(tokenizer, "mask_token_id", None) if tokenizer is not None else None
    masked = input_ids.clone()
    masked[pick] = mask_id if mask_id is not None else 0
    labels = torch.where(pick, input_ids, torch.full_like(input_ids, -100))
    return masked, labels
