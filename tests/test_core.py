"""Core data types: graphs, keep-sets, plans, scores, versioned JSON, atomic writes (no torch needed)."""

from __future__ import annotations

import json
import os

import pytest

from slimgui.core.errors import SlimError
from slimgui.core.graph import Unit, UnitGraph
from slimgui.core.io import atomic_write_text, read_versioned_json, write_versioned_json
from slimgui.core.plan import PruningPlan, parse_keep, plan_from_scores
from slimgui.core.progress import CancelToken, EtaTracker
from slimgui.core.scores import Scores


def stack_graph(n: int = 12) -> UnitGraph:
    units = [Unit("embed", "embedding", "Embeddings", params=1000)]
    units += [Unit(f"block.{i}", "block", f"Block {i}", params=100, prunable=True, attrs={"index": i}) for i in range(n)]
    return UnitGraph("llm", units, attrs={"total_params": 1000 + 100 * n})


def test_resolve_by_index_and_id():
    g = stack_graph()
    assert g.resolve(3).id == "block.3"
    assert g.resolve("7").id == "block.7"
    assert g.resolve("block.2").id == "block.2"
    with pytest.raises(SlimError, match="out of range"):
        g.resolve(12)
    with pytest.raises(SlimError, match="unknown unit"):
        g.resolve("block.99")
    with pytest.raises(SlimError, match="cannot be removed"):
        g.resolve("embed")


def test_keep_set_taylor_plus():
    g = stack_graph()
    assert parse_keep("first:4,last:2", g) == ["block.0", "block.1", "block.2", "block.3", "block.10", "block.11"]
    assert parse_keep("5,block.6", g) == ["block.5", "block.6"]
    assert parse_keep(None, g) == []
    with pytest.raises(SlimError):
        parse_keep("first:x", g)


def test_plan_from_scores_respects_keep_set_and_budget():
    g = stack_graph()
    # block 0 least important, then 1, 2 ...: without a keep-set the first blocks go
    scores = Scores("ppl", {f"block.{i}": float(i) for i in range(12)})
    plan = plan_from_scores(g, scores, ratio=0.25)
    assert plan.remove == ["block.0", "block.1", "block.2"]
    plan = plan_from_scores(g, scores, ratio=0.25, keep="first:4,last:2")
    assert plan.remove == ["block.4", "block.5", "block.6"]
    assert "block.0" in plan.locked and plan.keep == "first:4,last:2"
    assert plan.params_after(g) == 1000 + 100 * 9
    with pytest.raises(SlimError, match="only 6 are not locked"):
        plan_from_scores(g, scores, count=7, keep="first:4,last:2")


def test_plan_validation():
    g = stack_graph(3)
    with pytest.raises(SlimError, match="all 3 prunable units"):
        PruningPlan(remove=["block.0", "block.1", "block.2"]).validate(g)
    with pytest.raises(SlimError, match="removes nothing"):
        PruningPlan(remove=[]).validate(g)
    with pytest.raises(SlimError, match="locked"):
        PruningPlan(remove=["block.0"], locked=["block.0"]).validate(g)


def test_scores_and_plan_roundtrip(tmp_path):
    s = Scores("bi", {"block.0": 0.5, "block.1": 0.1, "block.2": float("inf")}, model="m", locked=["block.2"],
               keep="last:1")
    s.save(tmp_path / "s.json")
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["schema_version"] == 1 and doc["kind"] == "scores"
    assert doc["ranking"] == ["block.1", "block.0", "block.2"]
    back = Scores.load(tmp_path / "s.json")
    assert back.values == s.values and back.locked == ["block.2"] and back.keep == "last:1"
    p = PruningPlan(remove=["block.1"], keep="last:1", criterion="bi", ratio=0.3)
    p.save(tmp_path / "p.json")
    assert PruningPlan.load(tmp_path / "p.json") == p


def test_versioned_json_migrations_and_errors(tmp_path):
    path = tmp_path / "x.json"
    write_versioned_json(path, "thing", 1, {"a": 1})
    doc = read_versioned_json(path, "thing", 2, migrations={1: lambda d: {**d, "b": d["a"] + 1}})
    assert doc["b"] == 2 and doc["schema_version"] == 2
    with pytest.raises(SlimError, match="newer SlimGUI"):
        read_versioned_json(path, "thing", 0)
    with pytest.raises(SlimError, match="not a SlimGUI other"):
        read_versioned_json(path, "other", 1)
    path.write_text("{not json")
    with pytest.raises(SlimError, match="not a valid JSON"):
        read_versioned_json(path, "thing", 1)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(SlimError, match="No space left"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_unwritable_location_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SlimError, match="cannot write"):
        atomic_write_text(blocker / "sub" / "y.txt", "data")


