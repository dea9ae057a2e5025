"""Sound in and out of the voice family: reading a user's audio file (with one clear message for what is wrong with
it), log-mel spectrograms, Griffin-Lim, and the measures the evaluator uses (MCD, F0).

The mel settings are SpeechT5's (``SpeechT5FeatureExtractor`` and the HiFi-GAN vocoder): 16 kHz, 80 bins from 80 to
7600 Hz (Slaney scale and norm), a 64 ms Hann window, a 16 ms hop, the *magnitude* spectrum, ``log10(max(1e-10, ·))``.
A model folder's ``preprocessor_config.json`` may change them (:func:`mel_settings`).

Mel-cepstral distortion (MCD, dB) between two log-mel spectrograms A and B (frames × bins)::

    L = ln 10 · max(logmel, −5)                    (natural-log magnitudes; below −100 dB counts as −100 dB)
    c_k = 1/M · Σ_m L_m cos(π k (m + ½) / M)       (the cepstrum of the M-bin mel log spectrum, k = 1..13;
                                                    c0 — loudness — left out)
    MCD = 10 / ln 10 · sqrt(2) · mean over the DTW path of ||c_A[i] − c_B[j]||₂

with the frames aligned by dynamic time warping on the cepstra (the two utterances differ in timing).  F0 is
``librosa.pyin`` (65–600 Hz); its RMSE (Hz) and Pearson correlation are over the DTW-aligned frames voiced in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimgui.core.errors import SlimError

SAMPLE_RATE = 16_000
MAX_AUDIO_SECONDS = 60.0
MAX_AUDIO_BYTES = 200 * 2**20
CEPSTRA = 13


@dataclass(frozen=True)
class MelSettings:
    sample_rate: int = SAMPLE_RATE
    n_mels: int = 80
    n_fft: int = 1024
    hop: int = 256
    win: int = 1024
    fmin: float = 80.0
    fmax: float = 7600.0
    floor: float = 1e-10


DEFAULT_MEL = MelSettings()


def mel_settings(pre: dict[str, Any] | None, n_mels: int = 80) -> MelSettings:
    """The mel settings of a SpeechT5 feature extractor's config (``preprocessor_config.json``), else SpeechT5's."""
    pre = pre or {}
    try:
        rate = int(pre.get("sampling_rate", SAMPLE_RATE))
        hop = int(round(float(pre.get("hop_length", 16)) * rate / 1000))
        win = int(round(float(pre.get("win_length", 64)) * rate / 1000))
        s = MelSettings(sample_rate=rate, n_mels=int(pre.get("num_mel_bins", n_mels)), n_fft=max(win, 16), hop=hop,
                        win=win, fmin=float(pre.get("fmin", 80.0)), fmax=float(pre.get("fmax", 7600.0)),
                        floor=float(pre.get("mel_floor", 1e-10)))
    except (TypeError, ValueError):
        raise SlimError("preprocessor_config.json has mel settings that are not numbers",
                        hint="repair or remove preprocessor_config.json") from None
    if not (8000 <= s.sample_rate <= 96_000 and 1 <= s.hop <= s.win and 8 <= s.n_fft <= 16384 and 1 <= s.n_mels <= 512
            and 0 <= s.fmin < s.fmax <= s.sample_rate / 2 and s.floor > 0):
        raise SlimError("preprocessor_config.json has mel settings SlimGUI cannot use "
                        f"({s.sample_rate} Hz, hop {s.hop}, window {s.win}, {s.n_mels} bins, {s.fmin:g}-{s.fmax:g} Hz)",
                        hint="repair or remove preprocessor_config.json")
    return s


def _mel_basis(s: MelSettings) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=s.sample_rate, n_fft=s.n_fft, n_mels=s.n_mels, fmin=s.fmin, fmax=s.fmax)


def log_mel(wave: np.ndarray, s: MelSettings = DEFAULT_MEL) -> np.ndarray:
    """(frames, n_mels) float32 log10 mel magnitudes of a mono float waveform at ``s.sample_rate``."""
    import librosa

    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) < s.win:
        wave = np.pad(wave, (0, s.win - len(wave)))
    spec = np.abs(librosa.stft(y=wave, n_fft=s.n_fft, hop_length=s.hop, win_length=s.win, window="hann",
                               center=True))
    mel = _mel_basis(s) @ spec
    return np.log10(np.maximum(s.floor, mel)).T.astype(np.float32)


def griffin_lim(logmel: np.ndarray, s: MelSettings = DEFAULT_MEL, n_iter: int = 32) -> np.ndarray:
    """A waveform from a (frames, n_mels) log10 mel spectrogram by Griffin-Lim (librosa), peak-normalised to 0.9."""
    import librosa

    mel = np.power(10.0, np.asarray(logmel, dtype=np.float64).T)
    wave = librosa.feature.inverse.mel_to_audio(M=mel, sr=s.sample_rate, n_fft=s.n_fft, hop_length=s.hop,
                                                win_length=s.win, window="hann", center=True, power=1.0,
                                                n_iter=n_iter, fmin=s.fmin, fmax=s.fmax, norm="slaney", htk=False)
    return normalise(wave.astype(np.float32))


def normalise(wave: np.ndarray, peak: float = 0.9) -> np.ndarray:
    m = float(np.max(np.abs(wave))) if len(wave) else 0.0
    return (wave * (peak / m)).astype(np.float32) if m > 1e-8 else wave.astype(np.float32)


def resample(wave: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    if rate == target:
        return wave.astype(np.float32)
    g = gcd(int(rate), int(target))
    return resample_poly(wave, target // g, int(rate) // g).astype(np.float32)


def read_audio(path: str | Path, target: int = SAMPLE_RATE) -> tuple[np.ndarray, list[str]]:
    """A sound file (WAV, FLAC, OGG: what libsndfile reads) as a mono float32 waveform at ``target`` Hz, and notes on
    what was done to it (mixed down, resampled, clipped).  An empty, damaged, silent or too long file is refused with
    one SlimError."""
    import soundfile as sf

    from slimgui.core.io import read_bytes_limited

    p = Path(path).expanduser()
    raw = read_bytes_limited(p, "audio file", limit=MAX_AUDIO_BYTES)
    if not raw:
        raise SlimError(f"{p} is empty", hint="give a WAV file with some speech in it")
    import io

    try:
        data, rate = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError on damaged files
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise SlimError(f"{p} is not a sound file SlimGUI can read ({reason})",
                        hint="give a WAV (or FLAC/OGG) file; 16-bit PCM mono at 16 kHz is the most direct") from None
    notes: list[str] = []
    if data.shape[0] == 0:
        raise SlimError(f"{p} holds no sound (0 samples)", hint="give a WAV file with some speech in it")
    if data.shape[0] / rate > MAX_AUDIO_SECONDS:
        raise SlimError(f"{p} lasts {data.shape[0] / rate:.0f} s; the voice family converts at most "
                        f"{MAX_AUDIO_SECONDS:.0f} s at a time", hint="cut the file into shorter utterances")
    if data.shape[1] > 1:
        notes.append(f"{p.name}: {data.shape[1]} channels mixed down to mono")
    wave = np.nan_to_num(data.mean(axis=1))
    clipped = float(np.mean(np.abs(wave) >= 0.999))
    if clipped > 0.001:
        notes.append(f"{p.name}: {clipped:.1%} of the samples are clipped (at full scale); the result may sound harsh")
    if rate != target:
        notes.append(f"{p.name}: resampled from {rate} Hz to {target} Hz")
        wave = resample(wave, rate, target)
    if float(np.max(np.abs(wave))) < 1e-4:
        raise SlimError(f"{p} is silent", hint="give a WAV file with some speech in it")
    return np.clip(wave, -1.0, 1.0).astype(np.float32), notes


# -- measures -----------------------------------------------------------------------------------------------------------
def cepstra(logmel: np.ndarray, k: int = CEPSTRA) -> np.ndarray:
    from scipy.fft import dct

    m = np.maximum(np.asarray(logmel, dtype=np.float64), -5.0) * np.log(10.0)
    return dct(m, type=2, norm=None, axis=1)[:, 1:k + 1] / (2.0 * m.shape[1])


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import librosa

    _, wp = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    return wp[::-1]


def mcd(logmel_a: np.ndarray, logmel_b: np.ndarray) -> float:
    """Mel-cepstral distortion in dB between two log10-mel spectrograms (the module's docstring), DTW-aligned."""
    ca, cb = cepstra(logmel_a), cepstra(logmel_b)
    path = dtw_path(ca, cb)
    diff = ca[path[:, 0]] - cb[path[:, 1]]
    return float(10.0 / np.log(10.0) * np.sqrt(2.0) * np.mean(np.sqrt((diff ** 2).sum(axis=1))))


def f0(wave: np.ndarray, s: MelSettings = DEFAULT_MEL) -> np.ndarray:
    """F0 in Hz per mel frame (NaN where unvoiced), by pYIN."""
    import librosa

    f, voiced, _ = librosa.pyin(y=np.asarray(wave, dtype=np.float32), fmin=65.0, fmax=600.0, sr=s.sample_rate,
                                frame_length=s.n_fft, hop_length=s.hop, center=True)
    return np.where(voiced, f, np.nan)


def f0_scores(wave_a: np.ndarray, logmel_a: np.ndarray, wave_b: np.ndarray, logmel_b: np.ndarray,
              s: MelSettings = DEFAULT_MEL) -> tuple[float, float, int]:
    """(RMSE in Hz, Pearson correlation, frames) of F0 over the DTW-aligned frames voiced in both."""
    fa, fb = f0(wave_a, s), f0(wave_b, s)
    path = dtw_path(cepstra(logmel_a), cepstra(logmel_b))
    i = np.clip(path[:, 0], 0, len(fa) - 1)
    j = np.clip(path[:, 1], 0, len(fb) - 1)
    x, y = fa[i], fb[j]
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan"), float("nan"), int(ok.sum())
    x, y = x[ok], y[ok]
    rmse = float(np.sqrt(np.mean((x - y) ** 2)))
    corr = float(np.corrcoef(x, y)[0, 1]) if np.std(x) > 1e-6 and np.std(y) > 1e-6 else float("nan")
    return rmse, corr, int(ok.sum())
