"""GGUF files (issue 17): opened through transformers' GGUF loader (dequantised, with a note of the dtype it became),
analysed, pruned and saved as a transformers folder.  The file is written here from a small LLaMA with the gguf
package's own writer and tensor-name map, as llama.cpp's converter writes it (q/k rows permuted)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_config

from slimgui.core import ops
from slimgui.core.data import CalibrationData
from slimgui.core.errors import SlimError
from slimgui.core.model import open_model
from slimgui.core.plan import PruningPlan
from slimgui.core.plugins import discover

gguf = pytest.importorskip("gguf")
REG = discover()


def _permute(w: np.ndarray, n_head: int, n_kv: int) -> np.ndarray:
    n = n_kv if n_kv != n_head else n_head
    return w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, tok, path, matrices=np.float16) -> None:
    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_vocab_size(cfg.vocab_size)
    doc = json.loads(tok.backend_tokenizer.to_str())
    tokens = [t for t, _ in sorted(doc["model"]["vocab"].items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in ("<eos>", "[MASK]") else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in doc["model"]["merges"]])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, t in model.state_dict().items():
        base, suffix = name.rsplit(".", 1)
        g = names.get_name(base)
        a = t.detach().float().numpy()
        if g.endswith("attn_q"):
            a = _permute(a, cfg.num_attention_heads, cfg.num_attention_heads)
        elif g.endswith("attn_k"):
            a = _permute(a, cfg.num_attention_heads, cfg.num_key_value_heads)
        if a.ndim == 2 and matrices == "q8_0":
            q8 = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(f"{g}.{suffix}", gguf.quants.quantize(np.ascontiguousarray(a, dtype=np.float32), q8),
                         raw_dtype=q8)
        else:
            w.add_tensor(f"{g}.{suffix}", np.ascontiguousarray(a.astype(matrices if a.ndim == 2 else np.float32)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    config, cls = tiny_config("llama", 4)
    model = cls(config).eval()
    path = tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf"
    write_gguf(model, tokenizer, path)
    return path, model


def test_a_gguf_file_opens_dequantised_and_says_what_it_became(tiny_gguf, tokenizer):
    path, original = tiny_gguf
    model = open_model(str(path), registry=REG)
    assert model.family == "llm" and model.has_weights and len(ops.graph_of(model, REG).prunable()) == 4
    note = model.extra["notes"][0]
    assert "F16" in note and "F32" in note and "dequantised to float32" in note
    assert all(p.dtype == torch.float32 for p in model.module.parameters())
    ids = torch.tensor([tokenizer("def main(args):", add_special_tokens=False)["input_ids"]])
    assert model.tokenizer("def main(args):", add_special_tokens=False)["input_ids"] == ids[0].tolist()
    with torch.no_grad():  # the F16 file holds the original's weights rounded to float16, and nothing else
        want = original.half().float()(ids).logits
        got = model.module(ids).logits
    assert torch.allclose(want, got, atol=1e-5)


def test_a_gguf_model_is_analysed_pruned_and_saved_as_a_transformers_folder(tiny_gguf, text_file, tmp_path):
    from transformers import AutoModelForCausalLM

    path, _ = tiny_gguf
    model = open_model(str(path), registry=REG)
    scores = ops.analyze(model, "bi", registry=REG,
                         data=CalibrationData(str(text_file), samples=4, batch_size=4, options={"seq_len": 32}))
    assert len(set(scores.values.values())) == 4
    pruned = ops.prune(model, PruningPlan(remove=["block.2"]), registry=REG, copy=True)
    out = ops.save(pruned, tmp_path / "out", registry=REG)
    back = AutoModelForCausalLM.from_pretrained(out).eval()
    assert back.config.num_hidden_layers == 3 and (out / "tokenizer.json").is_file()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    ids = torch.tensor([[5, 17, 42, 99]])
    with torch.no_grad():
        assert torch.allclose(back(ids).logits, pruned.module(ids).logits, atol=1e-6)


def test_a_damaged_gguf_file_is_one_message(tiny_gguf, tmp_path):
    path, _ = tiny_gguf
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(SlimError, match="cut.gguf"):
        open_model(str(bad), registry=REG)
    other = tmp_path / "not.gguf"
    other.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(SlimError, match="not.gguf"):
        open_model(str(other), registry=REG)


# -- streamed: converted one tensor at a time, then read block by block -------------------------------------------------
@pytest.fixture(scope="module")
def tiny_q8(tmp_path_factory, tokenizer):
    torch.manual_seed(1)
    config, cls = tiny_config("llama", 4)
    model = cls(config).eval()
    path = tmp_path_factory.mktemp("gguf-q8") / "tiny-q8_0.gguf"
    write_gguf(model, tokenizer, path, matrices="q8_0")
    return path


def _cal(text_file):
    return CalibrationData(str(text_file), samples=4, batch_size=4, options={"seq_len": 32})


def test_a_gguf_streamed_gives_the_scores_and_the_prune_of_the_dequantised_model(tiny_q8, text_file, tmp_path,
                                                                                  monkeypatch):
    """A quantised (Q8_0) file converted tensor by tensor equals transformers' own dequantisation: the same
    block scores, and the streamed prune loads and computes as the in-memory prune of the same plan."""
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("SLIMGUI_CACHE_DIR", str(tmp_path / "cache"))
    whole = open_model(str(tiny_q8), registry=REG, stream=False)
    streamed = open_model(str(tiny_q8), registry=REG, stream=True)
    assert streamed.extra["gguf"]["converted"].startswith(str(tmp_path / "cache"))
    note = streamed.extra["notes"][0]
    assert "Q8_0" in note and "one tensor at a time" in note and "as asked" in note
    assert all(p.device.type == "meta" for p in streamed.module.model.layers.parameters())
    for criterion in ("bi", "ppl"):
        a = ops.analyze(whole, criterion, registry=REG, data=_cal(text_file)).values
        b = ops.analyze(streamed, criterion, registry=REG, data=_cal(text_file)).values
        assert a.keys() == b.keys() and all(b[k] == pytest.approx(a[k], rel=1e-5) for k in a), criterion
    plan = PruningPlan(remove=["block.1"])
    out_s = ops.save(ops.prune(streamed, plan, registry=REG, copy=True), tmp_path / "s", registry=REG)
    out_m = ops.save(ops.prune(whole, plan, registry=REG, copy=True), tmp_path / "m", registry=REG)
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(out_s).eval()(ids).logits
        want = AutoModelForCausalLM.from_pretrained(out_m).eval()(ids).logits
    assert got.shape[-1] == want.shape[-1] and torch.allclose(got, want, atol=1e-5)
    again = open_model(str(tiny_q8), registry=REG, stream=True)  # converted once, reused
    assert "converted earlier" in again.extra["notes"][0]


def test_a_gguf_too_big_for_memory_streams_by_itself(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMGUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SLIMGUI_MEMORY_BUDGET", "1M")
    path, _ = tiny_gguf
    model = open_model(str(path), registry=REG)
    assert "do not fit in memory" in model.extra["notes"][0] and ops.graph_of(model, REG).attrs.get("streamed")


def test_a_disk_without_room_for_the_conversion_is_said_before_writing(tiny_gguf, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from slimgui_families.llm import gguf_stream

    monkeypatch.setenv("SLIMGUI_CACHE_DIR", str(tmp_path / "cache"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(gguf_stream.shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 1000, 1000))
    path, _ = tiny_gguf
    with pytest.raises(SlimError, match="needs .* of disk"):
        open_model(str(path), registry=REG, stream=True)
    assert shutil is not None and not any((tmp_path / "cache").rglob("*.safetensors"))
