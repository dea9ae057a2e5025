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


def test_undo_and_redo_walk_through_plan_edits(qtbot, window, tiny_models):
    _open(qtbot, window, tiny_models["llama"])
    doc, view = window.doc, window.model_panel.view
    assert not window.undo_action.isEnabled() and not window.redo_action.isEnabled()
    view.click_unit("block.1")
    view.click_unit("block.2")
    window.plan_panel.set_keep("first:1")
    assert doc.remove == ["block.1", "block.2"] and doc.locked == ["block.0"]
    assert window.undo_action.isEnabled() and window.undo_action.shortcut().toString() == "Ctrl+Z"
    window.undo_action.trigger()  # the keep-set goes
    assert doc.keep is None and doc.locked == [] and doc.remove == ["block.1", "block.2"]
    window.undo_action.trigger()
    assert doc.remove == ["block.1"] and view.unit_items["block.1"].removed and not view.unit_items["block.2"].removed
    assert window.redo_action.isEnabled()
    window.redo_action.trigger()
    assert doc.remove == ["block.1", "block.2"]
    view.click_unit("block.3")  # a new edit forgets what was undone
    assert not window.redo_action.isEnabled()
    est = window.plan_panel.est_labels["blocks"].text()
    assert est.startswith("4 → <b>1</b>")  # the estimate follows undo/redo too
    while doc.undo():
        pass
    assert doc.remove == [] and doc.keep is None and not window.undo_action.isEnabled()


def test_close_model_empties_every_panel(qtbot, window, tiny_models):
    _open(qtbot, window, tiny_models["llama"])
    window.model_panel.view.click_unit("block.1")
    window.close_model()
    QApplication.processEvents()
    assert window.doc.model is None and window.doc.graph is None and window.doc.remove == []
    assert window.windowTitle() == "SlimGUI" and not window.plan_panel.apply_button.isEnabled()
    assert not window.analysis_panel.run_button.isEnabled() and not window.undo_action.isEnabled()
    assert not window.notifier.errors()
    _open(qtbot, window, tiny_models["llama"])  # and a model opens again afterwards
    assert len(window.doc.graph.prunable()) == 4


def test_help_lists_the_shortcuts_and_renders_the_readme(qtbot, window):
    window.show_help()
    text = window.help_dialog.browser.toPlainText()
    assert "Keyboard shortcuts" in text and "Ctrl+Z" in text and "Undo Plan Edit" in text
    assert "The two commands" in text  # the README, rendered
    shortcuts = dict(window.shortcuts())
    assert shortcuts["File → Close Model"] == "Ctrl+W" and shortcuts["Analysis → Analyse"] == "Ctrl+R"
    window.help_dialog.close()


def test_the_fallback_criterion_says_why_and_what_data_would_change_it(qtbot, window, tiny_models):
    """A model without calibration data opens on the family's data-free criterion, and the panel says which
    criterion the family trusts and what data it needs."""
    _open(qtbot, window, tiny_models["llama"])
    panel, spec = window.analysis_panel, window.doc.spec
    assert panel.criterion.currentText() == spec.default_criterion_no_data != spec.default_criterion
    text = panel.status.text()
    assert f"to score by {spec.default_criterion}" in text and "no calibration data" in text


def test_a_nan_score_is_drawn_unscored_not_as_most_important(qtbot, window, tiny_models):
    import math

    from slimgui.core.colors import normalized
    from slimgui.core.scores import Scores
    from slimgui.gui import colors

    assert math.isnan(normalized({"a": 1.0, "b": math.nan, "c": 3.0})["b"])
    assert normalized({"a": 1.0, "b": math.inf})["b"] == 1.0  # infinite: the model cannot do without it
    _open(qtbot, window, tiny_models["llama"])
    window.doc.add_scores(Scores("magnitude", {"block.0": 1.0, "block.1": math.nan, "block.2": 2.0,
                                               "block.3": math.inf}))
    QApplication.processEvents()
    items = window.model_panel.items
    assert items["block.1"].fill == colors.UNSCORED and items["block.1"].score_text == "NaN"
    assert items["block.3"].fill == colors.colour_at(1.0) and items["block.3"].score_text == "∞"


