"""A language model's structure as numbers: what the family's graph is made of, from a built module or, for the
common decoder architectures, from ``config.json`` alone.

Building a model's structure needs transformers' modelling code and torch under it: seconds of imports before
anything shows (issue 17 asks for a config-only ``inspect`` in under 2 s).  For the architectures in
:data:`ARCHITECTURES` the parameter names and shapes follow from the config by a few lines of arithmetic, so the
first open of such a folder shows its graph without importing either; every other architecture is built as before.
``tests/test_skeleton.py`` checks, for each of them, that the arithmetic gives the same parameter names and shapes
as transformers' own classes (minimal and full configs, tied and untied, with and without biases, grouped-query
attention) and that the graphs are equal, so a transformers release that changes a class shows up there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ATTN_CONTEXT = 128  # MACs per token are given at this context length


def child_group(name: str) -> str | None:
    """Which unit a block's child belongs to: "attn", "mlp", or None for a norm (children without parameters are
    left out by the caller)."""
    low = name.lower()
    if "norm" in low or low.startswith("ln"):
        return None
    return "attn" if ("attn" in low or "attention" in low) else "mlp"


@dataclass
class BlockShape:
    type: str                                     # the block's class name
    params: int
    macs: int                                     # parameters of its matrices (dim >= 2): MACs per token
    groups: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)  # group -> [(child, params, macs)]


@dataclass
class Skeleton:
    """Everything :func:`graph_units` needs; filled from a module (:func:`from_module`) or a config (:func:`from_config`)."""
    architecture: str
    model_type: str
    kind: str                                     # "decoder" | "encoder"
    hidden: int
    stack: str                                    # dotted path of the block list
    embed: int                                    # parameters of the input embeddings
    blocks: list[BlockShape]
    rest_names: list[str]                         # parameters outside blocks, embeddings and head
    rest: int
    total: int
    head: tuple[int, int | None, bool] | None     # (own parameters, weight elements, tied to the embeddings)


def from_module(module, config, path: str, layers, kind: str) -> Skeleton:
    """The skeleton of a built model (``layers``: its block list at ``path``)."""
    def n(ps) -> int:
        return int(sum(p.numel() for p in ps))

    def macs(mod) -> int:
        return int(sum(p.numel() for p in mod.parameters() if p.dim() >= 2))

    emb = module.get_input_embeddings()
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    stack_ids = {id(p) for p in layers.parameters()}
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    emb_ids = {id(p) for p in emb.parameters()} if emb is not None else set()
    blocks = []
    for block in layers:
        groups: dict[str, list[tuple[str, int, int]]] = {"attn": [], "mlp": []}
        for name, child in block.named_children():
            g = child_group(name)
            if g is None or not any(True for _ in child.parameters()):
                continue
            groups[g].append((name, n(child.parameters()), macs(child)))
        blocks.append(BlockShape(type(block).__name__, n(block.parameters()), macs(block), groups))
    outside = stack_ids | head_ids | emb_ids
    rest_names = [name for name, p in module.named_parameters() if id(p) not in outside]
    head_info = None
    if head is not None:
        tied = bool(emb is not None and head_ids & emb_ids)
        head_info = (n(p for p in head.parameters() if id(p) not in emb_ids),
                     int(head.weight.numel()) if hasattr(head, "weight") else None, tied)
    return Skeleton(architecture=type(module).__name__, model_type=config.model_type, kind=kind,
                    hidden=int(getattr(config, "hidden_size", 0) or 0), stack=path,
                    embed=n(emb.parameters()) if emb is not None else 0, blocks=blocks, rest_names=rest_names,
                    rest=n(p for p in module.parameters() if id(p) not in outside),
                    total=n(module.parameters()), head=head_info)


def graph_units(s: Skeleton):
    """(units, ids in stack order, graph attrs) of the family's graph of ``s``; the adapter's ``to_graph`` adds
    what a streamed checkpoint knows (bytes per block) and builds the :class:`UnitGraph`."""
    from slimgui.core.graph import Unit

    units = [Unit("embed", "embedding", "Embeddings", params=int(s.embed), attrs={"module": "input embeddings"})]
    ids = ["embed"]
    attn_macs = 2 * ATTN_CONTEXT * s.hidden
    for i, b in enumerate(s.blocks):
        bid = f"block.{i}"
        units.append(Unit(bid, "block", f"Block {i}", params=b.params, macs=b.macs + attn_macs, prunable=True,
                          attrs={"index": i, "module": f"{s.stack}.{i}", "type": b.type}))
        for gname, members in b.groups.items():
            if not members:
                continue
            units.append(Unit(f"{bid}.{gname}", "attention" if gname == "attn" else "mlp",
                              "Attention" if gname == "attn" else "MLP", parent=bid,
                              params=int(sum(p for _, p, _ in members)),
                              macs=sum(m for _, _, m in members) + (attn_macs if gname == "attn" else 0),
                              attrs={"modules": [f"{s.stack}.{i}.{c}" for c, _, _ in members]}))
        ids.append(bid)
    what = _rest_parts(s.rest_names)
    units.append(Unit("norm", "norm", _rest_label(what), params=int(s.rest),
                      attrs={"note": "final norm and any parameters outside the blocks, embeddings and head",
                             "holds": what, "inspect_note": ", ".join(what),
                             "modules": sorted({n.rsplit(".", 1)[0] for n in s.rest_names})}))
    ids.append("norm")
    if s.head is not None:
        own, weight, tied = s.head
        units.append(Unit("head", "head", "LM head (tied to the embeddings)" if tied else "LM head", params=own,
                          macs=weight, attrs={"tied_to_embeddings": tied,
                                              **({"inspect_note": "tied to the embeddings"} if tied else {})}))
        ids.append("head")
    attrs = {"layout": "stack", "kind": s.kind, "model_type": s.model_type, "architecture": s.architecture,
             "blocks": len(s.blocks), "hidden_size": s.hidden, "total_params": int(s.total),
             "macs_note": f"MACs per token at a {ATTN_CONTEXT}-token context", "stack": s.stack}
    return units, ids, attrs


def _rest_parts(names: list[str]) -> list[str]:
    """What the parameters outside the blocks, the token embeddings and the head are, in words: BERT-style
    encoders keep position and token-type embeddings, an embedding norm and a pooler there; decoders a final norm."""
    low = [n.lower() for n in names]
    kinds = ((("position", "wpe", "embed_positions"), "position embeddings"),
             (("token_type",), "token-type embeddings"),
             (("embeddings.layernorm", "embeddings.norm", "emb_ln", "embed_layer_norm"), "embedding norm"),
             (("pooler",), "pooler"),
             (("predictions.transform", "lm_head.dense", "lm_head.layer_norm", "vocab_transform", "vocab_layer_norm"),
              "head transform"))
    parts = [label for words, label in kinds if any(w in n for n in low for w in words)]
    left = [n for n in low if not any(w in n for words, _ in kinds for w in words)]
    if any("norm" in n or "ln_f" in n for n in left):
        parts.append("final norm")
    if any(not ("norm" in n or "ln_f" in n) for n in left):
        parts.append("other")
    return parts


def _rest_label(parts: list[str]) -> str:
    if not parts or parts == ["final norm"]:
        return "Final norm"
    if "final norm" in parts and len(parts) == 2 and parts[-1] == "other":
        return "Final norm & other"
    words = [p[0].upper() + p[1:] if i == 0 else p for i, p in enumerate(parts)]
    return ", ".join(words[:-1]) + " & " + words[-1] if len(words) > 1 else words[0]


# -- from config.json alone ---------------------------------------------------------------------------------------

# The class defaults that decide a shape, per model_type (tests/test_skeleton.py compares them with the installed
# transformers' config classes).  "head_dim": None means hidden_size // num_attention_heads.
_LLAMA_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "tie_word_embeddings")
DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=None, head_dim=None, tie_word_embeddings=False,
                  attention_bias=False, mlp_bias=False),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, head_dim=None, tie_word_embeddings=False),
    "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, head_dim=None, tie_word_embeddings=False),
    "qwen3": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, head_dim=128, tie_word_embeddings=False,
                  attention_bias=False),
    "gemma": dict(vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=16, head_dim=256, tie_word_embeddings=True,
                  attention_bias=False),
    "gemma2": dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=256, tie_word_embeddings=True,
                   attention_bias=False),
    "gpt2": dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_inner=None, tie_word_embeddings=True,
                 add_cross_attention=False),
    "phi3": dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=None, head_dim=None, tie_word_embeddings=False),
    "gpt_neox": dict(vocab_size=50432, hidden_size=6144, intermediate_size=24576, num_hidden_layers=44,
                     num_attention_heads=64, tie_word_embeddings=False, attention_bias=True),
    "opt": dict(vocab_size=50272, hidden_size=768, ffn_dim=3072, num_hidden_layers=12, num_attention_heads=12,
                max_position_embeddings=2048, word_embed_proj_dim=768, do_layer_norm_before=True,
                enable_bias=True, layer_norm_elementwise_affine=True, tie_word_embeddings=True,
                _remove_final_layer_norm=False),
}
# model_type -> (the class built, its block class, the block list's path, the input embeddings' weight)
_LAYOUT = {"llama": ("LlamaForCausalLM", "LlamaDecoderLayer", "model.layers", "model.embed_tokens.weight"),
           "mistral": ("MistralForCausalLM", "MistralDecoderLayer", "model.layers", "model.embed_tokens.weight"),
           "qwen2": ("Qwen2ForCausalLM", "Qwen2DecoderLayer", "model.layers", "model.embed_tokens.weight"),
           "qwen3": ("Qwen3ForCausalLM", "Qwen3DecoderLayer", "model.layers", "model.embed_tokens.weight"),
           "gemma": ("GemmaForCausalLM", "GemmaDecoderLayer", "model.layers", "model.embed_tokens.weight"),
           "gemma2": ("Gemma2ForCausalLM", "Gemma2DecoderLayer", "model.layers", "model.embed_tokens.weight"),
           "phi3": ("Phi3ForCausalLM", "Phi3DecoderLayer", "model.layers", "model.embed_tokens.weight"),
           "gpt2": ("GPT2LMHeadModel", "GPT2Block", "transformer.h", "transformer.wte.weight"),
           "gpt_neox": ("GPTNeoXForCausalLM", "GPTNeoXLayer", "gpt_neox.layers", "gpt_neox.embed_in.weight"),
           "opt": ("OPTForCausalLM", "OPTDecoderLayer", "model.decoder.layers", "model.decoder.embed_tokens.weight")}
ARCHITECTURES = {mt: layout[0] for mt, layout in _LAYOUT.items()}
_HIDDEN_KEY = {"gpt2": "n_embd"}
_LAYERS_KEY = {"gpt2": "n_layer"}
# keys whose presence means the class builds something these formulas do not describe
_UNSURE_KEYS = ("auto_map", "quantization_config", "text_config", "vision_config", "num_experts",
                "num_local_experts", "moe_intermediate_size", "rope_parameters_per_layer")


class _Unsure(Exception):
    """The config is not one the formulas describe for certain: build the model instead."""


def _int(cfg: dict[str, Any], key: str) -> int:
    v = cfg.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise _Unsure(key)
    return v


def _flag(cfg: dict[str, Any], key: str) -> bool:
    v = cfg.get(key)
    if not isinstance(v, bool):
        raise _Unsure(key)
    return v


def _linear(name: str, n_out: int, n_in: int, bias: bool) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{name}.weight", (n_out, n_in))] + ([(f"{name}.bias", (n_out,))] if bias else [])


def _llama_like(mt: str, cfg: dict[str, Any]) -> tuple[list[tuple[str, tuple[int, ...]]], bool]:
    """(named parameters with shapes, tied) of a LLaMA-shaped decoder (llama, mistral, qwen2/3, gemma/2)."""
    hidden, heads = _int(cfg, "hidden_size"), _int(cfg, "num_attention_heads")
    vocab, inter, layers = _int(cfg, "vocab_size"), _int(cfg, "intermediate_size"), _int(cfg, "num_hidden_layers")
    if cfg.get("num_key_value_heads") is None:  # a class default of None: as many as the attention heads
        cfg["num_key_value_heads"] = heads
    kv = _int(cfg, "num_key_value_heads")
    if cfg.get("head_dim") is None:  # a class default of None: the width over the heads
        if hidden % heads:
            raise _Unsure("head_dim")
        cfg["head_dim"] = hidden // heads
    hd = _int(cfg, "head_dim")
    if heads % kv:
        raise _Unsure("num_key_value_heads")
    tied = _flag(cfg, "tie_word_embeddings")
    if mt == "phi3":
        return _phi3(cfg, hidden, heads, kv, hd, vocab, inter, layers, tied), tied
    if mt == "qwen2":
        qkv_bias, o_bias, mlp_bias = True, False, False
    elif mt == "mistral":
        qkv_bias = o_bias = mlp_bias = False
    else:
        qkv_bias = o_bias = _flag(cfg, "attention_bias")
        mlp_bias = _flag(cfg, "mlp_bias") if mt == "llama" else False
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."

        for name, o, n_in, bias in (("self_attn.q_proj", heads * hd, hidden, qkv_bias),
                                    ("self_attn.k_proj", kv * hd, hidden, qkv_bias),
                                    ("self_attn.v_proj", kv * hd, hidden, qkv_bias),
                                    ("self_attn.o_proj", hidden, heads * hd, o_bias)):
            out += _linear(p + name, o, n_in, bias)
        if mt == "qwen3":
            out += [(f"{p}self_attn.q_norm.weight", (hd,)), (f"{p}self_attn.k_norm.weight", (hd,))]
        for name, o, n_in in (("mlp.gate_proj", inter, hidden), ("mlp.up_proj", inter, hidden),
                              ("mlp.down_proj", hidden, inter)):
            out += _linear(p + name, o, n_in, mlp_bias)
        norms = ["input_layernorm", "post_attention_layernorm"]
        if mt == "gemma2":
            norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
        out += [(f"{p}{n}.weight", (hidden,)) for n in norms]
    out.append(("model.norm.weight", (hidden,)))
    if not tied:
        out.append(("lm_head.weight", (vocab, hidden)))
    return out, tied


def _phi3(cfg, hidden: int, heads: int, kv: int, hd: int, vocab: int, inter: int, layers: int,
          tied: bool) -> list[tuple[str, tuple[int, ...]]]:
    """Phi-3: fused q/k/v and gate/up projections, no biases."""
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [(f"{p}self_attn.o_proj.weight", (hidden, heads * hd)),
                (f"{p}self_attn.qkv_proj.weight", (heads * hd + 2 * kv * hd, hidden)),
                (f"{p}mlp.gate_up_proj.weight", (2 * inter, hidden)), (f"{p}mlp.down_proj.weight", (hidden, inter)),
                (f"{p}input_layernorm.weight", (hidden,)), (f"{p}post_attention_layernorm.weight", (hidden,))]
    out.append(("model.norm.weight", (hidden,)))
    if not tied:
        out.append(("lm_head.weight", (vocab, hidden)))
    return out


def _gpt_neox(cfg: dict[str, Any]) -> tuple[list[tuple[str, tuple[int, ...]]], bool]:
    """GPT-NeoX (Pythia): fused q/k/v, LayerNorms with biases, the attention's biases per ``attention_bias``."""
    hidden, heads = _int(cfg, "hidden_size"), _int(cfg, "num_attention_heads")
    vocab, inter, layers = _int(cfg, "vocab_size"), _int(cfg, "intermediate_size"), _int(cfg, "num_hidden_layers")
    if hidden % heads:
        raise _Unsure("num_attention_heads")
    bias, tied = _flag(cfg, "attention_bias"), _flag(cfg, "tie_word_embeddings")
    out: list[tuple[str, tuple[int, ...]]] = [("gpt_neox.embed_in.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"gpt_neox.layers.{i}."
        out += [(f"{p}input_layernorm.weight", (hidden,)), (f"{p}input_layernorm.bias", (hidden,)),
                (f"{p}post_attention_layernorm.weight", (hidden,)), (f"{p}post_attention_layernorm.bias", (hidden,))]
        out += _linear(f"{p}attention.query_key_value", 3 * hidden, hidden, bias)
        out += _linear(f"{p}attention.dense", hidden, hidden, bias)
        out += _linear(f"{p}mlp.dense_h_to_4h", inter, hidden, True)
        out += _linear(f"{p}mlp.dense_4h_to_h", hidden, inter, True)
    out += [("gpt_neox.final_layer_norm.weight", (hidden,)), ("gpt_neox.final_layer_norm.bias", (hidden,))]
    if not tied:
        out.append(("lm_head.weight", (vocab, hidden)))
    return out, tied


def _opt(cfg: dict[str, Any]) -> tuple[list[tuple[str, tuple[int, ...]]], bool]:
    """OPT: learned positions (two extra rows), optional projections in and out of a narrower embedding, a final
    LayerNorm only for pre-norm models."""
    hidden, heads = _int(cfg, "hidden_size"), _int(cfg, "num_attention_heads")
    vocab, ffn, layers = _int(cfg, "vocab_size"), _int(cfg, "ffn_dim"), _int(cfg, "num_hidden_layers")
    positions, proj = _int(cfg, "max_position_embeddings"), _int(cfg, "word_embed_proj_dim")
    if hidden % heads:
        raise _Unsure("num_attention_heads")
    bias, affine = _flag(cfg, "enable_bias"), _flag(cfg, "layer_norm_elementwise_affine")
    final_norm = _flag(cfg, "do_layer_norm_before") and not _flag(cfg, "_remove_final_layer_norm")
    tied = _flag(cfg, "tie_word_embeddings")

    def norm(name: str) -> list[tuple[str, tuple[int, ...]]]:
        return [(f"{name}.weight", (hidden,)), (f"{name}.bias", (hidden,))] if affine else []

    d = "model.decoder."
    out: list[tuple[str, tuple[int, ...]]] = [(f"{d}embed_tokens.weight", (vocab, proj)),
                                              (f"{d}embed_positions.weight", (positions + 2, hidden))]
    if proj != hidden:
        out += [(f"{d}project_out.weight", (proj, hidden)), (f"{d}project_in.weight", (hidden, proj))]
    if final_norm:
        out += norm(f"{d}final_layer_norm")
    for i in range(layers):
        p = f"{d}layers.{i}."
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            out += _linear(f"{p}self_attn.{name}", hidden, hidden, bias)
        out += norm(f"{p}self_attn_layer_norm")
        out += _linear(f"{p}fc1", ffn, hidden, bias) + _linear(f"{p}fc2", hidden, ffn, bias)
        out += norm(f"{p}final_layer_norm")
    if not tied:
        out.append(("lm_head.weight", (vocab, proj)))
    return out, tied


def _gpt2(cfg: dict[str, Any]) -> tuple[list[tuple[str, tuple[int, ...]]], bool]:
    hidden, vocab, layers = _int(cfg, "n_embd"), _int(cfg, "vocab_size"), _int(cfg, "n_layer")
    positions = _int(cfg, "n_positions")
    if hidden % _int(cfg, "n_head") or _flag(cfg, "add_cross_attention"):
        raise _Unsure("n_head")
    inner = cfg.get("n_inner") or 4 * hidden
    if not isinstance(inner, int) or isinstance(inner, bool) or inner <= 0:
        raise _Unsure("n_inner")
    tied = _flag(cfg, "tie_word_embeddings")
    out: list[tuple[str, tuple[int, ...]]] = [("transformer.wte.weight", (vocab, hidden)),
                                              ("transformer.wpe.weight", (positions, hidden))]
    for i in range(layers):
        p = f"transformer.h.{i}."
        out += [(f"{p}ln_1.weight", (hidden,)), (f"{p}ln_1.bias", (hidden,)),
                (f"{p}attn.c_attn.weight", (hidden, 3 * hidden)), (f"{p}attn.c_attn.bias", (3 * hidden,)),
                (f"{p}attn.c_proj.weight", (hidden, hidden)), (f"{p}attn.c_proj.bias", (hidden,)),
                (f"{p}ln_2.weight", (hidden,)), (f"{p}ln_2.bias", (hidden,)),
                (f"{p}mlp.c_fc.weight", (hidden, inner)), (f"{p}mlp.c_fc.bias", (inner,)),
                (f"{p}mlp.c_proj.weight", (inner, hidden)), (f"{p}mlp.c_proj.bias", (hidden,))]
    out += [("transformer.ln_f.weight", (hidden,)), ("transformer.ln_f.bias", (hidden,))]
    if not tied:
        out.append(("lm_head.weight", (vocab, hidden)))
    return out, tied


def parameters_of(doc: dict[str, Any]) -> tuple[str, list[tuple[str, tuple[int, ...]]], bool] | None:
    """(architecture, the model's named parameters with their shapes, in ``named_parameters()`` order, tied) for a
    config the formulas describe for certain; None for any other (unknown architecture, remote code, quantised,
    mixture of experts, missing or odd numbers: those are built)."""
    mt = doc.get("model_type")
    if mt not in ARCHITECTURES or any(k in doc for k in _UNSURE_KEYS):
        return None
    archs = doc.get("architectures")
    if archs not in (None, [], [ARCHITECTURES[mt]]):
        return None
    if any(doc.get(k, 0) is None for k in (*_LLAMA_KEYS, "n_embd", "n_layer", "n_head", "ffn_dim",
                                           "word_embed_proj_dim", "max_position_embeddings")):
        return None  # a null left for the class to fill in (some classes refuse it): build it instead
    cfg = {**DEFAULTS[mt], **doc}
    if mt == "gpt2":  # the config's own defaults that are not shapes
        cfg.setdefault("n_positions", 1024)
    build = {"gpt2": _gpt2, "gpt_neox": _gpt_neox, "opt": _opt}.get(mt)
    try:
        params, tied = build(cfg) if build else _llama_like(mt, cfg)
    except _Unsure:
        return None
    return ARCHITECTURES[mt], params, tied


def from_config(doc: dict[str, Any]) -> Skeleton | None:
    """The skeleton of the model ``config.json`` (``doc``) describes, without building it; None when the formulas
    do not describe it for certain (see :func:`parameters_of`)."""
    found = parameters_of(doc)
    if found is None:
        return None
    arch, params, tied = found
    mt = doc["model_type"]
    _, block_type, stack, emb_name = _LAYOUT[mt]
    head_name = "lm_head.weight"
    size = {name: _numel(shape) for name, shape in params}
    ndim = {name: len(shape) for name, shape in params}
    layers_key = _LAYERS_KEY.get(mt, "num_hidden_layers")
    layers = int(doc.get(layers_key) or DEFAULTS[mt][layers_key])
    blocks = []
    for i in range(layers):
        prefix = f"{stack}.{i}."
        mine = [n for n, _ in params if n.startswith(prefix)]
        children: dict[str, list[str]] = {}
        for n in mine:
            children.setdefault(n[len(prefix):].split(".", 1)[0], []).append(n)
        groups: dict[str, list[tuple[str, int, int]]] = {"attn": [], "mlp": []}
        for child, names in children.items():
            g = child_group(child)
            if g is not None:
                groups[g].append((child, sum(size[n] for n in names), sum(size[n] for n in names if ndim[n] >= 2)))
        blocks.append(BlockShape(block_type, sum(size[n] for n in mine),
                                 sum(size[n] for n in mine if ndim[n] >= 2), groups))
    rest_names = [n for n, _ in params if not n.startswith(f"{stack}.") and n not in (emb_name, head_name)]
    head = (0 if tied else size[head_name], size[emb_name] if tied else size[head_name], tied)
    hidden_key = _HIDDEN_KEY.get(mt, "hidden_size")
    hidden = int(doc.get(hidden_key) or DEFAULTS[mt][hidden_key])
    return Skeleton(architecture=arch, model_type=mt, kind="decoder", hidden=hidden, stack=stack,
                    embed=size[emb_name], blocks=blocks, rest_names=rest_names,
                    rest=sum(size[n] for n in rest_names), total=sum(size.values()), head=head)


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out
