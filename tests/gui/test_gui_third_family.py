"""Proof of the family contract in the desktop app (pytest-qt, offscreen): the third family of
tests/slimgui_digitconv.py, installed through its entry point like a third party's plugin, gets the model view,
analysis with a core criterion, plan and apply, retraining with its own option in a generated form, the
compare tab with its audio previewer and its evaluator's metrics, its exporter and the benchmark — with no
panel knowing it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402
from slimgui.gui.viewers import AudioViewer  # noqa: E402

WAIT_MS = 120_000


@pytest.fixture(scope="module")
def third(tmp_path_factory):
    """A trained model of the third family and a registry that found its plugin through the entry point."""
    import sys

    from test_third_family import install_entry_point

    root = tmp_path_factory.mktemp("third-gui")
    site = str(install_entry_point(root / "site"))
    sys.path.insert(0, site)
    try:
        import slimgui_digitconv

        from slimgui.core.plugins import discover

        registry = discover()
        model = slimgui_digitconv.train_demo(root / "digitconv")
        yield registry, model, root
    finally:
        sys.path.remove(site)


def wait(qtbot, job, status=JobStatus.DONE):
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == status, job.error
    QApplication.processEvents()
    return job


def test_a_third_family_gets_every_panel_from_its_declarations(qtbot, make_window, third, tmp_path):
    registry, model, root = third
    assert any(r.name == "digitconv" and r.source.startswith("slimgui-digitconv") for r in registry.records)
    w = make_window(registry)
    w.open_path(str(model))
    qtbot.waitUntil(lambda: w.doc.model is not None or bool(w.notifier.errors()), timeout=WAIT_MS)
    assert not w.notifier.errors() and w.doc.model.family == "digitconv"
    # the model view, in the family's words
    assert "9 prunable filter groups" in w.model_panel.title.text()
    # analysis with a core criterion; the family declares no calibration options: no form
    a = w.analysis_panel
    assert a.criterion.currentText() == "magnitude" and a.form.isHidden()
    wait(qtbot, a.run("magnitude"))
    assert set(w.doc.scores["magnitude"].values) == {u.id for u in w.doc.graph.prunable()}
    assert "filter groups scored" in a.status.text()
    # plan and apply
    w.doc.set_remove(["conv0.g1"])
    wait(qtbot, w.plan_panel.apply())
    qtbot.waitUntil(lambda: w.doc.slimmed is not None, timeout=WAIT_MS)
    # retraining: its one method, its own option in the generated form, its default learning rate
    p = w.retrain_panel
    assert [p.method.itemData(i) for i in range(p.method.count())] == ["finetune"]
    assert p.method.currentText() == "Fine-tune" and p.lr.value() == pytest.approx(3e-3)
    assert p.form.row_visible("label_smoothing") and p.form.label("label_smoothing").text() == "label smoothing"
    assert p.teacher_label.isHidden()  # the method learns from no teacher
    p.form.widget("label_smoothing").setValue(0.05)
    p.data.setText(str(root))  # the family trains on the digits it brings; the data field is passed along
    p.steps.setValue(10)
    p.batch_size.setValue(32)
    p.save_every.setValue(5)
    p.eval_every.setValue(5)
    p.warmup.setValue(1)
    wait(qtbot, p.start())
    wait(qtbot, p.train_job)
    out = Path(p.out.text())
    import json

    assert json.loads((out / "job.json").read_text())["config"]["options"] == {"label_smoothing": 0.05}
    assert list(p.curves.val.view()[0]) == [5.0, 10.0]
    assert list(p.curves.metrics) == ["val_error_bound"]  # the family's own validation metric, drawn too
    assert "images/s" in p.status.text() or "Done" in p.status.text()
    # the three models measured with its evaluator, shown with its declared format
    wait(qtbot, p.eval_job)
    r = w.doc.session.results["retrain"]
    for side in ("original", "slimmed", "healed"):
        assert p.metric_values[side].text() == f"{r[side]['accuracy']:.1%}"
    assert "vs original" in p.metric_notes["healed"].text()
    # compare: its audio previewer, its own options, one audio viewer per model
    c = w.compare_panel
    assert c.previewer.currentText() == "Predictions as sound" and c.media_type() == "audio" and not c.grid_mode
    assert c.form.row_visible("images") and c.form.row_visible("tone_seconds")
    c.form.widget("images").setValue(3)
    wait(qtbot, c.generate())
    gen = w.doc.session.results["generation"]
    assert set(gen) == {"original", "slimmed", "healed"}
    for side in ("original", "slimmed", "healed"):
        viewer = c.slots[side].viewer
        assert isinstance(viewer, AudioViewer) and viewer.isVisibleTo(c) and viewer.media.sample_rate == 16_000
    # its evaluator needs no data: no data row; its metrics in the table with their direction
    assert c.evaluator.currentData() == "digit-accuracy" and not c.data_row.isVisibleTo(c)
    wait(qtbot, c.evaluate())
    ev = w.doc.session.results["evaluation"]
    assert set(ev) == {"original", "slimmed", "healed"} and ev["original"]["accuracy"] > 0.8
    header = [c.eval_table.horizontalHeaderItem(i).text() for i in range(c.eval_table.columnCount())]
    assert header == ["metric", "original", "slimmed", "healed"]
    assert c.eval_table.item(0, 0).text().startswith("Accuracy (higher is better)")
    assert c.eval_table.item(0, 1).text() == f"{ev['original']['accuracy']:.1%}"
    assert "Accuracy — " in c.eval_summary.text()
    # its exporter with its own option, the file suffix it declares, its declared metric
    e = w.export_panel
    assert [e.format.itemData(i) for i in range(e.format.count())] == ["cnn-onnx", "hf"]
    assert e.out.text().endswith(".cnn.onnx") and e.form.row_visible("check_images")
    e.target.setCurrentIndex(e.target.findData("slimmed"))
    e.form.widget("check_images").setValue(8)
    onnx = tmp_path / "slim.cnn.onnx"
    e.out.setText(str(onnx))
    wait(qtbot, e.export())
    assert onnx.is_file() and e.result["agreement"] == 1.0 and e.stats["agreement"].value.text() == "100.0%"
    # the benchmark: torch models and the exported file, columns from the rows' runs and the family's items
    b = w.bench_panel
    keys = [b.models.item(i).data(Qt.ItemDataRole.UserRole) for i in range(b.models.count())]
    assert str(onnx) in keys and not b.models.item(keys.index("width")).flags() & Qt.ItemFlag.ItemIsEnabled
    assert b.form.isHidden()  # no benchmark options declared
    b.set_checked(["original", str(onnx)])
    b.batches.setText("1,4")
    b.repeats.setValue(2)
    b.threads.setValue(1)
    res = wait(qtbot, b.run()).result
    assert {r["runtime"] for r in res["rows"]} == {"torch", "onnxruntime"}
    header = [b.table.horizontalHeaderItem(i).text() for i in range(b.table.columnCount())]
    assert "images/s" in header and "Forward pass ms" in header
    assert set(b.curves[0]) == {"original", onnx.name} and b.plots[1].isHidden()
    assert not w.notifier.errors()
