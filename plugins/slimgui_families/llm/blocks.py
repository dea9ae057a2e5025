"""What every part of the language-model family shares about a loaded model: its block stack, whether it is a
decoder, its tokenizer, its context, and the next-token / masked-LM losses.

The adapter, the criteria, the evaluator, the exporter, the training methods and width pruning all import
this module; it imports none of them, so the family has no import loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimgui.core.errors import SlimError

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")


def find_stack(model) -> tuple[str, nn.ModuleList]:
    """(dotted path, ModuleList) of the model's blocks: the outermost list of identical modules (cached in
    ``model.extra["stack_path"]``)."""
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


def context_limit(model) -> tuple[int, str] | None:
    """(tokens, "<key> in config.json") of the model's context window, when its config states one."""
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
# num_hidden_layers, and the modelling code indexes them by layer): pruning keeps the kept blocks' entries
PER_LAYER_CONFIG_KEYS = ("layer_types", "mlp_layer_types", "no_rope_layers", "num_attention_heads_per_layer",
                         "activation_sparsity_pattern")


def per_layer_config(config, keep: list[int], n: int) -> dict[str, list]:
    """``{key: the kept blocks' entries, in order}`` for each of the config's per-block lists
    (:data:`PER_LAYER_CONFIG_KEYS`) that has one entry per block of the ``n``-block stack."""
    out = {}
    for key in PER_LAYER_CONFIG_KEYS:
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and len(values) == n:
            out[key] = [values[i] for i in keep]
    return out


def causal_lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy; labels are shifted instead of the (large) logits, so nothing is copied."""
    labels = torch.cat([input_ids[:, 1:], torch.full_like(input_ids[:, :1], -100)], dim=1)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                       ignore_index=-100, reduction=reduction)


def mask_tokens(input_ids: torch.Tensor, tokenizer: Any, rate: float = 0.15, seed: int = 0):
    """Deterministic masked-LM corruption: ``rate`` of the positions become the mask token."""
    gen = torch.Generator().manual_seed(seed)
    pick = torch.rand(input_ids.shape, generator=gen) < rate
    pick[:, 0] |= ~pick.any(dim=1)  # at least one masked position per row
    mask_id = getattr(tokenizer, "mask_token_id", None) if tokenizer is not None else None
    masked = input_ids.clone()
    masked[pick] = mask_id if mask_id is not None else 0
    labels = torch.where(pick, input_ids, torch.full_like(input_ids, -100))
    return masked, labels
