"""The Export and Benchmark tabs and the session report, driven like a user would (pytest-qt, offscreen),
on real tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402
from slimgui.core.session import aggregate_up, normalized, unit_correspondence  # noqa: E402
from slimgui.gui import colors  # noqa: E402
from slimgui.gui.export_panel import OVERLAY  # noqa: E402
from slimgui.gui.metric_view import format_value  # noqa: E402

WAIT_MS = 120_000










def open_and_wait(qtbot, window, path) -> None:
    window.open_path(str(path))
    qtbot.waitUntil(lambda: window.doc.model is not None and window.doc.model.source == str(path), timeout=WAIT_MS)


def wait_job(qtbot, window, job, status=JobStatus.DONE):
    """Wait until the job is over and the runner has delivered its outcome to the views."""
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == status, job.error
    QApplication.processEvents()


def show_tab(window, panel) -> None:
    window.show_panel(panel)
    assert panel.isVisible()


def choose(panel, name, value) -> None:
    """Pick ``value`` in the export form's chooser of the option ``name`` (what a click does)."""
    box = panel.form.widget(name)
    box.setCurrentIndex(box.findData(value))
    assert box.currentData() == value


def shown(panel, name, value) -> str:
    """How the exporter's declared metric ``name`` writes ``value`` (what its box must show)."""
    metric = next(m for m in panel.spec().metrics if m.name == name)
    return format_value(metric, value)


def test_slimmed_units_map_to_the_original_and_values_aggregate_up(tiny_models, registry):
    """The Qt-free pieces behind the sensitivity heatmap (headless)."""
    from slimgui.core.model import open_model
    from slimgui.core.ops import graph_of, prune
    from slimgui.core.plan import PruningPlan

    model = open_model(str(tiny_models["llama"]), registry=registry)
    g = graph_of(model, registry)
    slim = prune(model, PruningPlan(remove=["block.1"]), registry=registry)
    mapping = unit_correspondence(g, graph_of(slim, registry), ["block.1"])
    assert mapping["block.0"] == "block.0" and mapping["block.1"] == "block.2" and mapping["block.2.mlp"] == "block.3.mlp"
    assert mapping["head"] == "head" and mapping["embed"] == "embed" and "block.3" not in mapping
    assert unit_correspondence(g, graph_of(slim, registry), []) == {u: u for u in ("embed", "norm", "head")}
    values = aggregate_up(g, {"block.0.attn": 1.0, "block.0.mlp": 3.0, "head": 2.0, "elsewhere": 9.0})
    assert values == {"block.0.attn": 1.0, "block.0.mlp": 3.0, "block.0": 3.0, "head": 2.0}
    assert aggregate_up(g, {"block.0.attn": 1.0, "block.0.mlp": 3.0}, "mean")["block.0"] == 2.0


def test_fp32_onnx_export_from_the_tab_matches_torch(qtbot, window, tiny_models, tmp_path):
    import onnxruntime as ort

    open_and_wait(qtbot, window, tiny_models["llama"])
    p = window.export_panel
    show_tab(window, p)
    assert p.target.currentData() == "original" and p.format.currentData() == "onnx"
    assert p.out.text().endswith("-original-fp32.onnx")  # a proposed, free file name
    assert not p.target.model().item(1).isEnabled()  # no slimmed model yet
    out = tmp_path / "out" / "llama.onnx"
    p.out.setText(str(out))
    job = p.export()
    assert job.kind == "export" and not p.export_button.isEnabled() and p.cancel_button.isEnabled()
    wait_job(qtbot, window, job)
    r = p.result
    assert r["format"] == "onnx" and r["mode"] == "fp32" and r["target"] == "original"
    assert r["cosine"] >= 0.999 and r["max_abs_diff"] < 1e-3
    assert p.stats["cosine"].value.text() == shown(p, "cosine", r["cosine"]) and "✔" in p.check_label.text()
    assert p.stats["size"].value.text().endswith("B") and "size_ratio" not in p.stats
    assert p.layers_box.isHidden() and p.export_button.isEnabled()
    # the file runs in onnxruntime at another batch and length than the check
    sess = ort.InferenceSession(str(out))
    ids = np.arange(10, dtype=np.int64).reshape(2, 5)
    assert sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0].shape == (2, 5, 300)
    check = json.loads(Path(f"{out}.check.json").read_text())
    assert check["cosine"] == pytest.approx(r["cosine"])
    assert window.doc.session.results["export"]["runs"][-1]["report"] == f"{out}.check.json"
    # a transformers folder: the precision choices do not apply
    p.format.setCurrentIndex(p.format.findData("hf"))
    assert not p.form.row_visible("mode") and not p.form.row_visible("with_past")
    assert not p.out.text().endswith(".onnx")


