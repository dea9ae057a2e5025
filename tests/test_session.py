"""Sessions (.slim), the app's pure arithmetic (estimate, budget, agreement) and job bookkeeping — no Qt."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from slimgui.core.data import CalibrationData
from slimgui.core.errors import Cancelled, SlimError
from slimgui.core.graph import Unit, UnitGraph
from slimgui.core.jobs import Job, JobStatus, NeedsChoice, apply_task, file_kind, format_eta, open_task, preview_task
from slimgui.core.media import TextMedia
from slimgui.core.model import open_model
from slimgui.core.ops import graph_of
from slimgui.core.plugins import AdapterSpec, Plugin, discover
from slimgui.core.scores import Scores
from slimgui.core.session import (
    SCHEMA_VERSION,
    PreviewSettings,
    Session,
    agreement,
    color_scale,
    default_criterion,
    estimate,
    kendall,
    normalized,
    score_matrix,
    select_by_budget,
    spearman,
)


def stack_graph(sizes: list[int], embed: int = 100) -> UnitGraph:
    units = [Unit("embed", "embedding", "Embeddings", params=embed)]
    units += [Unit(f"block.{i}", "block", f"Block {i}", params=p, prunable=True, attrs={"index": i})
              for i, p in enumerate(sizes)]
    ids = [u.id for u in units]
    return UnitGraph("llm", units, edges=list(zip(ids, ids[1:])), attrs={"layout": "stack"})


# -- rank agreement ----------------------------------------------------------------------------
def test_spearman_and_kendall_match_reference_values():
    # reference values from SciPy's documentation examples (spearmanr, kendalltau with tau-b)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)
    assert kendall([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) == pytest.approx(-0.47140452079103173)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant side has no ranking
    assert math.isnan(kendall([1], [2]))
    # infinite scores (a block the model cannot do without) rank above every finite one
    assert spearman([1, 2, math.inf], [1, 2, 3]) == pytest.approx(1.0)


def test_agreement_matrix_and_heatmap_rows():
    ids = ["block.0", "block.1", "block.2", "block.3"]
    a = Scores("a", dict(zip(ids, [1.0, 2.0, 3.0, 4.0])))
    b = Scores("b", dict(zip(ids, [4.0, 3.0, 2.0, 1.0])))
    c = Scores("c", dict(zip(ids, [1.0, 3.0, 2.0, 4.0])))
    agr = agreement({"a": a, "b": b, "c": c}, ids)
    assert agr.criteria == ["a", "b", "c"]
    assert agr.spearman[0][0] == 1.0 and agr.spearman[0][1] == pytest.approx(-1.0)
    assert agr.spearman[0][2] == pytest.approx(0.8) and agr.kendall[0][2] == pytest.approx(4 / 6)
    assert agr.spearman[2][0] == agr.spearman[0][2]
    rows = score_matrix({"a": a, "b": b}, ids)
    assert rows == [[0.0, 1 / 3, 2 / 3, 1.0], [1.0, 2 / 3, 1 / 3, 0.0]]


def test_normalized_scales():
    assert normalized({"x": 1.0, "y": 3.0, "z": 2.0}) == {"x": 0.0, "y": 1.0, "z": 0.5}
    auto = normalized({"x": 1.0, "y": 10.0, "z": 1000.0})  # spans 3 orders of magnitude: log
    assert auto["y"] == pytest.approx(1 / 3)
    assert normalized({"x": 5.0, "y": math.inf}) == {"x": 0.5, "y": 1.0}
    assert normalized({"x": 7.0, "y": 7.0}) == {"x": 0.5, "y": 0.5}
    assert normalized({"a": 10.0, "b": 30.0, "c": 20.0}, "rank") == {"a": 0.0, "b": 1.0, "c": 0.5}
    # the demo's ppl scores: block 0 is 60x the rest, which differ by 15%: colour by rank to show them
    demo = {"block.0": 2382.6, "block.1": 39.51, "block.2": 39.61, "block.4": 39.60, "block.11": 45.65}
    assert color_scale(demo) == "rank"
    assert normalized(demo)["block.11"] == pytest.approx(0.75) and normalized(demo)["block.1"] == 0.0
    assert color_scale({"x": 1.0, "y": 10.0, "z": 1000.0}) == "log"
    assert color_scale({"x": 1.0, "y": 2.0, "z": 3.0}) == "linear"


# -- estimate and budget -----------------------------------------------------------------------
def test_estimate_is_params_size_and_ratio():
    g = stack_graph([100, 200, 300, 400])  # total 1100
    est = estimate(g, ["block.1", "block.3"], bytes_per_param=2)
    assert (est.params_before, est.params_after) == (1100, 500)
    assert (est.size_before, est.size_after) == (2200, 1000)
    assert est.speedup == pytest.approx(1100 / 500)
    assert est.units_removed == 2 and est.units_before == 4
    assert est.params_removed_fraction == pytest.approx(600 / 1100)


def test_select_by_budget_blocks_and_params_honour_keep_set():
    g = stack_graph([100, 100, 100, 100, 100], embed=500)  # total 1000
    s = Scores("m", {"block.0": 1.0, "block.1": 5.0, "block.2": 2.0, "block.3": 3.0, "block.4": 4.0})
    assert select_by_budget(g, s, blocks=2) == ["block.0", "block.2"]
    assert select_by_budget(g, s, blocks=2, keep="first:1") == ["block.2", "block.3"]
    # 25% of 1000 params = 250: two 100-param blocks fit, a third would exceed
    assert select_by_budget(g, s, params_fraction=0.25, keep="first:1") == ["block.2", "block.3"]
    assert select_by_budget(g, s, params_fraction=0.30) == ["block.0", "block.2", "block.3"]
    with pytest.raises(SlimError, match="less than one block"):
        select_by_budget(g, s, params_fraction=0.05)
    with pytest.raises(SlimError, match="locked"):
        select_by_budget(g, s, blocks=5, keep="first:1")
    # a budget that would take every block stops before the most important one
    assert select_by_budget(g, s, params_fraction=0.99) == ["block.0", "block.2", "block.3", "block.4"]


# -- the session file --------------------------------------------------------------------------
def test_session_roundtrip_and_relocation(tmp_path):
    model_dir = tmp_path / "work" / "model"
    model_dir.mkdir(parents=True)
    slim_dir = tmp_path / "work" / "slim"
    slim_dir.mkdir()
    scores = Scores("ppl", {"block.0": 3.5, "block.1": math.inf}, model=str(model_dir), locked=["block.0"],
                    keep="first:1", meta={"seconds": 1.5})
    s = Session(model_path=str(model_dir), adapter="transformers", scores={"ppl": scores}, active_criterion="ppl",
                keep="first:1", remove=["block.1"], slimmed_path=str(slim_dir), slimmed_remove=["block.1"],
                preview=PreviewSettings(previewer="generate", options={"generate": {"prompt": "import os", "max_new_tokens": 12}},
                                        eval_file="x.txt"),
                results={"generation": {"original": TextMedia("import os\n", meta={"seconds": 0.1})},
                         "perplexity": {"original": {"perplexity": 12.5, "tokens": 100}}},
                view={"expanded": ["block.0"], "tab": 2})
    path = tmp_path / "work" / "my.slim"
    s.save(path)
    doc = json.loads(path.read_text())
    assert doc["kind"] == "session" and doc["schema_version"] == SCHEMA_VERSION
    assert doc["model"] == {"path": str(model_dir), "relative": "model", "adapter": "transformers"}
    assert doc["scores"][0]["values"]["block.1"] is None  # JSON has no infinity
    back = Session.load(path)
    assert back.model_path == str(model_dir) and back.adapter == "transformers"
    assert back.scores["ppl"].values == {"block.0": 3.5, "block.1": math.inf}
    assert back.scores["ppl"].locked == ["block.0"] and back.keep == "first:1" and back.remove == ["block.1"]
    assert back.slimmed_path == str(slim_dir) and back.slimmed_remove == ["block.1"]
    assert back.preview.options["generate"] == {"prompt": "import os", "max_new_tokens": 12}
    assert back.results["generation"]["original"] == TextMedia("import os\n", meta={"seconds": 0.1})
    assert back.results["perplexity"]["original"]["perplexity"] == 12.5
    assert back.view == {"expanded": ["block.0"], "tab": 2}
    # the folder moves with its models: paths are found again relative to the session
    shutil.move(str(tmp_path / "work"), str(tmp_path / "moved"))
    moved = Session.load(tmp_path / "moved" / "my.slim")
    assert moved.model_path == str((tmp_path / "moved" / "model").resolve())
    assert moved.slimmed_path == str((tmp_path / "moved" / "slim").resolve())


def test_session_files_are_checked(tmp_path):
    bad = tmp_path / "bad.slim"
    bad.write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(SlimError, match="not a valid JSON"):
        Session.load(bad)
    bad.write_text(json.dumps({"kind": "plan", "schema_version": 1}))
    with pytest.raises(SlimError, match="not a SlimGUI session"):
        Session.load(bad)
    bad.write_text(json.dumps({"kind": "session", "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(SlimError, match="newer SlimGUI"):
        Session.load(bad)
    bad.write_text(json.dumps({"kind": "session", "schema_version": 1, "scores": [{"values": {}}]}))
    with pytest.raises(SlimError, match="not a valid session"):
        Session.load(bad)


# -- jobs --------------------------------------------------------------------------------------
def test_job_records_outcome_progress_and_eta():
    seen = []
    job = Job("sum")
    job.listener = lambda j: seen.append((j.status, j.done))

    def work(progress=None, cancel=None):
        for i in range(4):
            cancel.raise_if_cancelled()
            progress(i + 1, 4, f"step {i}")
        return 42

    assert job.run(work) == 42
    assert job.status == JobStatus.DONE and job.fraction == 1.0 and (job.done, job.total) == (4, 4)
    assert (JobStatus.RUNNING, 2) in seen and job.error is None

    failing = Job("fail")
    failing.run(lambda progress=None, cancel=None: (_ for _ in ()).throw(SlimError("bad input", hint="fix it")))
    assert failing.status == JobStatus.FAILED and failing.error == "bad input (fix it)" and failing.details is None
    bug = Job("bug")
    bug.run(lambda progress=None, cancel=None: 1 / 0)
    assert bug.status == JobStatus.FAILED and "ZeroDivisionError" in bug.error and "Traceback" in bug.details

    early = Job("cancelled before it starts")
    early.cancel()
    early.run(work)
    assert early.status == JobStatus.CANCELLED and early.done == 0

    def until_cancelled(progress=None, cancel=None):
        progress(1, 10, "")
        cancel.cancel()
        cancel.raise_if_cancelled()

    mid = Job("mid")
    mid.run(until_cancelled)
    assert mid.status == JobStatus.CANCELLED and mid.done == 1
    with pytest.raises(Cancelled):
        mid.cancel_token.raise_if_cancelled()
    assert format_eta(5) == "5s" and format_eta(65) == "1m 05s" and format_eta(3700) == "1h 01m"
    assert format_eta(None) == ""


def test_open_task_asks_on_ties_and_honours_remembered_choice(tiny_models, tmp_path):
    twin = Plugin(name="twin", adapters=[AdapterSpec("transformers-twin", "llm", "slimgui_families.llm.adapter:TransformersAdapter",
                                                     "slimgui_families.llm.probe:match", "the same adapter again")])
    reg = discover(extra=[twin])
    path = str(tiny_models["llama"])
    need = open_task(path, registry=reg)
    assert isinstance(need, NeedsChoice)
    assert sorted(spec.name for _, _, spec in need.candidates) == ["transformers", "transformers-twin"]
    model = open_task(path, registry=reg, remembered={"folder": "transformers-twin"})
    assert model.family == "llm" and model.has_weights
    assert file_kind(path) == "folder" and file_kind(str(tmp_path / "x.SafeTensors")) == ".safetensors"


def test_apply_and_preview_tasks(tiny_models, registry, tmp_path):
    model = open_model(str(tiny_models["llama"]), registry=registry)
    plan = select_by_budget(graph_of(model, registry), Scores("m", {f"block.{i}": float(i) for i in range(4)}), blocks=1)
    from slimgui.core.plan import PruningPlan

    slim, where = apply_task(model, PruningPlan(remove=plan), registry=registry, out_dir=str(tmp_path / "slim"))
    assert len(graph_of(slim, registry).prunable()) == 3 and len(graph_of(model, registry).prunable()) == 4
    assert json.loads((tmp_path / "slim" / "config.json").read_text())["num_hidden_layers"] == 3
    assert where == str(tmp_path / "slim") and slim.source == where
    texts = preview_task([model, slim], "generate", registry=registry, options={"prompt": "def ", "max_new_tokens": 5})
    assert all(isinstance(t, TextMedia) and t.text.startswith("def ") for t in texts)
    assert all(t.meta["new_tokens"] == 5 for t in texts)


def test_default_criterion(tiny_models, registry, text_file, tmp_path):
    model = open_model(str(tiny_models["llama"]), registry=registry)
    assert default_criterion(registry, model) == "magnitude"  # no default calibration text for this model
    assert default_criterion(registry, model, str(text_file)) == "ppl"
    cfg = tmp_path / "cfg"
    shutil.copytree(tiny_models["llama"], cfg, ignore=shutil.ignore_patterns("*.safetensors"))
    meta = open_model(str(cfg), registry=registry)
    assert not meta.has_weights and default_criterion(registry, meta) is None
    _ = CalibrationData(str(text_file))


def test_retrain_settings_roundtrip_and_run_state(tmp_path):
    from slimgui.core.jobs import run_state
    from slimgui.core.session import RetrainSettings, Session

    run = tmp_path / "run"
    run.mkdir()
    sess = Session(model_path=str(tmp_path / "m"))
    sess.retrain = RetrainSettings(out=str(run), method="kd", steps=77,
                                   options={"kd": {"kd_hidden": 0.5}, "lora": {"lora_targets": ["q_proj"]}})
    sess.save(tmp_path / "s.slim")
    back = Session.load(tmp_path / "s.slim")
    assert back.retrain.method == "kd" and back.retrain.steps == 77 and back.retrain.options["kd"]["kd_hidden"] == 0.5
    assert back.retrain.options["lora"]["lora_targets"] == ["q_proj"] and back.retrain.out == str(run)
    state = run_state(str(run))
    assert state["step"] == 0 and state["history"] == []
