"""Wav2Lip's audio front end (Rudrabha/Wav2Lip ``audio.py`` with ``hparams.py``'s values), through librosa with every
argument passed by keyword (positional ones raise on librosa ≥ 0.10, the most reported Wav2Lip breakage):

16 kHz mono, pre-emphasis 0.97, STFT n_fft 800 / hop 200 / win 800, 80 mel bands from 55 to 7600 Hz (librosa's
Slaney mel filters), amplitude → dB (floor −100 dB) minus the reference level 20 dB, then the symmetric
normalisation to [−4, 4] (clipped).  That gives 80 mel frames a second; the mel chunk of video frame i starts at
``int(i · 80 / fps)`` and is 16 frames (0.2 s) wide (the last chunks are the last 16 frames).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from slimgui.core.errors import SlimError

SAMPLE_RATE = 16_000
N_FFT, HOP, WIN = 800, 200, 800
N_MELS, FMIN, FMAX = 80, 55, 7600
PREEMPHASIS = 0.97
MIN_LEVEL_DB, REF_LEVEL_DB, MAX_ABS = -100.0, 20.0, 4.0
MEL_STEP = 16  # mel frames per chunk
MEL_FPS = SAMPLE_RATE / HOP  # 80
MAX_SECONDS = 600


@functools.cache
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """(80, T) normalised mel spectrogram of a 16 kHz waveform, exactly as Wav2Lip's ``audio.melspectrogram``."""
    import librosa
    from scipy import signal

    y = signal.lfilter([1, -PREEMPHASIS], [1], np.asarray(wav, dtype=np.float64))
    d = librosa.stft(y=y, n_fft=N_FFT, hop_length=HOP, win_length=WIN)
    s = np.dot(_mel_basis(), np.abs(d))
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    s = 20 * np.log10(np.maximum(min_level, s)) - REF_LEVEL_DB
    return np.clip((2 * MAX_ABS) * ((s - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS, -MAX_ABS, MAX_ABS).astype(
        np.float32)


def mel_chunks(mel: np.ndarray, fps: float, frames: int | None = None) -> np.ndarray:
    """(N, 80, 16) chunks, chunk i starting at mel frame ``int(i · 80 / fps)``; as Wav2Lip's inference, the chunks
    stop where the audio does (the last one is the last 16 frames); ``frames`` caps N."""
    if mel.shape[1] < MEL_STEP:
        raise SlimError(f"the audio is too short: {mel.shape[1] / MEL_FPS:.2f} s, Wav2Lip needs at least "
                        f"{MEL_STEP / MEL_FPS:.2f} s", hint="give a longer speech recording")
    mult = MEL_FPS / float(fps)
    out = []
    i = 0
    while frames is None or i < frames:
        start = int(i * mult)
        if start + MEL_STEP > mel.shape[1]:
            out.append(mel[:, mel.shape[1] - MEL_STEP:])
            break
        out.append(mel[:, start:start + MEL_STEP])
        i += 1
    return np.stack(out).astype(np.float32)


def chunk_at(mel: np.ndarray, i: int, fps: float) -> np.ndarray:
    """The 16-frame chunk of video frame ``i`` (clamped at the end), as Wav2Lip's training crops it."""
    start = min(int(i * MEL_FPS / float(fps)), max(0, mel.shape[1] - MEL_STEP))
    return mel[:, start:start + MEL_STEP]


def load_speech(path: str | Path) -> np.ndarray:
    """A speech file as float32 mono at 16 kHz (any rate or channels soundfile / ffmpeg read; video files give their
    sound track)."""
    import soundfile as sf

    from slimgui.core.io import regular_file_stat

    p = Path(path).expanduser()
    regular_file_stat(p, "audio file")
    try:
        x, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception:
        from slimgui.core.media import extract_audio

        try:
            media = extract_audio(str(p))
        except SlimError:
            raise SlimError(f"{p.name} is not an audio file soundfile or ffmpeg can read",
                            hint="give a WAV, FLAC, OGG or MP3 file, or a video with a sound track") from None
        x = np.asarray(media.samples, dtype=np.float32)
        rate = int(media.sample_rate)
        x = x.reshape(len(x), -1) if x.ndim > 1 else x[:, None]
    if len(x) == 0:
        raise SlimError(f"{p.name} holds no sound samples", hint="give a speech recording")
    if len(x) > MAX_SECONDS * rate:
        raise SlimError(f"{p.name} is longer than {MAX_SECONDS // 60} minutes", hint="cut it shorter")
    x = x.mean(axis=1)
    if not np.all(np.isfinite(x)):
        raise SlimError(f"{p.name} holds NaN or infinite samples", hint="re-export the recording")
    return resample(x, rate, SAMPLE_RATE)


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    if int(rate) == target:
        return np.asarray(x, dtype=np.float32)
    import librosa

    return librosa.resample(np.asarray(x, dtype=np.float32), orig_sr=int(rate), target_sr=target).astype(np.float32)


def is_silent(wav: np.ndarray, threshold: float = 1e-4) -> bool:
    return float(np.sqrt(np.mean(np.square(wav)))) < threshold if len(wav) else True