def test_mixed_export_colours_the_view_and_a_flipped_layer_is_exported_fp32(qtbot, make_window, tiny_models,
                                                                           tmp_path):
    window = make_window()
    open_and_wait(qtbot, window, tiny_models["llama"])
    p = window.export_panel
    show_tab(window, p)
    choose(p, "mode", "mixed")
    assert p.form.widget("fp32_fraction").isEnabled() and not p.form.widget("with_past").isEnabled()
    out = tmp_path / "mixed.onnx"
    p.out.setText(str(out))
    wait_job(qtbot, window, p.export())
    res = window.doc.session.results["export"]
    layers = res["layers"]
    assert len(layers) == 4 * 7 + 1 and p.table.rowCount() == len(layers) and not p.layers_box.isHidden()
    first_fp32 = set(p.result["fp32_layers"])
    assert first_fp32 and {x["layer"] for x in layers if x["precision"] == "fp32"} == first_fp32
    assert p.stats["size_ratio"].value.text() == shown(p, "size_ratio", p.result["size_ratio"])
    assert "e-" in p.stats["output_rel_error"].value.text()
    # the model view is coloured by the largest sensitivity in each unit
    panel = window.model_panel
    assert window.doc.active_overlay == OVERLAY and panel.colour_by.currentText() == OVERLAY
    assert panel.legend.title.startswith("INT8 sensitivity") and panel.legend.words[1] == "sensitive"
    values = panel.overlay_values
    for b in range(4):
        mine = [x["sensitivity"] for x in layers if x["view_unit"].startswith(f"block.{b}.")]
        assert values[f"block.{b}"] == pytest.approx(max(mine))
        attn = [x["sensitivity"] for x in layers if x["view_unit"] == f"block.{b}.attn"]
        assert values[f"block.{b}.attn"] == pytest.approx(max(attn))
    assert values["head"] == pytest.approx(next(x["sensitivity"] for x in layers if x["unit"] == "head"))
    norm = normalized(values)
    for uid in ("block.0", "block.3", "head"):
        assert panel.items[uid].fill == colors.colour_at(norm[uid])
        assert "INT8 sensitivity" in panel.items[uid].toolTip()
    assert len({panel.items[f"block.{b}"].fill.rgba() for b in range(4)}) > 1
    # the table colours each layer on the view's own scale: a block's most sensitive layer shows the block's colour
    for b in range(4):
        top = max((x for x in layers if x["view_unit"].startswith(f"block.{b}.")), key=lambda x: x["sensitivity"])
        row = next(r for r in range(p.table.rowCount()) if p.table.item(r, 1).text() == top["layer"])
        assert p.table.item(row, 3).background().color() == panel.items[f"block.{b}"].fill
    assert panel.items["embed"].fill == colors.FIXED  # no quantised layer: not coloured
    # flip the least sensitive INT8 layer to FP32
    pick = min((x for x in layers if x["precision"] == "int8"), key=lambda x: x["sensitivity"])["layer"]
    p.set_layer_kept(pick)
    assert res["flips"] == {pick: "fp32"}
    assert p.again_button.text() == f"Export again ({len(first_fp32) + 1} FP32)"
    # the flip and the sensitivity survive saving and reopening the session
    saved = window.save_session(tmp_path / "mixed.slim")
    w2 = make_window()
    w2.open_path(str(saved))
    qtbot.waitUntil(lambda: w2.doc.model is not None and OVERLAY in w2.doc.overlays, timeout=WAIT_MS)
    p2 = w2.export_panel
    assert w2.doc.session.results["export"]["flips"] == {pick: "fp32"} and p2.table.rowCount() == len(layers)
    assert w2.doc.active_overlay == OVERLAY and w2.model_panel.overlay_values == pytest.approx(values)
    assert p2.result["file"] == str(out) and p2.stats["size_ratio"].value.text() == p.stats["size_ratio"].value.text()
    row = next(r for r in range(p2.table.rowCount()) if p2.table.item(r, 1).text() == pick)
    assert p2.table.item(row, 0).checkState() == Qt.CheckState.Checked and "INT8 → FP32" in p2.table.item(row, 4).text()
    # Export again: exactly the ticked layers stay FP32
    wait_job(qtbot, w2, p2.export_again())
    again = p2.result
    assert again["file"] == str(out) and set(again["fp32_layers"]) == first_fp32 | {pick}
    res2 = w2.doc.session.results["export"]
    assert res2["flips"] == {} and len(res2["runs"]) == 2
    assert next(x for x in res2["layers"] if x["layer"] == pick)["precision"] == "fp32"


