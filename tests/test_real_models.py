"""What real pretrained checkpoints showed (issue 22), each on a small model built from a config of that
architecture (no hub): the ppl criterion equals a model built without the block by transformers itself on
every per-layer config list, BOS follows the tokenizer, encoders refuse or heal without an LM head, bench
peak memory per model, tied embeddings once in ONNX, the ratio rule, sentence-transformers files, progress
lines and labels."""

from __future__ import annotations

import json
import math

import pytest
import torch

from slimgui.cli import main
from slimgui.core.data import CalibrationData
from slimgui.core.model import open_model

SLIDING, FULL = "sliding_attention", "full_attention"


def run_json(capsys, *argv):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


# -- 1. the ppl criterion equals transformers' own model without the block, on every per-layer config list ------
COMMON = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_attention_heads=4,
              max_position_embeddings=256, initializer_range=0.2)
PER_LAYER = {  # (config class, model class, per-layer lists, extra config)
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               {"layer_types": [SLIDING, SLIDING, FULL, SLIDING, FULL, SLIDING]},
               dict(num_key_value_heads=1, head_dim=16, sliding_window=8)),
    "qwen2-sliding": ("Qwen2Config", "Qwen2ForCausalLM",
                      {"layer_types": [FULL, SLIDING, FULL, SLIDING, SLIDING, FULL]},
                      dict(num_key_value_heads=2, use_sliding_window=True, sliding_window=8,
                           tie_word_embeddings=False)),
    # GraniteSWA: a RoPE theta per layer (0: no RoPE) besides layer_types; a list no fixed key names
    "granite-swa": ("GraniteSWAConfig", "GraniteSWAForCausalLM",
                    {"layer_types": [FULL, SLIDING, SLIDING, FULL, SLIDING, FULL],
                     "layer_rope_theta": [10000.0, 0, 1000000.0, 10000.0, 0, 500.0]},
                    dict(num_key_value_heads=2, sliding_window=8)),
}


@pytest.fixture(scope="module")
def per_layer_models(tmp_path_factory, tokenizer):
    import transformers as tf

    root = tmp_path_factory.mktemp("per_layer")
    out = {}
    for i, (name, (cfg_cls, model_cls, lists, extra)) in enumerate(PER_LAYER.items()):
        torch.manual_seed(10 + i)
        cfg = getattr(tf, cfg_cls)(num_hidden_layers=6, **lists, **extra, **COMMON)
        module = getattr(tf, model_cls)(cfg).eval()
        for key, values in lists.items():
            assert list(getattr(module.config, key)) == values
        module.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        out[name] = root / name
    return out


def _without_block(orig, i: int):
    """The model without block ``i`` as transformers builds it from a config whose per-layer lists drop entry
    ``i`` (written out here, not by SlimGUI's code), with the other blocks' weights."""
    doc = orig.config.to_dict()
    name = next(k for k, v in PER_LAYER.items() if v[1] == type(orig).__name__)
    for key in PER_LAYER[name][2]:
        doc[key] = [v for j, v in enumerate(doc[key]) if j != i]
    doc["num_hidden_layers"] -= 1
    cfg = type(orig.config).from_dict(doc)
    new = type(orig)(cfg).eval()
    state = {}
    for k, v in orig.state_dict().items():
        if k.startswith("model.layers."):
            idx = int(k.split(".")[2])
            if idx == i:
                continue
            k = k.replace(f"model.layers.{idx}.", f"model.layers.{idx - (idx > i)}.", 1)
        state[k] = v
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m or m == "lm_head.weight" for m in missing), (missing, unexpected)
    if cfg.tie_word_embeddings:
        new.tie_weights()
    return new


