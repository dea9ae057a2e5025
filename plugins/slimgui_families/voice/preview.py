"""The voice family's previewer ``convert``: a source utterance (a file, or the demo's own held-out sentence) converted
by the model, as :class:`~slimgui.core.media.AudioMedia` (the app's audio viewer draws its waveform and spectrogram,
plays and stops it and saves it as WAV; where there is no sound device it says so and the rest works).  A text-to-speech
model says ``text`` (the demo's sentence by default) instead.

The mels become sound through the SpeechT5HifiGan folder given (``vocoder``) or found beside the model, else by
Griffin-Lim.  A vocoder whose mel settings disagree with the model's (mel bins, sample rate) is refused when given and
left out, with a note, when found beside the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimgui.core.errors import SlimError
from slimgui.core.media import AudioMedia

from . import data as vdata
from .audio import MelSettings, read_audio


def vocoder_for(model, given: str | None) -> tuple[Any, list[str]]:
    """(SpeechT5HifiGan or None for Griffin-Lim, notes)."""
    from . import probe

    path = given or model.extra.get("vocoder_path") or ""
    if not path:
        return None, []
    folder = Path(path).expanduser()
    if not probe.is_vocoder(folder):
        if given:
            raise SlimError(f"{folder} is not a SpeechT5HifiGan folder", hint="give a folder whose config.json is a "
                                                                              "HiFi-GAN's, or none for Griffin-Lim")
        return None, []
    doc = probe.read_config(folder)
    mel: MelSettings = model.extra.get("mel") or MelSettings()
    bins, rate = doc.get("model_in_dim", 80), doc.get("sampling_rate", 16000)
    if bins != mel.n_mels or rate != mel.sample_rate:
        why = (f"the vocoder {folder.name} expects {bins} mel bins at {rate} Hz; the model makes {mel.n_mels} at "
               f"{mel.sample_rate} Hz")
        if given:
            raise SlimError(why, hint="give the vocoder trained with the model's mel settings, or none for Griffin-Lim")
        return None, [why + ": Griffin-Lim used instead"]
    from transformers import SpeechT5HifiGan

    cache = model.extra.setdefault("_vocoders", {})
    if str(folder) not in cache:
        try:
            from slimgui.core.model import LOADING

            with LOADING:  # one model built at a time in the process (see slimgui.core.model.LOADING)
                cache[str(folder)] = SpeechT5HifiGan.from_pretrained(str(folder)).eval()
        except Exception as exc:
            if given:
                raise SlimError(f"the vocoder in {folder} does not load ({type(exc).__name__})",
                                hint="give another vocoder folder, or none for Griffin-Lim") from None
            return None, [f"the vocoder in {folder} does not load: Griffin-Lim used instead"]
    return cache[str(folder)], []


def source_utterance(model, audio: str | None, utterance: int) -> tuple[np.ndarray, str, list[str]]:
    """(waveform at the model's rate, its name, notes): the file given, else the demo's held-out sentence."""
    mel: MelSettings = model.extra.get("mel") or MelSettings()
    if audio:
        wave, notes = read_audio(audio, mel.sample_rate)
        return wave, Path(audio).name, notes
    path = model.impl.default_data(model) if model.impl is not None else None
    if path is None:
        from .demo import clips_folder

        path = str(clips_folder())
    from .training import corpus

    c = corpus(path)
    i = c.held[utterance % len(c.held)]
    return c.wave[vdata.SOURCE][i], f'"{c.texts[i]}"', []


def convert_preview(model, *, audio: str | None = None, utterance: int = 0, seed: int = 0, vocoder: str | None = None,
                    text: str | None = None, label: str | None = None, progress=None, **_: Any) -> AudioMedia:
    from .speech import convert, text_batch, vocode

    mel: MelSettings = model.extra.get("mel") or MelSettings()
    voc, notes = vocoder_for(model, vocoder)
    speaker = model.extra.get("speaker")
    if model.extra.get("kind") == "text":
        if not text:
            from .demo import clips_folder
            from .training import corpus

            c = corpus(model.impl.default_data(model) or str(clips_folder()))
            text = c.texts[c.held[utterance % len(c.held)]]
        ids, mask = text_batch([text])
        spk = speaker if speaker is not None else torch.zeros(1, model.config.speaker_embedding_dim)
        torch.manual_seed(seed)
        with torch.no_grad():
            out = model.module.eval().generate_speech(ids, spk, attention_mask=mask)
        logmel = out.detach().float().numpy()
        what, src_seconds = f'"{text}"', None
    else:
        wave, what, more = source_utterance(model, audio, utterance)
        notes += more
        logmel = convert(model.module, wave, speaker=speaker, normalize=model.extra.get("normalize", True), seed=seed)
        src_seconds = len(wave) / mel.sample_rate
    if len(logmel) < 2:
        raise SlimError("the model stopped before making any sound (its stop flag fired at once)",
                        hint="try another seed or utterance; a heavily pruned model may need healing first")
    out_wave = vocode(logmel, voc, mel)
    title = f"{label + ': ' if label else ''}{what} converted" if model.extra.get("kind") != "text" else \
        f"{label + ': ' if label else ''}{what}"
    if notes:  # what was done to the user's file (mixed down, resampled, clipped), or why Griffin-Lim
        title += " — " + "; ".join(notes)
    meta = {"source": what, "seconds": round(len(out_wave) / mel.sample_rate, 2), "frames": int(len(logmel)),
            "vocoder": "HiFi-GAN" if voc is not None else "Griffin-Lim", "notes": notes}
    if src_seconds is not None:
        meta["source_seconds"] = round(src_seconds, 2)
    return AudioMedia(samples=out_wave, sample_rate=mel.sample_rate, title=title, meta=meta)
