"""The ViT family (issue 13, wave 1): opening transformers ViT / DeiT folders, the graph of blocks, heads, query/key
pairs, value neurons and MLP neurons, pruning into a physically smaller model, saving (plain transformers when it can
say it, else with a modeling file transformers loads with trust_remote_code and SlimGUI never runs), the demo, the
evaluator and the previewer — all through the family contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from slimgui.core import ops
from slimgui.core.data import CalibrationData
from slimgui.core.errors import SlimError
from slimgui.core.model import open_model
from slimgui.core.plan import PruningPlan

LABELS = {i: f"class{i}" for i in range(5)}


def _vit_config(**over):
    from transformers import ViTConfig

    kw = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, image_size=16,
              patch_size=4, num_channels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    kw.update(over)
    return ViTConfig(**kw)


def _save(model, folder: Path) -> Path:
    model.eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny ViT / DeiT folders of every kind the family opens, with random weights."""
    from transformers import (
        DeiTConfig,
        DeiTForImageClassification,
        DeiTForImageClassificationWithTeacher,
        ViTForImageClassification,
        ViTModel,
    )

    root = tmp_path_factory.mktemp("vits")
    torch.manual_seed(0)
    deit_cfg = DeiTConfig(**{k: v for k, v in _vit_config().to_dict().items()
                             if k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                      "image_size", "patch_size", "num_channels", "id2label", "label2id")})
    out = {
        "vit": _save(ViTForImageClassification(_vit_config()), root / "vit"),
        "deit": _save(DeiTForImageClassification(deit_cfg), root / "deit"),
        "deit-teacher": _save(DeiTForImageClassificationWithTeacher(deit_cfg), root / "deit-teacher"),
        "vitmodel": _save(ViTModel(_vit_config()), root / "vitmodel"),
    }
    (out["vit"] / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An image folder with one sub-folder per label of the tiny models (random pictures)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in LABELS.values():
        (root / name).mkdir()
        for j in range(4):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / name / f"{j}.png")
    return root


def _open(path, registry, **kw):
    return open_model(str(path), registry=registry, **kw)


def _x(n=3, seed=1):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _logits(model, x):
    with torch.no_grad():
        return model.module(pixel_values=x).logits


def _params(model) -> int:
    return sum(p.numel() for p in model.module.parameters())


# -- probing and opening -------------------------------------------------------------------------------------
def test_probe_reads_only_the_config(folders, tmp_path, registry):
    from slimgui_families.vit.probe import match

    junk = tmp_path / "junk"
    shutil.copytree(folders["deit-teacher"], junk)
    (junk / "model.safetensors").write_bytes(b"not a safetensors file at all")
    conf, info = match(str(junk))
    assert conf == 0.95 and info["config"]["model_type"] == "deit" and info["folder"] == str(junk)
    assert match(str(junk / "config.json"))[0] == 0.95
    best = registry.match(str(folders["vit"]))[0]
    assert best.spec.name == "vit" and best.confidence > 0.9
    assert match(str(tmp_path)) == 0.0


@pytest.mark.parametrize("kind", ["vit", "deit", "deit-teacher"])
def test_logits_equal_transformers(folders, registry, kind):
    from transformers import AutoModelForImageClassification

    ref = AutoModelForImageClassification.from_pretrained(folders[kind]).eval()
    model = _open(folders[kind], registry)
    assert model.adapter == "vit" and type(model.module).__name__ == "SlimViTForImageClassification"
    x = _x()
    with torch.no_grad():
        want = ref(pixel_values=x).logits
    assert torch.allclose(_logits(model, x), want, atol=1e-5)
    assert model.config.distillation_token == kind.startswith("deit")
    assert _params(model) == sum(p.numel() for p in ref.parameters())


def test_pickle_checkpoints_open_weights_only(folders, registry, tmp_path):
    from safetensors.torch import load_file

    legacy = tmp_path / "legacy"
    shutil.copytree(folders["vit"], legacy)
    torch.save(load_file(str(legacy / "model.safetensors")), legacy / "pytorch_model.bin")
    (legacy / "model.safetensors").unlink()
    x = _x()
    assert torch.equal(_logits(_open(legacy, registry), x), _logits(_open(folders["vit"], registry), x))
    torch.save({"evil": print}, legacy / "pytorch_model.bin")
    with pytest.raises(SlimError, match="holds pickled code"):
        _open(legacy, registry)


