"""A plan's channel widths snapped to latency steps (issue 18): the width-slice declaration of the family contract
(``attrs["width_of"]`` / ``attrs["channels"]``), the core's snapping of a removal list to step edges (synthetic
staircases, injected: no timing is asserted), the edges measured per touched layer (cached; transposed convolutions
too), and ``slimgui prune --snap-widths`` on the gan demo — the pruned generator has the snapped widths — with a
family that declares no width slices refused in one line."""

from __future__ import annotations

import json

import pytest
import torch.nn as nn

from slimgui.core import costmodel, profiling, selection
from slimgui.core.errors import SlimError
from slimgui.core.graph import Unit, UnitGraph
from slimgui.core.model import open_model


# -- a synthetic graph: layer L (64 channels) in eighths of 8, layer M (16) in eighths of 2, a plain block B ---------
def _graph(with_slices: bool = True, stage: bool = False) -> UnitGraph:
    units = [Unit("B", "block", "B", params=10, prunable=True)]
    if stage:
        units.append(Unit("stage", "stage", "stage", prunable=True))
    for layer, width in (("L", 64), ("M", 16)):
        units.append(Unit(layer, "conv", layer, parent="stage" if stage and layer == "L" else None, params=width,
                          attrs={"channels": width}))
        prev = None
        for j in range(1, 8):
            attrs = {"width_of": layer, "channels": width // 8} if with_slices else {}
            if prev:
                attrs["removes_with"] = [prev]
            units.append(Unit(f"{layer}.f{j}", "filters", f"{layer} {j}/8", parent=layer, params=width // 8,
                              prunable=True, attrs=attrs))
            prev = f"{layer}.f{j}"
    return UnitGraph("synthetic", units, [], {})


def test_width_layers_read_the_declaration():
    g = _graph()
    layers = selection.width_layers(g)
    assert set(layers) == {"L", "M"} and layers["L"].width == 64
    assert [w for w, _ in layers["L"].reachable()] == [64, 56, 48, 40, 32, 24, 16, 8]
    assert layers["L"].reachable()[3] == (40, ("L.f1", "L.f2", "L.f3"))
    assert selection.width_layers(_graph(with_slices=False)) == {}
    # the closure counts each slice once: f6 takes f1..f5 along
    assert selection.touched_widths(g, ["L.f6", "B"]) == {"L": 16}
    assert selection.touched_widths(g, ["B"]) == {}


def test_snapping_up_keeps_the_channels_that_cost_nothing():
    g = _graph()
    # L keeps 16; its staircase is flat up to 24: 8 more channels for free (f5 instead of f6)
    snapped, rows = selection.snap_removal(g, ["B", "L.f6", "M.f2"], {"L": [24, 48, 64], "M": [14, 16]})
    assert snapped == ["B", "L.f5", "M.f1"]  # M keeps 12 → 14, the top of its step
    by = {r["layer"]: r for r in rows}
    assert (by["L"]["before"], by["L"]["after"], by["L"]["moved"]) == (16, 24, True)
    assert (by["M"]["before"], by["M"]["after"], by["M"]["width"]) == (12, 14, 16)
    assert by["L"]["edges"] == [24, 48, 64]
    # the edge between two slices: keep the widest width that stays inside the step (never past its edge)
    snapped, rows = selection.snap_removal(g, ["L.f6"], {"L": [20, 64]})
    assert snapped == ["L.f6"] and rows[0]["after"] == 16 and not rows[0]["moved"]
    # a step that ends at the full width: every slice comes back
    snapped, rows = selection.snap_removal(g, ["B", "M.f2"], {"M": [10, 16]})
    assert snapped == ["B"] and rows[0]["after"] == 16
    # a width at an edge, and a layer without measured edges, stay
    assert selection.snap_removal(g, ["L.f5"], {"L": [24, 64]})[0] == ["L.f5"]
    assert selection.snap_removal(g, ["L.f5"], {})[0] == ["L.f5"]


def test_snapping_down_goes_one_step_faster_when_a_slice_reaches_it():
    g = _graph()
    snapped, rows = selection.snap_removal(g, ["L.f5"], {"L": [8, 20, 64]}, direction="down")  # keeps 24 → 16
    assert snapped == ["L.f6"] and (rows[0]["before"], rows[0]["after"]) == (24, 16)
    snapped, rows = selection.snap_removal(g, ["L.f5"], {"L": [4, 64]}, direction="down")  # no slice leaves only 4
    assert snapped == ["L.f5"] and not rows[0]["moved"]
    with pytest.raises(SlimError, match="'up' or 'down'"):
        selection.snap_removal(g, ["L.f5"], {}, direction="sideways")


def test_no_slices_or_a_broken_declaration_is_one_message():
    with pytest.raises(SlimError, match="declare no width slices"):
        selection.snap_removal(_graph(with_slices=False), ["B"], {})
    g = _graph()
    g.get("L.f1").attrs["width_of"] = "nowhere"
    with pytest.raises(SlimError, match="declares a width slice that does not fit"):
        selection.width_layers(g)
    g = _graph()
    g.get("M").attrs["channels"] = 4  # its slices remove 14
    with pytest.raises(SlimError, match="declares no full width"):
        selection.width_layers(g)


def test_a_layer_that_goes_whole_is_not_snapped():
    g = _graph(stage=True)
    assert selection.touched_widths(g, ["stage", "L.f3", "M.f1"]) == {"M": 14}


def test_latency_steps_of_a_transposed_convolution():
    up = nn.ConvTranspose2d(16, 32, 4, 2, 1)
    steps = costmodel.latency_steps(up, (1, 16, 4, 4), [8, 16, 32], repeats=1)
    assert [w for w, _ in steps] == [8, 16, 32] and all(t > 0 for _, t in steps)
    assert costmodel.step_edges(steps)[-1] == 32
    with pytest.raises(SlimError, match="outside 1..32"):
        costmodel.latency_steps(up, (1, 16, 4, 4), [33], repeats=1)
    # the unit's module may hold its layer with a norm: that one layer is timed
    holder = nn.ModuleList([nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)])
    assert isinstance(profiling.timed_layer(holder), nn.Conv2d)
    assert profiling.timed_layer(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))) is None


