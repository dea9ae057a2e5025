"""The demo language model means something: it beats a unigram model by far, and the ppl criterion picks
blocks whose removal hurts less than removing random ones."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest

from slimgui.cli import main
from slimgui.core.model import open_model
from slimgui.core.ops import analyze, evaluate, prune
from slimgui.core.plan import PruningPlan, plan_from_scores

EVAL_TOKENS = 20_000


@pytest.fixture(scope="module")
def demo_model(demo_paths, registry):
    return open_model(demo_paths["model"], registry=registry)


def test_demo_cli_prints_paths(capsys, demo_paths):
    assert main(["demo", "llm", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(doc) == {"model", "train", "eval"}
    assert doc == demo_paths
    assert (Path(doc["model"]) / "model.safetensors").is_file()
    train, held = Path(doc["train"]).read_text(), Path(doc["eval"]).read_text()
    assert len(train) > 10 * len(held) > 0  # one file in twenty is held out
    # held-out modules are not in the training text
    held_files = {line for line in held.splitlines() if line.startswith("# ---- ")}
    train_files = {line for line in train.splitlines() if line.startswith("# ---- ")}
    assert held_files and not held_files & train_files


def test_demo_is_a_12_block_llama_with_its_tokenizer(demo_model, registry):
    from slimgui.core.ops import graph_of

    graph = graph_of(demo_model, registry)
    assert graph.attrs["model_type"] == "llama" and len(graph.prunable()) >= 12
    assert demo_model.tokenizer is not None
    meta = json.loads((Path(demo_model.source) / "slimgui_demo.json").read_text())
    assert meta["script"].startswith("python -m slimgui_families.llm.demo")


def test_held_out_perplexity_far_below_unigram(demo_model, demo_paths, registry):
    tok = demo_model.tokenizer
    train_ids = tok(Path(demo_paths["train"]).read_text()[:3_000_000], add_special_tokens=False)["input_ids"]
    eval_ids = tok(Path(demo_paths["eval"]).read_text(), add_special_tokens=False)["input_ids"][:EVAL_TOKENS]
    counts = Counter(train_ids)
    total, vocab = sum(counts.values()), len(tok)
    unigram_nll = -sum(math.log((counts[t] + 1) / (total + vocab)) for t in eval_ids[1:]) / (len(eval_ids) - 1)
    unigram_ppl = math.exp(unigram_nll)
    model_ppl = evaluate(demo_model, demo_paths["eval"], registry=registry, max_tokens=EVAL_TOKENS)["perplexity"]
    assert model_ppl < unigram_ppl / 4, (model_ppl, unigram_ppl)


def test_ppl_criterion_beats_random_block_removal(demo_model, demo_paths, registry):
    graph = demo_model.impl.to_graph(demo_model)
    scores = analyze(demo_model, "ppl", registry=registry)  # default data: the demo's training text
    # removing any block makes the calibration perplexity worse than the full model's
    assert min(scores.values.values()) > scores.meta["baseline_ppl"]
    plan = plan_from_scores(graph, scores, ratio=0.25)
    n = len(plan.remove)
    assert n == 3

    def held_out_ppl(remove):
        pruned = prune(demo_model, PruningPlan(remove=list(remove)), registry=registry)
        return evaluate(pruned, demo_paths["eval"], registry=registry, max_tokens=EVAL_TOKENS)["perplexity"]

    chosen = held_out_ppl(plan.remove)
    ids = [u.id for u in graph.prunable()]
    randoms = []
    for seed in range(5):
        pick = sorted(random.Random(seed).sample(ids, n), key=ids.index)
        if pick != plan.remove:
            randoms.append(held_out_ppl(pick))
    assert len(randoms) >= 4
    assert all(chosen < r for r in randoms), (chosen, randoms)