def test_vitmodel_backbone_matches(folders, registry):
    from transformers import ViTModel

    ref = ViTModel.from_pretrained(folders["vitmodel"]).eval()
    model = _open(folders["vitmodel"], registry)
    x = _x()
    with torch.no_grad():
        want = ref(pixel_values=x)
        got = model.module(pixel_values=x)
    assert got.logits is None and model.module.pooler is not None
    assert torch.allclose(got.last_hidden_state, want.last_hidden_state, atol=1e-5)
    assert torch.allclose(got.pooler_output, want.pooler_output, atol=1e-5)


def test_attention_probabilities_per_block_and_head(folders, registry):
    from transformers import ViTForImageClassification

    ref = ViTForImageClassification.from_pretrained(folders["vit"], attn_implementation="eager").eval()
    model = _open(folders["vit"], registry)
    x = _x(2)
    with torch.no_grad():
        want = ref(pixel_values=x, output_attentions=True).attentions
        got = model.module(pixel_values=x, output_attentions=True).attentions
    assert len(got) == 3 and got[0].shape == (2, 4, 17, 17)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5)


def test_config_only_folder_opens_on_meta(folders, tmp_path, registry):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(folders["deit-teacher"] / "config.json", bare / "config.json")
    model = _open(bare, registry)
    assert not model.has_weights and next(model.module.parameters()).device.type == "meta"
    graph = ops.graph_of(model, registry)
    assert graph.total_params == _params(_open(folders["deit-teacher"], registry))
    with pytest.raises(SlimError, match="without weights"):
        model.impl.save(model, str(tmp_path / "out"))


# -- the graph -------------------------------------------------------------------------------------------------
def test_graph_counts_match_the_modules(folders, registry):
    model = _open(folders["deit-teacher"], registry)
    graph = ops.graph_of(model, registry)
    module = model.module
    assert graph.total_params == _params(model)
    assert sum(u.params for u in graph.units if u.parent is None) == _params(model)
    g = graph.attrs["groups"]
    assert g == {"qk": 4, "v": 4, "mlp": 8}
    for li, block in enumerate(module.blocks):
        b = graph.get(f"block.{li}")
        assert b.params == sum(p.numel() for p in block.parameters()) and b.prunable
        heads = [u for u in graph.children(f"block.{li}.attn") if u.kind == "head"]
        assert len(heads) == 4 and all(h.attrs["qk_width"] == 8 == h.attrs["v_width"] for h in heads)
        for h in heads:
            kids = graph.children(h.id)
            assert [k.kind for k in kids] == ["qk", "qk", "value", "value"]
            assert h.params == sum(k.params for k in kids)
        attn = graph.get(f"block.{li}.attn")
        assert attn.params == sum(p.numel() for p in block.attn.parameters()) + sum(
            p.numel() for p in block.norm1.parameters())
        assert len(graph.children(f"block.{li}.mlp")) == 64 // 8
        assert graph.get(f"block.{li}.mlp").params == sum(p.numel() for p in block.mlp.parameters()) + 64
    # per block: 1 block + 4 heads × (1 + 2 + 2) + 8 MLP groups
    assert len(graph.prunable()) == 3 * (1 + 4 * 5 + 8)
    assert graph.attrs["macs_per"] == "image" and graph.attrs["total_macs"] > 0
    # unit_module: the model's own modules, or the unit's weight slices
    sl = model.impl.unit_module(model, "block.1.head.2.qk.1")
    assert {n: tuple(p.shape) for n, p in sl.named_parameters()} == {
        "q_weight": (4, 32), "k_weight": (4, 32), "q_bias": (4,), "k_bias": (4,)}
    assert torch.equal(sl.q_weight, module.blocks[1].attn.q_proj.weight[20:24])
    v = model.impl.unit_module(model, "block.0.head.3.v.0")
    assert torch.equal(v.o_weight, module.blocks[0].attn.o_proj.weight[:, 24:28])
    assert model.impl.unit_module(model, "block.2") is module.blocks[2]


# -- pruning -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("uid", ["block.1", "block.0.head.2", "block.2.head.1.qk.0", "block.1.head.3.v.1",
                                 "block.0.mlp.5"])
def test_each_granularity_is_physically_smaller(folders, registry, uid):
    model = _open(folders["vit"], registry)
    graph = ops.graph_of(model, registry)
    plan = PruningPlan(remove=[uid])
    pruned = ops.prune(model, plan, registry=registry)
    assert _params(pruned) == plan.params_after(graph) < _params(model)
    assert _logits(pruned, _x()).shape == (3, 5)
    cfg = pruned.config
    if uid == "block.2.head.1.qk.0":
        assert cfg.qk_dims[2] == [8, 4, 8, 8] and cfg.v_dims[2] == [8] * 4
        assert pruned.module.blocks[2].attn.q_proj.out_features == 28
    if uid == "block.0.head.2":
        assert cfg.qk_dims[0] == [8, 8, 8] and cfg.head_origin[0] == [0, 1, 3]
    if uid == "block.1":
        assert cfg.block_origin == [0, 2]
    assert _params(model) == graph.total_params  # the original is untouched