@pytest.mark.parametrize("name", list(PER_LAYER))
def test_ppl_criterion_equals_transformers_model_without_the_block(name, per_layer_models, registry, text_file):
    from slimgui_families.llm.blocks import causal_lm_loss
    from slimgui_families.llm.criteria import PerplexityDrop

    calib = CalibrationData(str(text_file), options={"seq_len": 32}, samples=4, batch_size=2)
    model = open_model(str(per_layer_models[name]), registry=registry)
    fast = PerplexityDrop().score(model, calib)
    naive = PerplexityDrop(naive=True).score(model, calib)
    batches = model.impl.calibration_batches(model, calib)
    from transformers import AutoModelForCausalLM

    orig = AutoModelForCausalLM.from_pretrained(per_layer_models[name]).eval()
    for i in range(6):
        ref = _without_block(orig, i)
        nll, n = 0.0, 0
        with torch.no_grad():
            for b in batches:
                logits = ref(**b, use_cache=False).logits
                nll += causal_lm_loss(logits, b["input_ids"], reduction="sum").item()
                n += b["input_ids"][:, 1:].numel()
        expected = math.exp(nll / n)
        assert fast[f"block.{i}"] == pytest.approx(expected, rel=1e-5), i
        assert naive[f"block.{i}"] == pytest.approx(expected, rel=1e-5), i
    assert len({round(v, 6) for v in fast.values()}) == 6  # the blocks really differ
    for key, values in PER_LAYER[name][2].items():  # the config is restored after the criterion
        assert list(getattr(model.module.config, key)) == values


def test_prune_keeps_the_kept_blocks_entries_of_every_per_layer_list(per_layer_models, capsys, tmp_path):
    folder = per_layer_models["granite-swa"]
    out = tmp_path / "pruned"
    run_json(capsys, "prune", str(folder), "--remove", "1,2", "--out", str(out))
    cfg = json.loads((out / "config.json").read_text())
    lists = PER_LAYER["granite-swa"][2]
    for key, values in lists.items():
        assert cfg[key] == [v for j, v in enumerate(values) if j not in (1, 2)], key


# -- 2. BOS follows the tokenizer ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bos_models(tmp_path_factory):
    """Two copies of one LLaMA: one with a tokenizer that adds <bos> itself (as Gemma's and LLaMA's do), one
    with the same tokenizer adding none."""
    import sys
    from pathlib import Path

    from tokenizers import processors
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import tiny_tokenizer

    root = tmp_path_factory.mktemp("bos")
    torch.manual_seed(3)
    module = LlamaForCausalLM(LlamaConfig(num_hidden_layers=3, num_key_value_heads=2, **{**COMMON,
                                                                                          "vocab_size": 320})).eval()
    out = {}
    for adds in (True, False):
        tok = tiny_tokenizer()
        tok.add_special_tokens({"bos_token": "<bos>"})
        bos = tok.convert_tokens_to_ids("<bos>")
        if adds:
            tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
                single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)])
        folder = root / ("adds" if adds else "plain")
        module.save_pretrained(folder)
        tok.save_pretrained(folder)
        out[adds] = folder
    return out, bos


def test_calibration_segments_start_with_bos_where_the_tokenizer_adds_one(bos_models, registry, text_file):
    folders, bos = bos_models
    for adds, given, expect in ((True, None, True), (False, None, False), (True, False, False), (False, True, True)):
        model = open_model(str(folders[adds]), registry=registry)
        options = {"seq_len": 16} if given is None else {"seq_len": 16, "bos": given}
        calib = CalibrationData(str(text_file), options=options, samples=4, batch_size=4)
        (batch,) = model.impl.calibration_batches(model, calib)
        ids = batch["input_ids"]
        assert ids.shape == (4, 16)  # BOS counts in the segment length
        assert bool((ids[:, 0] == bos).all()) is expect, (adds, given)
        assert int((ids == bos).sum()) == (4 if expect else 0)
        assert model.impl.calibration_info(model)["data"]["bos"] is expect
        plain = model.tokenizer(text_file.read_text()[:2000], add_special_tokens=False)["input_ids"]
        assert ids[0, int(expect):].tolist() == plain[:16 - int(expect)]  # then the text, from its start


def test_perplexity_with_bos_equals_a_plain_loop(bos_models, registry, text_file):
    from slimgui_families.llm.evaluate import perplexity

    folders, bos = bos_models
    model = open_model(str(folders[True]), registry=registry)
    res = perplexity(model, str(text_file), seq_len=16, max_tokens=200)
    assert res["bos"] is True and res["tokens"] == 200  # every token predicted once, the first from BOS
    ids = model.tokenizer(text_file.read_text(), add_special_tokens=False)["input_ids"][:200]
    nll = 0.0
    with torch.no_grad():
        for s in range(0, 200, 15):
            x = torch.tensor([[bos] + ids[s:s + 15]])
            logits = model.module(input_ids=x).logits[0, :-1]
            nll += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
    assert res["perplexity"] == pytest.approx(math.exp(nll / 200), rel=1e-5)
    off = perplexity(model, str(text_file), seq_len=16, max_tokens=200, bos=False)
    assert off["bos"] is False and off["tokens"] == 200 - off["windows"]
    assert off["perplexity"] != pytest.approx(res["perplexity"], rel=1e-6)
    # stride below the window: still every token once
    strided = perplexity(model, str(text_file), seq_len=16, stride=5, max_tokens=200)
    assert strided["tokens"] == 200


