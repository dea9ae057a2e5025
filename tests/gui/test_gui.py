"""The desktop app, driven like a user would (pytest-qt, offscreen), on real tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtCore import QEvent, QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402
from slimgui.core.plugins import AdapterSpec, Plugin, discover  # noqa: E402
from slimgui.core.session import human_count, normalized, select_by_budget  # noqa: E402
from slimgui.gui import colors  # noqa: E402
from slimgui.gui.app import SCREENSHOT_SIZE, create_window  # noqa: E402
from slimgui.gui.settings import Settings  # noqa: E402

WAIT_MS = 60_000








def drop(target, paths) -> None:
    """What the window system delivers when files are dragged onto ``target``."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(target.width() / 2, target.height() / 2)
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted()
    event = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       QEvent.Type.Drop)
    QApplication.sendEvent(target, event)


def open_and_wait(qtbot, window, path) -> None:
    window.open_path(str(path))
    qtbot.waitUntil(lambda: window.doc.model is not None and window.doc.model.source == str(path), timeout=WAIT_MS)


def use_tiny_calibration(window, text_file) -> None:
    panel = window.analysis_panel
    panel.data.setText(str(text_file))
    panel.form.widget("seq_len").setValue(32)
    panel.samples.setValue(8)
    panel.batch_size.setValue(4)


def run_and_wait(qtbot, job):
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == JobStatus.DONE, job.error
    QApplication.processEvents()
    return job


def analyse(qtbot, window, criterion):
    job = window.analysis_panel.run(criterion)
    run_and_wait(qtbot, job)
    qtbot.waitUntil(lambda: criterion in window.doc.scores, timeout=WAIT_MS)


# -- opening -----------------------------------------------------------------------------------
def test_dropping_a_model_folder_opens_it_anywhere(qtbot, window, tiny_models):
    drop(window, [tiny_models["llama"]])
    qtbot.waitUntil(lambda: window.doc.model is not None, timeout=WAIT_MS)
    doc = window.doc
    assert doc.model.source == str(tiny_models["llama"]) and doc.model.has_weights
    assert [u.id for u in doc.graph.prunable()] == [f"block.{i}" for i in range(4)]
    items = window.model_panel.items
    assert all(items[f"block.{i}"].isVisible() for i in range(4))
    assert not items["block.0.attn"].isVisible()  # children are collapsed until expanded
    assert "4 prunable blocks" in window.model_panel.title.text()
    assert window.settings.recent()[0] == str(tiny_models["llama"])
    # dropped on a child widget (the model view), it opens too
    drop(window.model_panel.view.viewport(), [tiny_models["gpt2"]])
    qtbot.waitUntil(lambda: doc.model.source == str(tiny_models["gpt2"]), timeout=WAIT_MS)
    assert doc.graph.attrs["model_type"] == "gpt2"
    # expanding a block shows its attention and MLP children, with their own parameter counts
    view = window.model_panel.view
    view.toggle_expanded("block.2")
    assert items is not window.model_panel.items  # a new model, new items
    kids = window.model_panel.items
    assert kids["block.2.attn"].isVisible() and kids["block.2.mlp"].isVisible()
    assert kids["block.3"].pos().y() > kids["block.2.mlp"].pos().y()


def test_bad_file_shows_a_message_and_keeps_the_open_model(qtbot, window, tiny_models, tmp_path):
    open_and_wait(qtbot, window, tiny_models["llama"])
    before = window.doc.model
    bad = tmp_path / "notes.txt"
    bad.write_text("not a model")
    drop(window, [bad])
    qtbot.waitUntil(lambda: len(window.notifier.errors()) == 1, timeout=WAIT_MS)
    assert "no installed plugin can open" in window.notifier.errors()[0].text
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    drop(window, [broken])
    qtbot.waitUntil(lambda: len(window.notifier.errors()) == 2, timeout=WAIT_MS)
    assert "not valid JSON" in window.notifier.errors()[1].text
    assert window.message_bar.isVisible() and "not valid JSON" in window.message_bar.text
    assert window.doc.model is before and window.isVisible()
    assert len(window.model_panel.items) == len(before.extra["graph"].units)
    # still usable: the next model opens
    open_and_wait(qtbot, window, tiny_models["gpt2"])


