"""The Roofline view in the desktop app (issue 18; pytest-qt, offscreen): the open model's layers profiled in the
background and drawn under the device's roofline, a point's hover numbers, a click that selects its unit in the
model view, the model view coloured by measured time / intensity / efficiency, the Plan panel's expected latency and
latency budget, ABConv before/after points, and a bad device profile as a notification.

``SLIMGUI_ROOFLINE_SCREENSHOT=FILE`` also saves the window with the Roofline view (how
resources/screenshot-roofline.png is made)."""

from __future__ import annotations

import json
import math
import os

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402
from slimgui.core.selection import latency_table, predicted_latency_ms  # noqa: E402

WAIT_MS = 300_000


def wait(qtbot, job):
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == JobStatus.DONE, job.error
    QApplication.processEvents()


def roofline_of(w):
    """The window's Roofline view (registered by the main window), else one built over the same document."""
    from slimgui.gui.roofline_panel import RooflinePanel

    panel = getattr(w, "roofline_panel", None)
    if panel is None:
        panel = RooflinePanel(w.doc, w.runner, w.notifier, w.model_panel.view)
        w.tabs.addTab(panel, "Roofline")
    w.tabs.setCurrentWidget(panel if w.tabs.indexOf(panel) >= 0 else panel.parentWidget())
    return panel


def test_roofline_view_profiles_draws_selects_and_budgets(qtbot, make_window, registry, tmp_path):
    from slimgui_families.cnn.demo import ensure_resnet

    w = make_window(registry)
    w.open_path(str(ensure_resnet()["model"]))
    qtbot.waitUntil(lambda: w.doc.model is not None or bool(w.notifier.errors()), timeout=WAIT_MS)
    assert not w.notifier.errors()
    panel = roofline_of(w)
    # a bad device profile is one notification; the choice stays on this machine
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "peak_flops": 0, "bandwidth": 1e9}))
    assert not panel.add_device_file(str(bad))
    assert "'peak_flops' = 0 is not a plausible device figure" in w.notifier.errors()[-1].text
    assert panel.device_file() is None
    npu = tmp_path / "npu.json"
    npu.write_text(json.dumps({"kind": "device-profile", "schema_version": 1, "name": "my NPU", "peak_flops": 5e11,
                               "bandwidth": 3e9, "dtype_bytes": 1}))
    assert panel.add_device_file(str(npu)) and panel.device_file() == str(npu)
    panel.abconv.setChecked(True)
    wait(qtbot, panel.run())
    res = w.doc.session.results["profile"]
    drawn = {s["unit"] for s in panel.spots}
    assert "layer4.1.conv2" in drawn and "layer4.1" not in drawn  # layers, not their blocks twice
    spot = next(s for s in panel.spots if s["unit"] == "layer4.1.conv2")
    row = spot["row"]
    assert spot["x"] == pytest.approx(math.log10(row["intensity"])) and spot["y"] == pytest.approx(
        math.log10(row["attained_flops"]))
    xs, ys = panel.roof.getData()
    assert ys[-1] == pytest.approx(math.log10(5e11)) and xs[1] == pytest.approx(math.log10(5e11 / 3e9))
    tip = panel._tip(spot["x"], spot["y"], row)
    assert "layer4.1.conv2" in tip and "FLOP/byte" in tip and "efficiency" in tip
    # ABConv before/after: hollow diamonds at a higher intensity for the balanced layers
    ab = res["abconv"]
    assert ab["replaced"] and len(panel.after.points()) == len(ab["units"])
    before = {r["unit"]: r for r in res["units"]}
    assert all(r["intensity"] > before[r["unit"]]["intensity"] for r in ab["units"])
    # a click selects the unit in the model view
    chosen = []
    panel.unitChosen.connect(chosen.append)
    panel.click_point("layer3.1.conv1")
    view = w.model_panel.view
    assert chosen == ["layer3.1.conv1"] and view.focused == "layer3.1.conv1"
    assert view.unit_items["layer3.1.conv1"].isVisible() and view._focus_ring.isVisible()
    # the model view is coloured by measured time (and can be by intensity or efficiency)
    assert w.doc.active_overlay == "measured time (ms)"
    assert {"arithmetic intensity (FLOP/byte)", "roofline efficiency"} <= set(w.doc.overlays)
    assert w.model_panel.overlay_values["layer4.1.conv2"] == pytest.approx(row["measured_ms"])
    # the Plan panel: expected latency next to parameters, and a latency budget
    plan = w.plan_panel
    assert plan.est_labels["latency"].isVisibleTo(plan) and "ms →" in plan.est_labels["latency"].text()
    wait(qtbot, w.analysis_panel.run("magnitude"))
    budget = 0.9 * res["total_ms"]
    chosen_units = plan.select_budget(budget, "ms latency", "magnitude")
    assert chosen_units and w.doc.remove == chosen_units
    pred = predicted_latency_ms(w.doc.graph, latency_table(res), res["total_ms"], chosen_units)
    assert pred <= budget and f"{pred:.3g} ms" in plan.est_labels["latency"].text()
    shot = os.environ.get("SLIMGUI_ROOFLINE_SCREENSHOT")
    if shot:  # this machine's roofline, the view coloured by measured time, no selection, no message
        panel.device.setCurrentIndex(0)
        wait(qtbot, panel.run())
        w.doc.set_remove([])
        w.doc.show_overlay("measured time (ms)")
        w.message_bar.hide()
        w.resize(1500, 900)
        QApplication.processEvents()
        w.grab().save(shot)
