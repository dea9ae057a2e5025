"""The voice family in the desktop app (pytest-qt, offscreen, no sound card): the demo converter's blocks scored by
mel-change, two blocks removed, and the original's and the slimmed model's conversions of the same utterance side by
side in the Compare panel as audio (waveform and spectrogram; playback says once that there is no sound device)."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402
from slimgui.gui.viewers import AudioViewer  # noqa: E402

WAIT_MS = 180_000


def wait(qtbot, job, status=JobStatus.DONE):
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == status, job.error
    QApplication.processEvents()
    return job


def test_voice_demo_analyze_prune_and_hear_both(qtbot, make_window, registry, tmp_path):
    import torch

    torch.set_num_threads(1)
    w = make_window(registry)
    w.open_path("demo:voice")
    qtbot.waitUntil(lambda: w.doc.model is not None or bool(w.notifier.errors()), timeout=WAIT_MS)
    assert not w.notifier.errors() and w.doc.model.family == "voice"
    assert "8 prunable blocks" in w.model_panel.title.text()
    a = w.analysis_panel
    assert a.criterion.currentText() == "mel-change"  # the family's default criterion (the demo brings its data)
    a.samples.setValue(4)
    a.batch_size.setValue(4)
    wait(qtbot, a.run("mel-change"))
    scores = w.doc.scores["mel-change"].values
    assert set(scores) == {u.id for u in w.doc.graph.prunable()} and max(scores.values()) > 0
    low = sorted(scores, key=scores.get)
    remove = [u for u in low if u.startswith("encoder")][:1] + [u for u in low if u.startswith("decoder")][:1]
    w.doc.set_remove(remove)
    wait(qtbot, w.plan_panel.apply())
    qtbot.waitUntil(lambda: w.doc.slimmed is not None, timeout=WAIT_MS)
    assert w.doc.slimmed.config.encoder_layers == 3 and w.doc.slimmed.config.decoder_layers == 3
    c = w.compare_panel
    assert c.previewer_spec().name == "convert" and c.media_type() == "audio"
    wait(qtbot, c.generate())
    gen = w.doc.session.results["generation"]
    assert {"original", "slimmed"} <= set(gen)
    for side in ("original", "slimmed"):
        viewer = c.slots[side].viewer
        assert isinstance(viewer, AudioViewer) and viewer.media.sample_rate == 16_000
        assert len(np.asarray(viewer.media.samples)) > 16_000 * 0.5  # at least half a second of converted speech
    shot = os.environ.get("SLIMGUI_VOICE_SCREENSHOT")
    if shot:  # `SLIMGUI_VOICE_SCREENSHOT=resources/screenshot-voice.png pytest tests/gui/test_gui_voice.py`
        w.resize(1500, 950)
        w.tabs.setCurrentWidget(c)
        w.splitter.setSizes([520, 980])
        for _ in range(5):
            QApplication.processEvents()
            qtbot.wait(100)
        w.grab().save(shot)
    assert not w.notifier.errors()