def test_adapter_tie_asks_and_remembers_the_choice(qtbot, make_window, tiny_models):
    twin = Plugin(name="twin", adapters=[AdapterSpec("transformers-twin", "llm", "slimgui_families.llm.adapter:TransformersAdapter",
                                                     "slimgui_families.llm.probe:match", "the same adapter, twice")])
    window = make_window(discover(extra=[twin]))
    window.open_path(str(tiny_models["llama"]))
    qtbot.waitUntil(lambda: window.chooser is not None and window.chooser.isVisible(), timeout=WAIT_MS)
    assert sorted(window.chooser.names) == ["transformers", "transformers-twin"]
    assert window.doc.model is None  # nothing opens until the user chooses
    window.chooser.choose("transformers-twin", remember=True)
    qtbot.waitUntil(lambda: window.doc.model is not None, timeout=WAIT_MS)
    assert window.settings.adapter_choices() == {"folder": "transformers-twin"}
    window.chooser = None
    open_and_wait(qtbot, window, tiny_models["gpt2"])
    assert window.chooser is None  # remembered: no question the second time


def test_config_only_80_block_model_opens_and_draws(qtbot, window, tmp_path):
    """How fast is measured in benchmarks/bench_big.py (start-up), never here."""
    from transformers import LlamaConfig, LlamaForCausalLM  # noqa: F401  (imported once per app run anyway)

    folder = tmp_path / "llama-80"
    LlamaConfig(num_hidden_layers=80, hidden_size=1024, intermediate_size=2816, num_attention_heads=16,
                num_key_value_heads=8, vocab_size=32000).save_pretrained(folder)
    window.open_path(str(folder))
    qtbot.waitUntil(lambda: window.doc.model is not None, timeout=WAIT_MS)
    view = window.model_panel.view
    view.viewport().grab()  # draw it
    assert not window.doc.model.has_weights
    assert sum(1 for u in window.doc.graph.prunable()) == 80
    assert all(view.unit_items[f"block.{i}"].isVisible() for i in range(80))
    ys = [view.unit_items[f"block.{i}"].pos().y() for i in range(80)]
    assert ys == sorted(ys)  # a vertical stack in block order
    assert not window.analysis_panel.run_button.isEnabled()  # no weights: nothing to analyse
    # expanding every block and redrawing the whole scene
    view.set_expanded([f"block.{i}" for i in range(80)])
    view.fit()
    view.viewport().grab()
    window.doc.set_remove([f"block.{i}" for i in range(10, 40)])
    view.viewport().grab()
    assert window.plan_panel.est_labels["blocks"].text().startswith("80 → <b>50</b>")


# -- analysis, selection, plan -----------------------------------------------------------------
def test_background_analysis_colours_the_blocks(qtbot, window, tiny_models, text_file):
    open_and_wait(qtbot, window, tiny_models["llama"])
    items = window.model_panel.items
    assert all(items[f"block.{i}"].fill == colors.UNSCORED for i in range(4))
    use_tiny_calibration(window, text_file)
    job = window.analysis_panel.run("ppl")
    assert job.kind == "analysis" and window.jobs_panel.item_for(job) is not None
    run_and_wait(qtbot, job)
    qtbot.waitUntil(lambda: "ppl" in window.doc.scores, timeout=WAIT_MS)
    scores = window.doc.scores["ppl"]
    assert set(scores.values) == {f"block.{i}" for i in range(4)}
    assert scores.meta["data"]["seq_len"] == 32
    norm = normalized(scores.values)
    for uid, value in scores.values.items():
        assert items[uid].fill == colors.colour_at(norm[uid])
        assert f"ppl: {value:.6g}" in items[uid].toolTip()
    assert len({items[u].fill.rgba() for u in scores.values}) > 1
    assert window.model_panel.legend.criterion == "ppl"
    assert window.jobs_panel.item_for(job).text(1) == "done"
    # a second criterion: heatmap rows and agreement
    analyse(qtbot, window, "magnitude")
    assert window.model_panel.colour_by.currentText() == "magnitude"
    assert window.scores_panel.matrix.shape == (2, 4)
    assert window.scores_panel.table.rowCount() == 2 and window.scores_panel.agreement.spearman[0][0] == 1.0
    window.model_panel.colour_by.setCurrentText("ppl")
    assert window.doc.active.criterion == "ppl"