def test_noop_plan_keeps_the_logits(folders, registry):
    model = _open(folders["deit-teacher"], registry)
    same = model.impl.apply_plan(model, PruningPlan(remove=[]))
    x = _x()
    assert torch.equal(_logits(same, x), _logits(model, x)) and _params(same) == _params(model)


def test_masks_are_the_removal(folders, registry):
    """Zeroing a query/key pair or a value neuron with the hook masks is exactly its removal: the scaling stays the
    original head size's."""
    model = _open(folders["vit"], registry)
    attn = model.module.blocks[1].attn
    attn.qk_mask = torch.ones(32)
    attn.qk_mask[12:16] = 0  # head 1, pairs 4-7 = block.1.head.1.qk.1
    attn.v_mask = torch.ones(32)
    attn.v_mask[24:28] = 0  # head 3, neurons 0-3 = block.1.head.3.v.0
    x = _x()
    masked = _logits(model, x)
    attn.qk_mask = attn.v_mask = None
    pruned = model.impl.apply_plan(model, PruningPlan(remove=["block.1.head.1.qk.1", "block.1.head.3.v.0"]))
    assert pruned.module.blocks[1].attn.scaling == 8 ** -0.5
    assert torch.allclose(_logits(pruned, x), masked, atol=1e-5)
    assert not torch.allclose(_logits(model, x), masked, atol=1e-4)


def test_emptied_heads_and_blocks_turn_into_removals(folders, registry):
    model = _open(folders["vit"], registry)
    imp = model.impl
    whole_qk = [f"block.0.head.1.qk.{g}" for g in range(2)]
    plan = PruningPlan(remove=whole_qk)
    p = imp.apply_plan(model, plan)
    assert p.config.qk_dims[0] == [8, 8, 8] and "head is removed" in p.extra["notes"][0]
    assert plan.meta["notes"] == p.extra["notes"]  # saved with the plan
    heads = [f"block.1.head.{h}" for h in range(4)]
    p = imp.apply_plan(model, PruningPlan(remove=heads))
    assert p.module.blocks[1].attn is None and p.module.blocks[1].mlp is not None
    assert _logits(p, _x()).shape == (3, 5)
    mlp = [f"block.1.mlp.{g}" for g in range(8)]
    p = imp.apply_plan(model, PruningPlan(remove=heads + mlp))
    assert len(p.module.blocks) == 2 and p.config.block_origin == [0, 2]
    assert any("block is removed" in n for n in p.extra["notes"])
    with pytest.raises(SlimError, match="leaves none of the 3 blocks"):
        imp.apply_plan(model, PruningPlan(remove=["block.0", "block.1", "block.2"]))


# -- saving ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["vit", "deit-teacher"])
def test_uniform_plan_saves_a_plain_transformers_folder(folders, registry, tmp_path, kind):
    from transformers import AutoModelForImageClassification

    model = _open(folders[kind], registry)
    plan = PruningPlan(remove=["block.1", "block.0.mlp.2", "block.2.mlp.2"])
    pruned = ops.prune(model, plan, registry=registry)
    out = ops.save(pruned, tmp_path / "plain", registry=registry)
    doc = json.loads((out / "config.json").read_text())
    assert doc["model_type"] == ("vit" if kind == "vit" else "deit") and "auto_map" not in doc
    assert doc["num_hidden_layers"] == 2 and doc["intermediate_size"] == 56
    assert not (out / "modeling_slimgui_vit.py").exists()
    ref = AutoModelForImageClassification.from_pretrained(out).eval()
    x = _x()
    with torch.no_grad():
        assert torch.allclose(ref(pixel_values=x).logits, _logits(pruned, x), atol=1e-5)
    back = _open(out, registry)
    assert torch.allclose(_logits(back, x), _logits(pruned, x), atol=1e-6)


