"""The language-model family on small real models of every supported architecture."""

from __future__ import annotations

import json

import pytest
import torch

from slimgui.core.data import CalibrationData
from slimgui.core.errors import SlimError
from slimgui.core.model import open_model
from slimgui.core.ops import analyze, evaluate, graph_of, prune, save
from slimgui.core.plan import PruningPlan

DECODERS = ["llama", "mistral", "qwen2", "gpt2", "opt"]


@pytest.fixture
def calib(text_file):
    return CalibrationData(str(text_file), options={"seq_len": 32}, samples=8, batch_size=4)


@pytest.mark.parametrize("arch", DECODERS + ["bert"])
def test_graph_has_blocks_with_attention_and_mlp(arch, tiny_models, registry):
    model = open_model(str(tiny_models[arch]), registry=registry)
    graph = graph_of(model, registry)
    blocks = graph.prunable()
    assert [u.id for u in blocks] == [f"block.{i}" for i in range(4)]
    for b in blocks:
        kids = {u.kind: u for u in graph.children(b.id)}
        assert set(kids) == {"attention", "mlp"}
        assert 0 < kids["attention"].params + kids["mlp"].params <= b.params
        assert b.macs and b.macs > kids["mlp"].macs
    assert graph.total_params == sum(p.numel() for p in model.module.parameters())
    top = [u for u in graph.units if u.parent is None]
    assert sum(u.params for u in top) == graph.total_params  # shares add up to 100%
    assert graph.attrs["layout"] == "stack" and graph.edges[0] == ("embed", "block.0")


@pytest.mark.parametrize("arch", DECODERS)
def test_prune_saves_smaller_model_that_generates_with_kv_cache(arch, tiny_models, registry, tmp_path, tokenizer):
    model = open_model(str(tiny_models[arch]), registry=registry)
    before = sum(p.numel() for p in model.module.parameters())
    pruned = prune(model, PruningPlan(remove=["block.1", "block.2"]), registry=registry)
    # the original is untouched
    assert len(graph_of(model, registry).prunable()) == 4
    out = save(pruned, tmp_path / "out", registry=registry)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert json.loads((out / "slimgui_plan.json").read_text())["remove"] == ["block.1", "block.2"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    back = AutoModelForCausalLM.from_pretrained(out).eval()
    assert back.config.num_hidden_layers == 2
    assert sum(p.numel() for p in back.parameters()) < before
    # the kept blocks are the original blocks 0 and 3, with their weights
    orig_sd = model.module.state_dict()
    back_sd = back.state_dict()
    k0 = next(k for k in back_sd if ".1." in k and "weight" in k)
    assert torch.equal(back_sd[k0], orig_sd[k0.replace(".1.", ".3.", 1)])
    layer_types = getattr(back.config, "layer_types", None)
    if layer_types is not None:
        assert len(layer_types) == 2
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok("def parse(self, value):", return_tensors="pt")
    with torch.no_grad():
        cached = back.generate(**enc, max_new_tokens=12, do_sample=False, use_cache=True, pad_token_id=0)
        uncached = back.generate(**enc, max_new_tokens=12, do_sample=False, use_cache=False, pad_token_id=0)
        same = pruned.module.generate(**enc, max_new_tokens=12, do_sample=False, use_cache=True, pad_token_id=0)
    assert cached.shape[1] == enc["input_ids"].shape[1] + 12
    assert torch.equal(cached, uncached)  # layer indices renumbered: the KV cache lines up
    assert torch.equal(cached, same)  # what was saved is what was pruned


@pytest.mark.parametrize("arch", DECODERS + ["bert"])
def test_ppl_criterion_reuses_prefix_and_matches_naive(arch, tiny_models, registry, calib):
    from slimgui_families.llm.criteria import PerplexityDrop

    model = open_model(str(tiny_models[arch]), registry=registry)
    fast = PerplexityDrop().score(model, calib)
    naive = PerplexityDrop(naive=True).score(model, calib)
    assert list(fast) == [f"block.{i}" for i in range(4)]
    for k in fast:
        assert fast[k] == pytest.approx(naive[k], rel=1e-5, abs=1e-9)

    # and the naive way really is "rebuild without block i, evaluate"
    if arch == "llama":
        from slimgui_families.llm.adapter import TransformersAdapter

        batches = TransformersAdapter().calibration_batches(model, calib)
        pruned = prune(model, PruningPlan(remove=["block.2"]), registry=registry)
        nll = n = 0
        with torch.no_grad():
            for b in batches:
                logits = pruned.module(**b).logits
                nll += torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), b["input_ids"][:, 1:].flatten(),
                                                         reduction="sum").item()
                n += b["input_ids"][:, 1:].numel()
        assert fast["block.2"] == pytest.approx(float(torch.tensor(nll / n).exp()), rel=1e-5)


