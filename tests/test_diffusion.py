"""The diffusion family headless: opening, the U-Net graph, BK-SDM presets, removal, scoring, generation, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusion_models import SD_UNET, tiny_sd_pipeline, tiny_unet2d

from slimgui.core.errors import SlimError
from slimgui.core.model import open_model
from slimgui.core.ops import analyze, graph_of, preset_plan, presets, prune, save
from slimgui.core.plan import PruningPlan


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory) -> Path:
    return tiny_sd_pipeline(tmp_path_factory.mktemp("sd") / "pipe")


@pytest.fixture(scope="module")
def sd(sd_dir, registry):
    return open_model(str(sd_dir), registry=registry)


@pytest.fixture(scope="module")
def unet2d_dir(tmp_path_factory) -> Path:
    return tiny_unet2d(tmp_path_factory.mktemp("u2") / "unet")


def _inputs(unet, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = unet.config
    size = cfg.sample_size
    batch = {"latents": torch.randn(n, cfg.in_channels, size, size, generator=g),
             "timesteps": torch.tensor([10, 400, 900][:n])}
    if getattr(cfg, "cross_attention_dim", None):
        batch["encoder_hidden_states"] = torch.randn(n, 12, cfg.cross_attention_dim, generator=g)
    return batch


# -- opening ---------------------------------------------------------------------------------------
def test_probe_tells_pipelines_unets_and_llms_apart(sd_dir, unet2d_dir, tiny_models, registry):
    from slimgui_families.diffusion.probe import match as diff_match
    from slimgui_families.llm.probe import match as llm_match

    assert diff_match(str(sd_dir))[0] == pytest.approx(0.95)
    assert diff_match(str(sd_dir / "unet"))[0] == pytest.approx(0.95)
    assert diff_match(str(unet2d_dir))[0] == pytest.approx(0.95)
    assert llm_match(str(sd_dir)) == 0.0 and llm_match(str(sd_dir / "unet")) == 0.0
    assert diff_match(str(tiny_models["llama"]))[0] == 0.0
    m = open_model(str(sd_dir / "unet"), registry=registry)
    assert m.family == "diffusion" and m.extra["kind"] == "unet" and m.has_weights
    # what match read is what load uses: the folder is not read twice
    _, info = diff_match(str(sd_dir))
    assert info["kind"] == "pipeline" and info["doc"]["_class_name"] == "StableDiffusionPipeline"
    best = registry.match(str(sd_dir))[0]
    assert best.spec.name == "diffusers" and best.info == info
    again = open_model(str(sd_dir), registry=registry, candidate=best)
    assert again.extra["pipeline_class"] == "StableDiffusionPipeline" and again.has_weights


def test_open_pipeline(sd):
    assert sd.family == "diffusion" and sd.has_weights
    assert sd.extra["pipeline_class"] == "StableDiffusionPipeline"
    assert type(sd.module).__name__ == "UNet2DConditionModel"


def test_config_only_pipeline_opens_on_meta(sd_dir, tmp_path, registry):
    cfg_only = tmp_path / "cfg"
    shutil.copytree(sd_dir, cfg_only)
    for f in cfg_only.rglob("*.safetensors"):
        f.unlink()
    m = open_model(str(cfg_only), registry=registry)
    assert not m.has_weights
    g = graph_of(m, registry)
    assert len(g.prunable()) == 6 and g.attrs["total_macs"] > 0
    with pytest.raises(SlimError, match="no weights"):
        analyze(m, "ldpruner", registry=registry)


# -- the graph ---------------------------------------------------------------------------------------
def test_graph_is_a_u_with_skips_params_and_macs(sd, registry):
    g = graph_of(sd, registry)
    assert g.attrs["layout"] == "u"  # the app's U layout (AdapterSpec.layout)
    assert g.attrs["stages"] == {"down": [f"down_blocks.{i}" for i in range(4)], "mid": "mid_block",
                                 "up": [f"up_blocks.{i}" for i in range(4)]}
    assert g.attrs["skips"] == [["down_blocks.0", "up_blocks.3"], ["down_blocks.1", "up_blocks.2"],
                                ["down_blocks.2", "up_blocks.1"], ["down_blocks.3", "up_blocks.0"]]
    top = [u for u in g.units if u.parent is None]
    assert sum(u.params for u in top) == sum(p.numel() for p in sd.module.parameters()) == g.total_params
    assert [u.id for u in g.prunable()] == ["down_blocks.0.layers.1", "down_blocks.1.layers.1",
                                             "down_blocks.2.layers.1", "down_blocks.3", "down_blocks.3.layers.1",
                                             "mid_block"]
    layer = g.get("down_blocks.1.layers.1")
    kids = {u.kind for u in g.children(layer.id)}
    assert kids == {"resnet", "attention"} and layer.attrs["removes_with"] == ["up_blocks.2.layers.1"]
    assert layer.params == sum(u.params for u in g.children(layer.id)) > 0
    assert all(u.macs and u.macs > 0 for u in g.units if u.kind in ("resnet", "attention"))
    # the 32-channel stages at 4x4 cost more MACs than the same blocks at 1x1
    assert g.get("down_blocks.1.layers.1").macs > g.get("down_blocks.3.layers.1").macs
    assert presets(sd, registry) == {"bk-base": True, "bk-small": True, "bk-tiny": True}
    inner = g.get("down_blocks.3").params + g.get("up_blocks.0").params + g.get("down_blocks.2.downsamplers.0").params
    assert g.removed_params(["down_blocks.3", "down_blocks.3.layers.1"]) == inner
    plan = preset_plan(sd, "bk-small", registry=registry)
    slim = prune(sd, plan, registry=registry)
    assert plan.params_after(g) == sum(p.numel() for p in slim.module.parameters())  # the estimate is exact


# -- presets and removal -----------------------------------------------------------------------------
@pytest.mark.parametrize("name,lpb,mid,stages", [("bk-base", 1, "UNetMidBlock2DCrossAttn", 4),
                                                 ("bk-small", 1, None, 4), ("bk-tiny", 1, None, 3)])
def test_presets_make_diffusers_loadable_unets(sd, registry, tmp_path, name, lpb, mid, stages):
    from diffusers import StableDiffusionPipeline

    plan = preset_plan(sd, name, registry=registry)
    slim = prune(sd, plan, registry=registry)
    out = save(slim, tmp_path / name, registry=registry)
    pipe = StableDiffusionPipeline.from_pretrained(str(out), local_files_only=True)
    cfg = pipe.unet.config
    assert cfg.layers_per_block == lpb and cfg.mid_block_type == mid and len(cfg.down_block_types) == stages
    assert len(pipe.unet.up_blocks[0].resnets) == 2
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a handwritten digit 7", num_inference_steps=2, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert img.shape == (1, 16, 16, 1) and float(abs(img).sum()) > 0
    mapping = json.loads((out / "slimgui_unet_map.json").read_text())
    assert mapping["teacher"] == sd.source and mapping["params_after"] < mapping["params_before"]
    teacher = sd.module.state_dict()
    student = pipe.unet.state_dict()
    for new, old in mapping["modules"].items():  # every kept block copies its source
        for k, v in student.items():
            if k.startswith(new + "."):
                assert torch.equal(v, teacher[old + k[len(new):]]), (k, old)
    plan_doc = json.loads((out / "slimgui_plan.json").read_text())
    assert plan_doc["meta"]["preset"] == name


def test_bk_tiny_maps_the_up_stages_past_the_removed_one(sd, registry):
    slim = prune(sd, preset_plan(sd, "bk-tiny", registry=registry), registry=registry)
    info = slim.extra["unet_map"]
    assert info["modules"]["up_blocks.0.resnets.1"] == "up_blocks.1.resnets.2"
    assert info["stages"] == {"down_blocks.0": "down_blocks.0", "down_blocks.1": "down_blocks.1",
                              "down_blocks.2": "down_blocks.2", "up_blocks.0": "up_blocks.1",
                              "up_blocks.1": "up_blocks.2", "up_blocks.2": "up_blocks.3"}


@pytest.mark.parametrize("unit", ["down_blocks.1.layers.1", "down_blocks.3", "mid_block", "down_blocks.0.layers.1"])
def test_bypass_equals_the_physically_smaller_unet(sd, unit):
    from slimgui_families.diffusion.unet import bypassed, remove_units

    unet = sd.module
    batch = _inputs(unet)
    student, _ = remove_units(unet, [unit])
    call = sd.impl.unet_call
    with torch.no_grad():
        with bypassed(unet, unit):
            a = call(unet, batch)
        b = call(student, batch)
        full = call(unet, batch)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, full, atol=1e-4)  # the unit did something


def test_no_preset_fits_gives_a_clear_message(tmp_path, registry):
    from diffusers import UNet2DConditionModel

    cfg = {**SD_UNET, "block_out_channels": (16, 32, 32, 64)}
    UNet2DConditionModel(**cfg).save_pretrained(str(tmp_path / "u"))
    m = open_model(str(tmp_path / "u"), registry=registry)
    assert presets(m, registry)["bk-tiny"] is False
    small = prune(m, preset_plan(m, "bk-small", registry=registry), registry=registry)  # every unit: layer 0s stay
    assert small.module.config.layers_per_block == 1 and small.module.config.mid_block_type is None
    with pytest.raises(SlimError, match="innermost stage.*same width"):
        preset_plan(m, "bk-tiny", registry=registry)
    one = {**SD_UNET, "layers_per_block": 1}
    UNet2DConditionModel(**one).save_pretrained(str(tmp_path / "one"))
    m1 = open_model(str(tmp_path / "one"), registry=registry)
    with pytest.raises(SlimError, match="at least two ResNet/attention pairs"):
        preset_plan(m1, "bk-base", registry=registry)
    with pytest.raises(SlimError, match="unknown preset"):
        preset_plan(m1, "bk-huge", registry=registry)


def test_unet2dmodel_presets_and_uniform_layers(unet2d_dir, registry, tmp_path):
    from diffusers import UNet2DModel

    m = open_model(str(unet2d_dir), registry=registry)
    for name in ("bk-base", "bk-small", "bk-tiny"):
        out = save(prune(m, preset_plan(m, name, registry=registry), registry=registry), tmp_path / name,
                   registry=registry)
        u = UNet2DModel.from_pretrained(str(out))
        assert u(torch.randn(1, 1, 16, 16), 5).sample.shape == (1, 1, 16, 16)
    with pytest.raises(SlimError, match="same number of layers"):
        prune(m, PruningPlan(remove=["down_blocks.0.layers.1"]), registry=registry)


# -- scoring ----------------------------------------------------------------------------------------
def test_ldpruner_is_deterministic_and_matches_removal(sd, registry):
    from slimgui_families.diffusion.calibration import calibration_batches
    from slimgui_families.diffusion.criteria import latent_distance
    from slimgui_families.diffusion.unet import remove_units

    a = analyze(sd, "ldpruner", registry=registry)
    b = analyze(sd, "ldpruner", registry=registry)
    assert a.values == b.values and set(a.values) == {u.id for u in graph_of(sd, registry).prunable()}
    assert all(v > 0 for v in a.values.values())
    batches = calibration_batches(sd.impl, sd, None)
    student, _ = remove_units(sd.module, ["mid_block"])
    with torch.no_grad():
        ref = torch.cat([sd.impl.unet_call(sd.module, x) for x in batches])
        got = torch.cat([sd.impl.unet_call(student, x) for x in batches])
    assert a.values["mid_block"] == pytest.approx(latent_distance(ref, got), rel=1e-6)


def test_output_change_and_taylor_score_every_unit(sd, registry):
    oc = analyze(sd, "output-change", registry=registry)
    tay = analyze(sd, "taylor", registry=registry)
    ids = {u.id for u in graph_of(sd, registry).prunable()}
    assert set(oc.values) == ids == set(tay.values)
    assert all(v >= 0 for v in oc.values.values()) and max(oc.values.values()) > 0


def test_calibration_from_an_image_folder(sd, tmp_path, registry):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rows = []
    for i in range(6):
        Image.fromarray((np.random.default_rng(i).random((16, 16)) * 255).astype("uint8")).save(folder / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": f"a handwritten digit {i}"}))
    (folder / "metadata.jsonl").write_text("\n".join(rows))
    from slimgui.core.data import CalibrationData

    s = analyze(sd, "ldpruner", registry=registry, data=CalibrationData(str(folder), samples=6, batch_size=3))
    assert s.meta["samples"] == 6
    (folder / "metadata.jsonl").write_text('{"file_name": "0.png"}\n{broken')
    with pytest.raises(SlimError, match="line 2 is not JSON"):
        analyze(sd, "ldpruner", registry=registry, data=CalibrationData(str(folder)))


# -- generation -------------------------------------------------------------------------------------
def test_compare_grid_same_seeds_side_by_side(sd, registry, tmp_path):
    from PIL import Image

    from slimgui.core.media import save_png, stack_images
    from slimgui.core.tasks_preview import preview_task

    slim = prune(sd, preset_plan(sd, "bk-small", registry=registry), registry=registry)
    options = {"prompt": "a handwritten digit 3", "seed": 0, "n": 3, "steps": 2}
    rows = preview_task([sd, slim], "generate", registry=registry, options=options, labels=["original", "bk-small"])
    media = stack_images(rows)  # each model's row of the same seeds, one under the other
    row_h = 128 + 2 * 4  # a row: 128-px tiles with 4 px around them
    assert media.image.shape == (2 * row_h + 4, 3 * 128 + 4 * 4)
    assert len(media.tiles) == 6 and [r.meta["seeds"] for r in rows] == [[0, 1, 2]] * 2
    assert media.meta["rows"] == ["original (2 steps)", "bk-small (2 steps)"]
    assert [m["label"] for r in rows for m in r.meta["models"]] == ["original", "bk-small"]
    again = preview_task([sd], "generate", registry=registry, options=options, labels=["original"])[0]
    assert (again.image == media.image[:row_h]).all()  # same seed, same model → same pixels
    top = row_h + 4 + 4  # the second row's tiles
    assert not (media.image[4:132] == media.image[top:top + 128]).all()  # the slimmed model draws differently
    path = save_png(media, tmp_path / "grid.png", labels=True)
    saved = Image.open(path)
    assert saved.height == media.image.shape[0] and saved.width > media.image.shape[1]  # + a strip of row labels
    bare = save_png(media, tmp_path / "bare.png", labels=False)
    assert Image.open(bare).size == (media.image.shape[1], media.image.shape[0])


def test_previewer_draws_a_demo_class_and_labels_its_row(sd, registry):
    from slimgui_families.diffusion.generate import generate_images

    from slimgui.core.ops import preview

    media = preview(sd, registry=registry, options={"prompt": "a handwritten digit 1", "n": 2, "steps": 2})
    assert media.meta["rows"] == [f"{Path(sd.source).name} (2 steps)"]  # no label given: the folder's name
    assert all(t["row"] == media.meta["rows"][0] for t in media.tiles) and len(media.tiles) == 2
    with pytest.raises(SlimError, match="--class works for models made from the demo"):
        generate_images(sd, class_label=3, n=1, steps=2)
    with pytest.raises(SlimError, match="not both"):
        generate_images(sd, "a cat", class_label=3, n=1, steps=2)


def test_bench_times_one_unet_forward_pass(sd, registry):
    from slimgui.core.tasks_export import bench_task

    slim = prune(sd, preset_plan(sd, "bk-small", registry=registry), registry=registry)
    assert sd.impl.bench_runner(sd, 1, None, "decode") is None
    run = sd.impl.bench_runner(sd, 2, None, "forward")
    assert (run.name, run.items, run.label) == ("prefill", 2, "forward pass")
    res = bench_task([("original", sd), ("bk-small", slim)], registry=registry, batches=[2], options=None,
                     threads=1, repeats=3)
    rows = res["rows"]
    assert [r["model"] for r in rows] == ["original", "bk-small"] and all(r["items"] == "images" for r in rows)
    for r in rows:
        assert r["prefill_median_ms"] > 0 and r["images_per_s"] > 0 and r["prefill_images_per_s"] > 0
        assert [x["name"] for x in r["runs"]] == ["prefill"]  # no decode for a U-Net
    assert rows[1]["prefill_speedup"] > 0 and rows[1]["ideal_speedup"] > 1


def test_cli_prune_preset_generate_and_inspect(sd_dir, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "slimgui.cli", *args], capture_output=True, text=True,
                              env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}, timeout=300)

    r = run("prune", str(sd_dir), "--preset", "bk-small", "--out", str(tmp_path / "small"), "--json", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["preset"] == "bk-small" and "mid_block" in doc["removed"] and doc["param_ratio"] < 1
    r = run("generate", str(sd_dir), "--vs", str(tmp_path / "small"), "--prompt", "a digit 5", "--steps", "2",
            "--n", "2", "--out", str(tmp_path / "g.png"), "--json", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(doc["out"]).is_file() and len(doc["models"]) == 2 and doc["seeds"] == [0, 1]
    r = run("inspect", str(sd_dir), "--json")
    assert json.loads(r.stdout.strip().splitlines()[-1])["presets"]["bk-tiny"] is True
    r = run("prune", str(tmp_path / "small"), "--preset", "bk-small", "--out", str(tmp_path / "again"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "at least two" in r.stderr
    assert not (tmp_path / "again").exists()
    r = run("generate", str(sd_dir), "--class", "3", "--out", str(tmp_path / "c.png"))
    assert r.returncode == 2 and "--class works for models made from the demo" in r.stderr


# -- bad input --------------------------------------------------------------------------------------
def _broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_pipeline_with_missing_component(sd_dir, tmp_path, registry):
    bad = _broken_copy(sd_dir, tmp_path / "novae")
    shutil.rmtree(bad / "vae")
    with pytest.raises(SlimError, match="vae component is missing"):
        open_model(str(bad), registry=registry)


def test_pipeline_with_truncated_unet(sd_dir, tmp_path, registry):
    bad = _broken_copy(sd_dir, tmp_path / "trunc")
    f = next((bad / "unet").glob("*.safetensors"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(SlimError, match="truncated|corrupt|not a valid"):
        open_model(str(bad), registry=registry)


def test_pipeline_with_broken_index_or_pickle_weights(sd_dir, tmp_path, registry):
    bad = _broken_copy(sd_dir, tmp_path / "idx")
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(SlimError, match="not valid JSON"):
        open_model(str(bad), registry=registry)
    pk = _broken_copy(sd_dir, tmp_path / "pk")
    f = next((pk / "text_encoder").glob("*.safetensors"))
    f.unlink()
    (pk / "text_encoder" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(SlimError, match="only pickle weights"):
        open_model(str(pk), registry=registry)


def test_prompt_for_a_model_without_text_encoder(unet2d_dir, tmp_path, registry):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    from slimgui_families.diffusion.generate import run_pipeline

    DDPMPipeline(unet=UNet2DModel.from_pretrained(str(unet2d_dir)),
                 scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(str(tmp_path / "ddpm"))
    m = open_model(str(tmp_path / "ddpm"), registry=registry)
    with pytest.raises(SlimError, match="no text encoder"):
        run_pipeline(m, "a cat", seeds=[0], steps=2)
    imgs = run_pipeline(m, "", seeds=[0, 1], steps=2)
    assert imgs.shape == (2, 1, 16, 16)
    bare = open_model(str(unet2d_dir), registry=registry)
    with pytest.raises(SlimError, match="needs a pipeline folder"):
        run_pipeline(bare, "", seeds=[0], steps=2)