def test_generation_prompt_starts_with_bos(bos_models, registry):
    from slimgui_families.llm.evaluate import generate_text

    folders, bos = bos_models
    model = open_model(str(folders[True]), registry=registry)
    media = generate_text(model, "def parse(", max_new_tokens=6)
    assert media.meta["bos"] is True
    ids = [bos] + model.tokenizer("def parse(", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        ref = model.module.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert media.text == "def parse(" + model.tokenizer.decode(ref[0, len(ids):], skip_special_tokens=True)
    assert generate_text(model, "def parse(", max_new_tokens=2, bos=False).meta["bos"] is False


def test_bos_flags_reach_analyze_and_eval_and_are_recorded(bos_models, capsys, text_file, tmp_path):
    folders, _ = bos_models
    doc = run_json(capsys, "analyze", str(folders[True]), "--criterion", "bi", "--data", str(text_file),
                   "--seq-len", "16", "--samples", "4", "--out", str(tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text())["meta"]["data"]["bos"] is True
    run_json(capsys, "analyze", str(folders[True]), "--criterion", "bi", "--data", str(text_file),
             "--seq-len", "16", "--samples", "4", "--no-bos", "--out", str(tmp_path / "n.json"))
    assert json.loads((tmp_path / "n.json").read_text())["meta"]["data"]["bos"] is False
    ev = run_json(capsys, "eval", str(folders[False]), "--data", str(text_file), "--max-tokens", "100",
                  "--seq-len", "16", "--bos", "--prompt", "def ", "--max-new-tokens", "2")
    assert ev["bos"] is True and ev["generation"]["bos"] is True
    ev = run_json(capsys, "eval", str(folders[True]), "--data", str(text_file), "--max-tokens", "100",
                  "--seq-len", "16", "--no-bos", "--no-generate")
    assert ev["bos"] is False
    assert doc["scores"]


def test_retraining_sequences_start_with_bos_as_calibration_does(bos_models, text_file, tmp_path):
    from slimgui_families.llm.adapter import TransformersAdapter
    from slimgui_families.llm.training import build_cpt

    from slimgui.core.train import TrainConfig

    folders, bos = bos_models
    for adds, given, expect in ((True, None, True), (True, False, False), (False, None, False)):
        options = {"seq_len": 16} if given is None else {"seq_len": 16, "bos": given}
        cfg = TrainConfig(model=str(folders[adds]), data=[str(text_file)], out=str(tmp_path / "o"), options=options)
        task = build_cpt(TransformersAdapter(), cfg)
        rows = torch.cat([task.train_blocks, task.val_blocks])
        assert rows.shape[1] == 16 and task.info["bos"] is expect
        assert bool((rows[:, 0] == bos).all()) is expect and int((rows == bos).sum()) == (len(rows) if expect else 0)


# -- 6. one ratio rule: floor, never above the ratio ----------------------------------------------------------
def _stack(n: int):
    from slimgui.core.graph import Unit, UnitGraph

    units = [Unit(f"block.{i}", "block", f"Block {i}", params=10, prunable=True, attrs={"index": i}) for i in range(n)]
    return UnitGraph("test", units, edges=[])


def test_ratio_is_rounded_down_and_the_effective_ratio_recorded():
    from slimgui.core.errors import SlimError
    from slimgui.core.plan import RATIO_RULE, count_for_ratio, plan_from_scores
    from slimgui.core.scores import Scores

    assert RATIO_RULE == "floor"
    # Python's round (half to even) gave 8 of 30 and 4 of 18: one rule now, never above the ratio
    assert count_for_ratio(_stack(30), 0.25) == 7
    assert count_for_ratio(_stack(18), 0.25) == 4
    assert count_for_ratio(_stack(14), 0.25) == 3  # round() gave 4 (28.6 %)
    assert count_for_ratio(_stack(100), 0.29) == 29  # 0.29 × 100 = 28.999999999999996 in floating point
    assert count_for_ratio(_stack(12), 0.25) == 3
    for n in range(1, 60):
        for r in (0.1, 0.2, 0.25, 0.3, 0.5, 0.75):
            if r * n >= 1:
                assert count_for_ratio(_stack(n), r) / n <= r + 1e-12
    with pytest.raises(SlimError, match="removes none"):
        count_for_ratio(_stack(12), 0.05)
    g = _stack(30)
    plan = plan_from_scores(g, Scores("x", {f"block.{i}": float(i) for i in range(30)}), ratio=0.25)
    assert len(plan.remove) == 7
    assert plan.meta["effective_ratio"] == pytest.approx(7 / 30) and plan.meta["ratio_rule"] == "floor"


def test_prune_ratio_on_the_cli_rounds_down(per_layer_models, capsys, tmp_path):
    doc = run_json(capsys, "prune", str(per_layer_models["gemma3"]), "--criterion", "magnitude", "--ratio", "0.25",
                   "--out", str(tmp_path / "p"))
    assert len(doc["removed"]) == 1  # 0.25 × 6 = 1.5: one block (round() removed 2, a third of the model)


# -- 5. tied embeddings stored once in ONNX; the sidecar decided on the bytes written ---------------------------
def _vocab_tensors(path, vocab: int) -> list[tuple[str, list[int]]]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return [(t.name, list(t.dims)) for t in proto.graph.initializer if vocab in list(t.dims)]


def _initializer_bytes(path) -> int:
    import onnx
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)


@pytest.fixture(scope="module")
def llama_tied(tmp_path_factory, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(5)
    folder = tmp_path_factory.mktemp("tied") / "llama"
    LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, num_key_value_heads=2, tie_word_embeddings=True,
                                 **COMMON)).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("past", [False, True])
