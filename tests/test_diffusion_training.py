"""Retraining diffusion pipelines: BK-SDM distillation, denoising fine-tuning, LoRA and latent consistency (LCM).

Everything runs on a tiny random-weight Stable-Diffusion-shaped pipeline (tests/diffusion_models.py) and a
folder of 16×16 grey "digit" blobs written here, on the CPU, in seconds.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from slimgui.core.errors import Cancelled, SlimError
from slimgui.core.progress import CancelToken
from slimgui.core.train import TrainConfig, checkpoints, run_training, take


def make_digit_folder(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` 16×16 grey PNG blobs (one position and size per digit 0-9) with imagefolder captions."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16]
    lines = []
    for i in range(n):
        d = i % 10
        cy, cx, r = 4 + (d // 4) * 3, 4 + (d % 4) * 2.5, 1.5 + 0.2 * d
        img = np.clip(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) + rng.normal(0, 0.03, (16, 16)), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8), mode="L").save(folder / f"{i:03d}.png")
        lines.append(json.dumps({"file_name": f"{i:03d}.png", "text": f"a handwritten digit {d}"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def pipes(tmp_path_factory, registry):
    """The tiny teacher pipeline and its BK-SDM-Small / -Tiny students, saved as pipeline folders."""
    from diffusion_models import tiny_sd_pipeline

    from slimgui.core.model import open_model
    from slimgui.core.ops import prune, save

    root = tmp_path_factory.mktemp("pipes")
    torch.set_num_threads(1)
    teacher = tiny_sd_pipeline(root / "teacher")
    model = open_model(str(teacher), registry=registry)
    out = {"teacher": teacher}
    for preset in ("bk-small", "bk-tiny"):
        out[preset] = save(prune(model, model.impl.preset_plan(model, preset), registry=registry),
                           root / preset, registry=registry)
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_digit_folder(tmp_path_factory.mktemp("data") / "digits", 32)


def cfg_for(model, data, out, **kw) -> TrainConfig:
    """A job; the method's options (kd_*, lcm_*, lora_*) go into ``options`` by name."""
    base = dict(model=str(model), data=[str(data)], out=str(out), steps=8, batch_size=8, save_every=100,
                eval_every=4, warmup=2, val_fraction=0.25, lr=2e-3)
    if kw.get("method") == "lcm":
        base["lcm_ddim_steps"] = 20  # a short teacher solver for the tests
    base.update(kw)
    return TrainConfig.flat(**base)


@functools.cache
def _registry():
    from slimgui.core.plugins import discover

    return discover()


def build(cfg: TrainConfig):
    """The job's task as the loop gets it: the method's builder (named by the manifest) with its options."""
    from slimgui.core.train import build_task

    return build_task(cfg, _registry())


def steps_of(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] == "step"]


def unet_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(next((Path(folder) / "unet").glob("*.safetensors"))))


# -- BK-SDM distillation ---------------------------------------------------------------------------
def test_kd_heals_and_saves_a_pipeline_that_generates(pipes, images, tmp_path):
    from diffusers import StableDiffusionPipeline

    events: list[dict] = []
    cfg = cfg_for(pipes["bk-small"], images, tmp_path / "run", method="kd", teacher=str(pipes["teacher"]), steps=30,
                  eval_every=10)
    result = run_training(cfg, events=events.append)
    steps = steps_of(events)
    assert [e["step"] for e in steps] == list(range(1, 31))
    assert all({"task", "out", "feat"} <= set(e) for e in steps)
    assert steps[0]["feat"] > 0  # the student lost blocks, so its stage features differ from the teacher's
    losses = [e["train_loss"] for e in steps]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])  # it learns
    assert np.mean([e["feat"] for e in steps[-5:]]) < np.mean([e["feat"] for e in steps[:5]])
    assert result["items"] == "images" and result["items_seen"] == result["images_seen"] == 30 * 8
    assert "val_ppl" not in result
    assert np.isfinite(result["val_loss"]) and any("val_loss" in e for e in steps)
    start = events[0]
    assert start["items"] == "images" and start["val_metric"] is None

    model_dir = Path(cfg.out) / "model"
    healed = json.loads((model_dir / "slimgui_healed_from.json").read_text())
    assert healed["model"] == str(pipes["bk-small"]) and healed["method"] == "kd"
    assert healed["teacher"] == str(pipes["teacher"])
    assert (model_dir / "slimgui_unet_map.json").read_text() == (pipes["bk-small"] / "slimgui_unet_map.json").read_text()
    assert not list(model_dir.parent.glob(".model.partial-*"))
    before, after = unet_weights(pipes["bk-small"]), unet_weights(model_dir)
    assert before.keys() == after.keys()
    assert not torch.equal(before["conv_in.weight"], after["conv_in.weight"])

    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True)
    assert pipe.unet.config.layers_per_block == 1 and pipe.unet.config.mid_block_type is None
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a handwritten digit 7", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               output_type="np").images
    assert img.shape == (1, 16, 16, 1) and np.isfinite(img).all()


