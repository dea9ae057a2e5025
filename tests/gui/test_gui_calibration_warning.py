"""An analysis that used less calibration data than asked for says so in the notification area."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402

WAIT_MS = 60_000


def test_short_calibration_text_is_a_warning_notification(qtbot, window, tiny_models, tmp_path, tokenizer):
    window.open_path(str(tiny_models["llama"]))
    qtbot.waitUntil(lambda: window.doc.model is not None, timeout=WAIT_MS)
    short = tmp_path / "short.txt"
    short.write_text("def parse(self, value):\n    return int(value) + 1\n" * 10, encoding="utf-8")
    used = len(tokenizer(short.read_text(), add_special_tokens=False)["input_ids"]) // 32
    panel = window.analysis_panel
    panel.data.setText(str(short))
    panel.form.widget("seq_len").setValue(32)
    panel.samples.setValue(32)
    panel.batch_size.setValue(8)
    def warnings():
        return [n for n in window.notifier.notifications if n.level == "warning"]

    before = len(warnings())
    job = panel.run("bi")
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == JobStatus.DONE, job.error
    qtbot.waitUntil(lambda: "bi" in window.doc.scores, timeout=WAIT_MS)
    scores = window.doc.scores["bi"]
    assert scores.meta["data"]["samples"] == used < 32
    warned = warnings()[before:]
    assert len(warned) == 1
    assert warned[0].text.startswith("bi: calibration used") and f"used {used} segments" in warned[0].text
    assert "not the 32 asked for" in warned[0].text
    assert "(1 warning)" in panel.status.text()
    assert window.message_bar.text == warned[0].text  # the bar above the workspace shows it
    # enough text: no warning
    panel.samples.setValue(used)
    job = panel.run("bi")
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == JobStatus.DONE, job.error
    assert len(warnings()) == before + 1