def test_onnx_stores_tied_embeddings_once(per_layer_models, llama_tied, capsys, tmp_path, past):
    import onnxruntime as ort
    from transformers import AutoModelForCausalLM

    # Gemma-3: tied, scaled embeddings; with past key/values: a tied LLaMA (SmolLM-style)
    folder = llama_tied if past else per_layer_models["gemma3"]
    ref = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert ref.lm_head.weight.data_ptr() == ref.model.embed_tokens.weight.data_ptr()
    out = tmp_path / "g.onnx"
    argv = ["export", str(folder), "--format", "onnx", "--out", str(out)] + (["--past"] if past else [])
    doc = run_json(capsys, *argv)
    assert doc["tied_embeddings_shared"] is True and doc["cosine"] > 0.9999
    assert len(_vocab_tensors(out, 300)) == 1  # E once (as the head's Eᵀ), not E and Eᵀ
    param_bytes = sum(p.numel() * 4 for p in ref.parameters())  # tied: counted once
    assert _initializer_bytes(out) <= param_bytes  # the graph holds every parameter once
    if not past:
        ids = torch.tensor([[5, 17, 42, 7, 99, 3]])
        feed = {"input_ids": ids.numpy(), "attention_mask": torch.ones_like(ids).numpy()}
        got = ort.InferenceSession(str(out)).run(None, feed)[0]
        with torch.no_grad():
            want = ref(input_ids=ids).logits.numpy()
        assert abs(got - want).max() < 1e-4
        q = run_json(capsys, "export", str(folder), "--format", "onnx", "--int8", "--out", str(tmp_path / "q.onnx"))
        assert q["cosine"] > 0.99


def test_onnx_sidecar_is_decided_on_the_bytes_written(per_layer_models, capsys, tmp_path, monkeypatch):
    from slimgui_families.llm import export
    from transformers import AutoModelForCausalLM

    folder = per_layer_models["gemma3"]
    param_bytes = sum(p.numel() * 4 for p in AutoModelForCausalLM.from_pretrained(folder).parameters())
    # an export that writes more than the parameters (here: the tied head stored a second time) crosses a
    # limit the de-duplicated parameter bytes stay under
    monkeypatch.setattr(export, "share_tied_embedding", lambda path, module: False)
    monkeypatch.setattr(export, "EXTERNAL_DATA_BYTES", param_bytes + 20_000)
    doc = run_json(capsys, "export", str(folder), "--format", "onnx", "--out", str(tmp_path / "g.onnx"))
    assert doc["external_data"] is True and (tmp_path / "g.onnx.data").is_file()
    assert len(_vocab_tensors(tmp_path / "g.onnx", 300)) == 2