def test_non_uniform_plan_loads_with_remote_code_and_slimgui_never_runs_it(folders, registry, tmp_path):
    model = _open(folders["deit-teacher"], registry)
    plan = PruningPlan(remove=["block.0.head.1.qk.0", "block.2.head.3.v.1", "block.1.head.0", "block.1.mlp.3"])
    pruned = ops.prune(model, plan, registry=registry)
    out = ops.save(pruned, tmp_path / "slim", registry=registry)
    doc = json.loads((out / "config.json").read_text())
    assert doc["model_type"] == "slimgui_vit" and doc["auto_map"]["AutoModelForImageClassification"]
    assert doc["qk_dims"][0] == [8, 4, 8, 8] and doc["v_dims"][2] == [8, 8, 8, 4] and doc["head_size"] == 8
    x = _x()
    np.save(tmp_path / "x.npy", x.numpy())
    script = ("import sys, numpy as np, torch\n"
              "from transformers import AutoModelForImageClassification\n"
              "m = AutoModelForImageClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()\n"
              "with torch.no_grad():\n"
              "    y = m(pixel_values=torch.from_numpy(np.load(sys.argv[2]))).logits\n"
              "np.save(sys.argv[3], y.numpy())\n")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    want = _logits(pruned, x)
    assert np.allclose(np.load(tmp_path / "y.npy"), want.numpy(), atol=1e-5)
    # SlimGUI reopens it with its own class: the written file is never imported
    (out / "modeling_slimgui_vit.py").write_text("raise RuntimeError('SlimGUI must not execute this file')\n")
    back = _open(out, registry)
    assert back.config.qk_dims == pruned.config.qk_dims and back.config.head_origin[1] == [1, 2, 3]
    assert torch.allclose(_logits(back, x), want, atol=1e-6)
    assert not any("modeling_slimgui_vit" in m for m in sys.modules)


# -- criteria --------------------------------------------------------------------------------------------------
def test_core_magnitude_and_taylor(folders, registry, images):
    model = _open(folders["vit"], registry)
    graph = ops.graph_of(model, registry)
    mag = ops.analyze(model, "magnitude", registry=registry)
    assert set(mag.values) == {u.id for u in graph.prunable()} and all(v > 0 for v in mag.values.values())
    w = model.module.blocks[0].attn
    assert mag.values["block.0.head.0.qk.0"] == pytest.approx(
        float(w.q_proj.weight[:4].detach().abs().sum() + w.k_proj.weight[:4].detach().abs().sum()), rel=1e-5)
    data = CalibrationData(str(images), samples=10, batch_size=4)
    tay = ops.analyze(model, "taylor", registry=registry, data=data)
    assert set(tay.values) == set(mag.values) and all(np.isfinite(v) for v in tay.values.values())
    assert sum(v > 0 for v in tay.values.values()) > len(tay.values) // 2
    assert tay.meta["data"]["samples"] == 10
    assert all(p.grad is None for p in model.module.parameters())