def test_failing_export_shows_a_message_and_writes_nothing(qtbot, window, tiny_models, tmp_path):
    open_and_wait(qtbot, window, tiny_models["gpt2"])
    p = window.export_panel
    folder = tmp_path / "out"
    folder.mkdir()
    p.out.setText(str(folder / "gpt2.onnx"))
    # Cancel: stops the job between its steps; nothing is written
    job = p.export()
    p.cancel_button.click()
    wait_job(qtbot, window, job, JobStatus.CANCELLED)
    assert "Cancelled" in p.status.text() and list(folder.iterdir()) == []
    job = p.export()
    wait_job(qtbot, window, job, JobStatus.FAILED)
    assert "does not match torch" in window.notifier.errors()[-1].text
    assert window.message_bar.isVisible() and "does not match torch" in window.message_bar.text
    assert "Failed" in p.status.text() and "nothing was written" in p.status.text()
    assert list(folder.iterdir()) == [] and "export" not in window.doc.session.results
    assert p.result is None and p.export_button.isEnabled() and window.isVisible()
    # still usable: a transformers folder of the same model works
    p.format.setCurrentIndex(p.format.findData("hf"))
    p.out.setText(str(folder / "hf"))
    wait_job(qtbot, window, p.export())
    assert (folder / "hf" / "config.json").is_file() and p.result["format"] == "hf"