def test_encoder_criteria_score_output_change(tiny_models, registry, calib):
    model = open_model(str(tiny_models["bert-base"]), registry=registry)
    assert model.extra["kind"] == "encoder"
    ppl = analyze(model, "ppl", registry=registry, data=calib).values
    bi = analyze(model, "bi", registry=registry, data=calib).values
    assert all(v > 0 for v in ppl.values()) and all(v > 0 for v in bi.values())
    with pytest.raises(SlimError, match="no language-modelling head"):
        analyze(model, "taylor", registry=registry, data=calib)
    with pytest.raises(SlimError, match="language-modelling head"):
        evaluate(model, calib.path, registry=registry)
    mlm = open_model(str(tiny_models["bert"]), registry=registry)
    assert all(v > 0 for v in analyze(mlm, "taylor", registry=registry, data=calib).values.values())
    assert evaluate(mlm, calib.path, registry=registry, seq_len=32, max_tokens=2000)["kind"] == "masked"


def test_bi_is_one_pass_and_matches_manual(tiny_models, registry, calib):
    model = open_model(str(tiny_models["llama"]), registry=registry)
    scores = analyze(model, "bi", registry=registry, data=calib).values
    from slimgui_families.llm.adapter import TransformersAdapter

    batch = TransformersAdapter().calibration_batches(model, calib)
    with torch.no_grad():
        hs = [model.module(**b, output_hidden_states=True).hidden_states for b in batch]
    # hidden_states[i] is block i's input; the last one is after the final norm, so check the first blocks
    for i in range(3):
        cos = torch.cat([torch.nn.functional.cosine_similarity(h[i], h[i + 1], dim=-1).flatten() for h in hs])
        assert scores[f"block.{i}"] == pytest.approx((1 - cos).mean().item(), rel=1e-4)


# where each architecture's blocks live in named_parameters() (written out, not asked of the adapter)
BLOCK_PREFIX = {"llama": "model.layers", "mistral": "model.layers", "qwen2": "model.layers", "gpt2": "transformer.h",
                "opt": "model.decoder.layers"}