def test_ranks_are_one_based_in_the_cli_as_in_the_app(tiny_models, capsys):
    """The CLI's table numbers ranks as the app's tooltips do (1 = least important); unit indices stay 0-based."""
    from slimgui.cli import main

    assert main(["analyze", str(tiny_models["llama"]), "--criterion", "magnitude", "-q"]) == 0
    out = capsys.readouterr().out
    assert "(rank 1 = least important" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("0 ", "1 ", "2 ", "3 "))]
    assert sorted(int(r[3]) for r in rows) == [1, 2, 3, 4]


def test_evaluation_defaults_to_held_out_data_and_says_which(registry, capsys):
    """Issue 20, item 2: a demo's figures are measured on its held-out text, never its training text, and name it."""
    import json

    from slimgui_families.llm.demo import ensure_demo

    from slimgui.cli import main
    from slimgui.core.model import open_model
    from slimgui.core.session import default_data, default_eval_data

    paths = ensure_demo()
    model = open_model(paths["model"], registry=registry)
    assert default_eval_data(model, registry) == paths["eval"] != default_data(model, registry) == paths["train"]
    assert main(["eval", "demo:llm", "--no-generate", "--max-tokens", "200", "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["data"] == paths["eval"]


def test_the_compare_tab_measures_a_demo_on_its_held_out_text(qtbot, window):
    window.open_path("demo:llm")
    qtbot.waitUntil(lambda: window.doc.model is not None, timeout=WAIT_MS)
    panel = window.compare_panel
    assert panel.eval_file.placeholderText() == "default: eval.txt"


def test_scores_export_as_csv_and_each_heatmap_row_names_its_scale(qtbot, window, tiny_models, tmp_path, monkeypatch):
    import csv
    import math

    from slimgui.core.scores import Scores
    from slimgui.gui import forms

    _open(qtbot, window, tiny_models["llama"])
    window.doc.add_scores(Scores("magnitude", {"block.0": 1.0, "block.1": 2.0, "block.2": 3.0, "block.3": 4.0}))
    window.doc.add_scores(Scores("ppl", {"block.0": 1e4, "block.1": 20.0, "block.2": 21.0, "block.3": math.nan}))
    QApplication.processEvents()
    panel = window.scores_panel
    ticks = [t for _, t in panel.plot.getPlotItem().getAxis("left")._tickLevels[0]]
    assert ticks == ["magnitude (linear)", f"ppl ({panel.row_scales[1]})"] and panel.row_scales[1] in ("log", "rank")
    out = tmp_path / "scores.csv"
    monkeypatch.setattr(forms, "choose_save_path", lambda *a, **k: str(out))
    panel.export_button.click()
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["unit", "magnitude", "ppl", "magnitude rank", "ppl rank"]
    assert rows[1] == ["block.0", "1.0", "10000.0", "1", "3"] and rows[4][2] == "nan"


def test_a_queued_job_says_what_it_waits_for(qtbot, window):
    """Issue 20, item 3: a job queued behind another in the same lane says so in the Jobs dock, and stops saying
    it once it runs."""
    import threading

    gate = threading.Event()

    def slow(progress=None, cancel=None):
        gate.wait(30)
        return 1

    def quick(progress=None, cancel=None):
        return 2

    runner = window.runner
    first = runner.submit("Evaluate the three models", slow, kind="evaluation", lane="model")
    second = runner.submit("Export slim.onnx", quick, kind="export", lane="model")
    assert second.message == "waiting for Evaluate the three models"
    QApplication.processEvents()
    assert "waiting for Evaluate" in window.jobs_panel.item_for(second).text(0)  # beside the title, one line
    gate.set()
    qtbot.waitUntil(lambda: delivered(first) and delivered(second), timeout=WAIT_MS)
    assert second.status == JobStatus.DONE and not second.message.startswith("waiting")


def _slimmed_window(qtbot, window, tiny_models, text_file):
    _open(qtbot, window, tiny_models["llama"])
    window.doc.set_remove(["block.1"])
    window.plan_panel.apply()
    qtbot.waitUntil(lambda: window.doc.slimmed is not None, timeout=WAIT_MS)
    panel = window.retrain_panel
    panel.eval_file.setText(str(text_file))
    window.compare_panel.eval_form.widget("seq_len").setValue(32)
    window.compare_panel.eval_form.widget("max_tokens").setValue(256)
    window.compare_panel.store_settings()
    return panel


def test_the_evaluation_after_retraining_holds_the_model_lane_one_model_at_a_time(qtbot, window, tiny_models,
                                                                                   text_file):
    panel = _slimmed_window(qtbot, window, tiny_models, text_file)
    runner = window.runner
    healed = str(tiny_models["llama"])  # any model folder of the family serves as the healed model here
    job = panel.evaluate(healed)
    assert runner._lane_of[job.id] == "eval"  # the healed model is nobody else's: its own lane
    assert panel.open_healed_button.isEnabled()  # reachable while it is measured
    # an analysis pressed while the original is measured runs before the pruned model's measurement
    other = window.analysis_panel.run("magnitude")
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    QApplication.processEvents()
    assert job.status == JobStatus.DONE, job.error
    titles = [j.title for j in runner.jobs if j.kind in ("evaluate", "analysis")]
    order = [t.split(" (")[0] for t in titles]
    assert order.index("Evaluate original") < titles.index(other.title) < order.index("Evaluate slimmed"), titles
    assert all(runner._lane_of[j.id] == "model" for j in runner.jobs if j.title.startswith(("Evaluate original (",
                                                                                          "Evaluate slimmed (")))
    r = window.doc.session.results["retrain"]
    assert [k for k in r if k in ("original", "slimmed", "healed")] == ["original", "slimmed", "healed"]
    assert r["healed"]["perplexity"] == pytest.approx(r["original"]["perplexity"], rel=1e-5)  # the same weights
    assert r["slimmed"]["perplexity"] != pytest.approx(r["original"]["perplexity"], rel=1e-3)


def test_a_cancelled_evaluation_after_retraining_leaves_the_healed_model_usable(qtbot, window, tiny_models, text_file):
    panel = _slimmed_window(qtbot, window, tiny_models, text_file)
    window.compare_panel.eval_form.widget("seq_len").setValue(16)
    window.compare_panel.eval_form.widget("max_tokens").setValue(0)  # the whole file: thousands of windows
    window.compare_panel.store_settings()
    job = panel.evaluate(str(tiny_models["llama"]))
    parts = [j for j in window.runner.jobs if j.title.startswith("Evaluate original (")]
    qtbot.waitUntil(lambda: parts[0].done > 0 or job.done > 0, timeout=WAIT_MS)
    assert panel.cancel_button.isEnabled()
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: all(j.status.finished for j in window.runner.jobs if j.kind == "evaluate"),
                    timeout=WAIT_MS)
    QApplication.processEvents()
    assert job.status == JobStatus.CANCELLED
    assert not any(j.title.startswith("Evaluate slimmed (") and j.status == JobStatus.DONE for j in window.runner.jobs)
    assert "not measured (cancelled)" in panel.results_box.title()
    assert panel.open_healed_button.isEnabled() and panel.compare_healed_button.isEnabled()
    assert window.doc.session.results["retrain"]["healed_path"] == str(tiny_models["llama"])
    assert not window.notifier.errors()


def test_start_reuses_a_fresh_estimate_which_follows_the_settings_and_is_corrected_by_the_run(qtbot, window,
                                                                                              tiny_models, text_file):
    panel = _slimmed_window(qtbot, window, tiny_models, text_file)
    window.show_panel(panel)
    panel.data.setText(str(text_file))
    panel.batch_size.setValue(4)
    panel.form.widget("seq_len").setValue(32)
    panel.warmup.setValue(1)
    panel.steps.setValue(4)
    panel.eval_every.setValue(2)
    panel.save_every.setValue(4)
    check = panel.run_estimate()
    qtbot.waitUntil(lambda: delivered(check), timeout=WAIT_MS)
    QApplication.processEvents()
    est = dict(panel.estimate)
    assert est["key"] and est["step_seconds"] > 0 and not est.get("reused")
    assert est["validations"] == 3 and est["val_seconds"] > 0  # steps 2 and 4, and the final one
    assert est["seconds"] == pytest.approx(4 * est["step_seconds"] + 3 * est["val_seconds"], abs=0.1)
    # the estimate follows the step count at once, without timing again
    panel.steps.setValue(8)
    assert panel.estimate["steps_left"] == 8 and panel.estimate["validations"] == 5
    assert panel.estimate["seconds"] == pytest.approx(8 * est["step_seconds"] + 5 * est["val_seconds"], abs=0.1)
    assert "for 8 steps" in panel.estimate_label.text()
    # other settings make it out of date; back to them, it is valid again
    panel.batch_size.setValue(2)
    assert "out of date" in panel.estimate_label.text()
    panel.batch_size.setValue(4)
    assert "out of date" not in panel.estimate_label.text()
    # Start straight after: the check does not time a step again
    check = panel.start()
    qtbot.waitUntil(lambda: delivered(check), timeout=WAIT_MS)
    assert check.result.get("reused") and check.result["step_seconds"] == est["step_seconds"]
    qtbot.waitUntil(lambda: panel.train_job is not None and delivered(panel.train_job), timeout=WAIT_MS)
    QApplication.processEvents()
    assert panel.train_job.status == JobStatus.DONE, panel.train_job.error
    # the run's own steps corrected the estimate; a Start of the same job would use the measured time
    assert panel.estimate["calibrated"] and panel.estimate["estimated_step_seconds"] == est["step_seconds"]
    assert "Corrected from the run's own steps" in panel.estimate_label.text()


def _analyse(qtbot, window, text_file, criterion):
    panel = window.analysis_panel
    panel.data.setText(str(text_file))
    panel.form.widget("seq_len").setValue(32)
    panel.samples.setValue(8)
    panel.batch_size.setValue(4)
    job = panel.run(criterion)
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    QApplication.processEvents()
    assert job.status == JobStatus.DONE, job.error


def test_tooltips_give_the_change_against_the_full_model_and_a_heatmap_click_shows_the_unit(qtbot, window,
                                                                                             tiny_models, text_file):
    from PySide6.QtCore import QPointF, Qt

    _open(qtbot, window, tiny_models["llama"])
    _analyse(qtbot, window, text_file, "ppl")
    _analyse(qtbot, window, text_file, "magnitude")
    scores = window.doc.scores["ppl"]
    base = scores.meta["baseline"]
    assert base > 1 and scores.meta["baseline_label"] == "perplexity"
    tip = window.model_panel.view.unit_items["block.2"].toolTip()
    pct = 100 * (scores.values["block.2"] - base) / base
    assert f"{pct:+.1f} % perplexity vs the full model's {base:.4g}" in tip
    assert window.doc.scores["magnitude"].versus_baseline("block.2") is None  # no baseline: no change to show
    # a click on a heatmap cell: its criterion colours the model view, its unit is ringed there
    window.show_panel(window.scores_panel)
    panel = window.scores_panel
    panel.refresh()
    row = panel.criteria.index("ppl")
    col = panel.unit_ids.index("block.2")
    window.doc.set_active("magnitude")
    vb = panel.plot.getPlotItem().vb
    scene = vb.mapViewToScene(QPointF(col + 0.5, row + 0.5))
    view_pos = panel.plot.mapFromScene(scene)
    qtbot.mouseClick(panel.plot.viewport(), Qt.MouseButton.LeftButton, pos=view_pos)
    qtbot.waitUntil(lambda: window.model_panel.view.focused == "block.2", timeout=5_000)
    assert window.doc.active is window.doc.scores["ppl"]


def test_plots_save_as_png_and_csv_from_their_right_click_menu(qtbot, window, tmp_path):
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QMenu

    curves = window.retrain_panel.curves
    curves.set_history([[1, 2.5], [2, 2.0], [3, 1.75]], [[3, 1.9]])
    curves.refresh()
    exp = curves.plot_export
    png, csv_path = exp.save_png(str(tmp_path / "loss.png")), exp.save_csv(str(tmp_path / "loss.csv"))
    image = QImage(str(png))
    assert image.width() > 50 and image.height() > 50
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "series,step,loss"
    assert "train loss,1.0,2.5" in lines and "validation loss,3.0,1.9" in lines
    assert not list(tmp_path.glob(".*"))  # nothing half-written left behind
    # a right-click on the plot opens the menu offering both (the benchmark plots and the heatmap have it too)
    window.show()
    qtbot.mouseClick(curves.plot.viewport(), Qt.MouseButton.RightButton, pos=QPoint(40, 40))
    menus = [m for m in QApplication.topLevelWidgets() if isinstance(m, QMenu) and m.isVisible()]
    assert menus and [a.text() for a in menus[-1].actions()] == ["Save Plot as PNG…", "Save Data as CSV…"]
    menus[-1].close()
    assert all(hasattr(p, "plot_export") for p in (window.bench_panel.findChildren(type(curves.plot))))
    assert window.scores_panel.plot_export.actions == [window.scores_panel.plot_export.png_action]


# -- layout (item 5) ----------------------------------------------------------------------------
def layout_problems(window) -> list[tuple]:
    """Clipped buttons and fields, siblings drawn over each other, scroll areas overflowing sideways with no
    scrollbar: what a person sees as a broken layout, for the tab on screen."""
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractScrollArea,
        QAbstractSpinBox,
        QComboBox,
        QLabel,
        QLineEdit,
        QProgressBar,
        QScrollArea,
        QWidget,
    )

    leaf = (QAbstractButton, QLabel, QLineEdit, QComboBox, QAbstractSpinBox, QProgressBar)

    def scroller(w):
        p = w.parentWidget()
        while p is not None and not isinstance(p, QAbstractScrollArea):
            p = p.parentWidget()
        return p

    out = []
    leaves = [w for w in window.findChildren(QWidget) if isinstance(w, leaf) and w.isVisible() and w.width() > 0
              and not isinstance(w.parentWidget(), QAbstractSpinBox)]  # (a spin box's own line edit)
    for w in leaves:
        sa = scroller(w)
        if sa is not None and not isinstance(sa, QScrollArea):
            continue  # cells of lists, tables, trees
        text = w.text() if hasattr(w, "text") and callable(w.text) else ""
        if isinstance(w, QAbstractButton) and text and w.width() < w.minimumSizeHint().width() - 1:
            out.append(("squeezed", type(w).__name__, text, w.width(), w.minimumSizeHint().width()))
        if sa is None and (text or not isinstance(w, QAbstractButton)) and w.visibleRegion().boundingRect() != w.rect():
            out.append(("clipped", type(w).__name__, text[:30]))
    groups: dict[int, list] = {}
    for w in leaves:
        groups.setdefault(id(w.parentWidget()), []).append(w)
    for group in groups.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if a.geometry().adjusted(1, 1, -1, -1).intersects(b.geometry().adjusted(1, 1, -1, -1)):
                    out.append(("overlap", type(a).__name__, getattr(a, "text", str)()[:20], type(b).__name__))
    for sa in window.findChildren(QScrollArea):
        inner = sa.widget()
        if sa.isVisible() and inner is not None and inner.width() > sa.viewport().width() + 1 \
                and not sa.horizontalScrollBar().isVisible():
            out.append(("overflows sideways", type(inner).__name__, inner.width(), sa.viewport().width()))
    return out


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_every_tab_lays_out_without_clipping_or_overlap(qtbot, window, tiny_models, size):
    window.show()
    window.resize(*size)
    _open(qtbot, window, tiny_models["llama"])
    panel = window.retrain_panel
    panel.method.setCurrentIndex(panel.method.findData("kd"))  # distillation: the widest settings
    found = {}
    for i in range(window.tabs.count()):
        window.tabs.setCurrentIndex(i)
        for _ in range(3):
            QApplication.processEvents()
        problems = layout_problems(window)
        if problems:
            found[window.tabs.tabText(i)] = problems
    assert not found, found
    # the Retrain tab shows its settings whole (no nested scroll area a few rows tall): the tab scrolls instead
    window.show_panel(panel)
    QApplication.processEvents()
    assert panel._settings_scroll.height() >= min(panel._settings_box.sizeHint().height(), 520)


