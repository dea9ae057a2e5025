"""The cnn family (issue 18): torchvision-layout ResNet / MobileNetV1 networks, the digits demos (they mean
something), block removal that reloads smaller, ABConv layers that save and reload, distillation that recovers
accuracy, a bare torchvision resnet18-layout state dict opening with its config inferred, ONNX export, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slimgui.core import ops
from slimgui.core.abconv import ABConv2d, abconv_model
from slimgui.core.errors import SlimError
from slimgui.core.model import open_model
from slimgui.core.plan import PruningPlan
from slimgui.core.plugins import discover


@pytest.fixture(scope="module")
def registry():
    return discover()


@pytest.fixture(scope="module")
def demos():
    from slimgui_families.cnn.demo import ensure_mobilenet, ensure_resnet

    return {"resnet": str(ensure_resnet()["model"]), "mobilenet": str(ensure_mobilenet()["model"])}


@pytest.mark.parametrize("arch, params", [("resnet", (300_000, 900_000)), ("mobilenet", (100_000, 400_000))])
def test_the_demos_mean_something(registry, demos, arch, params):
    meta = json.loads((Path(demos[arch]) / "slimgui_demo.json").read_text())
    assert params[0] < meta["params"] < params[1]
    assert meta["heldout_accuracy"] >= 0.97, meta["history"][-3:]
    model = open_model(demos[arch], registry=registry)
    got = ops.evaluate(model, None, registry=registry, evaluator="digit-accuracy")
    assert got["images"] == 360 and got["accuracy"] == pytest.approx(meta["heldout_accuracy"], abs=1e-4)


def test_the_graph_has_blocks_with_their_convolutions(registry, demos):
    model = open_model(demos["resnet"], registry=registry)
    g = ops.graph_of(model, registry)
    assert [u.id for u in g.prunable()] == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert [u.id for u in g.children("layer2.0")] == ["layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0"]
    conv = g.get("layer3.1.conv1")
    assert conv.macs == 64 * 4 * 4 * 64 * 9 and conv.params == 64 * 64 * 9
    assert g.total_params == sum(p.numel() for p in model.module.parameters())
    assert g.get("layer3.1").macs == 2 * conv.macs


def test_removing_blocks_gives_a_smaller_network_that_reopens(registry, demos, tmp_path):
    model = open_model(demos["mobilenet"], registry=registry)
    g = ops.graph_of(model, registry)
    remove = [u.id for u in g.prunable()][-2:]
    small = ops.prune(model, PruningPlan(remove=remove), registry=registry)
    out = ops.save(small, tmp_path / "small", registry=registry)
    back = open_model(str(out), registry=registry)
    assert len(back.config["blocks"]) == len(model.config["blocks"]) - 2
    assert back.module(torch.rand(2, 1, 16, 16)).shape == (2, 10)
    assert json.loads((out / "cnn.json").read_text())["made_from"] == model.source
    with pytest.raises(SlimError, match="cannot be removed"):
        ops.prune(model, PruningPlan(remove=["blocks.1"]), registry=registry)  # stride 2: changes the resolution


@pytest.mark.slow
def test_abconv_layers_save_reload_and_distillation_recovers_accuracy(registry, demos, tmp_path):
    from slimgui_families.cnn.data import accuracy_of, digits
    from slimgui_families.cnn.training import distill_loop

    torch.set_num_threads(1)
    model = open_model(demos["mobilenet"], registry=registry)
    balanced, report = abconv_model(model, registry)
    assert report["replaced"] and set(report["replaced"]) <= {r["layer"] for r in report["layers"]}
    assert report["flops_after"] < report["flops_before"]
    assert all(r["after"]["intensity"] > r["before"]["intensity"] for r in report["layers"] if r["fold"] > 1)
    out = ops.save(balanced, tmp_path / "ab", registry=registry)
    back = open_model(str(out), registry=registry)
    folds = {n: m.fold for n, m in back.module.named_modules() if isinstance(m, ABConv2d)}
    assert folds == report["replaced"] and back.config["made_from"] == model.source
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(back.module(x), balanced.module(x), atol=1e-6)
    xt, yt = digits("test")
    before = accuracy_of(back.module, xt, yt)
    xs, ys = digits("train")
    distill_loop(back.module, model.module, xs, ys, steps=80, batch=64, lr=3e-3)
    after = accuracy_of(back.module, xt, yt)
    assert after > max(0.9, before + 0.1), (before, after)


def test_a_bare_torchvision_resnet18_state_dict_opens(registry, tmp_path):
    from safetensors.torch import save_file
    from slimgui_families.cnn import modeling as M

    cfg = {"family": "cnn", "arch": "resnet", "in_channels": 3, "num_classes": 1000, "image_size": 224,
           "stem": "imagenet", "stem_width": 64,
           "stages": [[64, [1, 1]], [128, [2, 1]], [256, [2, 1]], [512, [2, 1]]], "abconv": {}}
    state = M.build(cfg).state_dict()
    assert len(state) == 122  # torchvision's resnet18 state dict: 122 tensors, the same names
    assert {"layer2.0.downsample.1.running_var", "layer4.1.bn2.num_batches_tracked", "fc.bias"} <= set(state)
    folder = tmp_path / "r18"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    model = open_model(str(folder), registry=registry)
    assert model.family == "cnn" and model.config["stages"] == cfg["stages"] and model.config["stem"] == "imagenet"
    assert any("inferred" in n for n in model.extra["notes"])


def test_onnx_export_of_an_abconv_network(registry, demos, tmp_path):
    from slimgui.core.profiling import profile_onnx

    model = open_model(demos["resnet"], registry=registry)
    balanced, _ = abconv_model(model, registry)
    out = tmp_path / "m.convnet.onnx"
    got = ops.export(balanced, "convnet-onnx", str(out), registry=registry)
    assert got["agreement"] == 1.0 and got["max_abs_diff"] < 1e-3
    prof = profile_onnx(out, repeats=1, threads=1)
    assert sum(1 for r in prof["units"] if r["op"] == "Conv") >= 15


@pytest.mark.parametrize("doc, says", [
    ({"family": "cnn", "arch": "vgg"}, "'arch' must be one of"),
    ({"family": "cnn", "arch": "resnet", "in_channels": 1, "num_classes": 10, "image_size": 16, "stem_width": 16,
      "stages": "many"}, "needs 'stages'"),
    ({"family": "cnn", "arch": "mobilenetv1", "in_channels": 0, "num_classes": 10, "image_size": 16,
      "stem_width": 16, "blocks": [[8, 1]]}, "'in_channels' must be a whole number"),
])
def test_bad_configs_are_one_message(registry, tmp_path, doc, says):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "cnn.json").write_text(json.dumps(doc))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(SlimError, match=says):
        open_model(str(folder), registry=registry)


def test_weights_that_do_not_fit_the_config_are_one_message(registry, demos, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(demos["resnet"], folder)
    cfg = json.loads((folder / "cnn.json").read_text())
    cfg["stages"][3][0] = 80
    (folder / "cnn.json").write_text(json.dumps(cfg))
    with pytest.raises(SlimError, match="do not fit the config"):
        open_model(str(folder), registry=registry)
