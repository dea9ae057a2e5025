"""The wav2lip family in the desktop app (pytest-qt, offscreen, no sound card): the demo generator opens as a U (face
encoder down, decoder up, a skip per resolution), the ``nota`` preset's plan removes every residual block and 6/8 of
every width, and the Compare panel shows the original's and the slimmed generator's lip-synced videos side by side in
the video viewer, with their sound — with no panel knowing the family.

``SLIMGUI_WAV2LIP_SCREENSHOT=FILE`` also saves the window there (how resources/screenshot-wav2lip.png is made)."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402
from slimgui.gui import media_viewers  # noqa: E402
from slimgui.gui.media_viewers import VideoViewer  # noqa: E402

WAIT_MS = 300_000


def wait(qtbot, job, status=JobStatus.DONE):
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == status, job.error
    QApplication.processEvents()
    return job


@pytest.mark.slow
def test_demo_opens_as_a_u_is_slimmed_by_the_nota_preset_and_both_talk(qtbot, make_window, registry, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setattr(media_viewers, "load_sounddevice", lambda: (None, "no sound device"))
    w = make_window(registry)
    w.open_path("demo:wav2lip")
    qtbot.waitUntil(lambda: w.doc.model is not None or bool(w.notifier.errors()), timeout=WAIT_MS)
    assert not w.notifier.errors() and w.doc.model.family == "wav2lip"
    view = w.model_panel.view
    assert len(view.routes_of("skip")) == 7  # decoder block i meets face-encoder stage 6 - i
    plan = w.doc.model.impl.preset_plan(w.doc.model, "nota")
    w.doc.set_remove(list(plan.remove))
    wait(qtbot, w.plan_panel.apply())
    qtbot.waitUntil(lambda: w.doc.slimmed is not None, timeout=WAIT_MS)
    slim = w.doc.slimmed
    assert slim.config.residual_count() == 0 and slim.config.face[0][0].c == 1
    c = w.compare_panel
    assert c.previewer_spec().name == "lipsync" and c.media_type() == "video"
    c.form.widget("max_seconds").setValue(1.0)
    wait(qtbot, c.generate())
    gen = w.doc.session.results["generation"]
    assert {"original", "slimmed"} <= set(gen)
    shown = {}
    for side in ("original", "slimmed"):
        viewer = c.slots[side].viewer
        assert isinstance(viewer, VideoViewer) and viewer.media.audio is not None
        frames = np.asarray(viewer.media.frames)
        assert frames.shape[0] == 22 and viewer.media.fps == 25  # 1 s of speech: Wav2Lip's 22 mel chunks
        assert "with sound" in viewer.caption.text()
        shown[side] = frames
    assert not np.array_equal(shown["original"], shown["slimmed"])  # two generators, two faces
    shot = os.environ.get("SLIMGUI_WAV2LIP_SCREENSHOT")
    if shot:
        w.resize(1500, 950)
        w.tabs.setCurrentWidget(c)
        for _ in range(5):
            QApplication.processEvents()
            qtbot.wait(100)
        w.grab().save(shot)
    assert not w.notifier.errors()


@pytest.mark.slow
def test_mixed_export_shows_the_layer_table_and_a_flip_is_exported_float(qtbot, make_window, registry, tmp_path):
    import torch

    torch.set_num_threads(1)
    w = make_window(registry)
    w.open_path("demo:wav2lip")
    qtbot.waitUntil(lambda: w.doc.model is not None or bool(w.notifier.errors()), timeout=WAIT_MS)
    p = w.export_panel
    w.show_panel(p)
    p.format.setCurrentIndex(p.format.findData("wav2lip-onnx"))
    assert p.spec().name == "wav2lip-onnx"
    box = p.form.widget("w2l_mode")
    box.setCurrentIndex(box.findData("mixed"))
    p.form.widget("keep_float").setValue(2)
    out = tmp_path / "demo.w2l.onnx"
    p.out.setText(str(out))
    wait(qtbot, p.export())
    res = w.doc.session.results["export"]
    layers = res["layers"]
    assert len(layers) == 45 and p.table.rowCount() == 45 and not p.layers_box.isHidden()  # every conv of the demo
    assert sum(x["precision"] == "fp32" for x in layers) == 2
    assert all(x["view_unit"] for x in layers)  # each conv is a unit of the model view
    pick = min((x for x in layers if x["precision"] == "int8"), key=lambda x: x["sensitivity"])["layer"]
    p.set_layer_kept(pick)
    assert res["flips"] == {pick: "fp32"}
    wait(qtbot, p.export_again())
    again = w.doc.session.results["export"]
    assert next(x for x in again["layers"] if x["layer"] == pick)["precision"] == "fp32"
    assert sum(x["precision"] == "fp32" for x in again["layers"]) == 3
    assert not w.notifier.errors()
