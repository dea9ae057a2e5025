"""Traits of real pretrained checkpoints, on small models built from configs (no hub): tied embeddings,
per-layer sliding/full attention (``layer_types``), grouped-query attention, ``head_dim`` ≠ hidden/heads and
bf16 weights.  Each goes through inspect, analyze (ppl, bi), prune and load-back."""

from __future__ import annotations

import json

import pytest
import torch

from slimgui.cli import main
from slimgui.core.data import CalibrationData
from slimgui.core.model import open_model
from slimgui.core.ops import analyze, graph_of, prune, save
from slimgui.core.plan import PruningPlan

SLIDING, FULL = "sliding_attention", "full_attention"
GEMMA_TYPES = [SLIDING, SLIDING, FULL, SLIDING, FULL, SLIDING]
QWEN_TYPES = [FULL, SLIDING, FULL, SLIDING, SLIDING, FULL]


def build(name: str):
    """(model, traits) for one architecture; larger init than the default so blocks differ measurably."""
    import transformers as tf

    common = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                  max_position_embeddings=256, initializer_range=0.2)
    if name == "llama-tied":  # tied head, GQA, head_dim 16 != 32 / 4
        cfg = tf.LlamaConfig(num_hidden_layers=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                             **common)
        return tf.LlamaForCausalLM(cfg), dict(tied=True, head_dim=16, kv_heads=2)
    if name == "gemma3":  # Gemma-3 text: sliding/full layer_types with their own RoPE, tied, 1 KV head, head_dim 16
        cfg = tf.Gemma3TextConfig(num_hidden_layers=6, num_key_value_heads=1, head_dim=16, sliding_window=8,
                                  layer_types=GEMMA_TYPES, **common)
        return tf.Gemma3ForCausalLM(cfg), dict(tied=True, head_dim=16, kv_heads=1, layer_types=GEMMA_TYPES)
    if name == "qwen2-sliding":  # Qwen2 with per-layer sliding windows, GQA
        cfg = tf.Qwen2Config(num_hidden_layers=6, num_key_value_heads=2, use_sliding_window=True, sliding_window=8,
                             layer_types=QWEN_TYPES, tie_word_embeddings=False, **common)
        return tf.Qwen2ForCausalLM(cfg), dict(tied=False, head_dim=8, kv_heads=2, layer_types=QWEN_TYPES)
    if name == "llama-bf16":  # weights stored as bfloat16
        cfg = tf.LlamaConfig(num_hidden_layers=4, num_key_value_heads=4, tie_word_embeddings=False, **common)
        return tf.LlamaForCausalLM(cfg).to(torch.bfloat16), dict(tied=False, head_dim=8, kv_heads=4,
                                                                 dtype=torch.bfloat16)
    raise ValueError(name)


ARCHS = ["llama-tied", "gemma3", "qwen2-sliding", "llama-bf16"]


