"""The HTML session report: every section drawn from real files, charts as inline SVG."""

from __future__ import annotations

import json
import re

from slimgui.cli import main
from slimgui.core.scores import Scores
from slimgui.core.session import Session


def test_report_of_a_session(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "slimgui_train.json").write_text(json.dumps({
        "method": "lora", "step": 3, "val_ppl": 41.5, "tokens_seen": 3072, "seconds": 2.0,
        "history": [[1, 4.1], [2, 3.9], [3, 3.7]], "val_history": [[3, 3.8]]}))
    sess = Session(model_path=str(tmp_path / "model"), adapter="transformers", keep="first:1",
                   scores={"ppl": Scores("ppl", {"block.0": 90.0, "block.1": 20.5, "block.2": 31.0}, locked=["block.0"])},
                   remove=["block.1"], slimmed_remove=["block.1"])
    sess.retrain.out = str(run)
    sess.save(tmp_path / "s.slim")
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"threads": 2, "seq": 128, "repeats": 3, "rows": [
        {"model": "orig", "runtime": "torch", "batch": 1, "prefill_median_ms": 10.0, "prefill_p90_ms": 11.0,
         "decode_ms_per_token": 5.0},
        {"model": "orig", "runtime": "torch", "batch": 8, "prefill_median_ms": 40.0, "prefill_p90_ms": 44.0,
         "decode_ms_per_token": 7.0},
        {"model": "slim", "runtime": "torch", "batch": 1, "prefill_median_ms": 7.5, "prefill_p90_ms": 8.0,
         "decode_ms_per_token": 3.9, "decode_speedup": 1.28, "ideal_speedup": 1.3}]}))
    onnx_file = tmp_path / "m.onnx"
    (tmp_path / "m.onnx.check.json").write_text(json.dumps({
        "file": str(onnx_file), "mode": "mixed", "cosine": 0.99991, "max_abs_diff": 0.01,
        "layers": [{"layer": "model.layers.0.mlp.up_proj", "sensitivity": 1e-4, "precision": "fp32"},
                   {"layer": "model.layers.0.mlp.down_proj", "sensitivity": 2e-5, "precision": "int8"}]}))
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "s.slim"), "--out", str(out), "--bench", str(bench),
                 "--export", str(onnx_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["out"] == str(out)
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert page.count("<svg") == 1 + 1 + 2 + 1  # scores, healing, two bench plots, sensitivity
    for needle in ("20.5 (removed)", "90 (locked)", "first:1", "lora", "41.5", "Decode ms / token vs batch size",
                   "model.layers.0.mlp.up_proj", "0.9999"):
        assert needle in page, needle
    # the loss curve has a point per step
    healing = page.split("Healing: run")[1]
    assert len(re.findall(r"<circle", healing.split("</svg>")[0])) == 4


def test_report_errors_are_one_line(tmp_path, capsys):
    Session(model_path="m").save(tmp_path / "s.slim")
    assert main(["report", str(tmp_path / "s.slim"), "--out", str(tmp_path / "r.html"),
                 "--export", str(tmp_path / "missing.onnx")]) == 2
    assert "no export check report" in capsys.readouterr().err
    (tmp_path / "x.slim").write_text("{}")
    assert main(["report", str(tmp_path / "x.slim"), "--out", str(tmp_path / "r.html")]) == 2
    assert not (tmp_path / "r.html").exists()


def test_report_includes_the_benchmark_and_exports_stored_in_the_session(tmp_path):
    """What the app keeps in the session (benchmark result, export records) is in the report without --bench/--export."""
    from slimgui.core.report import session_report, write_session_report

    check = tmp_path / "m.onnx.check.json"
    check.write_text(json.dumps({"file": str(tmp_path / "m.onnx"), "mode": "int8", "bytes": 2 ** 20,
                                 "cosine": 0.99975, "max_abs_diff": 0.02, "size_ratio": 0.27,
                                 "output_rel_error": 3.1e-4, "fp32_parity": {"cosine": 1.0, "max_abs_diff": 2e-7}}))
    bench = {"threads": 3, "seq": 16, "new_tokens": 4, "repeats": 2, "rows": [
        {"model": "original", "runtime": "torch", "batch": 1, "params": 1000, "prefill_median_ms": 2.0,
         "prefill_p90_ms": 2.5, "decode_ms_per_token": 1.0},
        {"model": "slimmed", "runtime": "torch", "batch": 1, "params": 750, "prefill_median_ms": 1.5,
         "prefill_p90_ms": 1.6, "decode_ms_per_token": 0.8, "decode_speedup": 1.25, "ideal_speedup": 1.333}]}
    sess = Session(model_path=str(tmp_path / "model"), adapter="transformers")
    sess.results = {
        "bench": bench,
        "export": {"runs": [
            {"format": "onnx", "mode": "int8", "file": str(tmp_path / "m.onnx"), "report": str(check), "cosine": 0.5},
            {"format": "hf", "mode": "fp32", "file": str(tmp_path / "hf"), "bytes": 5 * 2 ** 20, "report": None,
             "source": "the-model"},
            {"format": "onnx", "mode": "fp32", "file": str(tmp_path / "gone.onnx"), "report": str(tmp_path / "no.json"),
             "cosine": 0.9999993, "max_abs_diff": 1e-6}]},
        "retrain": {"original": {"perplexity": 30.0, "tokens": 512}, "healed": {"perplexity": 33.5, "tokens": 512},
                    "file": str(tmp_path / "eval.txt")}}
    sess.save(tmp_path / "s.slim")
    page = session_report(tmp_path / "s.slim", tmp_path / "r.html").read_text()
    assert page.count("<svg") == 2  # the two benchmark plots
    for needle in ("threads 3", "Decode ms/token", "ideal speedup (parameter ratio)", "Export: m.onnx (ONNX INT8)",
                   "fp32 parity: cosine</td><td>1<", "0.99975", "0.27", "Export: hf (HF FP32)",
                   "5.00 MiB", "Export: gone.onnx (ONNX FP32)", "<td>cosine</td><td>0.999999<", "33.5", "eval.txt",
                   "After healing", "new tokens 4"):
        assert needle in page, needle
    # the check report on disk wins over the record kept in the session
    assert "<td>0.5</td>" not in page
    # an explicit benchmark replaces the session's
    other = dict(bench, threads=7)
    page = write_session_report(Session.load(tmp_path / "s.slim"), tmp_path / "r2.html", bench=other).read_text()
    assert "threads 7" in page and "threads 3" not in page


def test_report_of_a_bench_across_lengths(tmp_path, capsys):
    """`slimgui bench --seq 64,256` rows: one chart series per model and length."""
    sess = Session(model_path=str(tmp_path / "model"), adapter="transformers")
    sess.save(tmp_path / "s.slim")
    rows = [{"model": m, "runtime": "onnxruntime", "batch": b, "seq": n, "prefill_median_ms": ms * b * n / 64,
             "prefill_p90_ms": ms * b * n / 60} for m, ms in (("fp32.onnx", 2.0), ("int8.onnx", 1.0))
            for n in (64, 256) for b in (1, 8)]
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"threads": 1, "seq": 64, "seqs": [64, 256], "repeats": 3, "rows": rows}))
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "s.slim"), "--out", str(out), "--bench", str(bench), "-q"]) == 0
    html = out.read_text()
    for series in ("fp32.onnx · seq 64", "fp32.onnx · seq 256", "int8.onnx · seq 256"):
        assert series in html
    assert "seq 64, 256" in html