def test_cancel_token_and_eta():
    tok = CancelToken()
    tok.raise_if_cancelled()
    tok.cancel()
    with pytest.raises(Exception, match="cancelled"):
        tok.raise_if_cancelled()
    eta = EtaTracker(start=0.0)
    assert eta.eta(0, 10) is None


def test_origin_links_are_followed_to_the_demo(tmp_path):
    import json as _json

    from slimgui.core.model import made_from, origin_with

    demo, pruned, healed = (tmp_path / n for n in ("demo", "pruned", "healed"))
    for d in (demo, pruned, healed):
        d.mkdir()
    (demo / "slimgui_demo.json").write_text("{}")
    (pruned / "slimgui_plan.json").write_text(_json.dumps({"kind": "plan", "model": str(demo)}))
    (healed / "slimgui_healed_from.json").write_text(_json.dumps({"model": str(pruned)}))
    assert made_from(healed) == pruned and made_from(demo) is None
    assert origin_with(healed, "slimgui_demo.json") == demo
    (pruned / "slimgui_plan.json").write_text(_json.dumps({"model": str(tmp_path / "gone")}))
    assert origin_with(healed, "slimgui_demo.json") is None  # a broken link ends the search


def test_taylor_counts_every_parameter_but_biases_by_name():
    """``taylor`` sums a unit's weights: every parameter but those named ``bias`` / ``*_bias`` (no torch needed)."""
    from slimgui.core.criteria import is_bias

    for name in ("self_attn.q_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight",
                 "attn.c_attn.weight", "LayerNorm.weight", "in_proj_weight", "relative_attention_bias.weight",
                 "mixer.A_log", "layer_scale.gamma"):
        assert not is_bias(name), name
    for name in ("self_attn.q_proj.bias", "ln_1.bias", "attn.in_proj_bias", "bias"):
        assert is_bias(name), name


def test_core_plugin_names_its_criteria():
    from slimgui.core.criteria import plugin

    specs = {c.name: c.description for c in plugin.criteria}
    assert set(specs) == {"magnitude", "taylor", "taylor-matrices"}
    assert "rank >= 2" in specs["magnitude"] and "norm weights and biases not counted" in specs["magnitude"]
    assert "norm weights included, biases not" in specs["taylor"]
    assert "weight matrices only" in specs["taylor-matrices"]


def _mac_graph() -> UnitGraph:
    """A head with two q/k groups and one value group, another head, an MLP group; MACs on every unit."""
    units = [
        Unit("b", "block", "Block", params=100, macs=1000, prunable=True,
             attrs={"removed_with_all": [["b.h0", "b.h1", "b.m"]]}),
        Unit("b.h0", "head", "h0", parent="b", params=30, macs=300, prunable=True,
             attrs={"removed_with_all": [["b.h0.qk0", "b.h0.qk1"], ["b.h0.v0"]]}),
        Unit("b.h0.qk0", "qk", "qk0", parent="b.h0", params=10, macs=100, prunable=True),
        Unit("b.h0.qk1", "qk", "qk1", parent="b.h0", params=10, macs=100, prunable=True),
        Unit("b.h0.v0", "value", "v0", parent="b.h0", params=10, macs=100, prunable=True),
        Unit("b.h1", "head", "h1", parent="b", params=30, macs=300, prunable=True),
        Unit("b.m", "neurons", "m", parent="b", params=40, macs=400, prunable=True),
        Unit("emb", "embedding", "Embedding", params=50, macs=0),
    ]
    return UnitGraph("toy", units)


