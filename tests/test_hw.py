"""Hardware-aware slimming, core (issue 18): device profiles (measured and cached, or read from versioned JSON with
absurd numbers refused), the roofline bound, per-unit profiles of real models (FLOPs checked against the layers'
arithmetic, measured times, ONNX nodes through onnxruntime's profiler), latency budgets, step edges and width
snapping, and the ABConv operator (its arithmetic, its equivalence to a block-diagonal convolution, bad input)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from slimgui.core import costmodel, profiling, selection
from slimgui.core.abconv import ABConv2d, apply_abconv, conv_costs
from slimgui.core.errors import SlimError
from slimgui.core.graph import Unit, UnitGraph
from slimgui.core.plugins import discover
from slimgui.core.scores import Scores

NPU = {"kind": "device-profile", "schema_version": 1, "name": "test NPU", "peak_flops": 1.0e12, "bandwidth": 4.0e9,
       "dtype_bytes": 1}


@pytest.fixture(scope="module")
def registry():
    return discover()


@pytest.fixture(scope="module")
def resnet(registry):
    from slimgui_families.cnn.demo import ensure_resnet

    from slimgui.core.model import open_model

    return open_model(str(ensure_resnet()["model"]), registry=registry)


# -- device profiles -----------------------------------------------------------------------------------------------
def test_a_device_profile_file_round_trips_and_bounds_the_roofline(tmp_path):
    path = tmp_path / "npu.json"
    path.write_text(json.dumps(NPU))
    prof = costmodel.load_profile(path)
    assert (prof.peak_flops, prof.bandwidth, prof.dtype_bytes) == (1e12, 4e9, 1)
    assert prof.ridge == pytest.approx(250.0)
    assert prof.bound(10.0) == pytest.approx(4e10)  # memory-bound: intensity × bandwidth
    assert prof.bound(1000.0) == pytest.approx(1e12)  # compute-bound: the peak
    again = tmp_path / "again.json"
    costmodel.save_profile(prof, again)
    assert costmodel.load_profile(again).peak_flops == prof.peak_flops
    assert json.loads(again.read_text())["schema_version"] == costmodel.SCHEMA_VERSION


@pytest.mark.parametrize("change, says", [
    ({"peak_flops": None}, "'peak_flops' is missing"),
    ({"bandwidth": -5}, "'bandwidth' = -5 is not a plausible"),
    ({"peak_flops": 1e30}, "'peak_flops' = 1e+30 is not a plausible"),
    ({"bandwidth": "fast"}, "'bandwidth' must be a number"),
    ({"dtype_bytes": 3.5}, "'dtype_bytes' must be a whole number"),
    ({"name": ""}, "'name' is missing"),
    ({"schema_version": 99}, "newer SlimGUI"),
    ({"kind": "session"}, "is not a device profile"),
])
def test_absurd_or_missing_device_numbers_are_one_clear_message(tmp_path, change, says):
    doc = {**NPU, **change}
    doc = {k: v for k, v in doc.items() if v is not None}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SlimError) as err:
        costmodel.load_profile(path)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_not_json_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("peak = fast")
    with pytest.raises(SlimError, match="not a valid JSON device profile"):
        costmodel.load_profile(path)


def test_this_machine_is_measured_once_and_cached():
    first = costmodel.device_profile(threads=1)
    assert first.source == "measured" and first.peak_flops > 1e8 and first.bandwidth > 1e7
    assert first.details["matmul_n"] == 1024 and first.details["threads"] == 1
    again = costmodel.device_profile(threads=1)
    assert again.details.get("cached") == str(costmodel.cache_file())
    assert again.peak_flops == first.peak_flops  # read back, not measured again


# -- per-unit profiles ---------------------------------------------------------------------------------------------
def test_a_cnn_profile_counts_each_conv_exactly_and_times_it(resnet, registry):
    dev = costmodel.profile_from_json(NPU)
    prof = profiling.profile_model(resnet, registry, batch=2, device=dev, repeats=2, threads=1)
    rows = {r["unit"]: r for r in prof["units"]}
    conv = resnet.module.layer3[1].conv1  # 64 -> 64, 3×3, on a 4×4 map
    want = 2 * 2 * 64 * 4 * 4 * 64 * 9  # batch 2
    r = rows["layer3.1.conv1"]
    assert r["flops"] == want
    assert r["weight_bytes"] == conv.weight.numel() * 1  # the profile's element size (int8 NPU)
    assert r["act_bytes"] == 2 * (64 * 4 * 4 + 64 * 4 * 4) * 1  # activations at the device's element size too
    assert r["intensity"] == pytest.approx(want / (r["weight_bytes"] + r["act_bytes"]))
    assert r["bound_flops"] == pytest.approx(min(1e12, r["intensity"] * 4e9))
    assert r["memory_bound"] is True and r["measured_ms"] > 0 and r["calls"] == 1
    assert r["efficiency"] == pytest.approx(r["attained_flops"] / r["bound_flops"])
    # a block holds its convolutions: its FLOPs are theirs (plus nothing else that counts)
    block = rows["layer3.1"]
    assert block["flops"] == rows["layer3.1.conv1"]["flops"] + rows["layer3.1.conv2"]["flops"]
    assert prof["total_flops"] == pytest.approx(sum(rows[u]["flops"] for u in rows if rows[u]["parent"] is None))
    assert prof["device"]["name"] == "test NPU" and prof["batch"] == 2
    leaves = {r["unit"] for r in profiling.leaf_rows(prof)}
    assert "layer3.1.conv1" in leaves and "layer3.1" not in leaves and "fc" in leaves


@pytest.mark.parametrize("demo", ["gan", "vit"])
def test_every_family_with_a_benchmark_run_is_profiled(registry, demo):
    from slimgui.core.model import open_model

    model = open_model(str(registry.demo(demo)()["model"]), registry=registry)
    prof = profiling.profile_model(model, registry, repeats=1, threads=1)
    timed = [r for r in prof["units"] if r["measured_ms"]]
    assert len(timed) >= 4 and prof["total_flops"] > 0
    counted = [r for r in timed if r["flops"]]
    assert len(counted) >= 4 and all(r["intensity"] > 0 and r["bound_ms"] > 0 for r in counted)
    # a norm does no matmul FlopCounterMode counts: no intensity, never a made-up one
    assert all(r["intensity"] is None for r in timed if not r["flops"])


def test_an_onnx_file_is_profiled_per_node(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 8, 8),), str(path), input_names=["x"], dynamic_axes={"x": {0: "b"}},
                      dynamo=False)
    prof = profiling.profile_onnx(path, batch=4, repeats=2, threads=1)
    by_op = {r["op"]: r for r in prof["units"]}
    assert prof["runtime"] == "onnxruntime"
    assert by_op["Conv"]["flops"] == 2 * 4 * 16 * 8 * 8 * 3 * 9
    assert by_op["Conv"]["weight_bytes"] == (16 * 3 * 9 + 16) * 4
    assert by_op["Gemm"]["flops"] == 2 * 4 * 10 * 1024
    assert all(r["measured_ms"] > 0 for r in prof["units"])


def test_a_broken_onnx_file_is_one_message(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(SlimError):
        profiling.profile_onnx(bad)


# -- latency budgets -------------------------------------------------------------------------------------------------
def _graph():
    units = [Unit(f"b{i}", "block", f"block {i}", params=10, prunable=True) for i in range(4)]
    units.append(Unit("b3.x", "layer", "inner", parent="b3", params=5))
    units[0].attrs["removes_with"] = ["b1"]
    return UnitGraph("t", units)


def test_latency_budget_removes_least_important_units_until_it_fits():
    g = _graph()
    table = {"b0": 2.0, "b1": 1.0, "b2": 3.0, "b3": 4.0, "b3.x": 3.5}
    scores = Scores(criterion="t", values={"b0": 0.5, "b1": 0.9, "b2": 0.1, "b3": 0.7})
    assert selection.predicted_latency_ms(g, table, 12.0, ["b0"]) == pytest.approx(9.0)  # b1 goes with b0
    assert selection.predicted_latency_ms(g, table, 12.0, ["b3"]) == pytest.approx(8.0)  # b3.x inside b3: once
    assert selection.select_by_latency(g, scores, table, 12.0, 9.5) == ["b2"]
    assert selection.select_by_latency(g, scores, table, 12.0, 7.0) == ["b0", "b2"]
    with pytest.raises(SlimError, match="already runs in 12 ms"):
        selection.select_by_latency(g, scores, table, 12.0, 20.0)
    with pytest.raises(SlimError, match="leaves about"):
        selection.select_by_latency(g, scores, table, 12.0, 0.5)
    with pytest.raises(SlimError, match="positive number"):
        selection.select_by_latency(g, scores, table, 12.0, float("nan"))


def test_widths_snap_to_latency_step_edges():
    steps = [(8, 1.0), (16, 1.02), (24, 2.0), (32, 2.05), (40, 2.1), (48, 3.0)]
    edges = costmodel.step_edges(steps)
    assert edges == [16, 40, 48]
    assert selection.snap_width(20, edges) == 40  # inside the second step: its channels come for free
    assert selection.snap_width(20, edges, up=False) == 16  # one step down
    assert selection.snap_width(40, edges) == 40
    measured = costmodel.latency_steps(nn.Conv2d(8, 32, 3, padding=1), (1, 8, 6, 6), [8, 16, 32], repeats=2)
    assert [w for w, _ in measured] == [8, 16, 32] and all(t > 0 for _, t in measured)
    with pytest.raises(SlimError, match="outside"):
        costmodel.latency_steps(nn.Linear(4, 4), (1, 4), [8])


# -- ABConv -------------------------------------------------------------------------------------------------------
def test_abconv_is_a_shared_kernel_over_channel_groups():
    conv = nn.Conv2d(32, 64, 3, padding=1)
    ab = ABConv2d.from_conv(conv, 4)
    x = torch.randn(3, 32, 5, 5)
    full = torch.zeros_like(conv.weight)
    for j in range(4):  # the same operator as a block-diagonal conv whose blocks are one shared kernel
        full[j * 16:(j + 1) * 16, j * 8:(j + 1) * 8] = ab.conv.weight
    ref = nn.functional.conv2d(x, full, ab.conv.bias.repeat(4), padding=1)
    assert torch.allclose(ab(x), ref, atol=1e-5)
    blocks = torch.stack([conv.weight[j * 16:(j + 1) * 16, j * 8:(j + 1) * 8] for j in range(4)])
    assert torch.allclose(ab.conv.weight, blocks.mean(0))  # initialised from the original's diagonal blocks
    with pytest.raises(SlimError, match="must divide"):
        ABConv2d.from_conv(nn.Conv2d(6, 8, 3), 4)


def test_abconv_arithmetic_divides_flops_by_g_and_weights_by_g_squared():
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 128, 3, padding=1, stride=2),
                        nn.Conv2d(128, 128, 3, padding=1))
    x = torch.rand(1, 3, 4, 4)
    before = {c.layer: c for c in conv_costs(net, x)}
    c = before["2"]  # 128 -> 128 on 2×2: weights 590 KB, activations 4 KB
    assert c.flops == 2 * 128 * 2 * 2 * 128 * 9 and c.weight_bytes == 128 * 128 * 9 * 4
    assert c.eligible and c.fold == 8  # the largest power of two ≤ 8 with W/g² ≥ A
    assert c.weight_intensity == pytest.approx(2 * 2 * 2 / 4)  # 2·H·W / b
    assert not before["0"].eligible  # 3 input channels: no fold divides them
    done, _ = apply_abconv(net, x)
    assert done == {"1": 4, "2": 8}
    after = {c.layer: c for c in conv_costs(net, x)}
    assert after["2"].flops == pytest.approx(c.flops / 8)
    assert after["2"].weight_bytes == c.weight_bytes // 64
    assert after["2"].act_bytes == c.act_bytes
    assert after["2"].intensity > 4 * c.intensity  # the balanced form's bound is raised
    assert net(x).shape == (1, 128, 2, 2)


def test_abconv_bad_input_is_one_message():
    with pytest.raises(SlimError, match="no 2-D convolution layers"):
        apply_abconv(nn.Sequential(nn.Linear(4, 4)), torch.rand(1, 4))
    big_maps = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1))  # 8×8 weights vs 32×32 maps: activation-bound
    with pytest.raises(SlimError, match="none of this model's convolutions is weight-bound"):
        apply_abconv(big_maps, torch.rand(1, 8, 32, 32))
    with pytest.raises(SlimError, match="no convolution named"):
        apply_abconv(big_maps, torch.rand(1, 8, 32, 32), layers=["nope"])


def test_abconv_needs_a_family_that_saves_it(registry):
    from slimgui.core.abconv import abconv_model
    from slimgui.core.model import open_model

    vit = open_model(str(registry.demo("vit")()["model"]), registry=registry)  # a patch-embedding convolution
    with pytest.raises(SlimError, match="the vit family cannot save ABConv layers"):
        abconv_model(vit, registry)


def test_no_nan_in_a_profile_of_a_model_without_timed_units(registry, resnet):
    prof = profiling.profile_model(resnet, registry, repeats=1, threads=1)
    for r in prof["units"]:
        for k in ("intensity", "bound_flops", "efficiency"):
            assert r[k] is None or math.isfinite(r[k])


def test_width_steps_of_a_layer_on_its_own_input(resnet, registry):
    got = profiling.width_steps(resnet, registry, "layer4.1.conv2", points=4, repeats=1, threads=1)
    assert got["input_shape"] == [1, 96, 2, 2]
    assert [w for w, _ in got["widths"]] == [24, 48, 72, 96] and got["edges"][-1] == 96
    with pytest.raises(SlimError, match="not a convolution or linear layer"):
        profiling.width_steps(resnet, registry, "layer4.1")
    with pytest.raises(SlimError, match="unknown unit"):
        profiling.width_steps(resnet, registry, "nope")


def test_abconv_before_after_profile_of_a_unet_generator(registry):
    """The Roofline view's ABConv copy works on any conv model in memory (here the U-Net GAN): the replaced layers'
    units are profiled again, at a higher intensity."""
    from slimgui.core.model import open_model

    gan = open_model(str(registry.demo("gan")()["model"]), registry=registry)
    res = profiling.profile_task(gan, registry=registry, with_abconv=True, repeats=1, threads=1)
    ab = res["abconv"]
    assert ab["replaced"] and not ab.get("error")
    before = {r["unit"]: r for r in res["units"]}
    assert {r["unit"] for r in ab["units"]} >= {"down.5"}
    assert all(r["intensity"] > before[r["unit"]]["intensity"] for r in ab["units"])
