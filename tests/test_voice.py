"""The voice family on tiny SpeechT5 models built from configs: probing, the graph, depth pruning into a folder
``from_pretrained`` loads back, criteria, healing tasks, bad audio and vocoders.  (The shipped demo: test_voice_demo.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from slimgui.core.errors import SlimError
from slimgui.core.plan import PruningPlan

pytest.importorskip("transformers")
pytest.importorskip("librosa")

from slimgui_families.voice import audio, probe  # noqa: E402
from slimgui_families.voice.adapter import VoiceAdapter  # noqa: E402
from transformers import SpeechT5Config, SpeechT5ForSpeechToSpeech, SpeechT5ForTextToSpeech  # noqa: E402

CLIPS = Path(__file__).parent.parent / "resources" / "demo" / "voice" / "clips"
TINY = dict(hidden_size=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, conv_dim=[16, 16], conv_stride=[10, 32], conv_kernel=[10, 32],
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4, speech_decoder_prenet_units=32,
            speech_decoder_postnet_units=32, speech_decoder_postnet_layers=2, speaker_embedding_dim=8,
            num_mel_bins=80, reduction_factor=2, vocab_size=30, pad_token_id=0, max_speech_positions=600,
            max_text_positions=100, encoder_max_relative_position=64)
PRE = {"feature_extractor_type": "SpeechT5FeatureExtractor", "do_normalize": True, "sampling_rate": 16000,
       "num_mel_bins": 80, "hop_length": 16, "win_length": 64, "fmin": 80, "fmax": 7600, "mel_floor": 1e-5}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make(folder: Path, cls=SpeechT5ForSpeechToSpeech, weights: bool = True, **over) -> Path:
    torch.manual_seed(0)
    cfg = SpeechT5Config(**{**TINY, **over})
    folder.mkdir(parents=True, exist_ok=True)
    if weights:
        cls(cfg).save_pretrained(folder)
    else:
        cfg.architectures = [cls.__name__]
        cfg.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PRE))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make(tmp_path_factory.mktemp("voice") / "tiny")


def test_probe_reads_config_only(tiny, tmp_path):
    conf, info = probe.match(str(tiny))
    assert conf == 0.95 and info["config"]["model_type"] == "speecht5"
    assert probe.match(str(tiny / "config.json"))[0] == 0.95
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert probe.match(str(other)) == 0.0
    stt = tmp_path / "stt"
    stt.mkdir()
    (stt / "config.json").write_text(json.dumps({"model_type": "speecht5", "architectures": ["SpeechT5ForSpeechToText"]}))
    with pytest.raises(SlimError, match="speech recogniser"):
        VoiceAdapter().load(str(stt))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**TINY, "model_type": "speecht5", "encoder_attention_heads": 3}))
    with pytest.raises(SlimError, match="not divisible"):
        VoiceAdapter().load(str(bad))


def test_config_only_folder_builds_on_meta(tmp_path):
    folder = make(tmp_path / "cfg", weights=False)
    m = VoiceAdapter().load(str(folder))
    assert not m.has_weights
    assert {p.device.type for n, p in m.module.named_parameters() if "masked_spec_embed" not in n} == {"meta"}
    g = VoiceAdapter().to_graph(m)
    assert [u.id for u in g.prunable()] == ["encoder.0", "encoder.1", "decoder.0", "decoder.1", "decoder.2"]
    ref = SpeechT5ForSpeechToSpeech(SpeechT5Config(**TINY))
    assert g.total_params == sum(p.numel() for p in ref.parameters())


def test_graph_units_params_and_macs(tiny):
    a = VoiceAdapter()
    m = a.load(str(tiny))
    g = a.to_graph(m)
    ids = [u.id for u in g.units]
    assert ids == ["prenet", "encoder.0", "encoder.1", "decoder-prenet", "decoder.0", "decoder.1", "decoder.2",
                   "postnet", "vocoder"]
    assert g.attrs["layout"] == "stack" and g.attrs["macs_per"] == "second of audio"
    assert sum(u.params for u in g.units) + g.attrs["shared_params"] == g.total_params
    enc = g.get("encoder.0")
    assert enc.params == sum(p.numel() for p in m.module.speecht5.encoder.wrapped_encoder.layers[0].parameters())
    assert all(g.get(u).macs > 0 for u in ids[:-1])
    # a decoder block: self- and cross-attention (8 d²) plus the feed-forward (2 d·ffn) per step, 31.25 steps a second
    d, ffn = TINY["hidden_size"], TINY["decoder_ffn_dim"]
    assert g.get("decoder.0").macs >= 31.25 * (8 * d * d + 2 * d * ffn)


def test_depth_pruning_loads_back_with_from_pretrained(tiny, tmp_path):
    a = VoiceAdapter()
    m = a.load(str(tiny))
    p = a.apply_plan(m, PruningPlan(remove=["encoder.0", "decoder.1"]))
    assert (p.config.encoder_layers, p.config.decoder_layers) == (1, 2)
    assert m.config.decoder_layers == 3  # the original is untouched
    kept = m.module.speecht5.decoder.wrapped_decoder.layers[2].feed_forward.output_dense.weight
    out = a.save(p, str(tmp_path / "slim"))
    back = SpeechT5ForSpeechToSpeech.from_pretrained(out)
    assert (back.config.encoder_layers, back.config.decoder_layers) == (1, 2)
    assert torch.equal(back.speecht5.decoder.wrapped_decoder.layers[1].feed_forward.output_dense.weight, kept)
    assert (Path(out) / "preprocessor_config.json").is_file()
    size = sum(p.numel() for p in back.parameters())
    g = a.to_graph(m)
    assert size == g.total_params - g.get("encoder.0").params - g.get("decoder.1").params
    # it converts: the pruned model runs its autoregressive generation
    from slimgui_families.voice.speech import convert

    mel = convert(back, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, maxlenratio=0.5)
    assert mel.ndim == 2 and mel.shape[1] == 80
    with pytest.raises(SlimError, match="every encoder block"):
        a.apply_plan(m, PruningPlan(remove=["encoder.0", "encoder.1"]))
    with pytest.raises(SlimError, match="unknown unit"):
        a.apply_plan(m, PruningPlan(remove=["decoder.7"]))


def test_text_to_speech_model_opens_and_prunes(tmp_path):
    folder = make(tmp_path / "tts", cls=SpeechT5ForTextToSpeech)
    a = VoiceAdapter()
    m = a.load(str(folder))
    assert m.extra["kind"] == "text"
    g = a.to_graph(m)
    assert g.get("prenet").label.startswith("Text pre-net")
    out = a.save(a.apply_plan(m, PruningPlan(remove=["decoder.0"])), str(tmp_path / "tts-slim"))
    assert SpeechT5ForTextToSpeech.from_pretrained(out).config.decoder_layers == 2
    from slimgui_families.voice.preview import convert_preview

    media = convert_preview(m, text="a dog", seed=1)
    assert media.sample_rate == 16000 and len(media.samples) > 0


def test_mismatched_weights_are_one_clear_message(tiny, tmp_path):
    folder = make(tmp_path / "mixed")
    doc = json.loads((folder / "config.json").read_text())
    doc["encoder_ffn_dim"] = 48
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(SlimError) as err:
        VoiceAdapter().load(str(folder))
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def calib():
    from slimgui.core.data import CalibrationData

    return CalibrationData(str(CLIPS), samples=4, batch_size=2)


def test_criteria_score_every_block(tiny, calib):
    from slimgui_families.voice.criteria import BlockInfluence, MelChange

    from slimgui.core.criteria import Taylor, WeightMagnitude

    m = VoiceAdapter().load(str(tiny))
    ids = {"encoder.0", "encoder.1", "decoder.0", "decoder.1", "decoder.2"}
    before = {k: v.clone() for k, v in m.module.state_dict().items()}
    for crit in (MelChange(), BlockInfluence(), WeightMagnitude(), Taylor()):
        scores = crit.score(m, calib)
        assert set(scores) == ids and all(math.isfinite(v) and v >= 0 for v in scores.values()), crit.name
        assert max(scores.values()) > 0
    # nothing was changed by scoring (blocks put back, gradients cleared)
    assert all(torch.equal(v, m.module.state_dict()[k]) for k, v in before.items())
    assert len(m.module.speecht5.decoder.wrapped_decoder.layers) == 3


def test_healing_tasks_build_and_step(tiny, tmp_path):
    from slimgui_families.voice import training
    from slimgui_families.voice.options import DistillOptions, MultitaskOptions

    from slimgui.core.train import TrainConfig

    a = VoiceAdapter()
    slim_dir = tmp_path / "slim"
    plan = PruningPlan(remove=["decoder.0"], model=str(tiny))
    a.save(a.apply_plan(a.load(str(tiny)), plan), str(slim_dir))
    plan.save(slim_dir / "slimgui_plan.json")
    cfg = TrainConfig(model=str(slim_dir), data=[str(CLIPS)], out=str(tmp_path / "run"), options={"max_utterances": 12})
    for build, opts in ((training.build_finetune, None), (training.build_kd, DistillOptions()),
                        (training.build_multitask, MultitaskOptions(tts_weight=0.5))):
        task = build(a, cfg, opts)
        batch = {"index": task.train_blocks["index"][:2]}
        loss, logs = task.loss(task.model, batch)
        loss.backward()
        assert math.isfinite(loss.item()) and logs
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.model.parameters())
        assert math.isfinite(task.eval_loss(task.model, {"index": task.val_blocks["index"][:1]}).item())
        if build is training.build_kd:
            assert task.info["block_map"] == [[0, 1], [1, 2]]
        if build is training.build_multitask:
            out = tmp_path / "mt"
            task.save(task.model, str(out))
            assert (out / "slimgui_text_prenet.safetensors").is_file()
            assert SpeechT5ForSpeechToSpeech.from_pretrained(str(out)).config.decoder_layers == 2


def test_bad_audio_files(tmp_path):
    import soundfile as sf

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(SlimError, match="empty"):
        audio.read_audio(empty)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 4)
    with pytest.raises(SlimError, match="not a sound file"):
        audio.read_audio(corrupt)
    zero = tmp_path / "zero.wav"
    sf.write(str(zero), np.zeros((0,), dtype=np.float32), 16000)
    with pytest.raises(SlimError):
        audio.read_audio(zero)
    t = np.arange(44100) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    stereo = tmp_path / "stereo.wav"
    sf.write(str(stereo), np.stack([tone, tone], axis=1), 44100)
    wave, notes = audio.read_audio(stereo)
    assert len(wave) == 16000 and any("mixed down" in n for n in notes) and any("resampled" in n for n in notes)
    clipped = tmp_path / "clipped.wav"
    sf.write(str(clipped), np.clip(tone * 4, -1, 1), 44100, subtype="PCM_16")
    assert any("clipped" in n for n in audio.read_audio(clipped)[1])
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(1600), 16000)
    with pytest.raises(SlimError, match="silent"):
        audio.read_audio(silent)


def test_vocoder_settings_must_agree(tiny, tmp_path):
    from slimgui_families.voice.preview import convert_preview, vocoder_for
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    root = tmp_path / "pair"
    model = make(root / "model")
    voc = root / "vocoder-22k"
    SpeechT5HifiGan(SpeechT5HifiGanConfig(model_in_dim=80, sampling_rate=22050, upsample_initial_channel=16,
                                          upsample_rates=[8, 8, 4], upsample_kernel_sizes=[16, 16, 8],
                                          resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]])).save_pretrained(voc)
    m = VoiceAdapter().load(str(model))
    assert m.extra["vocoder_path"] == str(voc)
    got, notes = vocoder_for(m, None)  # found beside the model: left out, with a note
    assert got is None and "22050 Hz" in notes[0]
    with pytest.raises(SlimError, match="expects 80 mel bins at 22050 Hz"):
        vocoder_for(m, str(voc))  # given by the user: refused
    media = convert_preview(m, audio=None, utterance=0)
    assert media.meta["vocoder"] == "Griffin-Lim" and media.meta["notes"]


def test_mcd_and_measures():
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)).astype(np.float32)
    m = audio.log_mel(wave)
    assert m.shape[1] == 80 and audio.mcd(m, m) == pytest.approx(0.0, abs=1e-9)
    noisy = audio.log_mel(wave + 0.05 * rng.standard_normal(16000).astype(np.float32))
    assert audio.mcd(m, noisy) > 0.1
    back = audio.griffin_lim(m, n_iter=8)
    assert abs(len(back) - 16000) <= 256 and audio.mcd(m, audio.log_mel(back)) < audio.mcd(m, noisy) + 5
    from slimgui_families.voice.speech import cer

    assert cer("the cat", "the cat") == 0 and cer("", "abc") == 1.0 and cer("abd", "abc") == pytest.approx(1 / 3)