# -- the families' declarations -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gan(registry):
    return open_model(str(registry.demo("gan")()["model"]), registry=registry)


def test_gan_declares_its_eighths_as_width_slices(gan, registry):
    g = gan.impl.to_graph(gan)
    layers = selection.width_layers(g)
    cfg = gan.config
    assert layers["down.3"].width == cfg.down[3] and layers["up.4"].width == cfg.up[4]
    assert "up.0" not in layers  # the output conv's filters are the image's channels
    assert sum(c for _, c in layers["down.3"].slices) == 7 * cfg.down[3] // 8
    mod = gan.impl.unit_module(gan, "up.4")
    assert isinstance(profiling.timed_layer(mod), nn.ConvTranspose2d)


def test_wav2lip_declares_its_channel_groups_as_width_slices(registry):
    w2l = open_model(str(registry.demo("wav2lip")()["model"]), registry=registry)
    g = w2l.impl.to_graph(w2l)
    layers = selection.width_layers(g)
    assert "face.5.0" in layers and "nef" not in layers  # a part's width changes many layers: not one layer's slice
    from slimgui_families.wav2lip import pruning as P

    assert layers["face.5.0"].width == P.group_width(w2l.config, "face.5.0")
    assert isinstance(profiling.timed_layer(w2l.impl.unit_module(w2l, "face.5.0")), nn.Conv2d)
    # a removal snapped to injected edges prunes into the snapped width
    width = layers["face.5.0"].width
    res = profiling.snap_widths(w2l, registry, ["face.5.0.f4"], edges={"face.5.0": [width * 6 // 8, width]})
    assert res["layers"][0]["after"] == width * 6 // 8 and res["remove"] == ["face.5.0.f2"]
    from slimgui.core.ops import prune
    from slimgui.core.plan import PruningPlan

    slim = prune(w2l, PruningPlan(remove=res["remove"], model=w2l.source), registry=registry)
    assert P.group_width(slim.config, "face.5.0") == width * 6 // 8


def test_gan_plan_snapped_with_injected_edges_prunes_into_those_widths(gan, registry):
    from slimgui.core.ops import preset_plan, prune

    plan = preset_plan(gan, "inner-75", registry=registry)
    kept = selection.touched_widths(gan.impl.to_graph(gan), plan.remove)
    assert kept == {"down.4": 16, "down.5": 16, "up.5": 16, "up.4": 16}
    edges = {"down.4": [32, 64], "down.5": [16, 64], "up.4": [20, 64]}  # down.5 at an edge; up.5: no edges
    res = profiling.snap_widths(gan, registry, plan.remove, edges=edges)
    after = {r["layer"]: r["after"] for r in res["layers"]}
    assert after == {"down.4": 32, "down.5": 16, "up.5": 16, "up.4": 16}
    plan.remove = res["remove"]
    slim = prune(gan, plan, registry=registry)
    assert slim.config.down[4] == 32 and slim.config.down[5] == 16 and slim.config.up[4] == 16


def test_edges_are_measured_once_per_layer(gan, registry, monkeypatch):
    calls = []
    real = profiling.width_steps

    def counting(*a, **kw):
        calls.append(a[2])
        return real(*a, **{**kw, "repeats": 1, "points": 4})

    monkeypatch.setattr(profiling, "width_steps", counting)
    cache: dict = {}
    got = profiling.width_edges(gan, registry, ["down.4", "up.4"], cache=cache, threads=1)
    assert set(got) == {"down.4", "up.4"} and got["up.4"]["edges"][-1] == gan.config.up[4]
    assert got["up.4"]["input_shape"][1] == gan.config.down[4] + gan.config.up[5]  # its own input: skip + below
    profiling.width_edges(gan, registry, ["down.4", "up.4", "down.5"], cache=cache, threads=1)
    assert calls == ["down.4", "up.4", "down.5"]  # the cached layers were not timed again


def test_a_family_without_width_slices_is_refused(registry):
    from slimgui_families.cnn.demo import ensure_resnet

    resnet = open_model(str(ensure_resnet()["model"]), registry=registry)
    with pytest.raises(SlimError, match="declare no width slices"):
        profiling.snap_widths(resnet, registry, ["layer1.1"])


# -- the command -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_prune_snap_widths_on_the_gan_demo(tmp_path, registry):
    from helpers import run_cli

    out = tmp_path / "snapped"
    r = run_cli("prune", "demo:gan", "--preset", "inner-75", "--snap-widths", "--out", str(out), "--json",
                env_extra={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    snap = got["snap_widths"]
    assert snap["direction"] == "up" and {r["layer"] for r in snap["layers"]} == {"down.4", "down.5", "up.5", "up.4"}
    for row in snap["layers"]:
        assert row["before"] == 16 and row["after"] >= 16 and row["edges"][-1] == 64
        assert row["moved"] == (row["after"] != row["before"])
    slim = open_model(str(out), registry=registry)
    for row in snap["layers"]:
        side, k = row["layer"].split(".")
        assert getattr(slim.config, side)[int(k)] == row["after"]  # the saved generator has the snapped widths
    assert json.loads((out / "slimgui_plan.json").read_text())["meta"]["snap_widths"]["direction"] == "up"
    down = run_cli("prune", "demo:gan", "--remove", "down.4.f5", "--snap-widths", "down", "--out",
                   str(tmp_path / "down"), "--json", env_extra={"OMP_NUM_THREADS": "1"})
    assert down.returncode == 0, down.stderr[-3000:]
    row = json.loads(down.stdout.strip().splitlines()[-1])["snap_widths"]["layers"][0]
    assert row["layer"] == "down.4" and row["after"] <= row["before"] == 24


@pytest.mark.slow
def test_prune_snap_widths_refused_for_a_family_without_slices(tmp_path):
    from helpers import run_cli

    r = run_cli("prune", "demo:llm", "--remove", "block.3", "--snap-widths", "--out", str(tmp_path / "x"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "declare no width slices" in lines[0] and lines[0].startswith("slimgui: error: ")
    assert not (tmp_path / "x").exists()