def test_a_message_floats_over_the_window_without_moving_anything(qtbot, window, tiny_models):
    window.show()
    window.resize(1280, 800)
    _open(qtbot, window, tiny_models["llama"])
    QApplication.processEvents()
    before = window.splitter.mapTo(window, window.splitter.rect().topLeft()), window.splitter.size()
    window.notifier.error("something went wrong: a long message " * 4)
    QApplication.processEvents()
    bar = window.message_bar
    assert bar.isVisible() and "something went wrong" in bar.text
    after = window.splitter.mapTo(window, window.splitter.rect().topLeft()), window.splitter.size()
    assert after == before  # nothing pushed down
    host = window.centralWidget().rect()
    assert host.contains(bar.geometry()) and bar.geometry().bottom() < host.height() // 3  # over the top edge
    window.resize(1000, 700)  # it follows the window's width
    QApplication.processEvents()
    assert bar.width() == window.centralWidget().width() - 16


def test_the_jobs_dock_shows_rows_with_their_own_bars_and_one_line_each(qtbot, window):
    import threading

    window.resize(1280, 800)
    window.show()
    release = threading.Event()

    def slow(progress=None, cancel=None):
        progress(1, 4, "a long message that would have wrapped and been clipped in the progress bar's text")
        release.wait(10)

    jobs = [window.runner.submit(f"Job {i}", slow, lane="io") for i in range(2)]
    jobs.append(window.runner.submit("Job 2", slow, lane="train"))
    jobs.append(window.runner.submit("Job 3", slow, lane="eval"))
    try:
        qtbot.waitUntil(lambda: all(j.done for j in jobs), timeout=WAIT_MS)
        QApplication.processEvents()
        panel = window.jobs_panel
        tree = panel.tree
        row_h = tree.visualItemRect(panel.item_for(jobs[0])).height()
        assert tree.viewport().height() >= 4 * row_h  # at least four rows show
        for job in jobs:
            item = panel.item_for(job)
            rect = tree.visualItemRect(item)
            bar = tree.itemWidget(item, 2)
            centre = bar.geometry().center().y()
            assert rect.top() <= centre <= rect.bottom(), (job.title, rect, bar.geometry())  # its own row
            assert bar.format() == "%p%" and "a long message" in item.text(0)
            assert rect.height() == row_h  # one line each: nothing wraps
    finally:
        release.set()
        for job in jobs:
            qtbot.waitUntil(lambda j=job: j.status.finished, timeout=WAIT_MS)


