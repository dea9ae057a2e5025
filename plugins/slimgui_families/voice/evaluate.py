"""The voice family's evaluator ``voice-quality``: convert held-out parallel utterances and measure

- ``mcd``: mel-cepstral distortion (dB) of the converted log-mels to the target voice's (:mod:`.audio`), with
  ``mcd_source`` — the same between the unconverted source and the target — as the reference a converter must beat;
- ``f0_rmse`` (Hz) / ``f0_corr``: F0 of the converted speech (vocoded: HiFi-GAN beside the model, else Griffin-Lim)
  against the target's, over DTW-aligned frames voiced in both;
- ``cer``: character error rate of the demo's CTC recogniser on the converted log-mels (models with the demo's mel
  settings; None otherwise), with ``cer_target`` — on the real target speech — as its floor;
- ``rtf``: real-time factor, seconds of conversion (encoder + autoregressive decoder, no vocoder) per second of source.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from slimgui.core.errors import SlimError
from slimgui.core.progress import check, report

from . import data as vdata
from .audio import MelSettings, mcd


def recogniser_for(model) -> Any:
    """The demo's recogniser when the model makes the demo's mels (80 bins, 16 kHz, hop 256), else None."""
    mel: MelSettings = model.extra.get("mel") or MelSettings()
    if (mel.n_mels, mel.sample_rate, mel.hop) != (80, 16_000, 256):
        return None
    from .demo import load_recogniser

    try:
        return load_recogniser()
    except SlimError:
        return None


def quality(model, data_path: str | None = None, *, utterances: int = 8, f0: bool = True, seed: int = 0,
            progress=None, cancel=None, **_: Any) -> dict[str, Any]:
    from .preview import vocoder_for
    from .speech import cer, convert, recognise
    from .training import corpus, spread, target_mels

    if not model.has_weights:
        raise SlimError(f"{model.source} has no weights (config only)", hint="open a folder with weights to evaluate it")
    if model.extra.get("kind") != "speech":
        raise SlimError("voice-quality converts speech: this is a text-to-speech model",
                        hint="evaluate a SpeechT5ForSpeechToSpeech converter")
    path = data_path or model.impl.default_data(model) if model.impl is not None else data_path
    if not path:
        raise SlimError("voice-quality needs parallel speech", hint="pass --data FOLDER (the demo's clips layout)")
    c = corpus(path)
    mel: MelSettings = model.extra.get("mel") or MelSettings()
    idx = [c.held[i] for i in spread(len(c.held), utterances)]
    tgt = target_mels(c, mel)
    src = target_mels(c, mel, vdata.SOURCE)
    vocoder, notes = vocoder_for(model, None)
    rec = recogniser_for(model)
    mcds, mcd_src, f0_rmse, f0_corr, cers, cers_t = [], [], [], [], [], []
    seconds = busy = 0.0
    n = len(idx)
    for k, i in enumerate(idx):
        check(cancel)
        t0 = time.perf_counter()
        conv = convert(model.module, c.wave[vdata.SOURCE][i], speaker=model.extra.get("speaker"),
                       normalize=model.extra.get("normalize", True), seed=seed + i)
        busy += time.perf_counter() - t0
        seconds += len(c.wave[vdata.SOURCE][i]) / mel.sample_rate
        if len(conv) < 2:
            mcds.append(float("nan"))
            continue
        mcds.append(mcd(conv, tgt[i]))
        mcd_src.append(mcd(src[i], tgt[i]))
        if f0:
            from .audio import f0_scores
            from .speech import vocode

            wave = vocode(conv, vocoder, mel)
            r, corr, _ = f0_scores(wave, conv, c.wave[vdata.TARGET][i], tgt[i], mel)
            f0_rmse.append(r)
            f0_corr.append(corr)
        if rec is not None:
            hyp, ref_hyp = recognise(rec, [conv, tgt[i]])
            cers.append(cer(hyp, c.texts[i]))
            cers_t.append(cer(ref_hyp, c.texts[i]))
        report(progress, k + 1, n, f"converted utterance {k + 1} of {n}")

    def mean(v):
        v = [x for x in v if x == x]
        return float(np.mean(v)) if v else None

    failed = sum(1 for x in mcds if x != x)
    if failed:
        notes.append(f"{failed} of {n} conversions stopped at once (no frames); they count as missing")
    return {"mcd": mean(mcds), "mcd_source": mean(mcd_src), "f0_rmse": mean(f0_rmse), "f0_corr": mean(f0_corr),
            "cer": mean(cers), "cer_target": mean(cers_t), "rtf": busy / seconds if seconds else None,
            "utterances": n, "data": str(path), "notes": notes}
