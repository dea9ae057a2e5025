"""Export: ONNX (FP32, past key/values, INT8, mixed precision) checked against torch; bench; bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from slimgui.cli import main


def run_json(capsys, *argv):
    code = main([*argv, "--json", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def one_line_error(capsys, *argv) -> str:
    code = main([*argv, "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("slimgui: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def exported(tiny_models, tmp_path_factory):
    """FP32, INT8 and mixed exports of the tiny LLaMA, made once through the CLI."""
    out = tmp_path_factory.mktemp("onnx")
    m = str(tiny_models["llama"])
    docs = {}
    for mode, flags in (("fp32", []), ("int8", ["--int8"]), ("mixed", ["--mixed", "--fp32-fraction", "0.2"])):
        assert main(["export", m, "--format", "onnx", *flags, "--out", str(out / f"{mode}.onnx"), "--json", "-q"]) == 0
        docs[mode] = json.loads((out / f"{mode}.onnx.check.json").read_text())
    return out, docs


def test_fp32_onnx_matches_torch_and_runs(exported, tiny_models, registry):
    out, docs = exported
    doc = docs["fp32"]
    assert doc["cosine"] >= 0.9999 and doc["max_abs_diff"] < 1e-3
    sess = ort.InferenceSession(str(out / "fp32.onnx"))
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    ids = np.arange(30, dtype=np.int64).reshape(3, 10)  # another batch and length than the trace
    logits = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    assert logits.shape == (3, 10, 300)
    assert doc["padded_positions"] > 0  # the parity inputs exercise the attention mask


def test_parity_catches_an_export_that_ignores_the_mask(tiny_models, registry, tmp_path):
    """The parity inputs carry a left-padded row, so a graph that drops attention_mask is refused."""
    import torch
    from slimgui_families.llm import export

    from slimgui.core.model import open_model

    model = open_model(str(tiny_models["llama"]), registry=registry)

    class NoMask(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            logits = self.m(input_ids=input_ids, attention_mask=torch.ones_like(attention_mask), use_cache=False).logits
            return logits + 0 * attention_mask[..., None]  # the input stays in the graph, unused by attention

    inputs = export.sample_inputs(model)
    assert not inputs["attention_mask"][-1, 0] and inputs["attention_mask"][-1, -1]  # left padding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's advice on data-dependent branches
        torch.onnx.export(NoMask(model.module), (inputs["input_ids"], inputs["attention_mask"]),
                          str(tmp_path / "x.onnx"), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], dynamo=False)
    assert export.parity(tmp_path / "x.onnx", model, inputs)["cosine"] < export.PARITY_MIN_COSINE


def test_export_traces_eager_attention_and_puts_the_model_back(tiny_models, registry, tmp_path):
    import onnx
    from slimgui_families.llm import export

    from slimgui.core.model import open_model

    model = open_model(str(tiny_models["llama"]), registry=registry)
    before = model.module.config._attn_implementation
    doc = export.export_onnx(model, str(tmp_path / "m.onnx"))
    assert model.module.config._attn_implementation == before
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "Softmax" in ops and "IsNaN" not in ops  # SDPA's export adds IsNaN/Where in every layer
    assert doc["cosine"] >= 0.9999


def test_past_key_values_variant_decodes_incrementally(tiny_models, tmp_path, capsys):
    doc = run_json(capsys, "export", str(tiny_models["qwen2"]), "--format", "onnx", "--past",
                   "--out", str(tmp_path / "past.onnx"))
    assert doc["with_past"] and doc["incremental"]["cosine"] > 0.9999 and doc["incremental"]["tokens"] >= 9
    names = [i.name for i in ort.InferenceSession(str(tmp_path / "past.onnx")).get_inputs()]
    assert names[:4] == ["input_ids", "attention_mask", "past_key_0", "past_value_0"]


def test_int8_and_mixed_precision(exported):
    _, docs = exported
    int8, mixed = docs["int8"], docs["mixed"]
    assert int8["size_ratio"] < 1 and int8["output_rel_error"] < 0.05 and int8["cosine"] > 0.99
    layers = mixed["layers"]
    assert len(layers) == 4 * 7 + 1  # q,k,v,o,gate,up,down per block + lm_head
    assert all(x["sensitivity"] >= 0 and x["precision"] in ("int8", "fp32") for x in layers)
    kept = [x for x in layers if x["precision"] == "fp32"]
    assert len(kept) == round(0.2 * len(layers))
    # the layers kept in FP32 are the most sensitive ones
    assert min(x["sensitivity"] for x in kept) >= max(x["sensitivity"] for x in layers if x["precision"] == "int8")
    assert {x["unit"] for x in layers} >= {"block.0.attn", "block.3.mlp", "head"}
    assert mixed["output_rel_error"] < int8["output_rel_error"]
    assert int8["size_ratio"] < mixed["size_ratio"]  # FP32 layers weigh more (tiny models: even above 1)


def test_emulated_sensitivity_matches_onnxruntime(tiny_models, registry, tmp_path, exported):
    """The fast scan (one torch forward per layer) measures what quantising the ONNX file measures."""
    from slimgui_families.llm import export

    from slimgui.core.model import open_model

    out, docs = exported
    assert {x["scan"] for x in docs["mixed"]["layers"]} == {"torch-emulated"}
    model = open_model(str(tiny_models["llama"]), registry=registry)
    feed = export.calibration_feed(model)
    fast = export.sensitivity_scan(out / "fp32.onnx", tmp_path, feed, model=model)
    slow = export.sensitivity_scan(out / "fp32.onnx", tmp_path, feed)
    assert {x["scan"] for x in slow} == {"onnxruntime"} and [x["node"] for x in fast] == [x["node"] for x in slow]
    a = np.array([x["sensitivity"] for x in fast])
    b = np.array([x["sensitivity"] for x in slow])
    assert np.all(np.abs(a - b) <= 0.05 * b + 1e-9), np.abs(a - b) / b
    assert list(tmp_path.iterdir()) == []  # the probes are gone


def test_flipping_a_layer_to_fp32(tiny_models, tmp_path, capsys, monkeypatch):
    doc = run_json(capsys, "export", str(tiny_models["llama"]), "--format", "onnx", "--mixed",
                   "--keep-fp32", "model.layers.2.mlp.down_proj", "--out", str(tmp_path / "m.onnx"))
    assert doc["fp32_layers"] == ["model.layers.2.mlp.down_proj"]
    # re-exporting with an earlier scan reuses it (no new scan) and keeps the user's choice
    from slimgui_families.llm import export

    from slimgui.core.model import open_model
    from slimgui.core.plugins import discover

    model = open_model(str(tiny_models["llama"]), registry=discover())
    scanned = {x: v for x, v in doc["sensitivity"].items()}
    calls = []
    original_scan = export.sensitivity_scan
    monkeypatch.setattr(export, "sensitivity_scan", lambda *a, **k: calls.append(1) or original_scan(*a, **k))
    again = export.export_quantized(model, tmp_path / "again.onnx", mode="mixed", sensitivity=scanned,
                                    keep_fp32=["model.layers.1.self_attn.q_proj"])
    assert not calls and again["fp32_layers"] == ["model.layers.1.self_attn.q_proj"]
    assert {x["layer"]: x["sensitivity"] for x in again["layers"]} == scanned
    err = one_line_error(capsys, "export", str(tiny_models["llama"]), "--format", "onnx", "--mixed",
                         "--keep-fp32", "nope", "--out", str(tmp_path / "n.onnx"))
    assert "no linear layer named nope" in err  # refused before the export and its scan run
    assert not (tmp_path / "n.onnx").exists()


def test_hf_export_roundtrip(tiny_models, tmp_path, capsys):
    doc = run_json(capsys, "export", str(tiny_models["opt"]), "--format", "hf", "--out", str(tmp_path / "hf"))
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(doc["out"]).config.num_hidden_layers == 4


def test_bad_exports_leave_nothing_behind(tiny_models, tmp_path, capsys):
    # GPT-2's ONNX graph does not reproduce torch's outputs here: refused, not shipped
    err = one_line_error(capsys, "export", str(tiny_models["gpt2"]), "--format", "onnx", "--out", str(tmp_path / "g.onnx"))
    assert "does not match torch" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = one_line_error(capsys, "export", str(tiny_models["llama"]), "--format", "onnx",
                         "--out", str(blocker / "sub" / "m.onnx"))
    assert "is a file, not a folder" in err
    err = one_line_error(capsys, "export", str(tiny_models["bert"]), "--format", "onnx", "--out", str(tmp_path / "b.onnx"))
    assert "decoder language models" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_large_weights_go_to_one_sidecar_file(tiny_models, tmp_path, capsys, monkeypatch):
    """Models past 2 GiB cannot be one protobuf; their weights go to NAME.onnx.data (forced here by a low limit)."""
    from slimgui_families.llm import export

    monkeypatch.setattr(export, "EXTERNAL_DATA_BYTES", 0)
    m = str(tiny_models["llama"])
    fp32 = run_json(capsys, "export", m, "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    int8 = run_json(capsys, "export", m, "--format", "onnx", "--int8", "--out", str(tmp_path / "q.onnx"))
    assert fp32["external_data"] and fp32["cosine"] > 0.9999
    assert int8["external_data"] and int8["cosine"] > 0.99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.check.json", "m.onnx.data",
                                                          "q.onnx", "q.onnx.check.json", "q.onnx.data"]
    assert (tmp_path / "m.onnx").stat().st_size < 200_000 < (tmp_path / "m.onnx.data").stat().st_size
    assert fp32["bytes"] == sum((tmp_path / n).stat().st_size for n in ("m.onnx", "m.onnx.data"))
    ids = np.arange(12, dtype=np.int64).reshape(2, 6)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    a = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, feed)[0]
    b = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, feed)[0]
    assert a.shape == b.shape == (2, 6, 300)
    (tmp_path / "n.onnx.data").write_bytes(b"someone's weights")  # a sidecar is never overwritten unasked
    assert "n.onnx.data already exists" in one_line_error(capsys, "export", m, "--format", "onnx",
                                                          "--out", str(tmp_path / "n.onnx"))
    (tmp_path / "n.onnx.data").unlink()
    # a later small export under the same name drops the stale sidecar
    monkeypatch.setattr(export, "EXTERNAL_DATA_BYTES", 1 << 30)
    run_json(capsys, "export", m, "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--force")
    assert not (tmp_path / "m.onnx.data").exists()
    ort.InferenceSession(str(tmp_path / "m.onnx"))


def test_onnx_file_failing_the_checker(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx file" * 10)
    assert "fails the ONNX checker" in one_line_error(capsys, "bench", str(garbage), "--batch", "1")
    # well-formed protobuf, invalid graph: a node reads an input nobody defines
    node = helper.make_node("Relu", ["nobody"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    bad = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph), str(bad))
    assert "fails the ONNX checker" in one_line_error(capsys, "bench", str(bad), "--batch", "1")


def test_bench_side_by_side_with_width_variant(tiny_models, registry, tmp_path, capsys, exported):
    out, _ = exported
    pruned = tmp_path / "depth"
    assert main(["prune", str(tiny_models["llama"]), "--remove", "1", "--out", str(pruned), "-q"]) == 0
    capsys.readouterr()
    doc = run_json(capsys, "bench", str(tiny_models["llama"]), "--vs", str(pruned), str(out / "int8.onnx"),
                   "--batch", "1,2", "--seq", "16", "--new-tokens", "4", "--repeats", "2", "--width-variant")
    assert doc["threads"] == 2 and doc["seq"] == 16
    rows = doc["rows"]
    assert len(rows) == 4 * 2
    by = {(Path(r["model"]).name, r["batch"]): r for r in rows}
    depth = by[("depth", 1)]
    width = next(r for r in rows if r["model"].startswith("width-pruned") and r["batch"] == 1)
    assert abs(width["params"] - depth["params"]) / depth["params"] < 0.02  # equal size, other shape
    assert depth["ideal_speedup"] > 1 and depth["decode_ms_per_token"] > 0 and depth["prefill_p90_ms"] >= 0
    onnx_row = by[("int8.onnx", 2)]
    assert onnx_row["runtime"] == "onnxruntime" and onnx_row["prefill_tokens_per_s"] > 0


def test_bench_across_lengths(exported, capsys):
    out, _ = exported
    doc = run_json(capsys, "bench", str(out / "fp32.onnx"), "--vs", str(out / "int8.onnx"),
                   "--batch", "1,2", "--seq", "8,24", "--repeats", "2", "--threads", "1")
    assert doc["seqs"] == [8, 24] and doc["seq"] == 8 and doc["threads"] == 1
    rows = {(Path(r["model"]).name, r["batch"], r["seq"]): r for r in doc["rows"]}
    assert len(rows) == 2 * 2 * 2
    for b in (1, 2):
        for n in (8, 24):  # each length compared with the same length of the first model
            r = rows[("int8.onnx", b, n)]
            assert r["prefill_speedup"] == rows[("fp32.onnx", b, n)]["prefill_median_ms"] / r["prefill_median_ms"]
            assert r["prefill_tokens_per_s"] == pytest.approx(b * n / (r["prefill_median_ms"] / 1e3))
    assert "--seq must be comma-separated whole numbers" in one_line_error(capsys, "bench", str(out / "fp32.onnx"),
                                                                      "--seq", "8,x")
