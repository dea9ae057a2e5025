"""The wav2lip family without its demo: the generator's architecture and keys (official Wav2Lip, NotaWav2Lip), what
opens (official checkpoint dicts, ``module.`` prefixes, plain state dicts, safetensors) and what is refused (a SyncNet
expert, the discriminator, pickled code, broken files), the graph, residual-block removal and width pruning equal to
the masked generator, the ``nota`` preset, saving in the same formats and loading back, and Wav2Lip's audio front
end."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from slimgui_families.wav2lip import probe
from slimgui_families.wav2lip import pruning as P
from slimgui_families.wav2lip.adapter import Wav2LipAdapter, residual_ids
from slimgui_families.wav2lip.audio import mel_chunks, melspectrogram
from slimgui_families.wav2lip.modeling import (
    SyncNet,
    Wav2Lip,
    layer_table,
    standard,
    syncnet_standard,
    total_macs,
)

from slimgui.core.errors import SlimError
from slimgui.core.plan import PruningPlan


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convs: one intra-op thread (two fight over OpenMP barriers on a busy 2-core machine: 40x slower)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def meta_params(cfg) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in Wav2Lip(cfg).parameters())


def random_generator(cfg, seed: int = 0) -> Wav2Lip:
    torch.manual_seed(seed)
    m = Wav2Lip(cfg)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
    return m.eval()


def inputs(n: int = 3, size: int = 96):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 80, 16, generator=g), torch.rand(n, 6, size, size, generator=g)


def test_official_and_nota_architectures():
    official = standard()
    assert meta_params(official) == 36_298_035  # the paper's 36.3 M
    nota = standard(4, 8, 8, residual=False)
    assert meta_params(nota) == 1_258_143  # the paper's 1.26 M
    assert total_macs(official) / total_macs(nota) == pytest.approx(28.9, abs=0.1)  # the paper: 28x fewer MACs
    with torch.device("meta"):
        keys = list(Wav2Lip(official).state_dict())
        nkeys = list(Wav2Lip(nota).state_dict())
    # Rudrabha/Wav2Lip models/wav2lip.py key names
    for k in ("face_encoder_blocks.0.0.conv_block.0.weight", "face_encoder_blocks.2.3.conv_block.1.running_var",
              "face_encoder_blocks.6.1.conv_block.0.weight", "audio_encoder.12.conv_block.0.weight",
              "face_decoder_blocks.1.0.conv_block.0.weight", "face_decoder_blocks.6.2.conv_block.1.weight",
              "output_block.0.conv_block.0.weight", "output_block.1.weight", "output_block.1.bias"):
        assert k in keys
    assert len([k for k in keys if k.endswith("conv_block.0.weight")]) == 18 + 13 + 18 + 1  # face, audio, decoder, output conv blocks
    # NotaWav2Lip: one block per stage (stage 6: two), audio encoder 0..5
    assert "audio_encoder.5.conv_block.0.weight" in nkeys and "audio_encoder.6.conv_block.0.weight" not in nkeys
    assert "face_encoder_blocks.1.1.conv_block.0.weight" not in nkeys
    with torch.device("meta"):
        sd = Wav2Lip(nota).state_dict()
    assert tuple(sd["face_decoder_blocks.1.0.conv_block.0.weight"].shape) == (128 + 128, 128, 3, 3)
    assert tuple(sd["output_block.0.conv_block.0.weight"].shape) == (8, 4 + 16, 3, 3)
    m = Wav2Lip(standard(2, 4, 4))
    mel, face = inputs(2)
    assert m(mel, face).shape == (2, 3, 96, 96)
    # the official 5-d sequences
    seq = m(mel[:, None].expand(2, 5, 1, 80, 16).contiguous(), face[:, :, None].expand(2, 6, 5, 96, 96).contiguous())
    assert seq.shape == (2, 3, 5, 96, 96)
    assert meta_params(standard(4, 8, 8, residual=False, x_size=128)) > 0  # nota's x_size 128


@pytest.mark.parametrize("cfg", [standard(), standard(4, 8, 8, residual=False), standard(2, 4, 4),
                                 standard(4, 8, 8, residual=False, x_size=128)])
def test_layout_is_read_back_from_shapes(cfg):
    with torch.device("meta"):
        shapes = probe.shapes_of(Wav2Lip(cfg).state_dict())
    assert probe.infer(shapes, "x").to_json() == cfg.to_json()


def test_opens_official_checkpoint_plain_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    m = random_generator(standard(2, 4, 4))
    mel, face = inputs()
    with torch.no_grad():
        want = m(mel, face)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    ck = tmp_path / "wav2lip_gan.pth"  # the official trainer's checkpoint: DataParallel keys, optimizer state
    opt = torch.optim.Adam(m.parameters())
    m(mel, face).mean().backward()
    opt.step()
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "optimizer": opt.state_dict(),
                "global_step": 1000, "global_epoch": 3}, ck)
    plain = tmp_path / "plain.pth"
    torch.save(sd, plain)
    safe = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(safe))
    ad = Wav2LipAdapter()
    for path in (ck, plain, safe):
        assert probe.match(str(path))[0] == 0.9
        got = ad.load(str(path))
        with torch.no_grad():
            assert torch.allclose(got.module(mel, face), want, atol=1e-6), path.name


def test_expert_discriminator_and_bad_files_are_refused(tmp_path):
    s = SyncNet(syncnet_standard(2, 2, residual=False))
    expert = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": s.state_dict(), "global_step": 1}, expert)
    assert probe.match(str(expert))[0] == 0.3
    with pytest.raises(SlimError, match="SyncNet lip-sync expert"):
        Wav2LipAdapter().load(str(expert))
    disc = {"face_encoder_blocks.0.0.conv_block.0.weight": torch.zeros(32, 3, 7, 7),
            "binary_pred.0.weight": torch.zeros(1, 512, 1, 1), "binary_pred.0.bias": torch.zeros(1)}
    dfile = tmp_path / "visual_quality_disc.pth"
    torch.save({"state_dict": disc}, dfile)
    with pytest.raises(SlimError, match="discriminator"):
        Wav2LipAdapter().load(str(dfile))

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"state_dict": Boom()}))
    with pytest.raises(SlimError, match="weights_only"):
        Wav2LipAdapter().load(str(evil))
    broken = tmp_path / "wav2lip.pth"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SlimError):
        Wav2LipAdapter().load(str(broken))
    m = random_generator(standard(2, 4, 4))
    sd = m.state_dict()
    sd["face_decoder_blocks.3.0.conv_block.0.weight"] = torch.zeros(3, 3, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(SlimError, match="face_decoder_blocks"):
        Wav2LipAdapter().load(str(bad))
    sd = m.state_dict()
    sd["output_block.1.weight"] = torch.full_like(sd["output_block.1.weight"], float("nan"))
    torch.save(sd, bad)
    with pytest.raises(SlimError, match="NaN"):
        Wav2LipAdapter().load(str(bad))


def test_graph_units_params_and_macs(tmp_path):
    m = random_generator(standard(4, 8, 8))
    torch.save(m.state_dict(), tmp_path / "w.pth")
    ad = Wav2LipAdapter()
    model = ad.load(str(tmp_path / "w.pth"))
    g = ad.to_graph(model)
    assert g.attrs["layout"] == "u" and g.attrs["macs_per"] == "frame"
    assert g.attrs["stages"]["down"] == [f"face.{i}" for i in range(7)]
    assert ["face.0", "dec.6"] in g.attrs["skips"]
    blocks = [u for u in g.units if u.kind in ("conv_block", "conv_transpose_block", "residual_block")]
    assert sum(u.params for u in blocks) == sum(p.numel() for p in m.parameters())
    assert all(u.macs > 0 for u in blocks)
    assert {u.id for u in g.units if u.prunable and u.kind == "residual_block"} == set(residual_ids(model.config))
    assert len(residual_ids(model.config)) == 28
    assert g.get("nef.f6").prunable and g.get("nef.f6").attrs["width_after"] == 1


def test_nota_preset_pruned_equals_masked_saves_and_loads(tmp_path):
    m = random_generator(standard(4, 8, 8))
    src = tmp_path / "orig"
    src.mkdir()
    torch.save({"state_dict": m.state_dict(), "global_step": 0, "global_epoch": 0}, src / "wav2lip.pth")
    ad = Wav2LipAdapter()
    model = ad.load(str(src))
    plan = ad.preset_plan(model, "nota")
    slim = ad.apply_plan(model, plan)
    assert slim.config.to_json() | {"extra": {}} == standard(1, 2, 2, residual=False).to_json()
    drop, widths = ad.removal(model, list(plan.remove))
    assert widths == P.scaled_widths(model.config, {"nef": 6, "naf": 6, "ndf": 6})
    keep = P.keep_lists(model.module, widths)
    mel, face = inputs()
    with torch.no_grad():
        assert torch.allclose(slim.module(mel, face), P.masked(model.module, drop, keep)(mel, face), atol=1e-6)
    out = tmp_path / "slim"
    ad.save(slim, str(out))
    back = ad.load(str(out))
    with torch.no_grad():
        assert torch.equal(back.module(mel, face), slim.module(mel, face))
    ck = torch.load(out / "wav2lip.pth", weights_only=True)
    assert set(ck) == {"state_dict", "global_step", "global_epoch"}
    nota = Wav2Lip(standard(1, 2, 2, residual=False))  # what nota-wav2lip's NotaWav2Lip(1, 2, 2) builds
    nota.load_state_dict(torch.load(out / "nota_wav2lip.pth", weights_only=True), strict=True)
    with torch.no_grad():
        assert torch.equal(nota.eval()(mel, face), slim.module(mel, face))
    assert ad.load(str(out / "wav2lip.pth")).config.to_json() | {"extra": {}} == standard(1, 2, 2, residual=False).to_json()


def test_abconv_layers_named_by_hand_save_and_load_back(tmp_path):
    """ABConv of explicitly named layers (``slimgui abconv --layers … --fold 2``) on a NotaWav2Lip-shaped generator:
    saved in the family's files with ``"abconv"`` recorded (and no nota_wav2lip.pth: nota's class has no ABConv), read
    back from the .pth or the .safetensors to the same output."""
    from slimgui.core.abconv import ABConv2d, abconv_layers, apply_abconv

    m = random_generator(standard(4, 8, 8, residual=False))
    src = tmp_path / "orig"
    src.mkdir()
    torch.save({"state_dict": m.state_dict(), "global_step": 0, "global_epoch": 0}, src / "wav2lip.pth")
    ad = Wav2LipAdapter()
    model = ad.load(str(src))
    mel, face = inputs()
    named = ["face_encoder_blocks.6.0.conv_block.0"]
    with pytest.raises(SlimError, match="does not divide"):  # a fold must divide both channel counts
        apply_abconv(model.module, (mel, face), layers=[named[0]], fold=3)
    done, _ = apply_abconv(model.module, (mel, face), layers=[named[0]], fold=2)
    assert done == {named[0]: 2} and isinstance(model.module.get_submodule(named[0]), ABConv2d)
    with torch.no_grad():
        want = model.module(mel, face)
    out = tmp_path / "ab"
    ad.save(model, str(out))
    assert not (out / "nota_wav2lip.pth").exists()
    assert json.loads((out / probe.CONFIG).read_text())["abconv"] == done
    for file in ("wav2lip.pth", "wav2lip.safetensors"):
        back = ad.load(str(out / file))
        assert abconv_layers(back.module) == done
        with torch.no_grad():
            torch.testing.assert_close(back.module(mel, face), want, atol=1e-5, rtol=0)
    with pytest.raises(SlimError, match="cannot be pruned by channel"):
        ad.apply_plan(back, PruningPlan(remove=["face.5.0.f4"], model=back.source))
    assert probe.match(str(out))[0] == 0.9


def test_mixed_plan_residuals_and_one_width(tmp_path):
    m = random_generator(standard(2, 4, 4))
    torch.save(m.state_dict(), tmp_path / "w.pth")
    ad = Wav2LipAdapter()
    model = ad.load(str(tmp_path / "w.pth"))
    remove = ["face.2.1", "audio.4", "dec.3.2", "ndf.f3", "face.5.0.f4", "dec.2.0.f7"]
    slim = ad.apply_plan(model, PruningPlan(remove=remove, model=model.source))
    drop, widths = ad.removal(model, remove)
    keep = P.keep_lists(model.module, widths)
    mel, face = inputs()
    with torch.no_grad():
        assert torch.allclose(slim.module(mel, face), P.masked(model.module, drop, keep)(mel, face), atol=1e-6)
    g = ad.to_graph(model)
    narrow = ad.apply_plan(model, PruningPlan(remove=["ndf.f3"], model=model.source))
    full = sum(p.numel() for p in model.module.parameters())
    assert full - sum(p.numel() for p in narrow.module.parameters()) == sum(g.get(f"ndf.f{j}").params for j in (1, 2, 3))
    one = ad.apply_plan(model, PruningPlan(remove=["face.2.1"], model=model.source))
    assert full - sum(p.numel() for p in one.module.parameters()) == g.get("face.2.1").params
    inner = ad.apply_plan(model, PruningPlan(remove=["face.5.0.f4"], model=model.source))  # Cut Inner Layers' filters
    assert inner.config.face[5][0].c == 32 and inner.config.face[5][1].c == 32  # the group: its residual block too
    assert full - sum(p.numel() for p in inner.module.parameters()) == sum(g.get(f"face.5.0.f{j}").params
                                                                          for j in (1, 2, 3, 4))
    assert g.get("face.5.0").attrs["cells"] == "children" and g.get("face.5.0.f4").parent == "face.5.0"
    assert slim.config.decoder[2][0].c == 64 // 8 and slim.config.decoder[3][0].c == 48 - 3 * 48 // 8  # narrower wins
    with pytest.raises(SlimError, match="cannot be removed"):
        ad.removal(model, ["face.2.0"])
    with pytest.raises(SlimError, match="unknown unit"):
        ad.removal(model, ["face.9.9"])


def test_wav2lip_audio_front_end():
    sr = 16_000
    t = np.arange(sr) / sr
    wav = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    mel = melspectrogram(wav)
    assert mel.shape == (80, 81)  # hop 200: 80 frames a second (+1, librosa's centred frames)
    assert mel.min() >= -4 and mel.max() <= 4
    assert np.allclose(melspectrogram(np.zeros(sr, np.float32)), -4)  # silence: the floor
    import librosa

    centres = librosa.mel_frequencies(n_mels=82, fmin=55, fmax=7600)[1:-1]  # the 80 Slaney bands' centres
    assert int(np.argmax(mel[:, 40])) == int(np.argmin(np.abs(centres - 220)))  # the tone's band is the loudest
    chunks = mel_chunks(mel, fps=30)
    assert chunks.shape[1:] == (80, 16)
    for i in (0, 1, 7, 13):
        start = int(i * 80 / 30)
        assert np.array_equal(chunks[i], mel[:, start:start + 16])
    assert np.array_equal(chunks[-1], mel[:, -16:])
    with pytest.raises(SlimError, match="too short"):
        mel_chunks(mel[:, :10], fps=25)


@pytest.mark.slow
def test_criteria_score_every_prunable_unit(tmp_path):
    from slimgui_families.wav2lip.criteria import FilterMagnitude, sensitivity_scan

    m = random_generator(standard(2, 4, 4))
    torch.save(m.state_dict(), tmp_path / "w.pth")
    ad = Wav2LipAdapter()
    model = ad.load(str(tmp_path / "w.pth"))
    prunable = {u.id for u in ad.to_graph(model).prunable()}
    scores = FilterMagnitude().score(model)
    assert set(scores) == prunable and all(v >= 0 for v in scores.values())
    mel, face = inputs(2)
    res = sensitivity_scan(model, [{"mel": mel, "face": face}])
    assert set(res["scores"]) == prunable and res["forward_passes"] == len(prunable) + 1
    assert res["table"]["face.5.0"]["0.875"] > 0  # a single group's filters (Cut Inner Layers)
    for part in ("nef", "naf", "ndf"):
        row = res["table"][part]
        assert row["0.875"] > row["0.125"] > 0  # cutting more of a width changes the frames more


def test_face_track_fixed_box_smoothing_and_missing_faces():
    from slimgui_families.wav2lip import face as F
    from slimgui_families.wav2lip.demo import draw_face, look_of, sample_face, sample_face_box

    frames = np.stack([sample_face()] * 6)
    t = F.track(frames, "10,20,80,90")
    assert t.boxes == [(20, 110, 10, 90)] * 6 and t.detector == "fixed box"
    assert F.track(frames, "full").boxes[0] == (0, 160, 0, 160)
    for bad in ("1,2,3", "150,150,80,80", "a,b,c,d"):
        with pytest.raises(SlimError, match="--box"):
            F.track(frames, bad)
    crop = F.crop(frames[0], t.boxes[0])
    assert crop.shape == (96, 96, 3)
    back = F.paste(frames[0], np.zeros_like(crop), t.boxes[0])
    assert back[20:110, 10:90].max() == 0 and back[0, 0].tolist() == frames[0][0, 0].tolist()
    if not F.detector_available():
        pytest.skip("this OpenCV has no Haar cascades (opencv-python-headless 5.x); detection needs < 5")
    x, y, w, h = (int(v) for v in sample_face_box().split(","))
    got = F.detect(sample_face())
    assert got is not None and abs(got[0] - x) <= 6 and abs(got[1] - y) <= 6
    blank = np.full_like(frames[0], 90)
    mixed = np.stack([sample_face(), sample_face(), blank, sample_face(), sample_face(), sample_face()])
    t = F.track(mixed)
    assert t.missing == [2] and len(t.boxes) == 6  # reported, not crashed on: the nearest frame's box
    with pytest.raises(SlimError, match="no face found"):
        F.track(np.stack([blank] * 3))
    assert draw_face(1.0, look_of(0)).shape == (96, 96, 3)


def test_width_variant_of_equal_size(tmp_path):
    m = random_generator(standard(4, 8, 8))
    torch.save(m.state_dict(), tmp_path / "w.pth")
    ad = Wav2LipAdapter()
    model = ad.load(str(tmp_path / "w.pth"))
    depth = ad.apply_plan(model, ad.preset_plan(model, "no-residual"))
    target = sum(p.numel() for p in depth.module.parameters())
    wide = ad.width_variant(model, target)
    got = sum(p.numel() for p in wide.module.parameters())
    assert len(residual_ids(wide.config)) == 28 and abs(got - target) / target < 0.2
    others = [sum(r["params"] for r in layer_table(P.new_config(model.config, set(), P.scaled_widths(
        model.config, {p: j for p in P.PARTS})))) for j in range(8)]
    assert abs(got - target) == min(abs(n - target) for n in others)  # the closest eighth
