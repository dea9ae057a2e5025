"""The app as a daily tool (issue 20): what a new user hit in a walk-through, each with the test that would have
caught it."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402

WAIT_MS = 60_000


def _open(qtbot, window, path) -> None:
    window.open_path(str(path))
    qtbot.waitUntil(lambda: window.doc.model is not None and window.doc.model.source == str(path), timeout=WAIT_MS)


def test_analyse_is_disabled_while_it_runs_and_a_second_press_queues_nothing(qtbot, window, tiny_models, text_file):
    _open(qtbot, window, tiny_models["llama"])
    panel = window.analysis_panel
    panel.data.setText(str(text_file))
    panel.form.widget("seq_len").setValue(32)
    panel.samples.setValue(8)
    panel.batch_size.setValue(4)
    assert panel.run_button.isEnabled()
    job = panel.run("ppl")
    assert not panel.run_button.isEnabled() and panel.busy
    again = panel.run("ppl")  # a second press (or a call) while it runs: the same job, nothing queued
    assert again is job
    assert sum(1 for j in window.runner.jobs if j.kind == "analysis") == 1
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    QApplication.processEvents()
    assert job.status == JobStatus.DONE and not panel.busy and panel.run_button.isEnabled()
    assert panel.run_button.text() == "Analyse"
    # cancelled: the button comes back too, and the scores computed before are kept
    job = panel.run("magnitude")
    window.runner.cancel(job)
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    QApplication.processEvents()
    assert panel.run_button.isEnabled() and not panel.busy and "ppl" in window.doc.scores