@pytest.fixture(scope="module")
def arch_models(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("archs")
    out = {}
    for i, name in enumerate(ARCHS):
        torch.manual_seed(i)
        module, traits = build(name)
        module.eval().save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        out[name] = (root / name, traits)
    return out


@pytest.fixture
def calib(text_file):
    # 32-token segments: longer than the 8-token sliding windows, so the windows matter
    return CalibrationData(str(text_file), options={"seq_len": 32}, samples=6, batch_size=3)


def run_json(capsys, *argv):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def safetensors_dtypes(folder) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        return {k: fh.get_slice(k).get_dtype() for k in fh.keys()}


@pytest.mark.parametrize("name", ARCHS)
def test_inspect_shows_every_block_and_all_parameters(name, arch_models, capsys):
    path, traits = arch_models[name]
    doc = run_json(capsys, "inspect", str(path))
    n = len(traits.get("layer_types") or range(4))
    assert [b["id"] for b in doc["blocks"]] == [f"block.{i}" for i in range(n)]
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(path)
    assert doc["graph"]["attrs"]["total_params"] == sum(p.numel() for p in ref.parameters())  # tied: counted once
    head = next(u for u in doc["graph"]["units"] if u["kind"] == "head")
    assert head["attrs"]["tied_to_embeddings"] is traits["tied"]
    assert head["params"] == (0 if traits["tied"] else ref.lm_head.weight.numel())
    attn = ref.model.layers[0].self_attn
    assert attn.k_proj.weight.shape[0] == traits["kv_heads"] * traits["head_dim"]  # GQA, head_dim as configured
    assert attn.q_proj.weight.shape[0] == 4 * traits["head_dim"]


@pytest.mark.parametrize("name", ARCHS)
def test_fast_ppl_equals_the_naive_rebuild(name, arch_models, registry, calib):
    """The prefix-replay ppl must give each later block its own layer_types entry (mask and RoPE)."""
    from slimgui_families.llm.criteria import PerplexityDrop

    path, traits = arch_models[name]
    model = open_model(str(path), registry=registry)
    fast = PerplexityDrop().score(model, calib)
    naive = PerplexityDrop(naive=True).score(model, calib)
    assert list(fast) == list(naive) == [f"block.{i}" for i in range(len(fast))]
    for k in fast:
        assert fast[k] == pytest.approx(naive[k], rel=1e-5)
    assert len({round(v, 6) for v in fast.values()}) == len(fast)  # the blocks really differ
    if traits.get("layer_types"):
        assert model.module.config.layer_types == traits["layer_types"]  # restored after the criterion


@pytest.mark.parametrize("name", ARCHS)
def test_bi_matches_the_hidden_states(name, arch_models, registry, calib):
    path, _ = arch_models[name]
    model = open_model(str(path), registry=registry)
    scores = analyze(model, "bi", registry=registry, data=calib).values
    with torch.no_grad():
        hs = [model.module(**b, output_hidden_states=True).hidden_states
              for b in model.impl.calibration_batches(model, calib)]
    for i in range(len(scores) - 1):  # the last hidden state is after the final norm
        cos = torch.cat([torch.nn.functional.cosine_similarity(h[i], h[i + 1], dim=-1).flatten() for h in hs])
        assert scores[f"block.{i}"] == pytest.approx((1 - cos).mean().item(), rel=1e-4)
    ppl = analyze(model, "ppl", registry=registry, data=calib)
    assert all(1 < v < float("inf") for v in ppl.values.values()) and ppl.meta["baseline_ppl"] > 1


@pytest.mark.parametrize("name", ARCHS)
def test_prune_saves_a_model_that_loads_back_and_generates_with_kv_cache(name, arch_models, registry, tmp_path,
                                                                          tokenizer, capsys):
    from transformers import AutoModelForCausalLM

    path, traits = arch_models[name]
    types = traits.get("layer_types")
    n = len(types) if types else 4
    remove = [1, 3]
    keep = [i for i in range(n) if i not in remove]
    out = tmp_path / "pruned"
    doc = run_json(capsys, "prune", str(path), "--remove", ",".join(map(str, remove)), "--out", str(out))
    assert doc["removed"] == [f"block.{i}" for i in remove] and doc["kept_indices"] == keep
    assert doc["params_after"] < doc["params_before"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_hidden_layers"] == len(keep)
    if types:  # the kept blocks' entries, in order
        assert cfg["layer_types"] == [types[i] for i in keep]

    orig = AutoModelForCausalLM.from_pretrained(path).eval()
    back = AutoModelForCausalLM.from_pretrained(out).eval()
    assert len(back.model.layers) == len(keep)
    # the kept blocks are the original ones, weights and all
    for new_i, old_i in enumerate(keep):
        for (k, a), (_, b) in zip(back.model.layers[new_i].state_dict().items(),
                                  orig.model.layers[old_i].state_dict().items()):
            assert torch.equal(a, b), k
    if types:
        assert [layer.self_attn.sliding_window for layer in back.model.layers] == \
            [orig.model.layers[i].self_attn.sliding_window for i in keep]

    names = set(safetensors_dtypes(out))
    if traits["tied"]:  # tied weights stay tied; the head is not stored a second time
        assert back.lm_head.weight.data_ptr() == back.model.embed_tokens.weight.data_ptr()
        assert "lm_head.weight" not in names and cfg.get("tie_word_embeddings", True) is True
    else:
        assert "lm_head.weight" in names
        assert not torch.equal(back.lm_head.weight, back.model.embed_tokens.weight)
    stored = set(safetensors_dtypes(out).values())
    if traits.get("dtype") == torch.bfloat16:  # bf16 weights are saved as bf16
        assert stored == {"BF16"}
        assert back.dtype == torch.bfloat16 and cfg.get("dtype", cfg.get("torch_dtype")) == "bfloat16"
    else:
        assert stored == {"F32"}

    # the pruned model in memory (float32) and the saved one predict the same
    model = open_model(str(path), registry=registry)
    pruned = prune(model, PruningPlan(remove=[f"block.{i}" for i in remove]), registry=registry)
    enc = tokenizer("def parse(self, value):\n    return", return_tensors="pt")
    with torch.no_grad():
        ours = pruned.module(**enc).logits
        theirs = back.float()(**enc).logits
        back = AutoModelForCausalLM.from_pretrained(out).eval()
        cached = back.generate(**enc, max_new_tokens=20, do_sample=False, use_cache=True, pad_token_id=0)
        uncached = back.generate(**enc, max_new_tokens=20, do_sample=False, use_cache=False, pad_token_id=0)
    tol = 2e-2 if traits.get("dtype") else 1e-4
    assert torch.allclose(ours, theirs, atol=tol, rtol=tol)
    assert cached.shape[1] == enc["input_ids"].shape[1] + 20  # more tokens than the 8-token sliding window
    assert torch.equal(cached, uncached)  # the KV cache (sliding and full layers) lines up after renumbering
    # and the pruned folder opens again in SlimGUI with the kept blocks
    again = open_model(str(out), registry=registry)
    assert len(graph_of(again, registry).prunable()) == len(keep)


def test_bf16_model_saved_through_core_keeps_bf16(arch_models, registry, tmp_path):
    path, _ = arch_models["llama-bf16"]
    model = open_model(str(path), registry=registry)
    assert next(model.module.parameters()).dtype == torch.float32  # computed in float32 in memory
    pruned = prune(model, PruningPlan(remove=["block.0"]), registry=registry)
    out = save(pruned, tmp_path / "out", registry=registry)
    assert set(safetensors_dtypes(out).values()) == {"BF16"}
    assert next(pruned.module.parameters()).dtype == torch.float32  # saving does not change the model in memory
    from safetensors.torch import load_file

    stored = load_file(str(out / "model.safetensors"))
    src = load_file(str(path / "model.safetensors"))
    # the bf16 values round-trip exactly (bf16 -> float32 -> bf16)
    assert torch.equal(stored["model.layers.0.self_attn.q_proj.weight"], src["model.layers.1.self_attn.q_proj.weight"])