# -- bad input: one clear message each ----------------------------------------------------------------------
def _edit(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    doc = json.loads((dst / "config.json").read_text())
    doc.update(changes)
    (dst / "config.json").write_text(json.dumps(doc))
    return dst


@pytest.mark.parametrize("changes, message", [
    ({"hidden_size": 48, "num_attention_heads": 4}, "do not match its config.json: classifier.weight is 5×32 in model.safetensors, the config asks for 5×48"),
    ({"intermediate_size": 80}, "do not match its config.json: vit.encoder.layer.0.intermediate.dense.bias is 64 in model.safetensors, the config asks for 80"),
    ({"patch_size": 5}, "the patch size 5x5 does not divide the image size 16x16"),
    ({"num_attention_heads": 3}, "hidden size 32 is not divisible by the 3 attention heads"),
    ({"num_hidden_layers": 10**7}, "num_hidden_layers is 10,000,000, outside the range"),
    ({"architectures": ["ViTForMaskedImageModeling"]}, "ViTForMaskedImageModeling is not supported"),
])
def test_bad_configs_get_one_message(folders, registry, tmp_path, changes, message):
    bad = _edit(folders["vit"], tmp_path / "bad", **changes)
    with pytest.raises(SlimError, match=message) as err:
        _open(bad, registry)
    assert "\n" not in str(err.value)


def test_bad_image_folders_get_one_message(folders, registry, tmp_path):
    model = _open(folders["vit"], registry)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SlimError, match="is empty"):
        ops.evaluate(model, str(empty), registry=registry)
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "notes.txt").write_text("hello")
    with pytest.raises(SlimError, match="holds no images"):
        ops.evaluate(model, str(tmp_path / "noimg"), registry=registry)
    (tmp_path / "broken" / "class0").mkdir(parents=True)
    (tmp_path / "broken" / "class0" / "x.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(SlimError, match="x.png is not a readable image"):
        ops.evaluate(model, str(tmp_path / "broken"), registry=registry)
    (tmp_path / "wrong" / "zebra").mkdir(parents=True)
    shutil.copy(next((tmp_path / "broken").rglob("*.png")), tmp_path / "wrong" / "zebra" / "x.png")
    with pytest.raises(SlimError, match="'zebra' matches none of the model's 5 labels"):
        ops.evaluate(model, str(tmp_path / "wrong"), registry=registry)
    with pytest.raises(SlimError, match="needs an image folder for this model"):
        ops.evaluate(model, None, registry=registry)


def test_evaluate_and_preview_on_a_folder(folders, registry, images):
    model = _open(folders["vit"], registry)
    res = ops.evaluate(model, str(images), registry=registry)
    assert res["images"] == 20 and 0 <= res["accuracy"] <= res["top5"] <= 1
    img = next(images.rglob("*.png"))
    media = ops.preview(model, registry=registry, options={"image": str(img), "attention": "rollout", "view_size": 64})
    assert media.tiles[0]["box"][3] == 64 and media.image.shape[2] == 3 and len(media.meta["top5"]) == 5
    assert 64 < media.image.shape[0] < 100  # the image, with the colour bar's strip under it


# -- the demo ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(registry):
    from slimgui_families.vit.demo import ensure_demo

    paths = ensure_demo()
    return paths, _open(paths["model"], registry)


def test_demo_is_a_plain_vit_that_reaches_95_percent(demo, registry):
    paths, model = demo
    folder = Path(paths["model"])
    doc = json.loads((folder / "config.json").read_text())
    assert doc["architectures"] == ["ViTForImageClassification"] and doc["num_hidden_layers"] == 6
    log = json.loads((folder / "slimgui_demo.json").read_text())
    assert log["heldout_accuracy"] >= 0.95 and log["history"]
    assert (folder / "model.safetensors").stat().st_size < 8 * 2**20
    res = ops.evaluate(model, None, registry=registry)
    assert res["accuracy"] >= 0.95 and res["images"] > 300
    assert abs(res["accuracy"] - log["heldout_accuracy"]) < 0.01
    graph = ops.graph_of(model, registry)
    assert 300 < len(graph.prunable()) < 1000


def test_demo_preview_and_default_data(demo, registry):
    paths, model = demo
    media = ops.preview(model, registry=registry)
    assert media.meta["top5"][0]["label"] == media.meta["true_label"] and len(media.meta["top5"]) == 5
    assert media.image.ndim == 3 and media.tiles[0]["box"][3] == 224 and media.image.shape[0] > 224
    data = model.impl.default_data(model)
    assert data == paths["train"] and len(list(Path(data).rglob("*.png"))) > 1000
    batches = model.impl.calibration_batches(model, CalibrationData(data, samples=20, batch_size=8))
    assert [b["pixel_values"].shape[0] for b in batches] == [8, 8, 4]
    assert set(batches[0]["labels"].tolist()) <= set(range(10))


def test_demo_through_the_cli(demo, tmp_path, capsys):
    from slimgui.cli import main

    def run(*argv):
        code = main([*argv, "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out.strip().splitlines()[-1])

    doc = run("inspect", "demo:vit")
    assert doc["family"] == "vit" and doc["params"] > 500_000
    doc = run("analyze", "demo:vit", "--criterion", "magnitude")
    assert len(doc["scores"]) == len(doc["ranking"]) > 300
    out = tmp_path / "pruned"
    run("prune", "demo:vit", "--criterion", "magnitude", "--count", "40", "--out", str(out))
    assert json.loads((out / "config.json").read_text())["model_type"] == "slimgui_vit"
    doc = run("eval", str(out))
    assert doc["evaluator"] == "top-k" and doc["accuracy"] > 0.5


def test_missing_demo_is_rebuilt_into_the_cache(tmp_path, monkeypatch, registry):
    from slimgui_families.vit import demo as vit_demo

    monkeypatch.setenv("SLIMGUI_RESOURCES", str(tmp_path / "no-resources"))
    monkeypatch.setenv("SLIMGUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(vit_demo.TRAIN, "epochs", 1)
    steps = []
    paths = vit_demo.ensure_demo(progress=lambda done, total, msg="": steps.append((done, total)))
    folder = Path(paths["model"])
    assert folder.is_relative_to(tmp_path / "cache") and steps
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "slimgui_demo.json"} <= {
        p.name for p in folder.iterdir()}
    model = _open(folder, registry)
    assert model.config.num_labels == 10 and model.impl.default_data(model) == paths["train"]
