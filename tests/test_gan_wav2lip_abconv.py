"""The gan and wav2lip families save ABConv models (issue 18): ``slimgui abconv`` on their demos writes the family's
native files with the balanced layers recorded (``slimgui_gan.json`` / ``slimgui_wav2lip.json`` ``"abconv"``), the
folder reopens with the ABConv layers in place and gives the same output as before saving (from either weight file
alone), is evaluated and healed by distillation from the original it links to, and refuses filter pruning in one
line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import run_cli

from slimgui.core.abconv import ABConv2d, abconv_layers, abconv_model
from slimgui.core.errors import SlimError
from slimgui.core.model import open_model
from slimgui.core.ops import save
from slimgui.core.plan import PruningPlan

FAMILIES = {  # demo, native weight files, sidecar, a plan that prunes
    "gan": (("latest_net_G.pth", "latest_net_G.safetensors"), "slimgui_gan.json", ["down.4.f4"]),
    "wav2lip": (("wav2lip.pth", "wav2lip.safetensors"), "slimgui_wav2lip.json", ["face.5.0.f4"]),
}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _inputs(model):
    g = torch.Generator().manual_seed(1)
    s = model.config.image_size
    if model.family == "gan":
        return (torch.randn(2, model.config.input_nc, s, s, generator=g),)
    return torch.randn(2, 1, 80, 16, generator=g), torch.rand(2, 6, s, s, generator=g)


def _out(model, args):
    with torch.no_grad():
        return model.module.eval()(*args)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_abconv_model_saves_and_reopens_with_the_same_output(family, registry, tmp_path):
    files, sidecar, plan = FAMILIES[family]
    original = open_model(str(registry.demo(family)()["model"]), registry=registry)
    assert registry.spec_of(original).can("abconv")
    balanced, report = abconv_model(original, registry)
    assert report["replaced"] and report["flops_after"] < report["flops_before"]
    x = _inputs(original)
    want = _out(balanced, x)
    out = save(balanced, tmp_path / "ab", registry=registry)
    assert json.loads((out / sidecar).read_text())["abconv"] == report["replaced"]
    assert json.loads((out / "slimgui_plan.json").read_text())["model"] == str(original.source)  # its origin
    back = open_model(str(out), registry=registry)
    assert abconv_layers(back.module) == report["replaced"]
    assert all(isinstance(back.module.get_submodule(n), ABConv2d) for n in report["replaced"])
    torch.testing.assert_close(_out(back, x), want, atol=1e-5, rtol=0)
    assert not torch.allclose(_out(original, x), want, atol=1e-3)  # the balanced model is another function
    assert any("ABConv layers" in n for n in back.extra["notes"])
    graph = back.impl.to_graph(back)
    if family == "gan":  # its units count the shared kernels' parameters
        assert graph.total_params == sum(p.numel() for p in back.module.parameters())
    # either weight file alone gives the same generator
    for keep in files:
        alone = tmp_path / f"alone-{keep}"
        shutil.copytree(out, alone)
        for f in files:
            if f != keep:
                (alone / f).unlink()
        torch.testing.assert_close(_out(open_model(str(alone), registry=registry), x), want, atol=1e-5, rtol=0)
    # filters shared across folds are not pruned one by one
    with pytest.raises(SlimError, match="ABConv"):
        back.impl.apply_plan(back, PruningPlan(remove=plan, model=back.source))
    # a broken abconv record is one message
    doc = json.loads((out / sidecar).read_text())
    for bad, says in (({**report["replaced"], "nope": 2}, "abconv layer 'nope' is not an ungrouped convolution"),
                      ({"x": "two"}, "'abconv' must map convolution names to fold factors")):
        (out / sidecar).write_text(json.dumps(doc | {"abconv": bad}))
        with pytest.raises(SlimError, match=says):
            back.impl.load(str(out))


def _cli(*args):
    r = run_cli(*args, env_extra={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, f"slimgui {' '.join(args)} failed:\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1]) if "--json" in args else r


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_abconv_then_eval_and_distillation_through_the_cli(family, registry, tmp_path):
    out = tmp_path / "ab"
    got = _cli("abconv", f"demo:{family}", "--out", str(out), "--json")
    assert got["replaced"] and (out / "slimgui_abconv.json").is_file()
    ev = _cli("eval", str(out), "--json")
    assert ev.get("psnr_to_original") is not None  # the original is found through the folder's link
    _cli("retrain", str(out), "--method", "kd", "--steps", "2", "--out", str(tmp_path / "healed"))
    healed = open_model(str(tmp_path / "healed" / "model"), registry=registry)
    assert abconv_layers(healed.module) == got["replaced"]