def test_benchmark_tab_report_and_session_roundtrip(qtbot, make_window, tiny_models, tmp_path):
    window = make_window()
    open_and_wait(qtbot, window, tiny_models["llama"])
    window.doc.set_remove(["block.1"])
    window.plan_panel.apply()
    qtbot.waitUntil(lambda: window.doc.slimmed is not None, timeout=WAIT_MS)
    # an FP32 ONNX export of the slimmed model, for the report
    e = window.export_panel
    e.target.setCurrentIndex(e.target.findData("slimmed"))
    onnx_file = tmp_path / "slim.onnx"
    e.out.setText(str(onnx_file))
    wait_job(qtbot, window, e.export())
    assert e.result["target"] == "slimmed" and e.result["cosine"] >= 0.999
    b = window.bench_panel
    show_tab(window, b)
    keys = [b.models.item(i).data(Qt.ItemDataRole.UserRole) for i in range(b.models.count())]
    assert keys[:4] == ["original", "slimmed", "healed", "width"] and str(onnx_file) in keys
    assert not b.models.item(2).flags() & Qt.ItemFlag.ItemIsEnabled  # nothing healed yet
    # a retraining run left a healed model (here: the slimmed folder): both tabs offer it, loaded by the job
    window.doc.set_results("retrain", {"healed_path": window.doc.session.slimmed_path})
    assert b.models.item(2).flags() & Qt.ItemFlag.ItemIsEnabled and e.target.model().item(2).isEnabled()
    b.set_checked(["original", "slimmed", "healed", "width"])
    b.batches.setText("1,2")
    b.form.widget("seq").setText("16")
    b.form.widget("new_tokens").setValue(4)
    b.repeats.setValue(2)
    b.threads.setValue(1)
    job = b.run()
    assert job.kind == "bench" and b.cancel_button.isEnabled()
    wait_job(qtbot, window, job)
    res = window.doc.session.results["bench"]
    assert res["threads"] == 1 and res["seq"] == 16 and len(res["rows"]) == 4 * 2
    assert [m["label"] for m in res["models"]] == ["original", "slimmed", "healed", "width-pruned"]
    models = {m["label"]: m for m in res["models"]}
    assert abs(models["width-pruned"]["params"] - models["slimmed"]["params"]) / models["slimmed"]["params"] < 0.02
    # one curve per model, a point per batch size, in both plots
    for curves in (b.curves[0], b.curves[1]):
        assert set(curves) == {"original", "slimmed", "healed", "width-pruned"}
        for curve in curves.values():
            xs, ys = curve.getData()
            assert len(xs) == 2 and np.all(np.asarray(ys) > 0)
    assert b.plots[0].getPlotItem().ctrl.logXCheck.isChecked()  # log batch axis
    assert b.table.rowCount() == 8
    header = [b.table.horizontalHeaderItem(i).text() for i in range(b.table.columnCount())]
    slim_row = next(r for r in range(8) if b.table.item(r, 0).text() == "slimmed" and b.table.item(r, 2).text() == "1")
    ideal = b.table.item(slim_row, header.index("Ideal")).text()
    assert ideal.startswith("×") and float(ideal[1:]) > 1
    assert b.table.item(slim_row, header.index("Decode ms/token")).text() != "—"
    assert "threads <b>1</b>" in b.caption.text()
    # the HTML report of the whole session
    report = window.export_report(tmp_path / "report.html")
    page = report.read_text()
    assert window.notifier.notifications[-1].action[0] == "Open"
    for needle in ("<h2>Benchmark</h2>", "Decode ms / token vs batch size", "width-pruned", "Export: slim.onnx",
                   "onnxruntime vs torch", "threads 1"):
        assert needle in page, needle
    # save, reopen: the benchmark and the export are back on screen
    saved = window.save_session(tmp_path / "bench.slim")
    w2 = make_window()
    w2.open_path(str(saved))
    qtbot.waitUntil(lambda: w2.doc.slimmed is not None and w2.bench_panel.table.rowCount() == 8, timeout=WAIT_MS)
    assert set(w2.bench_panel.curves[0]) == {"original", "slimmed", "healed", "width-pruned"}
    assert w2.bench_panel.checked() == ["original", "slimmed", "healed", "width"]
    assert w2.bench_panel.batches.text() == "1,2" and w2.bench_panel.form.widget("seq").text() == "16"
    assert w2.export_panel.result["file"] == str(onnx_file)
    assert w2.export_panel.stats["cosine"].value.text() == e.stats["cosine"].value.text()


def test_int8_choice_says_what_this_cpu_does_before_exporting(qtbot, window, tiny_models, monkeypatch):
    """Choosing INT8 measures this machine's INT8 kernel in the background and says so; a CPU where INT8
    is slower than FP32 is warned about before anything is exported."""
    from slimgui.core import int8

    open_and_wait(qtbot, window, tiny_models["llama"])
    p = window.export_panel
    show_tab(window, p)
    assert not p.advice.isVisible()
    choose(p, "mode", "int8")
    assert p.advice.isVisible()
    qtbot.waitUntil(lambda: p.advice_text() is not None, timeout=WAIT_MS)
    kernel = int8.kernel()
    text = p.advice.text()
    assert kernel.instruction_set in text and ("faster" in text or "slower" in text), text
    # a CPU where INT8 loses: the warning is there before Export is pressed
    p._advice_cache.clear()
    monkeypatch.setattr(int8, "matmul_speedup", lambda: {"fp32_ms": 1.0, "int8_ms": 2.0, "speedup": 0.5})
    choose(p, "mode", "fp32")
    choose(p, "mode", "mixed")
    qtbot.waitUntil(lambda: p.advice_text() is not None, timeout=WAIT_MS)
    assert "slower than FP32" in p.advice.text() and "0.50" in p.advice.text()
    choose(p, "mode", "fp32")
    assert not p.advice.isVisible()
