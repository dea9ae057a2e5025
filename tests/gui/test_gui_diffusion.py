"""The desktop app on a diffusion model (pytest-qt, offscreen): the U-Net view, BK-SDM presets, image previews,
the retraining methods of the family and a benchmark without decoding — on a tiny random-weight pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytest.importorskip("diffusers")

from guikit import delivered  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.errors import SlimError  # noqa: E402
from slimgui.core.jobs import JobStatus  # noqa: E402
from slimgui.core.media import ImageMedia, save_png, stack_images  # noqa: E402
from slimgui.core.ops import preset_plan, prune  # noqa: E402
from slimgui.core.scores import Scores  # noqa: E402
from slimgui.core.session import estimate, removal_closure, removed_params, select_by_budget  # noqa: E402
from slimgui.gui.graph_layouts import UNetLayout, layout_for  # noqa: E402
from slimgui.gui.viewers import ImageViewer, viewer_class  # noqa: E402

WAIT_MS = 120_000
DOWN = [f"down_blocks.{i}" for i in range(4)]
UP = [f"up_blocks.{k}" for k in range(4)]


@pytest.fixture(scope="module")
def sd_pipeline(tmp_path_factory):
    from diffusion_models import tiny_sd_pipeline

    return tiny_sd_pipeline(tmp_path_factory.mktemp("diffusion") / "tiny-sd")


def open_and_wait(qtbot, window, path) -> None:
    window.open_path(str(path))
    qtbot.waitUntil(lambda: (window.doc.model is not None and window.doc.model.source == str(path))
                    or bool(window.notifier.errors()), timeout=WAIT_MS)
    assert not window.notifier.errors(), window.notifier.errors()


def run_and_wait(qtbot, job, status=JobStatus.DONE):
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == status, job.error
    QApplication.processEvents()
    return job


def scene_rect(view, uid):
    item = view.unit_items[uid]
    return item.mapRectToScene(item.rect)


# -- the model view -------------------------------------------------------------------------------
def test_unet_view_is_a_u_with_skips_and_a_click_removes_the_partner(qtbot, window, sd_pipeline):
    open_and_wait(qtbot, window, sd_pipeline)
    g, view = window.doc.graph, window.model_panel.view
    assert isinstance(layout_for(g), UNetLayout) and "6 prunable units" in window.model_panel.title.text()
    rects = {uid: scene_rect(view, uid) for uid in [*DOWN, *UP, "mid_block", "conv_in", "conv_out"]}
    # down stages descend on the left, up stages climb on the right, each level side by side
    downs = [rects[s] for s in DOWN]
    assert [r.top() for r in downs] == sorted(r.top() for r in downs) and len({r.left() for r in downs}) == 1
    for level in range(4):
        up = rects[f"up_blocks.{3 - level}"]
        assert up.top() == pytest.approx(downs[level].top()) and up.left() > downs[level].right()
    # the mid block at the bottom between the columns; input conv top left, output conv top right
    mid = rects["mid_block"]
    assert mid.top() > max(r.bottom() for r in rects.values() if r is not mid)
    assert downs[0].center().x() < mid.center().x() < rects["up_blocks.0"].center().x()
    assert rects["conv_in"].bottom() <= downs[0].top() and rects["conv_in"].left() == downs[0].left()
    assert rects["conv_out"].bottom() <= rects["up_blocks.3"].top() and rects["conv_out"].left() > mid.left()
    # one horizontal skip arrow per level, from the down stage's right edge to the up stage's left edge
    skips = view.routes_of("skip")
    assert len(skips) == 4 and len(view.routes_of("skip-label")) == 4
    for level, item in enumerate(sorted(skips, key=lambda e: e.path().boundingRect().top())):
        box = item.path().boundingRect()
        assert box.height() == pytest.approx(0, abs=0.5)
        assert box.left() == pytest.approx(downs[level].right()) and box.right() == pytest.approx(
            rects[f"up_blocks.{3 - level}"].left())
    # stages with removable layers open by default; a layer expands into its ResNet and attention blocks
    assert view.unit_items["down_blocks.1.layers.1"].isVisible()
    assert not view.unit_items["down_blocks.1.attentions.1"].isVisible()
    view.toggle_expanded("down_blocks.1.layers.1")
    assert view.unit_items["down_blocks.1.resnets.1"].isVisible() and view.unit_items["down_blocks.1.attentions.1"].isVisible()
    assert scene_rect(view, "down_blocks.2").top() > scene_rect(view, "down_blocks.1.attentions.1").bottom()
    view.toggle_expanded("down_blocks.1.layers.1")
    assert not view.unit_items["down_blocks.1.resnets.1"].isVisible()
    tip = view.unit_items["down_blocks.1"].toolTip()
    assert "MACs per sample" in tip and f"{g.get('down_blocks.1').params:,}" in tip
    # a click selects the layer; its mirrored up-stage layer is drawn removed with it
    view.click_unit("down_blocks.1.layers.1")
    assert window.doc.remove == ["down_blocks.1.layers.1"]
    partner = view.unit_items["up_blocks.2.layers.1"]
    assert partner.removed and partner.implied and view.unit_items["down_blocks.1.layers.1"].removed
    assert not view.unit_items["up_blocks.2.layers.0"].removed
    assert "removed together with" in partner.toolTip()
    est = window.doc.estimate()  # the partner's parameters count too (as the real slimmed model shows)
    assert est.params_before - est.params_after == g.get("down_blocks.1.layers.1").params + partner.unit.params
    # clicking the partner means its pair: deselects it
    view.click_unit("up_blocks.2.layers.1")
    assert window.doc.remove == [] and not partner.removed
    # the innermost stage takes its up stage (and the level's downsampler) along
    view.click_unit("down_blocks.3")
    assert view.unit_items["up_blocks.0"].removed and view.unit_items["up_blocks.0.layers.2"].removed
    assert view.unit_items["down_blocks.2.downsamplers.0"].removed
    # zoom and fit still work
    view.fit()
    scale = view.transform().m11()
    view.zoom(1.25)
    assert view.transform().m11() == pytest.approx(scale * 1.25)
    view.fit()
    shown = view.mapFromScene(view.scene().itemsBoundingRect()).boundingRect()
    assert view.viewport().rect().adjusted(-2, -2, 2, 2).contains(shown)


def test_presets_select_bk_small_and_budgets_count_nested_units_once(qtbot, window, sd_pipeline):
    open_and_wait(qtbot, window, sd_pipeline)
    plan_panel, doc = window.plan_panel, window.doc
    assert plan_panel.form.isRowVisible(1) and plan_panel.preset_names(only_fitting=True) == ["bk-base", "bk-small",
                                                                                                "bk-tiny"]
    chosen = plan_panel.choose_preset("bk-small")
    want = preset_plan(doc.model, "bk-small", registry=doc.registry).remove
    assert chosen == list(want) and sorted(doc.remove) == sorted(want)
    assert plan_panel.preset.currentData() == "bk-small" and "removes 5 units" in plan_panel.preset_note.text()
    assert "Down 1 · ResNet + attention 1" in plan_panel.selected.text()
    # the estimate is what the real slimmed U-Net has
    slim = prune(doc.model, plan_panel.doc.plan(), registry=doc.registry)
    assert doc.estimate().params_after == sum(p.numel() for p in slim.module.parameters())
    assert window.model_panel.view.unit_items["mid_block"].removed
    # the chooser names whatever preset the selection is: bk-small without the mid block is bk-base
    window.model_panel.view.click_unit("mid_block")
    assert plan_panel.preset.currentData() == "bk-base"
    window.model_panel.view.click_unit("down_blocks.0.layers.1")
    assert plan_panel.preset.currentIndex() == 0 and plan_panel.preset_note.text() == ""
    # bk-tiny removes the innermost stage and the layer inside it: counted once
    g = doc.graph
    tiny = preset_plan(doc.model, "bk-tiny", registry=doc.registry).remove
    both = [*tiny, "down_blocks.3.layers.1"]
    assert removed_params(g, both) == removed_params(g, tiny)
    assert estimate(g, both).params_after == estimate(g, tiny).params_after
    assert "up_blocks.0" in removal_closure(g, ["down_blocks.3"])
    # a budget spent on the least important units: the nested layer costs nothing once its stage goes
    values = {u.id: float(i + 10) for i, u in enumerate(g.prunable())}
    values.update({"down_blocks.3": 0.5, "down_blocks.3.layers.1": 1.0})
    scores = Scores("made-up", values, model=doc.model.source)
    share = removed_params(g, ["down_blocks.3"]) / g.total_params
    picked = select_by_budget(g, scores, params_fraction=share + 1e-6)
    assert picked == ["down_blocks.3", "down_blocks.3.layers.1"]


def test_a_preset_that_does_not_fit_is_listed_disabled_with_the_reason(qtbot, window, tmp_path):
    from diffusion_models import SD_UNET, tiny_sd_pipeline

    path = tiny_sd_pipeline(tmp_path / "uneven", unet_config={**SD_UNET, "block_out_channels": (16, 32, 32, 48)})
    open_and_wait(qtbot, window, path)
    p = window.plan_panel
    # without a removable innermost stage bk-tiny cannot apply; bk-small removes every prunable unit, which is
    # fine for a U-Net (each stage keeps its first layer)
    assert p.preset_names(only_fitting=True) == ["bk-base", "bk-small"]
    assert p.preset_names() == ["bk-base", "bk-small", "bk-tiny"]
    for name, why in (("bk-tiny", "innermost stage"),):
        index = p.preset.findData(name)
        assert not p.preset.model().item(index).isEnabled() and "does not fit" in p.preset.itemText(index)
        assert why in p.preset.itemData(index, 3)  # Qt.ToolTipRole: the reason
    assert not window.doc.graph.get("down_blocks.3").prunable
    assert p.choose_preset("bk-base") and len(window.doc.remove) == 4


def test_analysis_defaults_to_the_familys_own_criterion(qtbot, window, sd_pipeline):
    open_and_wait(qtbot, window, sd_pipeline)
    a = window.analysis_panel
    names = [a.criterion.itemText(i) for i in range(a.criterion.count())]
    assert names[:2] == ["ldpruner", "output-change"] and a.criterion.currentText() == "ldpruner"
    assert not a.form.row_visible("seq_len") and window.doc.spec.data.label in a.data.placeholderText()


# -- images ----------------------------------------------------------------------------------------
def test_image_viewer_shows_a_grid_and_saves_a_png(qtbot, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (40, 70), dtype=np.uint8)
    tiles = [{"label": f"original · seed {k}", "row": "original", "box": [2 + 34 * k, 2, 32, 36]} for k in range(2)]
    media = ImageMedia(grey, title="a prompt", tiles=tiles, meta={"seeds": [0, 1]})
    assert viewer_class(media) is ImageViewer
    viewer = ImageViewer()
    qtbot.addWidget(viewer)
    viewer.show_media(media)
    assert viewer.bands() == [(2, 38, "original", [(2, 32, "seed 0"), (36, 32, "seed 1")])]
    assert "a prompt" in viewer.caption.text() and "70×40 px" in viewer.caption.text()
    big = viewer.compose(3.0)  # nearest neighbour: each pixel a 3×3 square, under two label strips
    assert big.width() == 210 and big.height() == 2 * viewer.LABEL_H + 36 * 3 + 4
    img = big.toImage()
    top = 2 * viewer.LABEL_H
    assert img.pixelColor(3 * 5 + 1, top + 1).red() == img.pixelColor(3 * 5, top).red() == grey[2, 5]
    saved: list[str] = []
    viewer.saved.connect(saved.append)
    out = viewer.save(str(tmp_path / "grid"))
    assert out == tmp_path / "grid.png" and saved == [str(out)]
    with Image.open(out) as im:
        assert im.size == (70, 40) and im.mode == "L" and np.array_equal(np.asarray(im), grey)
    failed: list[str] = []
    viewer.failed.connect(failed.append)
    (tmp_path / "file").write_text("x")
    assert viewer.save(str(tmp_path / "file" / "x.png")) is None and "cannot write" in failed[0]
    # rows of several previews stack into one RGB grid, each tile's box moved with its row
    colour = ImageMedia(rng.integers(0, 256, (20, 50, 3), dtype=np.uint8), title="b",
                        tiles=[{"label": "slimmed · seed 0", "row": "slimmed", "box": [2, 2, 16, 16]}],
                        meta={"rows": ["slimmed"]})
    both = stack_images([media, colour], gap=4)
    assert both.image.shape == (40 + 4 + 20, 70, 3) and both.meta["rows"] == ["original", "slimmed"]
    assert both.tiles[-1]["box"] == [2, 46, 16, 16]
    assert np.array_equal(both.image[44:, :50], colour.image) and np.all(both.image[44:, 50:] == 255)
    path = save_png(both, tmp_path / "both.png")
    with Image.open(path) as im:
        assert im.size == (70, 64) and im.mode == "RGB"
    with pytest.raises(SlimError):
        save_png(both, tmp_path / "both.jpg")


def test_preview_draws_original_and_slimmed_from_the_same_seeds(qtbot, window, sd_pipeline, tmp_path):
    from PIL import Image

    open_and_wait(qtbot, window, sd_pipeline)
    window.plan_panel.choose_preset("bk-small")
    run_and_wait(qtbot, window.plan_panel.apply())
    qtbot.waitUntil(lambda: window.doc.slimmed is not None, timeout=WAIT_MS)
    c = window.compare_panel
    window.tabs.setCurrentWidget(c)
    assert c.grid_mode and c.form.row_visible("prompt") and c.form.row_visible("n")
    assert not c.form.row_visible("max_new_tokens")
    c.form.widget("prompt").setText("a digit 3")
    c.form.widget("steps").setValue(2)
    c.form.widget("n").setValue(3)
    c.form.widget("seed").setValue(5)
    assert [label for label, _ in c.compared()] == ["original", "slimmed"]
    run_and_wait(qtbot, c.generate())
    gen = window.doc.session.results["generation"]
    assert set(gen) == {"original", "slimmed"}
    assert all(isinstance(m, ImageMedia) and m.meta["seeds"] == [5, 6, 7] for m in gen.values())
    assert not np.array_equal(gen["original"].image, gen["slimmed"].image)  # the slimmed U-Net draws otherwise
    viewer = c.grid_viewer
    assert viewer is not None and viewer.isVisible()
    grid = viewer.media
    h0, h1 = gen["original"].image.shape[0], gen["slimmed"].image.shape[0]
    assert grid.image.shape[0] == h0 + h1 + 4 and len(grid.tiles) == 6
    assert [b[2] for b in viewer.bands()] == [t["row"] for t in (gen["original"].tiles[0], gen["slimmed"].tiles[0])]
    out = viewer.save(str(tmp_path / "compare.png"))
    with Image.open(out) as im:
        assert im.size == (grid.image.shape[1], grid.image.shape[0])
    assert any("Grid saved" in n.text for n in window.notifier.notifications)
    # the family's evaluator needs the demo's classifier: a message, and the app goes on
    job = c.evaluate()
    run_and_wait(qtbot, job, JobStatus.FAILED)
    assert window.notifier.errors() and "classifier" in window.notifier.errors()[-1].text
    assert window.isVisible() and c.generate_button.isEnabled()


# -- retraining and benchmark ------------------------------------------------------------------------
def test_retrain_panel_offers_the_diffusion_methods_and_survives_image_events(qtbot, window, sd_pipeline, tmp_path):
    open_and_wait(qtbot, window, sd_pipeline)
    p = window.retrain_panel
    assert [p.method.itemData(i) for i in range(p.method.count())] == ["kd", "lora", "cpt", "lcm"]
    p.method.setCurrentIndex(p.method.findData("kd"))
    kd = ("kd_ce", "kd_kl", "kd_hidden")
    assert [p.form.label(n).text() for n in kd] == ["λ_task", "λ_out", "λ_feat"]
    assert tuple(p.form.widget(n).value() for n in kd) == (1.0, 1.0, 1.0)
    assert p.form.row_visible("kd_ce") and not p.form.row_visible("lcm_ddim_steps") and not p.form.row_visible("lora_r")
    assert "BK-SDM" in p.method.currentText() and "λ_feat" in p.method_hint.text() and "original" in p.teacher_label.text()
    assert not p.form.row_visible("seq_len")
    with pytest.raises(SlimError, match="training data"):
        p.config()  # not the demo: no default data
    data = tmp_path / "images"
    data.mkdir()
    p.data.setText(str(data))
    cfg = p.config(str(tmp_path / "run"))
    assert cfg.method == "kd" and cfg.teacher == window.doc.model.source and cfg.options["kd_hidden"] == 1.0
    p.method.setCurrentIndex(p.method.findData("lcm"))
    assert p.form.row_visible("lcm_ddim_steps") and not p.form.row_visible("kd_ce")
    p.form.widget("lcm_ddim_steps").setValue(20)
    p.form.widget("lcm_guidance").setValue(2.5)
    cfg = p.config(str(tmp_path / "run"))
    assert (cfg.method, cfg.options["lcm_ddim_steps"], cfg.options["lcm_guidance"], cfg.teacher) == ("lcm", 20, 2.5, None)
    # events of a run that counts images: validation loss without perplexity, images per second
    p._run_id = run = 7
    p._on_event(run, {"event": "start", "step": 0, "total": 4, "items": "images", "val_metric": None})
    for step in (1, 2):
        ev = {"event": "step", "step": step, "total": 4, "train_loss": 0.5 / step, "lr": 1e-4, "tokens_per_s": 12.0,
              "items_per_s": 12.0, "items": "images", "eta_s": 3.0, "task": 0.4, "out": 0.2, "feat": 0.1}
        if step == 2:
            ev["val_loss"] = 0.3
        p._on_event(run, ev)
    p._show_progress()
    text = p.status.text()
    assert "validation loss <b>0.3000</b>" in text and "perplexity" not in text and "12 images/s" in text
    assert "task 0.4" in text and "feat 0.1" in text
    p._run_models = (None, None)
    p._trained({"step": 4, "train_loss": 0.2, "val_loss": 0.25, "items": "images", "seconds": 1.0,
                "out": str(tmp_path / "nowhere"), "method": "lcm"}, run)
    assert "validation loss" in p.status.text()
    assert any("Retraining done" in n.text for n in window.notifier.notifications)


def test_benchmark_rows_of_images_render_without_decode(qtbot, window, sd_pipeline):
    open_and_wait(qtbot, window, sd_pipeline)
    b = window.bench_panel
    assert not any(b.form.row_visible(n) for n in ("seq", "new_tokens", "decode"))
    b.batches.setText("1,2")
    b.repeats.setValue(1)
    b.set_checked(["original"])
    job = run_and_wait(qtbot, b.run())
    rows = job.result["rows"]
    assert all(r["items"] == "images" and r["images_per_s"] > 0 and "decode_ms_per_token" not in r for r in rows)
    header = [b.table.horizontalHeaderItem(i).text() for i in range(b.table.columnCount())]
    assert "images/s" in header and "Forward pass ms" in header
    assert not any(h.startswith("Decode") or h == "Prefill tok/s" for h in header)
    col = header.index("images/s")
    assert float(b.table.item(0, col).text().replace(",", "")) == pytest.approx(rows[0]["images_per_s"], rel=0.01)
    xs, ys = b.curves[0]["original"].getData()
    assert np.allclose(10 ** np.asarray(xs), [1.0, 2.0]) and all(math.isfinite(y) and y > 0 for y in ys)  # log x
    assert b.plots[1].isHidden() and "Forward pass latency" in b.plots[0].getPlotItem().titleLabel.text


def test_a_preset_that_removes_what_the_active_criterion_ranks_most_important_is_flagged(qtbot, window, sd_pipeline):
    from slimgui.core.scores import Scores

    open_and_wait(qtbot, window, sd_pipeline)
    doc, plan_panel = window.doc, window.plan_panel
    want = list(preset_plan(doc.model, "bk-small", registry=doc.registry).remove)
    units = [u.id for u in doc.graph.units if u.prunable]
    # scores that rank one of the preset's units first, the rest in order
    values = {u: float(i) for i, u in enumerate(units)}
    values[want[0]] = 1e6
    doc.add_scores(Scores("magnitude", values, model=doc.model.source))
    before = len(window.notifier.notifications)
    assert plan_panel.choose_preset("bk-small") == want
    said = [n.text for n in window.notifier.notifications[before:]]
    assert any("removes what magnitude ranks most important" in t and "#1 of" in t for t in said), said
    # scores that agree with the preset: no warning
    agree = {u: (0.0 if u in want else 1.0 + i) for i, u in enumerate(units)}
    doc.add_scores(Scores("magnitude", agree, model=doc.model.source))
    before = len(window.notifier.notifications)
    plan_panel.choose_preset("bk-small")
    assert not any("most important" in n.text for n in window.notifier.notifications[before:])
