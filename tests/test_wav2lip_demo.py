"""The wav2lip family on its shipped demo, end to end: the demo means something (the generator's mouth opens when the
speech does, and the expert's sync distance of its output is far better than with the audio shifted), the CLI prunes
it with the ``nota`` preset, makes a lip-synced MP4 (original | slimmed, with the sound) that is read back, evaluates
LSE-D / LSE-C / PSNR, heals by distillation with the sync loss and resumes, exports ONNX with mixed precision; bad
input (no face, no sound, short audio, a corrupt MP4, a still + a silent WAV) gives one line or a sensible result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import run_cli

from slimgui.core.media import AudioMedia, VideoMedia, extract_audio, read_frames, save_video


def cli(*args, ok=True):
    r = run_cli(*args, env_extra={"OMP_NUM_THREADS": "1"})
    if ok:
        assert r.returncode == 0, f"slimgui {' '.join(args)} failed:\n{r.stderr[-3000:]}"
    return r


def last_json(r) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def one_line_error(r, *words):
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def demo():
    from slimgui_families.wav2lip.demo import ensure_demo

    return ensure_demo()


def test_the_demo_means_something(demo):
    import torch
    from slimgui_families.wav2lip.adapter import Wav2LipAdapter
    from slimgui_families.wav2lip.demo import load_clips
    from slimgui_families.wav2lip.evaluate import load_expert
    from slimgui_families.wav2lip.sync import sync_report

    torch.set_num_threads(1)
    gen = Wav2LipAdapter().load(demo["model"])
    expert = load_expert(demo["expert"])
    rep = sync_report(gen.module, expert, load_clips("test")[:2])
    assert rep["mouth_corr"] > 0.7, rep  # a still face with a closed mouth: the mouth opens when the speech does
    assert rep["shifted_sync_distance"] > 1.5 * rep["sync_distance"], rep  # in sync far better than 10 frames late
    assert rep["av_offset"] == 0, rep
    meta = json.loads((Path(demo["model"]) / "slimgui_demo.json").read_text())
    assert meta["history_generator"][-1]["heldout_l1"] < meta["history_generator"][0]["heldout_l1"] / 2


@pytest.mark.slow
def test_cli_prunes_previews_evaluates_heals_and_exports(demo, tmp_path):
    model = demo["model"]
    graph = last_json(cli("inspect", model, "--json"))["graph"]
    assert graph["attrs"]["layout"] == "u" and graph["attrs"]["residual_blocks"] == 28
    slim = tmp_path / "nota"
    got = last_json(cli("prune", model, "--preset", "nota", "--out", str(slim), "--json"))
    assert (slim / "nota_wav2lip.pth").is_file() and (slim / "wav2lip.pth").is_file()
    info = last_json(cli("inspect", str(slim), "--json"))["graph"]["attrs"]
    assert info["residual_blocks"] == 0 and info["nota_compatible"]["nef"] == 1, info
    assert got
    # the lip-synced video: original | slimmed, the speech muxed in
    out = tmp_path / "talk.mp4"
    res = last_json(cli("generate", str(slim), "--out", str(out), "--max-seconds", "1.2", "--json"))
    assert res["columns"] == ["original", "nota"]
    frames, fps = read_frames(out)
    assert fps == 25 and len(frames) == res["frames"] == 27 and frames.shape[2] > 2 * frames.shape[1]
    sound = extract_audio(out)  # the speech of those frames (Wav2Lip stops at the last whole mel chunk)
    assert abs(len(sound.samples) / sound.sample_rate - 27 / 25) < 0.06
    # evaluation with the demo's expert, against the original
    ev = last_json(cli("eval", str(slim), "--max-clips", "1", "--json"))
    base = last_json(cli("eval", model, "--max-clips", "1", "--json"))
    assert base["lse_d"] < ev["lse_d"] and "psnr_to_original" in ev and ev["frames_per_second"] > 0
    # distillation with the sync loss, resumable
    job = tmp_path / "healed"
    r = last_json(cli("retrain", str(slim), "--steps", "2", "--batch-size", "2", "--save-every", "1", "--out", str(job),
                      "--json"))
    assert r["step"] == 2 and Path(r["model"]).is_dir()
    r = last_json(cli("retrain", str(slim), "--steps", "3", "--batch-size", "2", "--out", str(job), "--resume",
                      "--json"))
    assert r["resumed_from"] and r["step"] == 3
    # ONNX: mixed precision keeps the most sensitive convs float
    onnx = tmp_path / "g.w2l.onnx"
    ex = last_json(cli("export", str(slim), "--format", "wav2lip-onnx", "--w2l-precision", "mixed", "--keep-float", "2",
                       "--out", str(onnx), "--json"))
    assert onnx.is_file() and len(ex["float_layers"]) == 2 and ex["int8_layers"] == ex["convs"] - 2
    assert ex["fp32_parity"]["max_abs_diff"] < 1e-3


@pytest.mark.slow
def test_bad_input_is_one_line_or_a_sensible_result(demo, tmp_path):
    model = demo["model"]
    # a corrupt MP4
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    one_line_error(cli("generate", model, "--face", str(bad), "--audio", demo["audio"], "--out",
                       str(tmp_path / "a.mp4"), ok=False), "broken.mp4")
    assert not (tmp_path / "a.mp4").exists()
    # a video without a face (no box: the detector, or the message that asks for a box)
    blank = tmp_path / "blank.mp4"
    save_video(VideoMedia(frames=np.full((10, 64, 64, 3), 90, np.uint8), fps=25), blank)
    line = one_line_error(cli("generate", model, "--face", str(blank), "--audio", demo["audio"], "--out",
                              str(tmp_path / "b.mp4"), ok=False))
    assert "no face" in line or "cascades" in line
    assert not (tmp_path / "b.mp4").exists()
    # a video without sound as training data
    nosound = tmp_path / "videos"
    nosound.mkdir()
    save_video(VideoMedia(frames=np.full((10, 64, 64, 3), 90, np.uint8), fps=25), nosound / "x.mp4")
    slim = tmp_path / "slim"
    cli("prune", model, "--preset", "nota", "--out", str(slim))
    one_line_error(cli("retrain", str(slim), "--data", str(nosound), "--face-box", "full", "--steps", "1", "--out",
                       str(tmp_path / "job"), ok=False), "no sound")
    # a still image + a silent WAV: a sensible result (the mouth stays closed), said in the notes
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(16_000, np.float32), 16_000)
    from slimgui_families.wav2lip.demo import sample_face_box

    out = tmp_path / "silent.mp4"
    res = last_json(cli("generate", model, "--face", demo["face"], "--audio", str(silent), "--box", sample_face_box(),
                        "--out", str(out), "--json"))
    assert any("silent" in n for n in res["notes"]) and read_frames(out)[0].shape[0] == res["frames"] == 22
    # audio shorter than the video: the video is cut to the speech
    talk = tmp_path / "face.mp4"
    img = read_frames(out)[0][0]
    save_video(VideoMedia(frames=np.repeat(img[None], 50, 0), fps=25, audio=AudioMedia(np.zeros(32_000), 16_000)),
               talk)
    short = tmp_path / "short.wav"
    wav, rate = sf.read(demo["audio"], dtype="float32")
    sf.write(str(short), wav[:int(0.6 * rate)], rate)
    res = last_json(cli("generate", model, "--face", str(talk), "--audio", str(short), "--box", sample_face_box(),
                        "--out", str(tmp_path / "c.mp4"), "--json"))
    assert res["frames"] == 12 and any("cut to it" in n for n in res["notes"])  # Wav2Lip's chunks of 0.6 s
    # audio too short for one mel chunk
    tiny = tmp_path / "tiny.wav"
    sf.write(str(tiny), wav[:1000], rate)
    one_line_error(cli("generate", model, "--audio", str(tiny), "--out", str(tmp_path / "d.mp4"), ok=False),
                   "too short")
    # the expert opened as a model
    one_line_error(cli("inspect", str(Path(demo["expert"]) / "lipsync_expert.safetensors"), ok=False), "SyncNet")
