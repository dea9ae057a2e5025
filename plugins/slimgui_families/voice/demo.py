"""The built-in demo voice converter: a small SpeechT5ForSpeechToSpeech trained from scratch on the demo's parallel
espeak-ng speech (neutral → "excited"), with the paper's multitask recipe (VC loss + TTS loss through the shared
encoder body and decoder), and a CTC character recogniser for the content metric.

Reproducible with::

    nice -n 10 python -m slimgui_families.voice.demo --out resources/demo/voice      # ~12 min on 2 CPU cores

``resources/demo/voice`` then holds ``clips/`` (the parallel speech, :mod:`.data`; regenerated with espeak-ng when it
is installed and the clips are missing, or with ``--regenerate-clips``), ``model/`` (a plain transformers
SpeechT5ForSpeechToSpeech folder with ``preprocessor_config.json``, ``slimgui_text_prenet.safetensors`` — the text
pre-net of the TTS branch — and ``slimgui_demo.json``, the training log) and ``recogniser/`` (``model.safetensors`` and
``recogniser.json``; trained on both voices' training sentences, half of them blurred a little in time and frequency
because converted speech is smoother than real speech).  Training is teacher-forced: L1 on the mels before and after the post-net, BCE on the stop
flag and a guided-attention term (:mod:`.speech`), for the converter on (neutral waveform → excited mels) and for the
text branch on (sentence → excited mels), with weight ``tts_weight`` every ``tts_every``-th step (the CPU budget).  When the shipped copy is missing,
:func:`ensure_demo` rebuilds it into the user cache with this same script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from slimgui.core.io import atomic_write_text, cache_dir, resources_dir
from slimgui.core.progress import CancelToken, ProgressFn, report

from . import data
from .audio import MelSettings

DEMO_VERSION = 1
MARKER = "slimgui_demo.json"
TEXT_PRENET = "slimgui_text_prenet.safetensors"
DEMO_MEL = MelSettings(floor=1e-5)
MODEL_CONFIG: dict[str, Any] = dict(
    hidden_size=96, encoder_layers=4, decoder_layers=4, encoder_attention_heads=2, decoder_attention_heads=2,
    encoder_ffn_dim=192, decoder_ffn_dim=192, conv_dim=[16, 32, 48, 96], conv_stride=[8, 5, 4, 4],
    conv_kernel=[16, 10, 8, 8], num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    speech_decoder_prenet_units=96, speech_decoder_prenet_layers=2, speech_decoder_postnet_units=96,
    speech_decoder_postnet_layers=3, speech_decoder_postnet_kernel=5, speaker_embedding_dim=8, num_mel_bins=80,
    reduction_factor=2, vocab_size=30, pad_token_id=0, max_speech_positions=1000, max_text_positions=200,
    encoder_max_relative_position=160, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    positional_dropout=0.0, encoder_layerdrop=0.0, decoder_layerdrop=0.0, mask_time_prob=0.0,
    speech_decoder_prenet_dropout=0.5, feat_extract_norm="group",
)
TRAIN: dict[str, Any] = dict(steps=2200, batch=8, lr=2e-3, warmup=50, tts_weight=1.0, tts_every=3, guided_attention=2.0,
                             stop_weight=0.5, seed=0, rec_steps=700, rec_lr=2e-3)
PREPROCESSOR = {
    "feature_extractor_type": "SpeechT5FeatureExtractor", "processor_class": "SpeechT5Processor",
    "do_normalize": True, "feature_size": 1, "sampling_rate": 16000, "num_mel_bins": 80, "hop_length": 16,
    "win_length": 64, "win_function": "hann_window", "fmin": 80, "fmax": 7600, "mel_floor": DEMO_MEL.floor,
    "padding_value": 0.0, "return_attention_mask": True, "reduction_factor": 2,
}


def _lr(step: int, total: int, warm: int, peak: float) -> float:
    if step < warm:
        return peak * (step + 1) / warm
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))


def _batches(items: list[int], batch: int, gen) -> list[list[int]]:
    import torch

    order = [items[i] for i in torch.randperm(len(items), generator=gen).tolist()]
    return [order[i:i + batch] for i in range(0, len(order), batch)]


def vc_batch(corpus: data.Corpus, mels: dict[str, list], idx: list[int]) -> dict:
    from .speech import mel_batch, wave_batch

    x, m = wave_batch([corpus.wave[data.SOURCE][i] for i in idx], True)
    y, ym = mel_batch([mels[data.TARGET][i] for i in idx], MODEL_CONFIG["reduction_factor"])
    return {"input_values": x, "attention_mask": m, "labels": y, "mel_mask": ym}


def tts_batch(corpus: data.Corpus, mels: dict[str, list], idx: list[int]) -> dict:
    from .speech import mel_batch, text_batch

    t, tm = text_batch([corpus.texts[i] for i in idx])
    y, ym = mel_batch([mels[data.TARGET][i] for i in idx], MODEL_CONFIG["reduction_factor"])
    return {"input_ids": t, "text_mask": tm, "labels": y, "mel_mask": ym}


def train_converter(corpus: data.Corpus, mels: dict[str, list], cfg: dict, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None):
    import torch
    from transformers import SpeechT5Config, SpeechT5ForSpeechToSpeech

    from .speech import SharedTextEncoder, TextBranch, guided_attention, mel_loss, stop_loss, teacher_forced

    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    model = SpeechT5ForSpeechToSpeech(SpeechT5Config(**MODEL_CONFIG))
    text = TextBranch(model.config)
    params = list(model.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.01)
    history: list[dict] = []
    t0 = time.time()
    step = 0
    model.train()
    text.train()
    run: dict[str, list[float]] = {"vc_mel": [], "tts_mel": [], "att": [], "stop": []}
    enc = SharedTextEncoder(text, model.speecht5)
    while step < cfg["steps"]:
        for idx in _batches(corpus.train, cfg["batch"], gen):
            if step >= cfg["steps"]:
                break
            if cancel is not None:
                cancel.raise_if_cancelled()
            for g in opt.param_groups:
                g["lr"] = _lr(step, cfg["steps"], cfg["warmup"], cfg["lr"])
            vb = vc_batch(corpus, mels, idx)
            out = teacher_forced(model, vb, attentions=True)
            lv, ls, la = mel_loss(out, vb), stop_loss(out, vb), guided_attention(out)
            loss = lv + cfg["stop_weight"] * ls + cfg["guided_attention"] * la
            if cfg["tts_weight"] > 0 and step % cfg["tts_every"] == 0:
                tb = tts_batch(corpus, mels, idx)
                out_t = teacher_forced(model, tb, attentions=True, encoder=enc)
                lt = mel_loss(out_t, tb)
                loss = loss + cfg["tts_weight"] * (lt + cfg["stop_weight"] * stop_loss(out_t, tb)
                                                   + cfg["guided_attention"] * guided_attention(out_t))
                run["tts_mel"].append(lt.item())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            run["vc_mel"].append(lv.item())
            run["att"].append(la.item())
            run["stop"].append(ls.item())
            step += 1
            report(progress, step, cfg["steps"], f"training the demo converter (step {step}, mel L1 {lv.item():.3f})")
            if step % 25 == 0 or step == cfg["steps"]:
                row = {"step": step, **{k: round(sum(v) / len(v), 4) for k, v in run.items() if v},
                       "elapsed_s": round(time.time() - t0)}
                history.append(row)
                run = {k: [] for k in run}
                print(json.dumps(row), file=sys.stderr, flush=True)
    return model.eval(), text.eval(), history


def train_recogniser(corpus: data.Corpus, mels: dict[str, list], cfg: dict, cancel: CancelToken | None = None):
    import numpy as np
    import torch

    from .speech import Recogniser

    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    rec = Recogniser(n_mels=MODEL_CONFIG["num_mel_bins"], classes=len(data.ALPHABET) + 1)
    opt = torch.optim.AdamW(rec.parameters(), lr=cfg["rec_lr"])
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    items = [(v, i) for v in data.VOICES for i in corpus.train]
    history = []
    t0 = time.time()
    step = 0
    losses: list[float] = []
    while step < cfg["rec_steps"]:
        order = torch.randperm(len(items), generator=gen).tolist()
        for k in range(0, len(order), 16):
            if step >= cfg["rec_steps"]:
                break
            if cancel is not None:
                cancel.raise_if_cancelled()
            chosen = [items[j] for j in order[k:k + 16]]
            ms = [mels[v][i] for v, i in chosen]
            t = max(len(m) for m in ms)
            x = torch.full((len(ms), t, ms[0].shape[1]), -5.0)
            for j, m in enumerate(ms):
                if float(torch.rand((), generator=gen)) < 0.5:  # blurred copies: converted speech is smoother
                    from scipy.ndimage import gaussian_filter

                    sig = (1.5 * float(torch.rand((), generator=gen)), 2.0 * float(torch.rand((), generator=gen)))
                    m = gaussian_filter(m, sigma=sig, mode="nearest").astype(np.float32)
                x[j, :len(m)] = torch.from_numpy(m)
                # time masking: up to 2 spans of 8 frames, so the recogniser does not lean on one frame
                for _ in range(2):
                    s = int(torch.randint(0, max(1, len(m) - 8), (1,), generator=gen))
                    x[j, s:s + 8] = -5.0
            targets = [data.encode_text(corpus.texts[i]) for _, i in chosen]
            for g in opt.param_groups:
                g["lr"] = _lr(step, cfg["rec_steps"], 50, cfg["rec_lr"])
            logp = rec(x).log_softmax(-1).transpose(0, 1)
            loss = ctc(logp, torch.tensor([c for tt in targets for c in tt]),
                       torch.tensor([len(m) for m in ms]), torch.tensor([len(tt) for tt in targets]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rec.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            step += 1
            if step % 100 == 0:
                history.append({"step": step, "ctc": round(float(np.mean(losses)), 4), "elapsed_s": round(time.time() - t0)})
                losses = []
                print(json.dumps({"recogniser": history[-1]}), file=sys.stderr, flush=True)
    return rec.eval(), history


def _cer_of(rec, corpus: data.Corpus, mels_list: list, idx: list[int]) -> float:
    import numpy as np

    from .speech import cer, recognise

    hyps = recognise(rec, mels_list)
    return float(np.mean([cer(h, corpus.texts[i]) for h, i in zip(hyps, idx)]))


def measure(model, rec, corpus: data.Corpus, mels: dict[str, list], idx: list[int]) -> dict[str, float]:
    """MCD (dB) of source→target and converted→target, and the recogniser's CER on the target, on converted and on
    time-reversed converted speech, over the sentences ``idx`` (what the demo's test asserts)."""
    import numpy as np

    from .audio import mcd
    from .speech import convert

    conv = [convert(model, corpus.wave[data.SOURCE][i], seed=i) for i in idx]
    tgt = [mels[data.TARGET][i] for i in idx]
    return {
        "mcd_source_to_target": round(float(np.mean([mcd(mels[data.SOURCE][i], t) for i, t in zip(idx, tgt)])), 3),
        "mcd_converted_to_target": round(float(np.mean([mcd(c, t) for c, t in zip(conv, tgt)])), 3),
        "cer_target": round(_cer_of(rec, corpus, tgt, idx), 4),
        "cer_source": round(_cer_of(rec, corpus, [mels[data.SOURCE][i] for i in idx], idx), 4),
        "cer_converted": round(_cer_of(rec, corpus, conv, idx), 4),
        "cer_converted_reversed": round(_cer_of(rec, corpus, [c[::-1].copy() for c in conv], idx), 4),
    }


def corpus_mels(corpus: data.Corpus) -> dict[str, list]:
    from .speech import mels_of

    return {v: mels_of(corpus.wave[v], DEMO_MEL) for v in data.VOICES}


def clips_dir(root: Path | None = None, regenerate: bool = False) -> Path:
    """The parallel clips in ``root/clips``: kept when complete, else copied from the shipped ones, else spoken there
    by espeak-ng (``regenerate``: always spoken again)."""
    root = root or shipped_dir()
    folder = root / "clips"
    if regenerate or not data.clips_complete(folder):
        shipped = shipped_dir() / "clips"
        if not regenerate and folder != shipped and data.clips_complete(shipped):
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(shipped, folder)  # the demo folder is whole: clips, model and recogniser together
            return folder
        data.make_clips(folder)
    return folder


def train_demo(root: Path, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
               steps: int | None = None, regenerate_clips: bool = False) -> dict:
    """Build the demo into ``root`` (clips, model, recogniser; each written whole, then moved into place)."""
    import torch
    from safetensors.torch import save_file
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(int(os.environ.get("SLIMGUI_DEMO_THREADS", "1")))
    cfg = dict(TRAIN)
    if steps is not None:
        cfg["steps"] = int(steps)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    report(progress, 0, 1, "preparing the parallel speech")
    corpus = data.Corpus(clips_dir(root, regenerate_clips))
    mels = corpus_mels(corpus)
    t0 = time.time()
    model, text, history = train_converter(corpus, mels, cfg, progress, cancel)
    rec, rec_history = train_recogniser(corpus, mels, cfg, cancel)
    report(progress, 0, 1, "measuring the demo")
    held = measure(model, rec, corpus, mels, corpus.held)
    meta = {
        "demo_version": DEMO_VERSION, "script": "python -m slimgui_families.voice.demo", "python": sys.version.split()[0],
        "torch": torch.__version__, "data": "espeak-ng parallel speech (neutral -> excited), see clips/sentences.json",
        "voices": data.VOICES, "source": data.SOURCE, "target": data.TARGET,
        "train_sentences": len(corpus.train), "heldout_sentences": len(corpus.held),
        "model_config": MODEL_CONFIG, "train_config": cfg, "history": history, "recogniser_history": rec_history,
        "heldout": held, "train_seconds": round(time.time() - t0),
    }
    tmp = root / f".model.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    save_file({k: v.contiguous() for k, v in text.state_dict().items()}, str(tmp / TEXT_PRENET))
    atomic_write_text(tmp / "preprocessor_config.json", json.dumps(PREPROCESSOR, indent=2) + "\n")
    atomic_write_text(tmp / MARKER, json.dumps(meta, indent=2) + "\n")
    _replace(tmp, root / "model")
    tmp = root / f".recogniser.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in rec.state_dict().items()}, str(tmp / "model.safetensors"))
    atomic_write_text(tmp / "recogniser.json", json.dumps({"alphabet": data.ALPHABET, "n_mels": 80, "width": 160,
                                                           "history": rec_history}, indent=1) + "\n")
    _replace(tmp, root / "recogniser")
    return meta


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def shipped_dir() -> Path:
    return resources_dir() / "demo" / "voice"


def _is_complete(root: Path) -> bool:
    return all((root / f).is_file() for f in ("model/config.json", "model/model.safetensors", f"model/{MARKER}",
                                              "recogniser/model.safetensors")) and data.clips_complete(root / "clips")


def demo_dir(progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Path:
    """The demo's folder: the shipped one, else the one built into the cache (built now when missing)."""
    root = shipped_dir()
    if not _is_complete(root):
        root = cache_dir() / f"demo-voice-v{DEMO_VERSION}"
        if not _is_complete(root):
            train_demo(root, progress, cancel)
    return root


def clips_folder() -> Path:
    """The demo's parallel clips (no training): the shipped ones, else the cache's, generated there when missing."""
    shipped = shipped_dir() / "clips"
    if data.clips_complete(shipped):
        return shipped
    root = cache_dir() / f"demo-voice-v{DEMO_VERSION}"
    return clips_dir(root)


def load_recogniser(root: Path | None = None):
    """The demo's CTC recogniser (None when the demo has none)."""
    from safetensors.torch import load_file

    from .speech import Recogniser

    root = root or demo_dir()
    f = root / "recogniser" / "model.safetensors"
    if not f.is_file():
        return None
    rec = Recogniser(n_mels=80, classes=len(data.ALPHABET) + 1)
    rec.load_state_dict(load_file(str(f)))
    return rec.eval()


def ensure_demo(progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, str]:
    """{"model": the converter's folder, "clips": the parallel speech, "recogniser": its folder}."""
    root = demo_dir(progress, cancel)
    report(progress, 1, 1, "demo ready")
    return {"model": str(root / "model"), "clips": str(root / "clips"), "recogniser": str(root / "recogniser")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train SlimGUI's demo voice converter on espeak-ng parallel speech.")
    ap.add_argument("--out", type=Path, default=shipped_dir())
    ap.add_argument("--steps", type=int, default=TRAIN["steps"])
    ap.add_argument("--regenerate-clips", action="store_true", help="speak the clips again with espeak-ng")
    ap.add_argument("--clips-only", action="store_true", help="only (re)generate the clips")
    args = ap.parse_args(argv)
    if args.clips_only:
        print(json.dumps({"clips": str(clips_dir(args.out, True))}))
        return 0
    meta = train_demo(args.out, steps=args.steps, regenerate_clips=args.regenerate_clips)
    print(json.dumps({"out": str(args.out), "heldout": meta["heldout"], "seconds": meta["train_seconds"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
