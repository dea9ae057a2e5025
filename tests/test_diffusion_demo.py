"""The demo diffusion pipeline draws the digits it is asked for, and the quality measure can tell.

Everything runs on the shipped demo (resources/demo/diffusion) on the CPU, offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from slimgui_families.diffusion import demo, quality

from slimgui.core.errors import SlimError

# measured on the shipped model: 40/40 correct at 10 DDIM steps (25 steps: see slimgui_demo.json);
# the threshold leaves a wide margin and is still far above chance (10%)
GENERATED_MIN_ACCURACY = 0.7


@pytest.fixture(scope="module")
def diffusion_demo() -> dict[str, str]:
    return demo.ensure_demo()


@pytest.fixture(scope="module")
def pipe(diffusion_demo):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(diffusion_demo["model"], local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def split():
    return demo.digit_split()


def test_shipped_pipeline_is_a_small_stable_diffusion(pipe, diffusion_demo):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    assert demo.is_complete(Path(diffusion_demo["model"]))
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.tokenizer, CLIPTokenizer)
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.safety_checker is None
    cfg = pipe.unet.config
    assert list(cfg.block_out_channels) == [32, 64, 64, 64] and cfg.cross_attention_dim == 64
    assert list(cfg.down_block_types) == list(demo.UNET_CONFIG["down_block_types"])
    assert cfg.mid_block_type == "UNetMidBlock2DCrossAttn" and cfg.layers_per_block == 2
    assert len(pipe.unet.down_blocks[0].attentions) == 2 and len(pipe.unet.up_blocks[1].attentions) == 3
    assert pipe.vae_scale_factor == 2 and pipe.vae.config.latent_channels == 4
    # latents scaled by the stored factor have roughly unit spread
    meta = json.loads((Path(diffusion_demo["model"]) / "slimgui_demo.json").read_text())
    assert meta["script"].startswith("python -m slimgui_families.diffusion.demo")
    assert meta["vae"]["latent_std"] * pipe.vae.config.scaling_factor == pytest.approx(1.0, rel=1e-3)
    assert meta["vae"]["heldout_reconstruction"]["l1"] < 0.05


def test_pipeline_generates_16x16_images_offline(pipe):
    out = pipe("a handwritten digit 3", num_inference_steps=4, guidance_scale=3.0, output_type="np",
               generator=torch.Generator().manual_seed(0))
    image = out.images
    assert image.shape == (1, 16, 16, 1)
    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert image.std() > 0.1  # a drawing, not a flat field


def test_tokenizer_has_whole_word_tokens(pipe):
    tok = pipe.tokenizer
    assert tok.model_max_length == pipe.text_encoder.config.max_position_embeddings == 16
    assert tok.tokenize("a handwritten digit 7") == ["a</w>", "handwritten</w>", "digit</w>", "7</w>"]
    assert tok.tokenize("seven") == ["seven</w>"]
    assert tok.tokenize("The Number Nine") == ["the</w>", "number</w>", "nine</w>"]
    empty = tok("", padding="max_length", max_length=tok.model_max_length).input_ids
    assert len(empty) == 16 and empty[0] == tok.bos_token_id and empty[1] == tok.eos_token_id
    # an unknown word still tokenizes (into characters), so any prompt runs
    assert tok.tokenize("cat") == ["c", "a", "t</w>"]
    assert len(tok) == pipe.text_encoder.config.vocab_size


def test_classifier_recognises_held_out_digits(diffusion_demo, split):
    model = quality.load_classifier(diffusion_demo["classifier"])
    eval_x, eval_y, _ = split["eval"]
    accuracy = (quality.classify(model, eval_x) == eval_y).float().mean().item()
    assert accuracy >= 0.9
    assert quality.features(model, eval_x[:5]).shape == (5, 64)
    stored = json.loads((Path(diffusion_demo["classifier"]) / "config.json").read_text())
    assert stored["heldout_accuracy"] == pytest.approx(accuracy, abs=1e-3)
    # the same classifier is found from the pipeline folder
    assert quality.classifier_dir(diffusion_demo["model"]) == Path(diffusion_demo["classifier"])


def test_held_out_split_is_fixed_and_disjoint(split):
    _, _, train_idx = split["train"]
    _, eval_y, eval_idx = split["eval"]
    assert not set(train_idx.tolist()) & set(eval_idx.tolist())
    assert len(train_idx) + len(eval_idx) == 1797
    assert 0.12 < len(eval_idx) / 1797 < 0.18
    assert set(eval_y.tolist()) == set(range(10))
    assert all(demo.is_held_out(i) for i in eval_idx.tolist()[:20])


def test_frechet_distance_separates_real_from_noise(diffusion_demo, split):
    model = quality.load_classifier(diffusion_demo["model"])
    train_x, _, _ = split["train"]
    eval_x, _, _ = split["eval"]
    real_train, real_eval = quality.features(model, train_x), quality.features(model, eval_x)
    noise = torch.rand(len(eval_x), 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    fid_real = quality.frechet_distance(real_train, real_eval)
    fid_noise = quality.frechet_distance(quality.features(model, noise), real_eval)
    assert fid_real * 10 < fid_noise
    assert quality.frechet_distance(real_eval, real_eval) == pytest.approx(0.0, abs=1e-3)
    assert quality.frechet_distance(real_train, real_eval) == pytest.approx(
        quality.frechet_distance(real_eval, real_train), rel=1e-3)
    # fewer samples than features: the covariances are singular and it still gives a finite number
    assert np.isfinite(quality.frechet_distance(real_train[:10], real_eval[:12]))
    scores = quality.score_samples(eval_x, split["eval"][1], diffusion_demo["model"])
    assert scores["n"] == len(eval_x) and scores["accuracy"] >= 0.9 and scores["fid"] < 1.0


def test_generated_digits_are_the_requested_ones(pipe, diffusion_demo):
    digits = [0, 1, 3, 4, 7]
    images, labels = quality.sample_digits(pipe, digits, per_digit=8, seed=0, steps=10, guidance=3.0)
    assert images.shape == (40, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert labels.tolist() == [d for d in digits for _ in range(8)]
    scores = quality.score_samples(images, labels, diffusion_demo["model"])
    assert scores["accuracy"] >= GENERATED_MIN_ACCURACY, scores
    # the same seed gives the same images
    again, _ = quality.sample_digits(pipe, digits[:1], per_digit=8, seed=0, steps=10, guidance=3.0)
    assert torch.allclose(again, images[:8], atol=1e-4)


def test_swapped_unet_and_scheduler_are_used_and_restored(pipe, diffusion_demo):
    from diffusers import DPMSolverMultistepScheduler, UNet2DConditionModel

    trained = quality.evaluate_pipeline(pipe, diffusion_demo["model"], per_digit=4, steps=8, guidance=3.0)
    assert trained["n"] == 40 and trained["seconds"] > 0
    original_scheduler, original_unet = pipe.scheduler, pipe.unet
    fast = quality.evaluate_pipeline(pipe, diffusion_demo["model"], per_digit=4, steps=4, guidance=3.0,
                                     scheduler=DPMSolverMultistepScheduler.from_config(pipe.scheduler.config))
    assert pipe.scheduler is original_scheduler
    assert fast["accuracy"] >= GENERATED_MIN_ACCURACY  # a 4-step multistep solver still draws digits (measured: 1.0)
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel(**demo.UNET_CONFIG).eval()
    try:
        untrained = quality.evaluate_pipeline(pipe, diffusion_demo["model"], per_digit=4, steps=8, guidance=3.0)
    finally:
        pipe.unet = original_unet
    assert untrained["accuracy"] < trained["accuracy"] - 0.3
    assert trained["fid"] * 3 < untrained["fid"]


def test_ensure_demo_writes_imagefolders(diffusion_demo, split):
    from PIL import Image

    from slimgui.core.io import cache_dir

    assert set(diffusion_demo) == {"model", "train", "eval", "classifier"}
    counts = {}
    for name in ("train", "eval"):
        folder = Path(diffusion_demo[name])
        assert folder.is_relative_to(cache_dir())
        rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
        assert len(rows) == len(list(folder.glob("*.png"))) == len(split[name][0])
        for row in rows:
            assert set(row) == {"file_name", "text", "label"}
            assert row["text"] == f"a handwritten digit {row['label']}" and 0 <= row["label"] <= 9
        counts[name] = {row["file_name"] for row in rows}
        first = rows[0]
        with Image.open(folder / first["file_name"]) as im:
            assert im.size == (16, 16) and im.mode == "L"
            pixels = torch.tensor(np.asarray(im), dtype=torch.float32) / 127.5 - 1
        images, labels, indices = split[name]
        pos = indices.tolist().index(int(first["file_name"].split(".")[0]))
        assert labels[pos].item() == first["label"]
        assert torch.allclose(pixels, images[pos, 0], atol=1 / 127.5 + 1e-6)
    assert not counts["train"] & counts["eval"]
    assert demo.ensure_demo() == diffusion_demo  # a second call reuses what is there


def test_imagefolder_loads_with_datasets(diffusion_demo, tmp_path):
    """The data folders follow the Hugging Face "imagefolder" convention: `datasets` reads them as they are."""
    from datasets import load_dataset

    ds = load_dataset("imagefolder", data_dir=diffusion_demo["eval"], split="train", cache_dir=str(tmp_path))
    assert {"image", "text", "label"} <= set(ds.column_names)
    row = ds[0]
    assert row["image"].size == (16, 16) and row["text"] == f"a handwritten digit {row['label']}"


def test_damaged_classifier_gives_a_clear_error(diffusion_demo, tmp_path):
    folder = tmp_path / "classifier"
    shutil.copytree(diffusion_demo["classifier"], folder)
    (folder / "model.safetensors").write_bytes(b"\x00garbage, not a safetensors file")
    with pytest.raises(SlimError, match="not a readable safetensors file") as info:
        quality.load_classifier(folder)
    assert "python -m slimgui_families.diffusion.demo" in (info.value.hint or "")
    with pytest.raises(SlimError, match="holds no digit classifier"):
        quality.load_classifier(tmp_path / "nowhere")
    shutil.copy(Path(diffusion_demo["classifier"]) / "model.safetensors", folder / "model.safetensors")
    assert isinstance(quality.load_classifier(folder), quality.DigitClassifier)  # a repaired file is read again


def test_bad_inputs_raise_slim_errors(diffusion_demo, tmp_path):
    with pytest.raises(SlimError, match="N×1×16×16"):
        quality.score_samples(torch.zeros(4, 3, 16, 16), [0, 1, 2, 3], diffusion_demo["model"])
    with pytest.raises(SlimError, match=r"\[-1, 1\]"):
        quality.score_samples(torch.full((2, 1, 16, 16), 255.0), [0, 1], diffusion_demo["model"])
    with pytest.raises(SlimError, match="labels"):
        quality.score_samples(torch.zeros(4, 1, 16, 16), [0, 1], diffusion_demo["model"])
    with pytest.raises(SlimError, match="not a diffusers pipeline folder"):
        quality.sample_digits(tmp_path, [1], per_digit=1)
    with pytest.raises(SlimError, match="unknown demo training setting"):
        demo.train_demo(tmp_path / "out", unet_stepz=3)


@pytest.mark.slow
def test_training_script_builds_a_loadable_pipeline(tmp_path):
    """The script end to end with a handful of steps: every file, and the folder loads back."""
    from diffusers import StableDiffusionPipeline

    seen: list[tuple[int, int, str]] = []
    meta = demo.train_demo(tmp_path / "demo", progress=lambda d, t, m: seen.append((d, t, m)),
                           vae_steps=2, classifier_steps=2, unet_steps=2, unet_batch=8, vae_batch=8,
                           eval_per_digit=1, eval_steps=2)
    out = tmp_path / "demo"
    assert demo.is_complete(out) and not list(tmp_path.glob("demo.tmp-*"))
    assert meta["train_config"]["unet_steps"] == 2 and meta["quality"]["generated"]["n"] == 10
    assert seen and seen[-1][0] == seen[-1][1]
    pipe = StableDiffusionPipeline.from_pretrained(str(out), local_files_only=True)
    assert list(pipe.unet.config.block_out_channels) == list(demo.UNET_CONFIG["block_out_channels"])
    assert quality.load_classifier(out).head.out_features == 10


def test_training_can_be_cancelled(tmp_path):
    from slimgui.core.errors import Cancelled
    from slimgui.core.progress import CancelToken

    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        demo.train_demo(tmp_path / "demo", cancel=token, unet_steps=2)
    assert not list(tmp_path.iterdir())  # nothing half-written is left behind


@pytest.mark.slow
def test_missing_shipped_model_is_rebuilt_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMGUI_RESOURCES", str(tmp_path / "no-resources"))
    monkeypatch.setenv("SLIMGUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "TRAIN", demo.TRAIN | dict(vae_steps=1, classifier_steps=1, unet_steps=1, vae_batch=4,
                                                          unet_batch=4, eval_per_digit=1, eval_steps=1))
    seen: list[str] = []
    paths = demo.ensure_demo(progress=lambda d, t, m: seen.append(m))
    assert Path(paths["model"]) == tmp_path / "cache" / f"demo-diffusion-v{demo.DEMO_VERSION}" / "model"
    assert demo.is_complete(Path(paths["model"])) and (Path(paths["eval"]) / "metadata.jsonl").is_file()
    assert any("U-Net" in m for m in seen)


def test_digits_evaluator_returns_its_declared_metrics(diffusion_demo, registry):
    from slimgui.core.model import open_model
    from slimgui.core.ops import evaluate

    model = open_model(diffusion_demo["model"], registry=registry)
    res = evaluate(model, None, registry=registry, evaluator="digits", options={"per_digit": 2, "steps": 8})
    assert res["n"] == 20 and res["steps"] == 8 and res["guidance"] == 3.0 and res["per_digit"] == 2
    assert res["accuracy"] >= GENERATED_MIN_ACCURACY and res["fid"] >= 0 and res["evaluator"] == "digits"
    metrics = {m["name"]: m for m in res["metrics"]}
    assert set(metrics) == {"accuracy", "fid", "n"}
    assert metrics["accuracy"]["better"] == "higher" and metrics["fid"]["better"] == "lower"
    assert metrics["accuracy"]["value"] == res["accuracy"]
    with pytest.raises(SlimError, match="per_digit must be from 1"):  # checked by the schema, once for every front end
        evaluate(model, None, registry=registry, evaluator="digits", options={"per_digit": 0})
