"""Width pruning to a parameter budget: the comparison point for depth pruning.

Every block keeps the same, uniformly reduced number of attention heads and MLP neurons (those with
the largest weight norms), so that a user can compare depth- and width-pruned models of equal size on
their own hardware (Shortened LLaMA's finding: depth pruning is faster at small batch sizes).
Implemented for LLaMA-style blocks (q/k/v/o projections and a gated MLP: LLaMA, Mistral, Qwen2).
"""

from __future__ import annotations

import copy

import torch

from slimgui.core.errors import SlimError
from slimgui.core.model import LoadedModel

from .blocks import find_stack

_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _block_params(d: int, heads: int, kv: int, hd: int, ff: int, bias: bool) -> int:
    attn = d * heads * hd * 2 + d * kv * hd * 2 + (heads * hd + 2 * kv * hd if bias else 0)
    return attn + 3 * d * ff


def width_prune(model: LoadedModel, target_params: int) -> LoadedModel:
    """A copy of ``model`` whose heads and MLP width are cut uniformly to about ``target_params`` parameters."""
    from .stream import refuse_streamed

    refuse_streamed(model, "width pruning")
    _, layers = find_stack(model)
    attn0, mlp0 = getattr(layers[0], "self_attn", None), getattr(layers[0], "mlp", None)
    if attn0 is None or mlp0 is None or not all(hasattr(attn0, n) or hasattr(mlp0, n) for n in _NAMES):
        raise SlimError("width pruning is implemented for LLaMA-style blocks (q/k/v/o and gate/up/down projections)")
    cfg = model.config
    d, heads = cfg.hidden_size, cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    hd = getattr(cfg, "head_dim", None) or d // heads
    ff, n = cfg.intermediate_size, len(layers)
    bias = attn0.q_proj.bias is not None
    total = sum(p.numel() for p in model.module.parameters())
    outside = total - n * _block_params(d, heads, kv, hd, ff, bias) - sum(
        p.numel() for b in layers for name, p in b.named_parameters() if "norm" in name)
    norms = sum(p.numel() for name, p in layers[0].named_parameters() if "norm" in name) * n
    budget = (target_params - outside - norms) / n
    group = heads // kv
    best = None
    for new_kv in range(1, kv + 1):
        new_heads = new_kv * group
        rest = budget - _block_params(d, new_heads, new_kv, hd, 0, bias)
        new_ff = int(round(rest / (3 * d)))
        if 1 <= new_ff <= ff:
            err = abs(_block_params(d, new_heads, new_kv, hd, new_ff, bias) - budget)
            if best is None or err < best[0]:
                best = (err, new_heads, new_kv, new_ff)
    if best is None:
        raise SlimError(f"no uniform width reduction reaches {target_params:,} parameters")
    _, new_heads, new_kv, new_ff = best
    module = copy.deepcopy(model.module)
    _, new_layers = find_stack(LoadedModel(model.family, model.adapter, model.source, module, module.config,
                                              extra={"stack_path": model.extra.get("stack_path")}))
    with torch.no_grad():
        for block in new_layers:
            a, m = block.self_attn, block.mlp
            # keep the KV groups (with their query heads) whose weights are largest
            kv_score = a.k_proj.weight.view(kv, hd, d).abs().sum((1, 2)) + a.v_proj.weight.view(kv, hd, d).abs().sum((1, 2))
            keep_kv = kv_score.topk(new_kv).indices.sort().values
            keep_q = torch.cat([torch.arange(g * group, (g + 1) * group) for g in keep_kv.tolist()])
            rows_q = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in keep_q.tolist()])
            rows_kv = torch.cat([torch.arange(g * hd, (g + 1) * hd) for g in keep_kv.tolist()])
            a.q_proj = _slice_linear(a.q_proj, rows=rows_q)
            a.k_proj = _slice_linear(a.k_proj, rows=rows_kv)
            a.v_proj = _slice_linear(a.v_proj, rows=rows_kv)
            a.o_proj = _slice_linear(a.o_proj, cols=rows_q)
            for attr in ("num_heads", "num_key_value_heads"):
                if hasattr(a, attr):
                    setattr(a, attr, new_heads if attr == "num_heads" else new_kv)
            if hasattr(a, "num_key_value_groups"):
                a.num_key_value_groups = group
            neuron = m.gate_proj.weight.abs().sum(1) + m.up_proj.weight.abs().sum(1) + m.down_proj.weight.abs().sum(0)
            keep_n = neuron.topk(new_ff).indices.sort().values
            m.gate_proj = _slice_linear(m.gate_proj, rows=keep_n)
            m.up_proj = _slice_linear(m.up_proj, rows=keep_n)
            m.down_proj = _slice_linear(m.down_proj, cols=keep_n)
    module.config.num_attention_heads = new_heads
    module.config.num_key_value_heads = new_kv
    module.config.head_dim = hd
    module.config.intermediate_size = new_ff
    return LoadedModel(model.family, model.adapter, model.source, module, module.config, model.tokenizer,
                       impl=model.impl, extra={"kind": model.extra.get("kind"), "width": {
                           "heads": new_heads, "kv_heads": new_kv, "intermediate_size": new_ff}})


def _slice_linear(lin: torch.nn.Linear, rows=None, cols=None) -> torch.nn.Linear:
    w = lin.weight
    if rows is not None:
        w = w[rows]
    if cols is not None:
        w = w[:, cols]
    b = lin.bias[rows] if (lin.bias is not None and rows is not None) else lin.bias
    new = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    new.weight.copy_(w)
    if b is not None:
        new.bias.copy_(b)
    return new
