"""A language model's structure from config.json alone (issue 17: a config-only ``inspect`` without importing torch).

For every architecture the formulas cover, the parameter names and shapes they give must be exactly those of
transformers' own class built from the same config, and the family's graph must be the same, whether the config
names every key or leaves them to the class defaults."""

from __future__ import annotations

import json

import pytest
from slimgui_families.llm import skeleton

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, vocab_size=120)
CASES = [
    ("llama", {}),
    ("llama", dict(num_key_value_heads=2, attention_bias=True, mlp_bias=True, tie_word_embeddings=True)),
    ("llama", dict(head_dim=24, num_key_value_heads=1)),
    ("mistral", dict(num_key_value_heads=2)),
    ("mistral", dict(num_attention_heads=8, tie_word_embeddings=True)),  # 8 kv heads by default
    ("qwen2", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    ("qwen2", dict(num_attention_heads=32)),
    ("qwen3", dict(num_key_value_heads=2, head_dim=16)),
    ("qwen3", dict(attention_bias=True, tie_word_embeddings=True, num_attention_heads=32)),
    ("gemma", dict(num_key_value_heads=1, head_dim=16)),
    ("gemma", dict(head_dim=8, tie_word_embeddings=False, attention_bias=True, num_attention_heads=16)),
    ("gemma2", dict(num_key_value_heads=2, head_dim=16)),
    ("gpt2", dict(n_embd=64, n_layer=3, n_head=4, vocab_size=120, n_positions=40)),
    ("gpt2", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=120, n_inner=80, tie_word_embeddings=False)),
    ("phi3", dict(num_key_value_heads=2, pad_token_id=0, bos_token_id=0, eos_token_id=0)),
    ("phi3", dict(num_attention_heads=32, tie_word_embeddings=True, pad_token_id=0, bos_token_id=0, eos_token_id=0)),
    ("gpt_neox", {}),
    ("gpt_neox", dict(attention_bias=False, tie_word_embeddings=True)),
    ("opt", dict(ffn_dim=96, intermediate_size=None, max_position_embeddings=40, word_embed_proj_dim=64)),
    ("opt", dict(ffn_dim=96, intermediate_size=None, word_embed_proj_dim=32, do_layer_norm_before=False,
                 tie_word_embeddings=False, enable_bias=False, max_position_embeddings=40)),
    ("opt", dict(ffn_dim=96, intermediate_size=None, word_embed_proj_dim=64, layer_norm_elementwise_affine=False,
                 _remove_final_layer_norm=True, max_position_embeddings=40)),
]


def _doc(model_type: str, extra: dict, *, full: bool) -> dict:
    """The config.json of a small model: ``full`` as ``save_pretrained`` writes it, else only the given keys (a
    None is a JSON null)."""
    sizes = {} if model_type == "gpt2" else dict(SMALL)
    doc = {k: v for k, v in {"model_type": model_type, **sizes, **extra}.items()
           if not (k == "intermediate_size" and v is None)}  # OPT names its MLP width ffn_dim
    if not full:
        return doc
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(model_type, **{k: v for k, v in doc.items() if k != "model_type"})
    return json.loads(cfg.to_json_string())


def _built(doc: dict):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(doc["model_type"], **{k: v for k, v in doc.items() if k != "model_type"})
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(cfg), cfg


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize("model_type,extra", CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_the_formulas_give_transformers_own_parameters_and_graph(model_type, extra, full):
    from slimgui_families.llm import blocks

    from slimgui.core.graph import UnitGraph

    doc = _doc(model_type, extra, full=full)
    module, cfg = _built(doc)
    arch, params, _tied = skeleton.parameters_of(doc)
    assert arch == type(module).__name__
    assert params == [(n, tuple(p.shape)) for n, p in module.named_parameters()]

    class _M:  # what find_stack reads
        extra: dict = {}
    holder = _M()
    holder.module, holder.config, holder.extra = module, cfg, {}
    path, layers = blocks.find_stack(holder)
    from_module = skeleton.from_module(module, cfg, path, layers, "decoder")
    from_config = skeleton.from_config(doc)
    assert from_config == from_module

    def graph(s):
        units, ids, attrs = skeleton.graph_units(s)
        return UnitGraph("llm", units, edges=list(zip(ids, ids[1:])), attrs=attrs).to_json()
    assert graph(from_config) == graph(from_module)


@pytest.mark.parametrize("model_type", sorted(skeleton.DEFAULTS))
def test_the_defaults_are_the_installed_config_classes_defaults(model_type):
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(model_type)
    for key, value in skeleton.DEFAULTS[model_type].items():
        if key == "head_dim" and value is None:  # "hidden_size // num_attention_heads"
            assert getattr(cfg, "head_dim", None) in (None, cfg.hidden_size // cfg.num_attention_heads)
        elif key == "num_key_value_heads" and value is None:  # "as many as the attention heads"
            assert cfg.num_key_value_heads in (None, cfg.num_attention_heads)
        else:
            assert getattr(cfg, key) == value, key


@pytest.mark.parametrize("change", [
    {"auto_map": {"AutoModelForCausalLM": "x.Y"}},                      # its own code
    {"quantization_config": {"quant_method": "gptq"}},                 # quantised layers
    {"architectures": ["LlamaForSequenceClassification"]},              # another head
    {"num_local_experts": 8},                                           # mixture of experts
    {"num_attention_heads": 5},                                         # heads do not divide the width
    {"num_key_value_heads": 3},                                         # kv heads do not divide the heads
    {"hidden_size": "64"},                                              # not a number
    {"tie_word_embeddings": "yes"},
    {"model_type": "falcon"},                                           # not described: built instead
    {"num_key_value_heads": None},                                      # a null: the class decides, build it
    {"head_dim": None},
])
def test_configs_the_formulas_do_not_describe_for_certain_are_built_instead(change):
    doc = {"model_type": "llama", **SMALL, **change}
    assert skeleton.from_config(doc) is None


def test_a_cold_config_only_inspect_builds_nothing_and_matches_the_built_structure(tmp_path, monkeypatch):
    """The first open of a LLaMA config shows the same graph as building it would, from the numbers alone."""
    from transformers import LlamaConfig

    from slimgui.core import ops
    from slimgui.core.model import open_model
    from slimgui.core.plugins import discover

    folder = tmp_path / "cfg"
    LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=500).save_pretrained(folder)
    reg = discover()
    monkeypatch.setenv("SLIMGUI_CACHE_DIR", str(tmp_path / "cache"))
    lazy = open_model(str(folder), registry=reg)
    assert type(lazy).__name__ == "LazyModel" and not lazy.built()
    g_lazy = ops.graph_of(lazy, reg).to_json()
    assert not lazy.built()
    monkeypatch.setenv("SLIMGUI_CACHE_DIR", str(tmp_path / "other-cache"))
    built = reg.adapter("transformers").load(str(folder), _built_lazily=True)
    assert ops.graph_of(built, reg).to_json() == g_lazy
    assert lazy.module.config.num_key_value_heads == 2 and lazy.built()  # used: built for real