def test_every_combination_of_session_results_renders(tmp_path):
    """Issue 20, item 1: whatever results a session holds — any subset of a benchmark, exports (plain INT8 without
    sensitivities, mixed with them, a native folder), a healing comparison, an evaluation and a generated
    sample — the report renders each section, without an error."""
    import itertools

    from slimgui.core.report import session_report

    int8 = tmp_path / "i.onnx.check.json"
    int8.write_text(json.dumps({"file": str(tmp_path / "i.onnx"), "mode": "int8", "cosine": 0.9997, "max_abs_diff": 0.02}))
    mixed = tmp_path / "x.onnx.check.json"
    mixed.write_text(json.dumps({"file": str(tmp_path / "x.onnx"), "mode": "mixed", "cosine": 0.9999,
                                 "layers": [{"layer": "l0", "sensitivity": 1e-4, "precision": "fp32"},
                                            {"layer": "l1", "precision": "int8"}]}))
    parts = {
        "bench": {"threads": 1, "seq": 8, "repeats": 2, "rows": [
            {"model": "original", "runtime": "torch", "batch": 1, "prefill_median_ms": 2.0, "prefill_p90_ms": 2.2}]},
        "export": {"runs": [
            {"format": "onnx", "mode": "int8", "file": str(tmp_path / "i.onnx"), "report": str(int8)},
            {"format": "onnx", "mode": "mixed", "file": str(tmp_path / "x.onnx"), "report": str(mixed)},
            {"format": "hf", "mode": "fp32", "file": str(tmp_path / "hf"), "bytes": 1024, "report": None}]},
        "retrain": {"original": {"perplexity": 30.0}, "healed": {"perplexity": 31.0}, "file": "eval.txt"},
        "evaluation": {"original": {"perplexity": 30.0}, "slimmed": {"perplexity": 40.0}},
        "generation": {"original": {"kind": "text", "text": "def f(x):", "title": "original"}},
    }
    needles = {"bench": "Decode", "export": "Export: i.onnx (ONNX INT8)", "retrain": "31", "evaluation": "40",
               "generation": ""}
    scores = {"magnitude": Scores("magnitude", {"block.0": 1.0, "block.1": 2.0})}
    for n in range(len(parts) + 1):
        for combo in itertools.combinations(parts, n):
            sess = Session(model_path=str(tmp_path / "model"), adapter="transformers", scores=scores)
            sess.results = {k: parts[k] for k in combo}
            sess.save(tmp_path / "s.slim")
            page = session_report(tmp_path / "s.slim", tmp_path / "r.html").read_text()
            assert page.rstrip().endswith("</html>"), combo
            for k in combo:
                if k == "bench":
                    assert "<svg" in page, combo
                elif needles[k]:
                    assert needles[k] in page, (combo, k)