def test_clicking_blocks_updates_the_estimate(qtbot, window, tiny_models):
    open_and_wait(qtbot, window, tiny_models["llama"])
    g = window.doc.graph
    view = window.model_panel.view
    view.click_unit("block.1")
    assert window.doc.remove == ["block.1"]
    after = g.total_params - g.get("block.1").params
    labels = window.plan_panel.est_labels
    assert f"<b>{human_count(after)}</b>" in labels["params"].text()
    # the expected speedup is the MAC ratio where the family counts MACs (embeddings cost parameters, not MACs)
    if g.total_macs:
        macs_after = g.total_macs - g.removed_macs(["block.1"])
        assert f"×{g.total_macs / macs_after:.2f}" in labels["speedup"].text() and "MAC ratio" in labels["speedup"].text()
        assert labels["macs"].isVisibleTo(window.plan_panel)
    else:
        assert f"×{g.total_params / after:.2f}" in labels["speedup"].text()
    assert labels["blocks"].text().startswith("4 → <b>3</b>")
    assert f"{after * 4 / 1000:.1f} KB" in labels["size"].text()  # float32: 4 bytes a parameter
    assert view.unit_items["block.1"].removed
    view.click_unit("block.3")
    assert window.doc.remove == ["block.1", "block.3"]
    view.click_unit("block.1")  # a second click keeps it
    assert window.doc.remove == ["block.3"] and not view.unit_items["block.1"].removed
    # the keep-set locks blocks: they are drawn locked and a click does not select them
    window.plan_panel.set_keep("first:1,last:1")
    assert window.doc.locked == ["block.0", "block.3"] and window.doc.remove == []
    assert view.unit_items["block.0"].locked and view.unit_items["block.3"].locked
    view.click_unit("block.0")
    assert window.doc.remove == [] and "locked" in window.notifier.notifications[-1].text
    view.click_unit("embed")  # not prunable
    assert window.doc.remove == []
    window.plan_panel.set_keep("first:x")
    assert "Keep-set" in window.notifier.errors()[-1].text and window.doc.keep == "first:1,last:1"


def test_budget_selection_honours_the_keep_set(qtbot, window, tiny_models):
    open_and_wait(qtbot, window, tiny_models["llama"])
    analyse(qtbot, window, "magnitude")
    g, scores = window.doc.graph, window.doc.scores["magnitude"]
    window.plan_panel.set_keep("first:1")
    chosen = window.plan_panel.select_budget(2, "blocks", "magnitude")
    ranked = [u for u in scores.ranking() if u != "block.0"][:2]
    assert chosen == window.doc.remove == sorted(ranked, key=lambda u: int(u.split(".")[1]))
    assert "block.0" not in chosen
    # by parameters: whole blocks while the removed share stays within the budget
    block = g.get("block.1").params
    pct = 100 * (2 * block + block / 2) / g.total_params  # room for two and a half blocks
    chosen = window.plan_panel.select_budget(pct, "% of parameters", "magnitude")
    assert len(chosen) == 2 and chosen == select_by_budget(g, scores, params_fraction=pct / 100, keep="first:1")
    assert window.plan_panel.est_labels["blocks"].text().startswith("4 → <b>2</b>")


def test_apply_builds_the_slimmed_model_and_compare_shows_both(qtbot, window, tiny_models, text_file):
    open_and_wait(qtbot, window, tiny_models["llama"])
    window.doc.set_remove(["block.1", "block.2"])
    job = window.plan_panel.apply()
    run_and_wait(qtbot, job)
    qtbot.waitUntil(lambda: window.doc.slimmed is not None, timeout=WAIT_MS)
    doc = window.doc
    assert len(doc.graph.prunable()) == 4  # the original is kept
    assert len(doc.slimmed.extra["graph"].prunable()) == 2
    saved = Path(doc.session.slimmed_path)
    assert json.loads((saved / "config.json").read_text())["num_hidden_layers"] == 2
    assert json.loads((saved / "slimgui_plan.json").read_text())["remove"] == ["block.1", "block.2"]
    assert "2 blocks" in window.plan_panel.slim_status.text()
    # side-by-side generation with the same greedy settings
    panel = window.compare_panel
    panel.form.widget("prompt").setText("def ")
    panel.form.widget("max_new_tokens").setValue(6)
    run_and_wait(qtbot, panel.generate())
    qtbot.waitUntil(lambda: panel.slots["slimmed"].text != "", timeout=WAIT_MS)
    left, right = panel.slots["original"].text, panel.slots["slimmed"].text
    assert left.startswith("def ") and right.startswith("def ")
    assert len(left) > len("def ") and len(right) > len("def ")
    assert "2 blocks" in panel.slots["slimmed"].title.text()
    # perplexity of both on a chosen file
    panel.eval_file.setText(str(text_file))
    panel.eval_form.widget("seq_len").setValue(32)
    panel.eval_form.widget("max_tokens").setValue(256)
    run_and_wait(qtbot, panel.evaluate())
    ppl = doc.session.results["evaluation"]
    assert ppl["original"]["perplexity"] > 1 and ppl["slimmed"]["perplexity"] > 1
    assert ppl["original"]["tokens"] == ppl["slimmed"]["tokens"]
    assert "change:" in panel.eval_summary.text()