# -- 3. an encoder without an LM head: lora/cpt refused up front in one line; kd heals it from hidden states ----
def _one_line_error(capsys, *argv) -> str:
    code = main([*argv, "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("slimgui: error: "), err
    return err[0]


@pytest.mark.parametrize("method,estimate", [("cpt", True), ("lora", False)])
def test_retrain_refuses_lm_healing_of_an_encoder_without_lm_head(tiny_models, text_file, capsys, tmp_path, method,
                                                                   estimate):
    from transformers import AutoModel

    folder = tiny_models["bert-base"]
    assert type(AutoModel.from_pretrained(folder)).__name__ == "BertModel"
    capsys.readouterr()
    argv = ["retrain", str(folder), "--method", method, "--data", str(text_file), "--steps", "1", "--seq-len", "16",
            "--out", str(tmp_path / "healed")] + (["--estimate"] if estimate else [])
    err = _one_line_error(capsys, *argv)
    assert "language-modelling head" in err and "BertModel" in err and "--method kd" in err
    assert not (tmp_path / "healed" / "model").exists()


def test_kd_heals_an_encoder_by_hidden_state_distillation(text_file, tokenizer, capsys, tmp_path):
    from transformers import AutoModel, BertConfig, BertModel

    torch.manual_seed(2)  # a sentence-encoder-like BertModel whose blocks matter (larger init than the default)
    cfg = BertConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                     max_position_embeddings=256, pad_token_id=0, initializer_range=0.3)
    BertModel(cfg).eval().save_pretrained(tmp_path / "enc")
    tokenizer.save_pretrained(tmp_path / "enc")
    pruned = tmp_path / "pruned"
    run_json(capsys, "prune", str(tmp_path / "enc"), "--remove", "1", "--out", str(pruned))
    healed = tmp_path / "healed"
    assert main(["retrain", str(pruned), "--method", "kd", "--data", str(text_file), "--steps", "12", "--seq-len", "32",
                 "--batch-size", "2", "--lr", "5e-3", "--out", str(healed), "-q"]) == 0
    capsys.readouterr()
    teacher = AutoModel.from_pretrained(tmp_path / "enc").eval()
    before = AutoModel.from_pretrained(pruned).eval()
    after = AutoModel.from_pretrained(healed / "model").eval()
    ids = torch.tensor([tokenizer(text_file.read_text()[-3000:], add_special_tokens=False)["input_ids"][:96]])
    ids = ids.reshape(3, 32)
    with torch.no_grad():
        want = teacher(input_ids=ids).last_hidden_state
        mse_before = torch.nn.functional.mse_loss(before(input_ids=ids).last_hidden_state, want).item()
        mse_after = torch.nn.functional.mse_loss(after(input_ids=ids).last_hidden_state, want).item()
    assert mse_after < 0.7 * mse_before, (mse_before, mse_after)
    assert len(after.encoder.layer) == 3


# -- 7. a pruned sentence-transformers folder keeps its pooling and normalisation -----------------------------
def test_pruned_sentence_transformers_folder_keeps_its_modules(tiny_models, capsys, tmp_path, text_file):
    import shutil

    src = tmp_path / "minilm"
    shutil.copytree(tiny_models["bert-base"], src)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (src / "modules.json").write_text(json.dumps(modules))
    (src / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    (src / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": "cosine"}))
    (src / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}
    (src / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (src / "2_Normalize").mkdir()

    out = tmp_path / "pruned"
    run_json(capsys, "prune", str(src), "--remove", "1", "--out", str(out))
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "1_Pooling/config.json"):
        assert json.loads((out / name).read_text()) == json.loads((src / name).read_text()), name
    assert (out / "2_Normalize").is_dir()
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 3
    # a narrower model's pooling follows its hidden size; module paths outside the folder are never copied
    from slimgui_families.llm.blocks import copy_sentence_transformers

    (tmp_path / "outside").mkdir()
    odd = modules + [{"idx": 3, "name": "3", "path": "../outside", "type": "x"}]
    (src / "modules.json").write_text(json.dumps(odd))
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    assert copy_sentence_transformers(src, narrow, 16) == ["modules.json", "sentence_bert_config.json",
                                                           "config_sentence_transformers.json", "1_Pooling",
                                                           "2_Normalize"]
    assert json.loads((narrow / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"] == 16
    (src / "modules.json").write_text(json.dumps(modules))
    # healing keeps them too (an encoder with its masked-LM head; one without is refused, item 3)
    mlm = tmp_path / "mlm"
    shutil.copytree(tiny_models["bert"], mlm)
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        shutil.copy(src / name, mlm / name)
    shutil.copytree(src / "1_Pooling", mlm / "1_Pooling")
    shutil.copytree(src / "2_Normalize", mlm / "2_Normalize")
    healed = tmp_path / "healed"
    assert main(["retrain", str(mlm), "--method", "cpt", "--data", str(text_file), "--steps", "1", "--seq-len", "16",
                 "--batch-size", "2", "--out", str(healed), "-q"]) == 0
    capsys.readouterr()
    assert json.loads((healed / "model" / "modules.json").read_text()) == modules
    assert (healed / "model" / "1_Pooling" / "config.json").is_file() and (healed / "model" / "2_Normalize").is_dir()


# -- 4. bench: each model's own peak memory ------------------------------------------------------------------
def test_bench_peak_memory_is_each_models_own(tmp_path, registry, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    from slimgui.core.bench import benchmark

    folders = {}
    for name, hidden in (("small", 32), ("big", 256)):
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=300, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
        LlamaForCausalLM(cfg).eval().save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        folders[name] = tmp_path / name
    small = open_model(str(folders["small"]), registry=registry)
    big = open_model(str(folders["big"]), registry=registry)
    big_bytes = sum(p.numel() * 4 for p in big.module.parameters())
    # the big model first: the small one must not inherit its allocations, nor the big one read 0 after warm-up
    res = benchmark([("big", big), ("small", small)], batches=[2], registry=registry, repeats=2,
                    options={"seq": [64], "decode": False})
    rows = {r["model"]: r for r in res["rows"]}
    for r in rows.values():
        assert r["peak_mem_mib"] is not None and r["peak_mem_mib"] > 0
        assert r["peak_mem_mib"] >= r["weights_mib"] and r["prefill_peak_mem_mib"] is not None
    assert rows["big"]["weights_mib"] == pytest.approx(big_bytes / 2**20, rel=1e-3)
    assert rows["big"]["peak_mem_mib"] > rows["small"]["peak_mem_mib"] + big_bytes / 2**20 / 2


# -- 8. progress lines without a terminal; library FutureWarnings hidden ------------------------------------
def test_progress_lines_when_stderr_is_not_a_terminal(monkeypatch):
    import io

    from slimgui.cli.common import ProgressBar

    sink = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", sink)
    monkeypatch.delenv("SLIMGUI_PROGRESS", raising=False)
    now = [100.0]
    bar = ProgressBar(True, line_interval=5.0)
    bar._clock = lambda: now[0]
    bar._start = bar._last_line = now[0]
    assert not bar.enabled and bar.lines
    for i in range(1, 21):
        now[0] += 1.0  # one step a second: a line every 5 seconds
        bar(i, 20, f"block {i} removed")
    lines = sink.getvalue().splitlines()
    assert len(lines) == 4 and all(line.startswith("slimgui: progress: block") for line in lines)
    assert "25% (5/20), 0:05 elapsed, ~0:15 left" in lines[0]
    assert "100% (20/20), 0:20 elapsed" in lines[-1]
    quiet = io.StringIO()
    monkeypatch.setattr("sys.stderr", quiet)
    off = ProgressBar(False, line_interval=0.0)  # -q
    off(1, 2, "x")
    assert quiet.getvalue() == ""


def test_cli_prints_progress_lines_to_a_pipe(tiny_models, text_file, capsys, monkeypatch):
    monkeypatch.setenv("SLIMGUI_PROGRESS_INTERVAL", "0")  # every step (the default: one line every 5 s)
    monkeypatch.delenv("SLIMGUI_PROGRESS", raising=False)
    assert main(["analyze", str(tiny_models["llama"]), "--criterion", "ppl", "--data", str(text_file),
                 "--seq-len", "16", "--samples", "4"]) == 0  # capsys: stderr is not a terminal
    err = capsys.readouterr().err
    progress = [line for line in err.splitlines() if line.startswith("slimgui: progress: ")]
    assert any("block 3 removed 100% (5/5)" in line for line in progress), err


def test_library_future_warnings_are_hidden_from_users(tmp_path):
    import os
    import subprocess
    import sys

    code = ("import warnings, slimgui.cli.common\n"
            "warnings.warn('`foo` is deprecated and will be removed in v6', FutureWarning)\n"
            "warnings.warn('a real problem', UserWarning)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "SLIMGUI_WARNINGS")}
    hidden = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "deprecated" not in hidden.stderr and "a real problem" in hidden.stderr
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env={**env, "SLIMGUI_WARNINGS": "1"})
    assert "deprecated" in shown.stderr


def test_graph_says_what_the_rows_outside_the_blocks_hold(tiny_models, llama_tied, registry):
    from slimgui.core.ops import graph_of

    def units(folder):
        model = open_model(str(folder), registry=registry)
        return {u.id: u for u in graph_of(model, registry).units}

    bert = units(tiny_models["bert-base"])  # a sentence encoder (BertModel): no head, a pooler
    assert bert["norm"].label == "Position embeddings, token-type embeddings, embedding norm & pooler"
    assert bert["norm"].attrs["holds"] == ["position embeddings", "token-type embeddings", "embedding norm",
                                           "pooler"]
    assert "pooler.dense" in bert["norm"].attrs["modules"] and "head" not in bert
    tied = units(llama_tied)
    assert tied["head"].label == "LM head (tied to the embeddings)" and tied["head"].params == 0
    assert tied["head"].attrs["inspect_note"] == "tied to the embeddings"
    assert tied["norm"].label == "Final norm"
    untied = units(tiny_models["llama"])
    assert untied["head"].label == "LM head" and "inspect_note" not in untied["head"].attrs
    assert units(tiny_models["gpt2"])["norm"].label == "Position embeddings & final norm"


def test_onnx_with_past_on_sliding_window_layers_fails_in_one_line(per_layer_models, capsys, tmp_path):
    """Gemma-3's sliding-window layers do not run with past key/values in onnxruntime: refused in one line, nothing
    written (it was a traceback)."""
    out = tmp_path / "g.onnx"
    code = main(["export", str(per_layer_models["gemma3"]), "--format", "onnx", "--past", "--out", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    if code == 0:  # a later onnxruntime/transformers that runs it: then it must match torch
        assert out.is_file()
        return
    assert code == 2 and len(err) == 1 and "with past key/values does not run in onnxruntime" in err[0], err
    assert "without --past" in err[0] and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_per_layer_lists_and_layer_index_lists_follow_the_kept_blocks():
    from types import SimpleNamespace

    from slimgui_families.llm.blocks import per_layer_config

    cfg = SimpleNamespace(layer_types=["s", "f", "s", "f"], layer_rope_theta=[1.0, 0, 3.0, 4.0],
                          future_layer_flags=[1, 2, 3, 4],  # an unknown per-layer list: named *layer*, one per block
                          mlp_only_layers=[1, 3], moe_layers=[0, 2], layer_norm_eps=1e-5, eos_token_id=[5, 6, 7, 8])
    out = per_layer_config(cfg, [0, 2, 3], 4)
    assert out == {"layer_types": ["s", "s", "f"], "layer_rope_theta": [1.0, 3.0, 4.0],
                   "future_layer_flags": [1, 3, 4], "mlp_only_layers": [2], "moe_layers": [0, 1]}
# Append to tests/test_real_models.py AFTER applying the "llm" diff of /tmp/team/contract-requests.md
# (slimgui/cli/models.py: effective ratio in prune, inspect notes).  Both fail without that diff.


def test_prune_prints_the_effective_ratio(per_layer_models, capsys, tmp_path):
    doc = run_json(capsys, "prune", str(per_layer_models["gemma3"]), "--criterion", "magnitude", "--ratio", "0.25",
                   "--out", str(tmp_path / "p"))
    assert doc["effective_ratio"] == pytest.approx(1 / 6) and doc["ratio_rule"] == "floor"
    assert main(["prune", str(per_layer_models["gemma3"]), "--criterion", "magnitude", "--ratio", "0.25",
                 "--out", str(tmp_path / "q"), "-q"]) == 0
    assert "(1 of 6: 16.7%, --ratio 0.25 rounded down)" in capsys.readouterr().out


def test_inspect_notes_the_tied_head_and_what_the_other_row_holds(llama_tied, tiny_models, capsys):
    assert main(["inspect", str(llama_tied), "-q"]) == 0
    out = capsys.readouterr().out
    assert "(tied to the embeddings)" in out and "(final norm)" in out
    assert main(["inspect", str(tiny_models["bert-base"]), "-q"]) == 0
    assert "(position embeddings, token-type embeddings, embedding norm, pooler)" in capsys.readouterr().out
