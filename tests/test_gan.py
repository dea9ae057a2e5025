"""The gan family (Pix2Pix U-Net generators): opening junyanz's state dicts exactly, refusing other networks, the U
graph, channel pruning and inner-layer removal (physically smaller = masked, to 1e-5), saving and reopening, the
criteria, the plans and the bad inputs.  Small generators built here; no demo, no CLI (tests/test_gan_cli.py)."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from safetensors.torch import save_file
from slimgui_families.gan import pruning as P
from slimgui_families.gan.adapter import Pix2PixAdapter, fraction_count, steps
from slimgui_families.gan.modeling import UNetConfig, UnetGenerator, conv_macs
from torch import nn

from slimgui.core.errors import SlimError
from slimgui.core.model import open_model
from slimgui.core.plan import PruningPlan
from slimgui.core.plugins import discover
from slimgui.core.selection import removal_closure


# -- junyanz's classes, as networks.py of pytorch-CycleGAN-and-pix2pix writes them (the reference forward) ----------
class JUnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm_layer=nn.BatchNorm2d, use_dropout=False):
        super().__init__()
        unet_block = JBlock(ngf * 8, ngf * 8, input_nc=None, submodule=None, norm_layer=norm_layer, innermost=True)
        for _ in range(num_downs - 5):
            unet_block = JBlock(ngf * 8, ngf * 8, input_nc=None, submodule=unet_block, norm_layer=norm_layer, use_dropout=use_dropout)
        unet_block = JBlock(ngf * 4, ngf * 8, input_nc=None, submodule=unet_block, norm_layer=norm_layer)
        unet_block = JBlock(ngf * 2, ngf * 4, input_nc=None, submodule=unet_block, norm_layer=norm_layer)
        unet_block = JBlock(ngf, ngf * 2, input_nc=None, submodule=unet_block, norm_layer=norm_layer)
        self.model = JBlock(output_nc, ngf, input_nc=input_nc, submodule=unet_block, outermost=True, norm_layer=norm_layer)

    def forward(self, input):
        return self.model(input)


class JBlock(nn.Module):
    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False, norm_layer=nn.BatchNorm2d, use_dropout=False):
        super().__init__()
        self.outermost = outermost
        if type(norm_layer) == functools.partial:  # noqa: E721 (junyanz's code, verbatim)
            use_bias = norm_layer.func == nn.InstanceNorm2d
        else:
            use_bias = norm_layer == nn.InstanceNorm2d
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = norm_layer(inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = norm_layer(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            down = [downconv]
            up = [uprelu, upconv, nn.Tanh()]
            model = down + [submodule] + up
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            down = [downrelu, downconv]
            up = [uprelu, upconv, upnorm]
            model = down + up
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            down = [downrelu, downconv, downnorm]
            up = [uprelu, upconv, upnorm]
            if use_dropout:
                model = down + [submodule] + up + [nn.Dropout(0.5)]
            else:
                model = down + [submodule] + up
        self.model = nn.Sequential(*model)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        else:
            return torch.cat([x, self.model(x)], 1)


def j_norm(kind):
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)



def junyanz(num_downs: int, ngf: int, norm: str, seed: int = 0) -> JUnetGenerator:
    torch.manual_seed(seed)
    net = JUnetGenerator(3, 3, num_downs, ngf, j_norm(norm), use_dropout=True)
    for m in net.modules():  # trained-looking norms, so a wrong channel shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


@pytest.fixture(scope="module")
def registry():
    return discover()


def reference(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(x.clone())  # junyanz's in-place activations modify their input


@pytest.mark.parametrize("num_downs,ngf,norm,fmt", [(8, 4, "batch", "pth"), (7, 4, "instance", "safetensors"),
                                                    (6, 8, "batch", "safetensors"), (5, 4, "instance", "pth")])
def test_opens_junyanz_state_dicts_exactly(tmp_path, registry, num_downs, ngf, norm, fmt):
    net = junyanz(num_downs, ngf, norm)
    state = net.state_dict()
    path = tmp_path / f"latest_net_G.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    cands = registry.match(str(tmp_path))
    assert cands[0].spec.name == "pix2pix" and cands[0].confidence == 0.9
    model = open_model(str(tmp_path), registry=registry)
    cfg = model.config
    assert cfg.levels == num_downs and cfg.norm == norm and cfg.down[0] == ngf and cfg.image_size == 2 ** num_downs
    assert list(model.module.state_dict()) == list(state)  # the same keys, in the same order
    x = torch.randn(2, 3, 2 ** num_downs, 2 ** num_downs)
    with torch.no_grad():
        got = model.module(x)
    assert torch.allclose(got, reference(net, x), atol=1e-6)
    name = model.impl.to_graph(model).attrs["architecture"]
    assert name == {8: f"unet_256, ngf {ngf}", 7: f"unet_128, ngf {ngf}"}.get(num_downs, f"unet ({num_downs} downs), ngf {ngf}")


def test_a_dataparallel_prefix_and_an_epoch_file_open(tmp_path, registry):
    net = junyanz(5, 4, "batch")
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "15_net_G.pth")
    torch.save({"x": torch.zeros(1)}, tmp_path / "15_net_D.pth")
    model = open_model(str(tmp_path), registry=registry)
    assert model.extra["weight_file"].endswith("15_net_G.pth")
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(model.module(x), reference(net, x), atol=1e-6)


def resnet_generator_keys() -> dict[str, torch.Tensor]:
    keys = {"model.1.weight": torch.zeros(8, 3, 7, 7), "model.2.weight": torch.zeros(8)}
    for i in range(10, 19):
        keys[f"model.{i}.conv_block.1.weight"] = torch.zeros(32, 32, 3, 3)
        keys[f"model.{i}.conv_block.5.weight"] = torch.zeros(32, 32, 3, 3)
    return keys


def patchgan_keys() -> dict[str, torch.Tensor]:
    return {"model.0.weight": torch.zeros(8, 6, 4, 4), "model.0.bias": torch.zeros(8),
            "model.2.weight": torch.zeros(16, 8, 4, 4), "model.3.weight": torch.zeros(16),
            "model.8.weight": torch.zeros(32, 16, 4, 4), "model.11.weight": torch.zeros(1, 32, 4, 4)}


@pytest.mark.parametrize("keys,said", [(resnet_generator_keys, "ResNet generator (CycleGAN / pix2pix resnet_9blocks)"),
                                       (patchgan_keys, "PatchGAN discriminator")])
def test_other_networks_of_the_code_base_are_refused_with_what_they_are(tmp_path, registry, keys, said):
    torch.save(keys(), tmp_path / "latest_net_G.pth")
    with pytest.raises(SlimError) as err:
        open_model(str(tmp_path / "latest_net_G.pth"), registry=registry)
    assert said in str(err.value) and "\n" not in str(err.value)


def test_a_mismatch_names_the_first_key_that_does_not_fit(tmp_path, registry):
    state = junyanz(6, 4, "batch").state_dict()
    bad = dict(state)
    key = "model.model.1.model.3.model.5.weight"
    bad[key] = torch.zeros(3, 3, 4, 4)
    torch.save(bad, tmp_path / "latest_net_G.pth")
    with pytest.raises(SlimError, match=key.replace(".", r"\.")):
        open_model(str(tmp_path), registry=registry)
    missing = {k: v for k, v in state.items() if k != "model.model.1.model.2.running_var"}
    torch.save(missing, tmp_path / "latest_net_G.pth")
    with pytest.raises(SlimError, match=r"model\.model\.1\.model\.2\.running_var is missing"):
        open_model(str(tmp_path), registry=registry)


def test_a_norm_kind_that_disagrees_with_the_keys_is_refused(tmp_path, registry):
    state = junyanz(5, 4, "batch").state_dict()
    torch.save(state, tmp_path / "latest_net_G.pth")
    (tmp_path / "train_opt.txt").write_text("----------------- Options ---------------\n"
                                            "                     norm: instance                      [default: batch]\n")
    with pytest.raises(SlimError, match="train_opt.txt says norm 'instance', but the weights are a batch-norm U-Net"):
        open_model(str(tmp_path), registry=registry)
    mixed = dict(state)
    mixed["model.model.0.bias"] = torch.zeros(4)  # instance-norm biases beside batch-norm weights
    (tmp_path / "train_opt.txt").unlink()
    torch.save(mixed, tmp_path / "latest_net_G.pth")
    with pytest.raises(SlimError, match="mixes the two norm kinds"):
        open_model(str(tmp_path), registry=registry)


def test_old_instance_norm_running_stats_are_ignored_like_junyanz(tmp_path, registry):
    net = junyanz(5, 4, "instance")
    state = dict(net.state_dict())
    state["model.model.1.model.2.running_mean"] = torch.zeros(8)  # pytorch < 0.4 InstanceNorm buffers
    torch.save(state, tmp_path / "latest_net_G.pth")
    model = open_model(str(tmp_path), registry=registry)
    assert model.config.norm == "instance" and "ignored" in model.extra["notes"][0]


# -- the graph --------------------------------------------------------------------------------------------------
def loaded(num_downs=6, ngf=8, norm="batch", seed=0):
    net = junyanz(num_downs, ngf, norm, seed)
    cfg = UNetConfig.standard(num_downs, ngf, norm=norm, use_dropout=True)
    g = UnetGenerator(cfg)
    g.load_state_dict(net.state_dict())
    from slimgui.core.model import LoadedModel

    return LoadedModel("gan", "pix2pix", "mem", g.eval(), cfg, impl=Pix2PixAdapter())


def test_graph_is_a_u_of_convs_with_filters_params_and_macs():
    model = loaded(6, 8)
    graph = model.impl.to_graph(model)
    a = graph.attrs
    assert a["layout"] == "u" and a["stages"]["down"] == [f"down.{k}" for k in range(6)]
    assert a["stages"]["up"] == [f"up.{k}" for k in range(5, -1, -1)]
    assert a["skips"] == [[f"down.{k}", f"up.{k}"] for k in range(5)]
    assert graph.total_params == sum(p.numel() for p in model.module.parameters())
    assert sum(u.params for u in graph.units if u.parent is None) == graph.total_params
    macs = conv_macs(model.config, 64)
    assert graph.get("down.1").macs == 8 * 16 * 16 * 16 * 16 == macs["down.1"]  # 8→16 filters at 16×16, 4×4 kernel
    assert graph.get("up.5").macs == 64 * 64 * 16 * 1 and a["total_macs"] == sum(macs.values())
    # the eighths: seven per prunable layer, each taking the lower ones along; the levels take the deeper ones
    assert [u.id for u in graph.children("down.3")] == [f"down.3.f{j}" for j in range(1, 8)]
    assert graph.children("up.0") == []
    closure = removal_closure(graph, ["down.4.f3"])
    assert closure == ["down.4.f1", "down.4.f2", "down.4.f3"]
    assert set(removal_closure(graph, ["down.4"])) >= {"down.4", "down.5", "up.4", "up.5"}
    assert not graph.get("down.1").prunable and graph.get("down.2").prunable


# -- pruning -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("cut", [None, 4, 2])
def test_the_physically_smaller_generator_equals_the_masked_one(norm, cut):
    model = loaded(6, 8, norm, seed=1)
    g = model.module
    drop = {layer: (P.width(g.config, layer) * 5) // 8 for layer in P.prunable_layers(g.config)}
    keep = P.keep_lists(g, drop, "l2")
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad(), P.masked(g, keep, cut) as m:
        want = m(x)
    small = P.prune(g, keep, cut).eval()
    with torch.no_grad():
        got = small(x)
    assert (got - want).abs().max() < 1e-5
    assert small.config.levels == (cut or 6) and small.config.down[1] == 16 - 10
    assert sum(p.numel() for p in small.parameters()) == P.params_of(small.config) < P.params_of(g.config)
    with torch.no_grad():
        assert (got - g(x)).abs().max() > 1e-3  # it did change something


def test_apply_plan_save_and_reopen(tmp_path, registry):
    model = loaded(6, 8)
    adapter = model.impl
    plan = PruningPlan(remove=["down.5.f6", "up.5.f6", "down.4.f4", "down.3"], criterion="bn-scale")
    slim = adapter.apply_plan(model, plan)
    assert slim.config.levels == 3 and slim.config.inner_norm and slim.config.down == [8, 16, 32]
    assert plan.meta["filter_order"] == "bn" and any("levels 3..5 removed" in n for n in plan.meta["notes"])
    out = adapter.save(slim, str(tmp_path / "slim"))
    doc = json.loads((tmp_path / "slim" / "slimgui_gan.json").read_text())
    assert doc["down"] == [8, 16, 32] and doc["inner_norm"] and not doc["junyanz_compatible"]
    state = torch.load(tmp_path / "slim" / "latest_net_G.pth", weights_only=True)
    assert all(k.startswith("model.model.") for k in state) and isinstance(state, dict)
    back = open_model(out, registry=registry)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(back.module(x), slim.module(x), atol=1e-6)
    assert back.config.extra["cut"] == 3
    uneven = adapter.apply_plan(model, PruningPlan(remove=["down.4.f4"]))
    assert uneven.config.down[4] == 32 and not uneven.config.is_standard()[0]


def test_a_fraction_that_removes_every_filter_is_refused():
    model = loaded(5, 4)
    with pytest.raises(SlimError, match="would remove every filter of down.4"):
        fraction_count(32, 1.0, "down.4")
    with pytest.raises(SlimError, match="16 of the 16 filters of up.3 would remove every filter"):
        P.keep_lists(model.module, {"up.3": 16})
    with pytest.raises(SlimError, match="every filter of down.2"):
        P.prune(model.module, {"down.2": []})
    assert [c for _, c in steps(3)] == [1, 2] and fraction_count(16, 0.75) == 12


# -- criteria and plans --------------------------------------------------------------------------------------------
def test_norm_criteria_rank_each_layers_eighths_from_weakest(registry):
    model = loaded(6, 8)
    graph = model.impl.to_graph(model)
    for name in ("filter-l1", "filter-l2", "bn-scale"):
        crit = registry.criterion(name, "gan")
        scores = crit.score(model)
        assert set(scores) == {u.id for u in graph.prunable()}
        row = [scores[f"down.3.f{j}"] for j in range(1, 8)]
        assert row == sorted(row)
    assert registry.criterion("bn-scale", "gan").last_info["fallback"] == ["down.0", "down.5"]


def test_sensitivity_scan_fills_the_table_and_counts_its_forward_passes():
    from slimgui_families.gan.criteria import sensitivity_scan

    model = loaded(5, 4)
    x = [torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)]
    res = sensitivity_scan(model, x, [torch.zeros(2, 3, 32, 32)] * 2, fractions=[4, 6])
    layers = P.prunable_layers(model.config)
    assert set(res["table"]) == set(layers) and all(set(r) == {"0.5", "0.75"} for r in res["table"].values())
    assert res["forward_passes"] == 2 * (1 + 2 * len(layers) + 3)  # base + 2 fractions per layer + 3 cuts, 2 batches
    assert all(v >= 0 for v in res["scores"].values()) and set(res["cut"]) == {"2", "3", "4"}


def test_inner_and_global_plans_and_presets():
    from slimgui_families.gan.plans import global_plan, inner_at_macs, inner_plan, macs_after

    model = loaded(6, 8)
    adapter = model.impl
    graph = adapter.to_graph(model)
    assert inner_plan(graph, 4, 0.75) == ["down.5.f6", "up.5.f6", "down.4.f6", "up.4.f6"]
    with pytest.raises(SlimError, match="every filter"):
        inner_plan(graph, 2, 1.0)
    units, frac = global_plan(model, graph, 0.3)
    assert abs(frac - 0.3) < 0.06 and units
    drop, cut = adapter.removal(model, units)
    total = graph.attrs["total_macs"]
    assert abs(1 - macs_after(model.config, drop, cut) / total - frac) < 1e-9
    inner_units, inner_frac, how = inner_at_macs(model, graph, 0.2)
    assert inner_units and how["layers"] >= 1
    plan = adapter.preset_plan(model, "cut-2")
    assert plan.remove == ["down.4"] and adapter.apply_plan(model, plan).config.levels == 4
    assert graph.attrs["presets"] == {"inner-75": True, "inner-50": True, "global-50": True, "cut-1": True,
                                      "cut-2": True}
    g50 = adapter.preset_plan(model, "global-50")
    drop, cut = adapter.removal(model, g50.remove)
    assert g50.criterion == "filter-l1" and abs(1 - macs_after(model.config, drop, cut) / total - 0.5) < 0.06


# -- paired folders ----------------------------------------------------------------------------------------------
def _png(path, w=16, h=16):
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 128, dtype=np.uint8))


def test_paired_folders_and_their_bad_forms(tmp_path):
    from slimgui_families.gan.data import load_pairs

    cfg = UNetConfig.standard(5, 4)
    _png(tmp_path / "ok" / "A" / "1.png")
    _png(tmp_path / "ok" / "B" / "1.png")
    x, y = load_pairs(tmp_path / "ok", cfg)
    assert x.shape == y.shape == (1, 3, 32, 32)
    _png(tmp_path / "ab" / "1.jpg", 32, 16)
    assert load_pairs(tmp_path / "ab", cfg)[0].shape == (1, 3, 32, 32)
    _png(tmp_path / "onlya" / "A" / "1.png")
    with pytest.raises(SlimError, match="unpaired: it has A/ but no B/"):
        load_pairs(tmp_path / "onlya", cfg)
    _png(tmp_path / "mis" / "A" / "1.png")
    _png(tmp_path / "mis" / "B" / "2.png")
    with pytest.raises(SlimError, match="mismatched: A/1.png has no partner"):
        load_pairs(tmp_path / "mis", cfg)
    _png(tmp_path / "notab" / "1.png", 16, 16)
    with pytest.raises(SlimError, match="not a side-by-side AB pair"):
        load_pairs(tmp_path / "notab", cfg)


def test_core_criteria_work_through_unit_module(registry):
    from slimgui.core.criteria import Taylor

    model = loaded(5, 4)
    mags = registry.criterion("magnitude").score(model)
    assert mags["down.3.f1"] > 0 and mags["down.2"] > mags["down.2.f1"]

    class Batches(Pix2PixAdapter):
        def calibration_batches(self, model, data):
            torch.manual_seed(0)
            return [{"input": torch.randn(2, 3, 32, 32), "target": torch.zeros(2, 3, 32, 32)}]

    model.impl = Batches()
    tay = Taylor().score(model)
    assert tay["down.3.f1"] > 0 and tay["up.2.f3"] > 0