def shortened_llama_taylor(module, ids: torch.Tensor, batch_size: int, prefix: str, n_blocks: int) -> dict:
    """Shortened LLaMA's anal_block_sensitivity_taylor.py, written out: per batch loss = model(ids, labels=ids).loss,
    backward, salience[name] += W * grad for every parameter with "weight" (and not "embed_tokens") in its name,
    zero_grad; then a weight's score is salience.abs().sum() and a block's the sum of its weights' scores."""
    salience: dict[str, torch.Tensor] = {}
    for i in range(0, ids.shape[0], batch_size):
        x = ids[i:i + batch_size]
        module(x, labels=x).loss.backward()
        for name, param in module.named_parameters():
            if param.requires_grad and "weight" in name and "embed_tokens" not in name:
                s = (param * param.grad).detach().clone().float()
                salience[name] = salience[name] + s if name in salience else s
        module.zero_grad()
    blocks = {}
    for name, s in salience.items():
        if name.startswith(prefix + "."):
            idx = int(name[len(prefix) + 1:].split(".")[0])
            blocks[idx] = blocks.get(idx, 0.0) + s.abs().sum().item()
    assert sorted(blocks) == list(range(n_blocks))
    return {f"block.{i}": v for i, v in blocks.items()}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_taylor_equals_the_shortened_llama_script(arch, tiny_models, registry, text_file):
    model = open_model(str(tiny_models[arch]), registry=registry)
    # ragged batches on purpose (4 + 4 + 2): the criterion weights each batch by its share of the samples
    calib = CalibrationData(str(text_file), options={"seq_len": 32}, samples=10, batch_size=4)
    taylor = analyze(model, "taylor", registry=registry, data=calib).values
    from slimgui_families.llm.adapter import TransformersAdapter

    ids = torch.cat([b["input_ids"] for b in TransformersAdapter().calibration_batches(model, calib)])
    assert ids.shape == (10, 32)
    prefix = BLOCK_PREFIX[arch]
    # the paper's defaults: --num_calib_data 10 --batch_size 10, i.e. one batch of every sample
    paper = shortened_llama_taylor(model.module, ids, 10, prefix, 4)
    assert set(taylor) == set(paper)
    for k in paper:
        assert taylor[k] == pytest.approx(paper[k], rel=1e-5)
    # the paper's script with k equal batches sums k batch means: the same scores times k, the same ranking
    paper5 = shortened_llama_taylor(model.module, ids, 2, prefix, 4)
    for k in paper:
        assert paper5[k] == pytest.approx(5 * taylor[k], rel=1e-4)
    assert all(p.grad is None for p in model.module.parameters())  # the criterion leaves no gradients behind


@pytest.mark.parametrize("arch", DECODERS + ["bert"])
def test_taylor_sums_every_weight_but_biases(arch, tiny_models, registry):
    """``taylor``'s selection (every parameter but biases) is the paper's ("weight" in the name) on every block."""
    from slimgui.core.criteria import taylor_weights, weight_matrices

    model = open_model(str(tiny_models[arch]), registry=registry)
    _, layers = model.impl.stack(model)
    for block in layers:
        names = [n for n, _ in taylor_weights(block)]
        assert names == [n for n, _ in block.named_parameters() if "weight" in n]
        assert any(p.dim() == 1 for _, p in taylor_weights(block))  # the norm weights are in
        assert {n for n, _ in weight_matrices(block)} < set(names)


def test_taylor_loss_is_the_papers_next_token_loss(tiny_models, registry, calib):
    """What the criterion backpropagates per batch is transformers' own model(ids, labels=ids).loss."""
    model = open_model(str(tiny_models["llama"]), registry=registry)
    with torch.no_grad():
        for b in model.impl.calibration_batches(model, calib):
            ours = model.impl.loss(model, b).item()
            theirs = model.module(b["input_ids"], labels=b["input_ids"]).loss.item()
            assert ours == pytest.approx(theirs, rel=1e-6)


def test_taylor_matrices_and_magnitude_follow_their_definitions(tiny_models, registry, calib):
    model = open_model(str(tiny_models["llama"]), registry=registry)
    mag = analyze(model, "magnitude", registry=registry).values
    block1 = model.module.model.layers[1]
    assert mag["block.1"] == pytest.approx(sum(p.abs().sum().item() for p in block1.parameters() if p.dim() >= 2))
    taylor = analyze(model, "taylor", registry=registry, data=calib).values
    matrices = analyze(model, "taylor-matrices", registry=registry, data=calib).values
    # recompute: the gradient of the mean loss over all samples (2 equal batches: the mean of the batch losses)
    from slimgui_families.llm.adapter import TransformersAdapter, causal_lm_loss

    module = model.module
    module.zero_grad()
    batches = TransformersAdapter().calibration_batches(model, calib)
    for b in batches:
        (causal_lm_loss(module(**b).logits, b["input_ids"]) / len(batches)).backward()
    block = module.model.layers[2]
    expect = sum((p * p.grad).abs().sum().item() for p in block.parameters() if p.dim() >= 2)
    norms = sum((p * p.grad).abs().sum().item() for n, p in block.named_parameters() if "norm" in n)
    module.zero_grad()
    assert matrices["block.2"] == pytest.approx(expect, rel=1e-5)
    assert taylor["block.2"] == pytest.approx(expect + norms, rel=1e-5) and norms > 0
    assert all(p.grad is None for p in module.parameters())