def test_kd_loss_terms_and_output_only_weighting(pipes, images, tmp_path):
    # the teacher comes from the student's slimgui_unet_map.json when none is given
    task = build(cfg_for(pipes["bk-small"], images, tmp_path / "a", method="kd"))
    assert task.info["teacher"] == str(pipes["teacher"])
    stages = task.info["feature_stages"]
    assert "mid_block" not in stages and stages["up_blocks.3"] == "up_blocks.3" and len(stages) == 8
    assert task.info["teacher_params"] > task.info["params"] > 0
    assert task.info["items"] == "images" and task.info["items_per_sample"] == 1 and task.info["val_metric"] is None
    assert task.info["activation_bytes_per_sample"] > 0
    batch = take(task.train_blocks, slice(0, 4))
    assert set(batch) == {"latents", "encoder_hidden_states"} and batch["latents"].shape == (4, 4, 8, 8)

    def loss_of(kd_hidden: float, kd_kl: float = 1.0):
        t = build(cfg_for(pipes["bk-small"], images, tmp_path / "b", method="kd", kd_hidden=kd_hidden, kd_kl=kd_kl,
                          teacher=str(pipes["teacher"])))
        torch.manual_seed(3)
        loss, metrics = t.loss(t.model, batch)
        return float(loss.detach()), metrics

    full, m_full = loss_of(1.0)
    out_only, m_out = loss_of(0.0)
    task_only, m_task = loss_of(0.0, kd_kl=0.0)
    assert m_full == pytest.approx(m_out)  # same noise, same timesteps: the same three terms
    assert m_out["feat"] > 0  # still measured (and reported) when it is not trained
    assert full == pytest.approx(m_full["task"] + m_full["out"] + m_full["feat"], rel=1e-5)
    assert out_only == pytest.approx(m_out["task"] + m_out["out"], rel=1e-5)
    assert task_only == pytest.approx(m_task["task"], rel=1e-5)


def test_kd_on_bk_tiny_matches_shifted_stages(pipes, images, tmp_path):
    task = build(cfg_for(pipes["bk-tiny"], images, tmp_path / "a", method="kd"))
    stages = task.info["feature_stages"]
    # the innermost stage is gone: student up stage k continues teacher up stage k+1
    assert stages == {"down_blocks.0": "down_blocks.0", "down_blocks.1": "down_blocks.1",
                      "down_blocks.2": "down_blocks.2", "up_blocks.0": "up_blocks.1", "up_blocks.1": "up_blocks.2",
                      "up_blocks.2": "up_blocks.3"}
    torch.manual_seed(0)
    loss, metrics = task.loss(task.model, take(task.train_blocks, slice(0, 4)))
    loss.backward()
    assert torch.isfinite(loss) and metrics["feat"] > 0


