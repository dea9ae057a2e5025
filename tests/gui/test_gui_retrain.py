"""The Retrain tab, driven like a user would (pytest-qt, offscreen), on real tiny models."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402
from slimgui.core.session import Session  # noqa: E402
from slimgui.core.train import checkpoints  # noqa: E402
from slimgui.gui.curves import LossCurves  # noqa: E402

WAIT_MS = 120_000








def applied_window(qtbot, make_window, model_dir, text_file):
    """A window with ``model_dir`` open, block 1 removed (Apply), and the Retrain tab set for a tiny run."""
    w = make_window()
    w.open_path(str(model_dir))
    qtbot.waitUntil(lambda: w.doc.model is not None, timeout=WAIT_MS)
    w.doc.set_remove(["block.1"])
    w.plan_panel.apply()
    qtbot.waitUntil(lambda: w.doc.slimmed is not None, timeout=WAIT_MS)
    w.show_panel(w.retrain_panel)
    p = w.retrain_panel
    p.data.setText(str(text_file))
    p.eval_file.setText(str(text_file))
    p.batch_size.setValue(4)
    p.form.widget("seq_len").setValue(32)
    p.warmup.setValue(1)
    w.compare_panel.eval_form.widget("seq_len").setValue(32)
    w.compare_panel.eval_form.widget("max_tokens").setValue(256)
    w.compare_panel.store_settings()
    return w, p


def wait_job(qtbot, window, job, status=JobStatus.DONE):
    """Wait until the job is over and the runner has delivered its outcome to the views."""
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == status, job.error
    QApplication.processEvents()


def start_and_cancel_at(qtbot, window, panel, step: int) -> None:
    """Start, and press Cancel while the training thread is held right after reporting ``step``."""
    reached, go_on = threading.Event(), threading.Event()

    def hold(_run, ev) -> None:  # on the training thread, as the step is reported
        if ev["event"] == "step" and ev["step"] == step:
            reached.set()
            go_on.wait(60)

    panel.trainEvent.connect(hold, Qt.ConnectionType.DirectConnection)
    try:
        panel.start()
        qtbot.waitUntil(reached.is_set, timeout=WAIT_MS)
        assert panel.cancel_button.isEnabled() and panel.worker_step == step
        panel.cancel_button.click()
    finally:
        go_on.set()
    wait_job(qtbot, window, panel.train_job, JobStatus.CANCELLED)
    panel.trainEvent.disconnect(hold)


def train_xs(panel) -> list[int]:
    return [int(x) for x in panel.curves.train.view()[0]]


def test_lora_run_heals_draws_curves_and_shows_three_perplexities(qtbot, make_window, tiny_models, text_file):
    w, p = applied_window(qtbot, make_window, tiny_models["llama"], text_file)
    assert "slimmed model" in p.student_label.text()
    assert Path(p.out.text()).parent.name == "runs" and not Path(p.out.text()).exists()
    p.steps.setValue(6)
    p.save_every.setValue(3)
    p.eval_every.setValue(3)
    check = p.start()
    assert check.kind == "retrain-check" and not p.start_button.isEnabled()
    wait_job(qtbot, w, check)
    assert "Estimate on this machine" in p.estimate_label.text() and "memory" in p.estimate_label.text()
    wait_job(qtbot, w, p.train_job)
    assert p.train_job.kind == "retrain"
    out = Path(p.out.text())
    assert w.doc.session.retrain.out == str(out)
    # the curves hold every step; validation at the configured steps
    assert train_xs(p) == [1, 2, 3, 4, 5, 6]
    assert np.all(np.isfinite(p.curves.train.view()[1]))
    assert list(p.curves.val.view()[0]) == [3.0, 6.0]
    steps = [e for e in p.events if e["event"] == "step"]
    assert all(e["tokens_per_s"] > 0 and e["eta_s"] >= 0 for e in steps)
    assert "Done" in p.status.text() and p.progress.value() == 1000
    # original, pruned and healed perplexity, measured in the background, side by side
    wait_job(qtbot, w, p.eval_job)
    r = w.doc.session.results["retrain"]
    for side in ("original", "slimmed", "healed"):
        assert r[side]["perplexity"] > 1 and r[side]["tokens"] == r["original"]["tokens"]
        assert float(p.metric_values[side].text()) == pytest.approx(r[side]["perplexity"], abs=1e-3)
    assert "% vs original" in p.metric_notes["healed"].text()
    assert r["healed"]["perplexity"] != r["slimmed"]["perplexity"]  # retraining changed the model
    healed = out / "model"
    assert r["healed_path"] == str(healed)
    assert json.loads((healed / "config.json").read_text())["num_hidden_layers"] == 3
    # Export job: the job's JSON config, an accelerate config and a README with the exact command
    job_dir, cmd = p.export(out.parent / "exported-job")
    assert {f.name for f in job_dir.iterdir()} >= {"job.json", "accelerate_config.yaml", "README.md"}
    assert json.loads((job_dir / "job.json").read_text())["config"]["options"]["lora_targets"] is None
    assert cmd in (job_dir / "README.md").read_text() and cmd in w.notifier.notifications[-1].text
    # the healed model goes to the Compare tab's slimmed side
    assert p.compare_healed_button.isEnabled()
    p.compare_healed()
    assert w.doc.slimmed.source == str(healed) and w.tabs.currentWidget() is w.compare_panel
    assert not w.notifier.errors()


def test_cancel_mid_run_then_resume_finishes_with_a_continuous_curve(qtbot, make_window, tiny_models, text_file):
    w, p = applied_window(qtbot, make_window, tiny_models["llama"], text_file)
    p.steps.setValue(60)
    p.save_every.setValue(20)
    p.eval_every.setValue(20)
    start_and_cancel_at(qtbot, w, p, 3)
    stopped = next(e["step"] for e in p.events if e["event"] == "cancelled")
    assert stopped == 3  # Cancel stops within one step
    out = p.out.text()
    assert checkpoints(out)[-1].name == f"checkpoint-{stopped}"
    assert "Cancelled" in p.status.text() and p.resume_button.isEnabled() and p.start_button.isEnabled()
    assert train_xs(p) == list(range(1, stopped + 1))
    p.resume_button.click()
    wait_job(qtbot, w, p.check_job)
    wait_job(qtbot, w, p.train_job)
    assert p.result["step"] == 60 and p.result["resumed_from"].endswith(f"checkpoint-{stopped}")
    first = next(e for e in p.events if e["event"] == "step")
    assert first["step"] == stopped + 1
    assert train_xs(p) == list(range(1, 61))  # continuous: no gap, no step twice
    assert list(p.curves.val.view()[0]) == [20.0, 40.0, 60.0]
    assert not p.resume_button.isEnabled()  # finished
    assert not w.notifier.errors()


def test_config_that_cannot_work_is_refused_and_starts_nothing(qtbot, make_window, tiny_models, text_file, tmp_path):
    w, p = applied_window(qtbot, make_window, tiny_models["llama"], text_file)
    p.form.widget("lora_targets").setText("c_attn")
    out = Path(p.out.text())
    wait_job(qtbot, w, p.start(), JobStatus.FAILED)
    error = w.notifier.errors()[-1].text
    assert "unknown LoRA target module(s) c_attn" in error and "q_proj" in error
    assert "Refused" in p.estimate_label.text()
    assert p.train_job is None and not any(j.kind == "retrain" for j in w.runner.jobs)
    assert not out.exists() and len(p.curves.train) == 0
    # empty data: refused with what to do
    p.form.widget("lora_targets").setText("")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    p.data.setText(str(empty))
    wait_job(qtbot, w, p.run_estimate(), JobStatus.FAILED)
    assert "empty.txt is empty" in w.notifier.errors()[-1].text
    # no data at all for a model without a default text
    p.data.setText("")
    assert p.start() is None and "choose the training data" in w.notifier.errors()[-1].text
    assert p.train_job is None and not out.exists()


def test_curves_take_100k_points_in_growing_buffers_and_downsample(qtbot):
    curves = LossCurves()
    qtbot.addWidget(curves)
    curves.resize(700, 300)
    curves.show()
    n = 100_000
    steps = np.arange(1, n + 1, dtype=np.float64)
    losses = 3.0 * np.exp(-steps / 20_000) + 0.05 * np.sin(steps) + 0.5
    for x, y in zip(steps[:1024], losses[:1024]):
        curves.add_train(x, y)  # one step at a time, as a job reports them
    assert curves.train.capacity == 1024 and curves.train.grows == 0
    for x, y in zip(steps[1024:], losses[1024:]):
        curves.add_train(x, y)
    assert len(curves.train) == n and curves.train.capacity == 131_072  # doubled, not grown per point
    assert curves.train.grows == 7
    assert curves.refreshes <= 1  # appends only mark the plot dirty: no redraw per point
    buf = curves.train.x
    curves.add_train(n + 1, 0.5)
    assert curves.train.x is buf  # room left: no reallocation
    curves.add_val(50_000, 1.0)
    curves.refresh()
    curves.plot.grab()
    x, y = curves.train_item.getOriginalDataset()
    assert len(x) == n + 1 and np.shares_memory(x, curves.train.x)  # the plot got a view, not a copy
    drawn = curves.displayed_points()
    assert 0 < drawn < 20_000  # peak downsampling: about two points a pixel column
    assert curves.train_item.opts["clipToView"] and curves.train_item.opts["autoDownsample"]
    curves.plot.getPlotItem().setXRange(10_000, 11_000, padding=0)
    QApplication.processEvents()
    curves.plot.grab()
    assert curves.displayed_points() <= 1_100  # only what is in view is drawn
    curves.set_log_y(True)
    assert curves.plot.getPlotItem().ctrl.logYCheck.isChecked()
    assert "100,001 steps" in curves.caption.text()


def test_session_keeps_the_run_folder_and_a_reopened_window_offers_resume(qtbot, make_window, tiny_models,
                                                                           text_file, tmp_path):
    first, p = applied_window(qtbot, make_window, tiny_models["llama"], text_file)
    p.steps.setValue(60)
    p.save_every.setValue(20)
    p.eval_every.setValue(20)
    p.method.setCurrentIndex(p.method.findData("cpt"))
    assert p.lr.value() == pytest.approx(2e-4)  # the preset's learning rate
    start_and_cancel_at(qtbot, first, p, 2)
    stopped = next(e["step"] for e in p.events if e["event"] == "cancelled")
    assert stopped == 2
    out = p.out.text()
    path = first.save_session(tmp_path / "work")
    doc = json.loads(path.read_text())
    assert doc["retrain"]["out"]["path"] == out and doc["retrain"]["method"] == "cpt"
    assert Session.load(path).retrain.steps == 60
    first.close()

    second = make_window()
    second.open_path(str(path))
    qtbot.waitUntil(lambda: second.doc.slimmed is not None, timeout=WAIT_MS)
    q = second.retrain_panel
    assert q.out.text() == out and q.method.currentData() == "cpt" and q.steps.value() == 60
    assert q.form.widget("seq_len").value() == 32  # the family's data option, kept by its owner
    assert q.resume_button.isEnabled()
    assert f"stopped at step {stopped}" in q.status.text()
    assert train_xs(q) == list(range(1, stopped + 1))  # the curve comes back from the checkpoint
    q.resume()
    wait_job(qtbot, second, q.check_job)
    wait_job(qtbot, second, q.train_job)
    assert q.result["step"] == 60 and math.isfinite(q.result["val_ppl"])
    assert train_xs(q) == list(range(1, 61))
    wait_job(qtbot, second, q.eval_job)
    assert second.doc.session.results["retrain"]["healed"]["perplexity"] > 1
    assert not second.notifier.errors()


def test_after_a_restart_the_models_unfinished_run_is_offered_for_resume(qtbot, make_window, tiny_models, text_file):
    first, p = applied_window(qtbot, make_window, tiny_models["llama"], text_file)
    p.steps.setValue(20)
    p.save_every.setValue(10)
    p.eval_every.setValue(10)
    start_and_cancel_at(qtbot, first, p, 2)
    out = p.out.text()
    first.close()  # no session saved: the app remembers the model's last run

    second = make_window()
    second.open_path(str(tiny_models["llama"]))
    qtbot.waitUntil(lambda: second.doc.model is not None, timeout=WAIT_MS)
    q = second.retrain_panel
    assert q.out.text() == out and q.steps.value() == 20 and q.resume_button.isEnabled()
    assert train_xs(q) == [1, 2]
    q.resume()
    wait_job(qtbot, second, q.check_job)
    wait_job(qtbot, second, q.train_job)
    assert q.result["step"] == 20 and train_xs(q) == list(range(1, 21))
    assert json.loads((Path(out) / "model" / "config.json").read_text())["num_hidden_layers"] == 3  # the slimmed one
