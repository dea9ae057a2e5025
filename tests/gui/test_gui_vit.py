"""The ViT family in the desktop app (pytest-qt, offscreen): the demo's heads coloured by snp-qk, a budget in MACs
with its estimate, Apply, and the attention previews of original and slimmed side by side on one colour scale."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402
from slimgui.gui.plan_panel import BUDGET_MACS  # noqa: E402

WAIT_MS = 180_000


def wait(qtbot, job, status=JobStatus.DONE):
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == status, job.error
    QApplication.processEvents()
    return job


def test_vit_heads_by_snp_qk_a_macs_budget_and_one_attention_scale(qtbot, make_window, registry):
    w = make_window(registry)
    w.open_path("demo:vit")
    qtbot.waitUntil(lambda: w.doc.model is not None or bool(w.notifier.errors()), timeout=WAIT_MS)
    assert not w.notifier.errors() and w.doc.model.family == "vit"
    a = w.analysis_panel
    assert a.criterion.currentText() == "snp-qk"  # the family's default criterion
    wait(qtbot, a.run("snp-qk"))
    # the heads' cells are coloured by their scores
    view = w.model_panel.view
    scores = w.doc.scores["snp-qk"].values
    heads = [uid for uid in view.unit_items if uid.endswith(".head.0")]
    assert heads and all(uid in scores for uid in heads)
    # a budget in MACs: offered because the ViT's graph counts them; the estimate says what it saves
    p = w.plan_panel
    units = [p.unit.itemText(i) for i in range(p.unit.count())]
    assert BUDGET_MACS in units
    chosen = p.select_budget(40, BUDGET_MACS, "snp-qk")
    assert chosen
    est = w.doc.estimate()
    assert 0.39 <= est.macs_removed_fraction <= 0.40
    assert p.est_labels["macs"].isVisibleTo(p) and "per image" in p.est_labels["macs"].text()
    assert "MAC ratio" in p.est_labels["speedup"].text()
    wait(qtbot, p.apply())
    qtbot.waitUntil(lambda: w.doc.slimmed is not None, timeout=WAIT_MS)
    # the compare tab: both attention previews on the same colour scale
    c = w.compare_panel
    assert c.previewer_spec().name == "attention"
    wait(qtbot, c.generate())
    gen = w.doc.session.results["generation"]
    assert {"original", "slimmed"} <= set(gen)
    medias = [gen[side] for side in ("original", "slimmed")]
    assert c.grid_mode and c.grid_viewer is not None and c.grid_viewer.isVisibleTo(c)
    scales = [m.meta["attention_scale"] for m in medias]
    assert scales[0] == scales[1] and all(m.meta["attention_scale_shared"] for m in medias)
    maps = [np.asarray(m.meta["attention_map"]) for m in medias]
    assert scales[0] == pytest.approx([min(m.min() for m in maps), max(m.max() for m in maps)], abs=1e-5)
    assert not w.notifier.errors()