# -- cancel / resume -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["kd", "lcm"])
def test_cancel_then_resume_reproduces_the_uninterrupted_run(method, pipes, images, tmp_path):
    kw = dict(method=method, steps=10, eval_every=5, teacher=str(pipes["teacher"]) if method == "kd" else None)
    reference = run_training(cfg_for(pipes["bk-small"], images, tmp_path / "ref", **kw))
    ref_hist = json.loads((tmp_path / "ref" / "slimgui_train.json").read_text())["history"]

    cancel = CancelToken()

    def stop_at_6(ev):
        if ev["event"] == "step" and ev["step"] == 6:
            cancel.cancel()

    cfg = cfg_for(pipes["bk-small"], images, tmp_path / "run", **kw)
    with pytest.raises(Cancelled, match="step 6"):
        run_training(cfg, events=stop_at_6, cancel=cancel)
    ckpt = checkpoints(cfg.out)
    assert [p.name for p in ckpt] == ["checkpoint-6"]
    if method == "lcm":  # the EMA target network is checkpointed beside the student
        from safetensors.torch import load_file

        extra = load_file(str(ckpt[0] / "extra_state.safetensors"))
        trained = load_file(str(ckpt[0] / "trainable.safetensors"))
        assert extra and all(k.startswith("target.") for k in extra)
        assert not torch.equal(extra["target.conv_in.weight"], trained["conv_in.weight"])
    events: list[dict] = []
    result = run_training(cfg, events=events.append, resume=True)
    assert events[0]["resumed"] and [e["step"] for e in steps_of(events)] == [7, 8, 9, 10]
    hist = json.loads((tmp_path / "run" / "slimgui_train.json").read_text())["history"]
    assert [h[0] for h in hist] == list(range(1, 11))
    for (s1, l1), (s2, l2) in zip(hist, ref_hist, strict=True):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-4, abs=1e-5)
    assert result["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-4)
    a, b = unet_weights(tmp_path / "ref" / "model"), unet_weights(tmp_path / "run" / "model")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


# -- latent consistency distillation ---------------------------------------------------------------
def test_lcm_saves_a_few_step_pipeline(pipes, images, tmp_path, registry):
    from diffusers import LCMScheduler, StableDiffusionPipeline
    from slimgui_families.diffusion.generate import fewstep_settings, generate_images

    from slimgui.core.model import open_model

    events: list[dict] = []
    cfg = cfg_for(pipes["bk-small"], images, tmp_path / "run", method="lcm", steps=6, lcm_guidance=2.0)
    run_training(cfg, events=events.append)
    assert all(np.isfinite(e["lcm"]) and e["lcm"] >= 0 for e in steps_of(events))
    model_dir = Path(cfg.out) / "model"
    few = json.loads((model_dir / "slimgui_fewstep.json").read_text())
    assert few["steps"] == 4 and few["guidance"] == 1.0 and few["scheduler"] == "lcm" and few["method"] == "lcm"
    assert few["source"] == str(pipes["bk-small"]) and few["ddim_steps"] == 20 and few["teacher_guidance"] == 2.0
    # the tiny pipeline's cosine schedule has ᾱ(999) ≈ 2e-9: that solver step is not trained, nor sampled
    assert few["timesteps"] == [949, 749, 549, 349]
    sched = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "LCMScheduler" and sched["original_inference_steps"] == 20

    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True)
    assert isinstance(pipe.scheduler, LCMScheduler)
    pipe.set_progress_bar_config(disable=True)
    for n in (2, 4):
        img = pipe("a handwritten digit 3", num_inference_steps=n, guidance_scale=1.0,
                   generator=torch.Generator().manual_seed(0), output_type="np").images
        assert img.shape == (1, 16, 16, 1) and np.isfinite(img).all()
    img = pipe("a handwritten digit 3", timesteps=few["timesteps"], guidance_scale=1.0, output_type="np").images
    assert np.isfinite(img).all()

    loaded = open_model(str(model_dir), registry=registry)
    assert fewstep_settings(loaded)["steps"] == 4
    media = generate_images(loaded, "a handwritten digit 3", n=2)
    assert media.meta["models"][0]["scheduler"] == "lcm" and media.meta["models"][0]["steps"] == 4


