"""The shipped voice demo (resources/demo/voice; never retrained here): it means something — converted speech is
closer to the target voice than the source is, and the recogniser reads it far better than time-reversed speech — and
the whole CLI works on it: inspect, analyze, prune, eval, generate (its own utterance, a user's WAV, bad WAVs), retrain."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli

pytest.importorskip("transformers")
pytest.importorskip("librosa")

from slimgui_families.voice import data as vdata  # noqa: E402
from slimgui_families.voice import demo  # noqa: E402

ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def shipped():
    root = demo.shipped_dir()
    assert demo._is_complete(root), "the voice demo must be shipped in resources/demo/voice"
    return root


def cli(*args):
    r = run_cli(*args, env_extra=ENV)
    assert r.returncode == 0, f"slimgui {' '.join(args)} failed:\n{r.stderr[-3000:]}"
    return r


def last_json(r) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_demo_is_small_and_logged(shipped):
    size = sum(f.stat().st_size for f in shipped.rglob("*") if f.is_file())
    assert size < 12 * 2**20
    log = json.loads((shipped / "model" / demo.MARKER).read_text())
    assert log["train_config"]["steps"] >= 100 and log["history"]
    held = log["heldout"]
    assert held["mcd_converted_to_target"] < held["mcd_source_to_target"]


def test_converted_speech_is_the_target_voice_and_keeps_its_content(shipped):
    from slimgui_families.voice.audio import mcd
    from slimgui_families.voice.speech import cer, convert, recognise
    from slimgui_families.voice.training import corpus, target_mels

    torch.set_num_threads(1)
    from slimgui_families.voice.adapter import VoiceAdapter

    model = VoiceAdapter().load(str(shipped / "model"))
    rec = demo.load_recogniser(shipped)
    c = corpus(shipped / "clips")
    mel = model.extra["mel"]
    tgt, src = target_mels(c, mel), target_mels(c, mel, vdata.SOURCE)
    idx = c.held[:6]
    conv = [convert(model.module, c.wave[vdata.SOURCE][i], seed=i) for i in idx]
    mcd_conv = np.mean([mcd(x, tgt[i]) for x, i in zip(conv, idx)])
    mcd_src = np.mean([mcd(src[i], tgt[i]) for i in idx])
    assert mcd_conv < mcd_src, (mcd_conv, mcd_src)
    rng = np.random.default_rng(0)

    def shuffled(m):  # 8-frame chunks in random order: the same sounds, not the same words
        chunks = [m[k:k + 8] for k in range(0, len(m), 8)]
        return np.concatenate([chunks[j] for j in rng.permutation(len(chunks))])

    err = lambda mels: np.mean([cer(h, c.texts[i]) for h, i in zip(recognise(rec, mels), idx)])  # noqa: E731
    e_conv, e_rev, e_shuf = err(conv), err([x[::-1].copy() for x in conv]), err([shuffled(x) for x in conv])
    assert e_conv < 0.5 * e_rev and e_conv < 0.5 * e_shuf, (e_conv, e_rev, e_shuf)
    # the evaluator's F0 measures (pYIN on the Griffin-Lim sound vs the target): the pitch contour is followed
    from slimgui_families.voice.evaluate import quality

    ev = quality(model, str(shipped / "clips"), utterances=1)
    assert ev["f0_corr"] > 0.5 and 0 <= ev["f0_rmse"] < 60 and ev["mcd"] < ev["mcd_source"] and ev["rtf"] > 0


def test_cli_on_the_demo(shipped, tmp_path):
    import soundfile as sf

    graph = last_json(cli("inspect", "demo:voice", "--json"))["graph"]
    assert [u["id"] for u in graph["units"] if u.get("prunable")] == [f"{s}.{i}" for s in ("encoder", "decoder")
                                                                      for i in range(4)]
    scores = tmp_path / "scores.json"
    cli("analyze", "demo:voice", "--criterion", "mel-change", "--samples", "4", "--batch-size", "4",
        "--out", str(scores), "--json")
    values = json.loads(scores.read_text())["values"]
    assert len(values) == 8 and all(v > 0 for v in values.values())
    slim = tmp_path / "slim"
    cli("prune", "demo:voice", "--scores", str(scores), "--count", "2", "--out", str(slim), "--json")
    from transformers import SpeechT5ForSpeechToSpeech

    back = SpeechT5ForSpeechToSpeech.from_pretrained(str(slim))
    assert back.config.encoder_layers + back.config.decoder_layers == 6
    ev = last_json(cli("eval", str(slim), "--utterances", "2", "--no-f0", "--json"))
    assert ev["mcd"] > 0 and ev["rtf"] > 0 and ev["utterances"] == 2 and ev["cer"] is not None
    out = tmp_path / "out.wav"
    res = last_json(cli("generate", "demo:voice", "--vs", str(slim), "--out", str(out), "--json"))
    assert len(res["files"]) == 2 and Path(res["files"][1]).name == "out-2.wav"
    for f in res["files"]:
        with wave.open(f) as w:
            assert w.getframerate() == 16_000 and w.getnframes() > 8_000
    # a user's file: stereo at 44.1 kHz is mixed down and resampled, and the result says so
    x, _ = sf.read(str(shipped / "clips" / "neutral" / "009.ogg"), dtype="float32")
    from slimgui_families.voice.audio import resample

    y = resample(x, 16000, 44100)
    user = tmp_path / "user.wav"
    sf.write(str(user), np.stack([y, y], axis=1), 44100)
    res = last_json(cli("generate", "demo:voice", "--audio", str(user), "--out", str(tmp_path / "u.wav"), "--json"))
    notes = " ".join(res.get("notes") or [m.get("notes", "") for m in res.get("models", []) if isinstance(m, dict)])
    assert "resampled from 44100 Hz" in json.dumps(res) and "mixed down" in json.dumps(res), notes
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    r = run_cli("generate", "demo:voice", "--audio", str(bad), "--out", str(tmp_path / "b.wav"), env_extra=ENV)
    assert r.returncode == 2 and "not a sound file" in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr
    # healing: distillation from the original, resumable by the core (a few steps)
    run = tmp_path / "run"
    common = ["--method", "kd", "--batch-size", "2", "--save-every", "1", "--eval-every", "2", "--out", str(run), "--json"]
    first = last_json(cli("retrain", str(slim), "--steps", "1", *common))
    healed = last_json(cli("retrain", str(slim), "--steps", "2", "--resume", *common))
    assert first["step"] == 1 and healed["step"] == 2 and healed["resumed_from"].endswith("checkpoint-1")
    assert SpeechT5ForSpeechToSpeech.from_pretrained(str(run / "model")).config.decoder_layers == \
        back.config.decoder_layers


def test_a_rebuilt_demo_starts_from_the_shipped_clips(shipped, tmp_path, monkeypatch):
    """ensure_demo's rebuild path: with no espeak-ng, the clips come from the shipped ones (copied whole); the
    sentences are the seeded grammar's, the same on every machine."""
    monkeypatch.setattr(vdata, "have_espeak", lambda: False)
    folder = demo.clips_dir(tmp_path / "cache")
    assert folder == tmp_path / "cache" / "clips" and vdata.clips_complete(folder)
    texts = json.loads((folder / "sentences.json").read_text())["sentences"]
    assert texts == vdata.sentences() and len(texts) == vdata.N_SENTENCES
    assert vdata.decode_ids(vdata.encode_text(texts[0])) == texts[0]
    train, held = vdata.split()
    assert len(held) == 20 and not set(train) & set(held)