def test_short_calibration_text_records_what_was_used_and_warns(tiny_models, registry, tmp_path, tokenizer):
    model = open_model(str(tiny_models["llama"]), registry=registry)
    short = tmp_path / "short.txt"
    short.write_text("def parse(self, value):\n    return int(value) + 1\n" * 10, encoding="utf-8")
    n_tokens = len(tokenizer(short.read_text(), add_special_tokens=False)["input_ids"])
    calib = CalibrationData(str(short), options={"seq_len": 32}, samples=32, batch_size=8)
    batches = model.impl.calibration_batches(model, calib)
    used = sum(b["input_ids"].shape[0] for b in batches)
    assert used == n_tokens // 32 < 32
    info = model.impl.calibration_info(model)
    assert info["data"]["samples"] == used and info["data"]["samples_requested"] == 32
    assert info["data"]["tokens"] == 32 * used
    assert len(info["warnings"]) == 1 and f"used {used} segments" in info["warnings"][0]
    assert "not the 32 asked for" in info["warnings"][0] and "short.txt" in info["warnings"][0]
    # enough text: nothing to warn about
    model.impl.calibration_batches(model, CalibrationData(str(short), options={"seq_len": 32}, samples=used, batch_size=8))
    assert model.impl.calibration_info(model)["warnings"] == []
    scores = analyze(model, "bi", registry=registry, data=calib)
    assert scores.meta["data"]["samples"] == used and scores.meta["data"]["samples_requested"] == 32
    assert scores.meta["warnings"] == info["warnings"]


def test_perplexity_sliding_window_and_stride(tiny_models, registry, text_file):
    model = open_model(str(tiny_models["llama"]), registry=registry)
    full = evaluate(model, str(text_file), registry=registry, seq_len=64, max_tokens=1000)
    # independent 64-token segments: every token but each segment's first is predicted once
    assert full["windows"] == 16 and full["tokens"] == 1000 - 16
    strided = evaluate(model, str(text_file), registry=registry, seq_len=64, stride=32, max_tokens=1000)
    # overlapping windows: later windows score only their last 32 tokens, so all but token 0 count once
    assert strided["tokens"] == 999 and strided["windows"] > full["windows"]
    assert strided["perplexity"] != full["perplexity"]
    assert 1 < full["perplexity"] < 2 * 300  # an untrained model: near the vocabulary size


def test_config_only_model_opens_on_meta_without_weights(tmp_path, registry):
    from helpers import tiny_config

    config, _ = tiny_config("llama", layers=6)
    config.save_pretrained(tmp_path)
    model = open_model(str(tmp_path), registry=registry)
    assert not model.has_weights
    assert next(model.module.parameters()).device.type == "meta"
    graph = graph_of(model, registry)
    assert len(graph.prunable()) == 6 and graph.total_params > 0
    with pytest.raises(SlimError, match="no weights"):
        analyze(model, "bi", registry=registry)


def test_keep_set_is_recorded_in_scores(tiny_models, registry):
    model = open_model(str(tiny_models["gpt2"]), registry=registry)
    scores = analyze(model, "magnitude", registry=registry, keep="first:1,last:1")
    assert scores.locked == ["block.0", "block.3"] and scores.keep == "first:1,last:1"