def test_lcm_teacher_guidance_and_ema_update(pipes, images, tmp_path):
    cfg = cfg_for(pipes["bk-small"], images, tmp_path / "a", method="lcm", lcm_ema_decay=0.5)
    task = build(cfg)
    assert task.info["teacher"] == str(pipes["bk-small"])  # its own U-Net, frozen
    assert task.after_step is not None and task.extra_state is not None
    target = task.extra_state()
    before = {k: v.clone() for k, v in target.items()}
    with torch.no_grad():
        for p in task.model.parameters():
            p.add_(1.0)
    task.after_step(task.model)
    after = task.extra_state()
    student = dict(task.model.named_parameters())
    k = "conv_in.weight"
    assert torch.allclose(after[f"target.{k}"], 0.5 * before[f"target.{k}"] + 0.5 * student[k])
    task.load_extra_state(before)
    assert torch.equal(task.extra_state()[f"target.{k}"], before[f"target.{k}"])
    # the few dropped captions are for CFG training; LCM gets the "" branch from the teacher instead
    assert task.info["dropped_captions"] == 0


# -- plain fine-tuning and LoRA --------------------------------------------------------------------
def test_cpt_and_lora_merged_or_kept(pipes, images, tmp_path):
    from diffusers import StableDiffusionPipeline

    res = run_training(cfg_for(pipes["bk-small"], images, tmp_path / "cpt", method="cpt", steps=3))
    assert np.isfinite(res["val_loss"])
    q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    base = unet_weights(pipes["bk-small"])

    events: list[dict] = []
    run_training(cfg_for(pipes["bk-small"], images, tmp_path / "lora", method="lora", steps=3, lora_r=4),
                 events=events.append)
    est = events[0]["estimate"]
    assert 0 < est["trainable_params"] < est["params"] / 5
    merged = unet_weights(tmp_path / "lora" / "model")
    assert merged.keys() == base.keys() and not torch.equal(merged[q], base[q])  # merged into the U-Net
    assert torch.equal(merged["conv_in.weight"], base["conv_in.weight"])  # only attention projections moved

    run_training(cfg_for(pipes["bk-small"], images, tmp_path / "keep", method="lora", steps=3, lora_merge=False,
                         lora_targets=["to_q", "to_v"]))
    kept = tmp_path / "keep" / "model"
    assert torch.equal(unet_weights(kept)[q], base[q])  # the base stays as it was
    assert (kept / "pytorch_lora_weights.safetensors").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(str(kept), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(1, 12, 32, generator=torch.Generator().manual_seed(1))
    plain = pipe.unet(x, 500, encoder_hidden_states=cond).sample
    pipe.load_lora_weights(str(kept))
    adapted = pipe.unet(x, 500, encoder_hidden_states=cond).sample
    assert not torch.allclose(plain, adapted)

    with pytest.raises(SlimError, match="unknown LoRA target module.*to_q"):
        build(cfg_for(pipes["bk-small"], images, tmp_path / "bad", method="lora", lora_targets=["c_attn"]))


def test_pixel_space_ddpm_pipeline_trains_without_text(images, tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, layers_per_block=1)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(str(tmp_path / "ddpm"))
    cfg = cfg_for(tmp_path / "ddpm", images, tmp_path / "run", method="cpt", steps=3)
    task = build(cfg)
    assert set(task.train_blocks) == {"latents"} and task.train_blocks["latents"].shape[1:] == (1, 16, 16)
    run_training(cfg)
    pipe = DDPMPipeline.from_pretrained(str(tmp_path / "run" / "model"))
    pipe.set_progress_bar_config(disable=True)
    assert pipe(batch_size=1, num_inference_steps=2, output_type="np").images.shape == (1, 16, 16, 1)
    # the manifest's builders take their method's options schema; settings are checked before the images are read
    from slimgui_families.diffusion.adapter import DiffusersAdapter
    from slimgui_families.diffusion.options import DistillOptions, LoraOptions
    from slimgui_families.diffusion.training import build_kd, build_lora

    with pytest.raises(SlimError, match="DDPMPipeline cannot save a separate LoRA adapter"):
        build_lora(DiffusersAdapter(), cfg, LoraOptions(lora_merge=False, lora_targets=["linear_1"]))
    with pytest.raises(SlimError, match="takes DistillOptions"):
        build_kd(DiffusersAdapter(), cfg, LoraOptions())
    with pytest.raises(SlimError, match="needs a teacher"):
        build_kd(DiffusersAdapter(), cfg, DistillOptions(kd_hidden=0.0))


# -- data ------------------------------------------------------------------------------------------
def test_data_split_caption_dropout_and_validation_are_deterministic(pipes, images, tmp_path):
    cfg = cfg_for(pipes["bk-small"], images, tmp_path / "a", method="cpt", val_fraction=0.25)
    a, b = build(cfg), build(cfg)
    assert a.info["train_images"] == 24 and a.info["val_images"] == 8
    assert a.info["dropped_captions"] == round(0.1 * 24) == 2
    for key in a.train_blocks:
        assert torch.equal(a.train_blocks[key], b.train_blocks[key])
    emb = a.train_blocks["encoder_hidden_states"]
    from slimgui_families.diffusion.adapter import DiffusersAdapter
    from slimgui_families.diffusion.calibration import encode_prompts

    pipe = DiffusersAdapter().load(str(pipes["bk-small"])).extra["pipeline"]
    empty = encode_prompts(pipe, [""])[0]
    assert sum(torch.allclose(e, empty, atol=1e-6) for e in emb) == 2
    assert set(a.val_blocks) == {"latents", "encoder_hidden_states", "timesteps", "noise"}
    assert a.info["val_samples"] == 32  # each held-out image at 4 fixed timesteps
    assert len(set(a.val_blocks["timesteps"].tolist())) == 32
    batch = take(a.val_blocks, slice(0, 8))
    with torch.no_grad():
        assert float(a.eval_loss(a.model, batch)) == float(b.eval_loss(b.model, batch))


def test_bad_inputs_give_clear_errors(pipes, images, tmp_path):
    with pytest.raises(SlimError, match="needs a teacher.*slimgui_unet_map.json"):
        build(cfg_for(pipes["teacher"], images, tmp_path / "a", method="kd"))
    with pytest.raises(SlimError, match="teacher"):
        run_training(cfg_for(pipes["teacher"], images, tmp_path / "b", method="kd"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SlimError, match="needs a teacher"):  # settings are checked before the images are read
        build(cfg_for(pipes["teacher"], empty, tmp_path / "a", method="kd"))
    with pytest.raises(SlimError, match="holds no images"):
        build(cfg_for(pipes["bk-small"], empty, tmp_path / "c", method="cpt"))
    broken = make_digit_folder(tmp_path / "broken", 4)
    meta = broken / "metadata.jsonl"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join([lines[0], '{"file_name": "001.png", "text": ', *lines[2:]]) + "\n")
    with pytest.raises(SlimError, match="metadata.jsonl line 2 is not JSON"):
        build(cfg_for(pipes["bk-small"], broken, tmp_path / "d", method="cpt"))
    text = tmp_path / "prompts.txt"
    text.write_text("a cat\n")
    with pytest.raises(SlimError, match="is not an image folder"):
        build(cfg_for(pipes["bk-small"], text, tmp_path / "e", method="cpt"))
    with pytest.raises(SlimError, match="bare U-Net folder"):
        build(cfg_for(pipes["bk-small"] / "unet", images, tmp_path / "f", method="cpt"))
    one = make_digit_folder(tmp_path / "one", 1)
    with pytest.raises(SlimError, match="too few"):
        build(cfg_for(pipes["bk-small"], one, tmp_path / "g", method="cpt"))
    missing = make_digit_folder(tmp_path / "missing", 4)
    (missing / "002.png").unlink()
    with pytest.raises(SlimError, match="002.png is missing"):
        build(cfg_for(pipes["bk-small"], missing, tmp_path / "h", method="cpt"))
    with pytest.raises(SlimError, match="does not exist"):
        build(cfg_for(pipes["bk-small"], images, tmp_path / "i", method="kd", teacher=str(tmp_path / "nope")))
