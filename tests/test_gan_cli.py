"""The gan family end to end through the CLI on the shipped demo generator (edges -> photo): it means something
(far above the identity and mean-image baselines), the sensitivity scan finds the inner layers tolerant, presets
and plans prune it into smaller generators that reopen, evaluation against targets and the original, the preview
grid, distillation, the ONNX export with parity and the benchmark; bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli


def cli(*args):
    r = run_cli(*args, env_extra={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, f"slimgui {' '.join(args)} failed:\n{r.stderr[-3000:]}"
    return r


def last_json(r) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def demo():
    from slimgui_families.gan.demo import ensure_demo

    return ensure_demo()


def test_the_demo_means_something(demo):
    from pathlib import Path

    meta = json.loads((Path(demo["model"]) / "slimgui_demo.json").read_text())
    assert meta["heldout_psnr"] > max(meta["identity_psnr"], meta["mean_image_psnr"]) + 3.0, meta
    got = last_json(cli("eval", demo["model"], "--json"))
    assert got["pairs"] == 48 and got["psnr"] == pytest.approx(meta["heldout_psnr"], abs=0.05)
    assert "psnr_to_original" not in got  # the original itself


def test_cli_scans_prunes_evaluates_previews_heals_exports_and_benchmarks(demo, tmp_path):
    model = demo["model"]
    graph = last_json(cli("inspect", model, "--json"))["graph"]
    assert graph["attrs"]["layout"] == "u" and graph["attrs"]["architecture"].startswith("unet (6 downs)")
    scores = tmp_path / "scores.json"
    cli("analyze", model, "--criterion", "sensitivity-scan", "--samples", "16", "--batch-size", "16", "--out", str(scores),
        "--json")
    meta = json.loads(scores.read_text())["meta"]
    t = meta["table"]
    inner = (t["down.5"]["0.75"] + t["up.5"]["0.75"]) / 2
    outer = (t["down.1"]["0.75"] + t["up.1"]["0.75"]) / 2
    assert inner < outer / 3, t  # the paper's finding: the layers near the bottleneck tolerate far more pruning
    assert meta["forward_passes"] == 1 + 7 * 11 + 4 and meta["calibration_batches"] == 1
    # the paper's inner plan as a preset; a plan from the scan's scores; inner-layer removal
    inner_dir = tmp_path / "inner"
    res = last_json(cli("prune", model, "--preset", "inner-75", "--out", str(inner_dir), "--json"))
    assert res["params_after"] < 0.5 * res["params_before"]
    cut = tmp_path / "cut"
    cli("prune", model, "--preset", "cut-2", "--out", str(cut), "--json")
    assert json.loads((cut / "slimgui_gan.json").read_text())["down"] == [8, 16, 32, 64]
    by_scores = tmp_path / "by-scores"
    cli("prune", model, "--scores", str(scores), "--ratio", "0.3", "--out", str(by_scores), "--json")
    ev = last_json(cli("eval", str(inner_dir), "--json"))
    assert ev["psnr_to_original"] > 15 and ev["ssim_to_original"] > 0.4 and ev["psnr"] > 10
    # the preview grid: input | original | this | target, for both models
    png = tmp_path / "preview.png"
    cli("generate", str(inner_dir), "--vs", model, "--pairs", "2", "--out", str(png))
    import cv2

    img = cv2.imread(str(png))
    assert img is not None and img.shape[1] > 4 * 128
    # distillation from the original (found through the plan), a few steps
    run = tmp_path / "run"
    healed = last_json(cli("retrain", str(inner_dir), "--method", "kd", "--steps", "4", "--batch-size", "8",
                           "--save-every", "2", "--eval-every", "2", "--out", str(run), "--json"))
    assert healed["step"] == 4 and "val_psnr" in healed
    assert json.loads((run / "model" / "slimgui_healed_from.json").read_text())["method"] == "kd"
    # ONNX FP32 and INT8 with parity, then the benchmark of torch and onnxruntime
    onnx = tmp_path / "inner.gan.onnx"
    fp = last_json(cli("export", str(inner_dir), "--format", "gan-onnx", "--out", str(onnx), "--json"))
    assert fp["fp32_parity"]["cosine"] > 0.9999
    q = last_json(cli("export", str(inner_dir), "--format", "gan-onnx", "--onnx-mode", "int8", "--out",
                      str(tmp_path / "inner8.gan.onnx"), "--json"))
    assert q["cosine"] > 0.99 and q["bytes"] < q["fp32_bytes"]
    bench = last_json(cli("bench", model, "--vs", str(inner_dir), str(onnx), "--batch", "1", "--repeats", "3",
                          "--json"))
    assert {r["runtime"] for r in bench["rows"]} == {"torch", "onnxruntime"}


def test_bad_input_is_one_line_and_exit_2(demo, tmp_path):
    (tmp_path / "unpaired" / "A").mkdir(parents=True)
    r = run_cli("eval", demo["model"], "--data", str(tmp_path / "unpaired"), "--json")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "unpaired" in r.stderr
    for side, name in (("A", "1.png"), ("B", "2.png")):
        (tmp_path / "mismatched" / side).mkdir(parents=True)
        (tmp_path / "mismatched" / side / name).write_bytes(b"")
    r = run_cli("generate", demo["model"], "--pairs-folder", str(tmp_path / "mismatched"), "--out",
                str(tmp_path / "g.png"))
    assert r.returncode == 2 and "mismatched: A/1.png has no partner" in r.stderr and not (tmp_path / "g.png").exists()
    r = run_cli("prune", demo["model"], "--remove", "down.1", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "cannot be removed" in r.stderr and not (tmp_path / "x").exists()


def test_pix2pix_finetune_with_the_patchgan_resumes_its_discriminator(demo, tmp_path):
    import torch

    from slimgui.core.plugins import discover
    from slimgui.core.train import TrainConfig, run_training

    reg = discover()
    torch.set_num_threads(1)
    cfg = TrainConfig(model=demo["model"], data=[], out=str(tmp_path / "ft"), method="finetune", steps=2,
                      batch_size=4, save_every=2, eval_every=2, warmup=1, seed=0,
                      options={"lambda_gan": 0.5, "max_train_pairs": 64})
    first = run_training(cfg, registry=reg)
    assert first["step"] == 2 and "val_psnr" in first
    ckpt = next((tmp_path / "ft").glob("checkpoint-2"))
    from safetensors import safe_open

    with safe_open(str(ckpt / "extra_state.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
    assert any(k.startswith("D.model.0.") for k in keys) and any(k.startswith("optD.") for k in keys)
    cfg.steps = 4
    again = run_training(cfg, registry=reg, resume=True)
    assert again["step"] == 4 and again.get("resumed_from")


def test_the_demo_script_rebuilds_a_junyanz_state_dict(tmp_path):
    import torch
    from slimgui_families.gan.demo import MODEL, train_demo

    meta = train_demo(tmp_path / "demo", steps=20)
    out = tmp_path / "demo"
    state = torch.load(out / "latest_net_G.pth", weights_only=True)
    assert "model.model.1.model.3.model.3.model.3.model.3.model.1.weight" in state  # level 5 of 6, junyanz's nesting
    assert state["model.model.0.weight"].shape == (MODEL["ngf"], 3, 4, 4)
    assert (out / "latest_net_G.safetensors").is_file() and len(list((out / "pairs" / "test" / "A").iterdir())) == 48
    assert meta["history"][-1]["step"] == 20 and meta["heldout_psnr"] > 0


def test_the_sensitivity_chart_previewer(demo):
    import torch
    from slimgui_families.gan.preview import sensitivity_chart

    from slimgui.core.model import open_model
    from slimgui.core.plugins import discover

    torch.set_num_threads(1)
    model = open_model(demo["model"], registry=discover())
    media = sensitivity_chart(model, samples=8)
    assert media.image.shape == (420, 760, 3) and len(media.meta["table"]) == 11
    assert media.meta["forward_passes"] == 1 + 7 * 11 + 4
    t = media.meta["table"]
    assert t["down.5"]["0.875"] < t["down.0"]["0.875"]