def _bars(svg: str) -> dict[str, float]:
    """Bar widths by unit label, read back from the SVG."""
    labels = re.findall(r'text-anchor="end" class="a">([^<]+)</text>\s*<rect x="\d+" y="[\d.]+" width="([\d.]+)"', svg)
    return {k: float(w) for k, w in labels}


def test_score_bars_use_the_apps_scale_so_every_bar_shows():
    from slimgui.core.report import bar_chart

    # ppl-like scores: block 0's removal is catastrophic, the rest differ by a few percent
    scores = {"block.0": 5000.0, "block.1": 60.0, "block.2": 57.0, "block.3": 55.0, "block.4": 54.0}
    svg = bar_chart(scores, title="ppl")
    widths = _bars(svg)
    assert "by rank" in svg  # the scale is named
    assert widths["block.0"] > widths["block.1"] > widths["block.2"] > widths["block.3"] > widths["block.4"] > 0
    assert widths["block.3"] > 0.2 * widths["block.0"]  # linear bars would make it invisible (< 0.1 %)
    spread = {"a": 1.0, "b": 10.0, "c": 100.0, "d": 1000.0}
    svg = bar_chart(spread, title="x")
    assert "log scale" in svg and _bars(svg)["b"] > 0.2 * _bars(svg)["d"]
    assert "scale" not in bar_chart({"a": 1.0, "b": 2.0, "c": 3.0}, title="y")  # linear: nothing to say


def test_report_tags_fp32_kept_layers_as_kept_and_unmeasured_memory_as_not_measured():
    from slimgui.core.report import render

    export = {"file": "/x/model.int8.onnx", "format": "onnx", "mode": "mixed", "bytes": 2 ** 20,
              "layers": [{"layer": "q", "precision": "fp32", "sensitivity": 0.5},
                         {"layer": "k", "precision": "int8", "sensitivity": 0.01}]}
    bench = {"threads": 1, "repeats": 3, "rows": [
        {"model": "/x/a", "runtime": "torch", "batch": 1, "params": 10, "peak_mem_mib": 12.5},
        {"model": "/x/a.onnx", "runtime": "onnxruntime", "batch": 1, "params": 10, "peak_mem_mib": 0}]}
    page = render(title="t", exports=[export], bench=bench)
    assert "q (kept FP32)" not in page and "0.5 (kept FP32)" in page and "(removed)" not in page
    assert "not measured" in page and "12.5" in page