def test_session_save_and_reopen_restores_the_screen(qtbot, make_window, tiny_models, tmp_path):
    first = make_window()
    open_and_wait(qtbot, first, tiny_models["llama"])
    analyse(qtbot, first, "magnitude")
    first.plan_panel.set_keep("last:1")
    first.doc.set_remove(["block.0", "block.2"])
    run_and_wait(qtbot, first.plan_panel.apply())
    qtbot.waitUntil(lambda: first.doc.slimmed is not None, timeout=WAIT_MS)
    first.compare_panel.form.widget("max_new_tokens").setValue(4)
    run_and_wait(qtbot, first.compare_panel.generate())
    first.model_panel.view.toggle_expanded("block.1")
    first.doc.set_remove(["block.0"])  # the selection on screen differs from what was applied
    path = first.save_session(tmp_path / "work")
    assert path.name == "work.slim" and json.loads(path.read_text())["kind"] == "session"

    second = make_window()
    drop(second, [path])
    qtbot.waitUntil(lambda: second.doc.slimmed is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: second.compare_panel.slots["slimmed"].text != "", timeout=WAIT_MS)
    a, b = first.doc, second.doc
    assert b.model.source == a.model.source
    assert b.scores["magnitude"].values == pytest.approx(a.scores["magnitude"].values)
    assert b.remove == ["block.0"] and b.keep == "last:1" and b.locked == ["block.3"]
    assert b.session.slimmed_remove == ["block.0", "block.2"]
    assert b.session.slimmed_path == a.session.slimmed_path
    assert len(b.slimmed.extra["graph"].prunable()) == 2
    assert second.model_panel.items["block.0"].removed and second.model_panel.items["block.3"].locked
    assert "block.1" in second.model_panel.view.expanded
    for side in ("original", "slimmed"):
        assert second.compare_panel.slots[side].text == first.compare_panel.slots[side].text
    assert second.compare_panel.form.widget("max_new_tokens").value() == 4  # the previewer's option, by name
    assert second.windowTitle().startswith("llama [work.slim]")


def test_cancelling_a_running_job_stops_it(qtbot, window, tiny_models, text_file):
    open_and_wait(qtbot, window, tiny_models["llama"])
    panel = window.compare_panel
    panel.eval_file.setText(str(text_file))
    panel.eval_form.widget("seq_len").setValue(16)
    panel.eval_form.widget("max_tokens").setValue(0)  # the whole file: thousands of windows
    job = panel.evaluate()
    qtbot.waitUntil(lambda: job.status == JobStatus.RUNNING and job.done > 0, timeout=WAIT_MS)
    window.jobs_panel.cancel_button(job).click()
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == JobStatus.CANCELLED and job.done < job.total
    QApplication.processEvents()
    qtbot.waitUntil(lambda: window.jobs_panel.item_for(job).text(1) == "cancelled", timeout=WAIT_MS)
    assert window.jobs_panel.cancel_button(job) is None  # nothing left to cancel
    assert "evaluation" not in window.doc.session.results
    assert any("cancelled" in n.text for n in window.notifier.notifications)
    assert not window.notifier.errors()


# -- the command line --------------------------------------------------------------------------
def test_screenshot_writes_a_png_of_the_window(tiny_models, tmp_path):
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SLIMGUI_CONFIG_DIR=str(tmp_path / "cfg"))
    proc = subprocess.run([sys.executable, "-m", "slimgui.cli", "gui", str(tiny_models["llama"]), "--screenshot",
                           str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    image = QImage(str(out))
    assert (image.width(), image.height()) == SCREENSHOT_SIZE
    colours = {image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 23)}
    assert len(colours) > 20  # a drawn window, not a blank image


def test_geometry_and_recent_files_are_kept_per_user(qtbot, tmp_path, registry, tiny_models):
    ini = tmp_path / "config" / "slimgui.ini"
    assert Settings().path == ini  # SLIMGUI_CONFIG_DIR decides where settings go
    first = create_window(registry=registry, settings=Settings(ini))
    qtbot.addWidget(first)
    first.show()
    first.resize(first.width(), 530)  # the offscreen screen is 800x600: restored sizes are clamped to it
    open_and_wait(qtbot, first, tiny_models["llama"])
    first.close()
    assert ini.is_file()
    second = create_window(registry=registry, settings=Settings(ini))
    qtbot.addWidget(second)
    assert second.height() == 530  # not the default 900: the geometry came back
    assert second.settings.recent() == [str(tiny_models["llama"])]
    second._fill_recent()
    assert [a.text() for a in second.recent_menu.actions()][0] == str(tiny_models["llama"])