def test_choosing_another_criterion_never_moves_the_analyse_button(qtbot, window, tiny_models):
    window.show()
    window.resize(1280, 800)
    _open(qtbot, window, tiny_models["llama"])
    panel = window.analysis_panel
    QApplication.processEvents()
    places = set()
    for i in range(panel.criterion.count()):
        panel.criterion.setCurrentIndex(i)
        for _ in range(3):
            QApplication.processEvents()
        places.add(panel.run_button.mapTo(window, panel.run_button.rect().topLeft()).y())
    assert panel.criterion.count() > 2 and len(places) == 1, places


def test_unsaved_work_is_offered_for_saving_before_another_model_replaces_it(qtbot, window, tiny_models, tmp_path,
                                                                              monkeypatch):
    asked = []
    answers = iter(["cancel", "save", "discard"])

    def ask(what):
        asked.append(what)
        return next(answers)

    monkeypatch.setattr(window, "ask_unsaved", ask)
    session_file = tmp_path / "work.slim"
    monkeypatch.setattr(window, "save_session_dialog", lambda ask=False: window.save_session(session_file))
    _open(qtbot, window, tiny_models["llama"])
    assert not window.has_unsaved_work()  # just opened: nothing to lose, nothing asked
    _open(qtbot, window, tiny_models["llama"])
    assert asked == []
    window.doc.set_remove(["block.1"])  # a plan edit is work
    assert window.has_unsaved_work()
    # cancel: the model stays, nothing is opened
    assert window.open_path(str(tiny_models["mistral"])) is None
    assert asked == ["opening mistral"] and window.doc.model.source == str(tiny_models["llama"])
    # save: the session is written, then the other model opens
    window.doc.set_remove(["block.2"])
    job = window.open_path(str(tiny_models["mistral"]))
    assert job is not None and session_file.is_file() and '"block.2"' in session_file.read_text()
    qtbot.waitUntil(lambda: window.doc.model is not None and window.doc.model.source == str(tiny_models["mistral"]),
                    timeout=WAIT_MS)
    assert not window.has_unsaved_work()
    # discard, on closing the model
    window.doc.set_remove(["block.0"])
    window.close_model()
    assert asked[-1] == "closing the model" and window.doc.model is None


def test_the_theme_follows_the_system_and_can_be_forced(qtbot, make_window, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QPalette

    monkeypatch.setenv("SLIMGUI_THEME", "dark")
    dark = make_window()
    assert dark.property("darkTheme") and "#1f2937" in dark.styleSheet()
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 80
    monkeypatch.setenv("SLIMGUI_THEME", "light")
    light = make_window()
    assert not light.property("darkTheme") and "style-dark" not in light.styleSheet()
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() > 180
    # "system" (the default) follows the system's scheme, also when it changes while the app runs (the offscreen
    # platform has no scheme of its own: the system's answer is given here, and its change signal sent)
    from slimgui.gui import app as gui_app

    monkeypatch.setenv("SLIMGUI_THEME", "system")
    hints = QGuiApplication.styleHints()
    monkeypatch.setattr(gui_app, "system_scheme", lambda: Qt.ColorScheme.Dark)
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    QApplication.processEvents()
    assert light.property("darkTheme") and dark.property("darkTheme")
    monkeypatch.setattr(gui_app, "system_scheme", lambda: Qt.ColorScheme.Light)
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)
    QApplication.processEvents()
    assert not light.property("darkTheme")
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() > 180