def test_macs_budget_counts_what_a_removal_turns_into():
    from slimgui.core.selection import estimate, removal_closure, select_by_budget

    g = _mac_graph()
    assert g.total_macs == 1000 and g.total_params == 150
    # both q/k groups gone: the head goes, its value group with it
    assert removal_closure(g, ["b.h0.qk0", "b.h0.qk1"]) == ["b.h0", "b.h0.qk0", "b.h0.qk1"]
    est = estimate(g, ["b.h0.qk0", "b.h0.qk1"])
    assert (est.macs_after, est.params_after) == (700, 120)
    assert est.speedup_basis == "MAC" and est.speedup == pytest.approx(1000 / 700)
    # everything inside the block gone: the block goes
    assert "b" in removal_closure(g, ["b.h0", "b.h1", "b.m"])
    s = Scores("c", {"b": 9.0, "b.h0": 5.0, "b.h0.qk0": 1.0, "b.h0.qk1": 2.0, "b.h0.v0": 3.0, "b.h1": 4.0, "b.m": 0.5})
    # 15 % of the MACs: b.m (400) does not fit and is passed over; qk0 fits (100); qk1 would take the head (300)
    assert select_by_budget(g, s, macs_fraction=0.15) == ["b.h0.qk0"]
    # 45 %: b.m (400) fits, then nothing else does
    assert select_by_budget(g, s, macs_fraction=0.45) == ["b.m"]
    # 75 %: b.m, qk0, qk1 (with the head: 300 more) = 700
    assert select_by_budget(g, s, macs_fraction=0.75) == ["b.h0.qk0", "b.h0.qk1", "b.m"]
    with pytest.raises(SlimError, match="less than one block"):
        select_by_budget(g, s, macs_fraction=0.05)
    with pytest.raises(SlimError, match="one budget"):
        select_by_budget(g, s, params_fraction=0.1, macs_fraction=0.1)
    nan = Scores("c", {**s.values, "b.m": float("nan")})
    assert "b.m" not in select_by_budget(g, nan, macs_fraction=0.75)
    plain = UnitGraph("toy", [Unit("a", "block", "A", params=10, prunable=True), Unit("b", "block", "B", params=10, prunable=True)])
    assert plain.total_macs is None and estimate(plain, ["a"]).speedup_basis == "parameter"
    with pytest.raises(SlimError, match="counts no MACs"):
        select_by_budget(plain, Scores("c", {"a": 1.0, "b": 2.0}), macs_fraction=0.5)


def test_a_busy_machine_marks_the_benchmark(monkeypatch):
    from slimgui.core import bench
    from slimgui.core.bench import machine_load

    monkeypatch.setattr(bench, "_load_average", lambda: None)  # a platform without a load average

    quiet = machine_load(2, before=0.3, now=2.4, cores=8)  # the benchmark's own two threads
    assert not quiet["busy"] and "warning" not in quiet
    busy = machine_load(2, before=7.5, now=8.1, cores=8)
    assert busy["busy"] and "busy while measuring (load average 8.1 on 8 cores" in busy["warning"]
    assert machine_load(1, before=None, now=None, cores=2) == {"cores": 2, "load_before": None, "load_after": None,
                                                                 "busy": False}


def test_bench_in_the_cli_warns_when_the_machine_is_busy(tiny_models, monkeypatch, capsys):
    import json as _json

    from slimgui.cli import main
    from slimgui.core import bench

    monkeypatch.setattr(bench, "_load_average", lambda: 50.0)
    assert main(["bench", str(tiny_models["llama"]), "--batch", "1", "--repeats", "1", "--threads", "1",
                 "--json"]) == 0
    out, err = capsys.readouterr()
    doc = _json.loads(out.strip().splitlines()[-1])
    assert doc["machine_load"]["busy"] and "slimgui: warning: the machine was busy while measuring" in err


def test_a_resumed_run_is_half_done_and_timed_from_where_it_resumed(monkeypatch):
    """Issue 20, item 6: a run resumed at step 6 of 12 shows 50 % (not 0 % or 14 %), and its ETA comes from the
    steps run since the resume."""
    from slimgui.core import progress as prog
    from slimgui.core.jobs import Job

    clock = [100.0]
    monkeypatch.setattr(prog.time, "monotonic", lambda: clock[0])
    job = Job(title="retrain")
    job.progress(6, 12, "step 6/12")
    assert job.fraction == 0.5
    clock[0] += 10.0  # two steps in ten seconds
    job.progress(8, 12, "step 8/12")
    assert job._eta.eta(8, 12) == pytest.approx(20.0)  # four steps left at five seconds a step
