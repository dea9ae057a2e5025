"""The demo's parallel speech: the same short sentences spoken by a neutral and an "excited" espeak-ng voice.

Sentences come from a small seeded grammar (:func:`sentences`); every sentence is synthesised twice with ``espeak-ng``
(neutral: ``-v en -s 140 -p 50``; excited: ``-v en+f3 -s 185 -p 75`` — faster, higher, another timbre), resampled from
espeak's 22.05 kHz to 16 kHz, trimmed of silence and written as Ogg/Opus (``CLIP_QUALITY``: about 4 KB a second, so
200 sentences in two voices take under 4 MB; the coding changes a clip's log-mel spectrum by about 0.7 dB of MCD,
measured, against ~5 dB between the two voices).  The repository ships the clips
(``resources/demo/voice/clips``) so machines without espeak-ng work; :func:`make_clips` regenerates them where it is.
Every ``HOLDOUT``-th sentence is held out of training (evaluation, previews, the bench).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from slimgui.core.errors import SlimError

from .audio import SAMPLE_RATE, normalise, resample

VOICES = {"neutral": ["-v", "en", "-s", "140", "-p", "50"], "excited": ["-v", "en+f3", "-s", "185", "-p", "75"]}
SOURCE, TARGET = "neutral", "excited"
N_SENTENCES = 200
HOLDOUT = 10  # every 10th sentence is held out
ALPHABET = " abcdefghijklmnopqrstuvwxyz'"  # CTC: blank = 0, then these characters
ESPEAK = "espeak-ng"
CLIP_QUALITY = 0.9  # libsndfile's Opus compression level (1 = smallest)

_SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "her sister", "the bird", "a small boy", "the teacher",
             "our neighbour", "the red fox", "a young girl", "the farmer"]
_VERBS = ["sees", "likes", "finds", "takes", "paints", "wants", "brings", "holds", "reads", "moves", "keeps", "calls"]
_OBJECTS = ["the green ball", "a big house", "the blue car", "some bread", "the long road", "a warm coat",
            "the letter", "a yellow hat", "the black box", "an apple", "the silver key", "a paper boat"]
_ENDS = ["", "", "today", "at night", "in the park", "every day", "again", "by the river", "with care", "very slowly"]


def sentences(n: int = N_SENTENCES, seed: int = 0) -> list[str]:
    """``n`` distinct short sentences from the seeded grammar (subject verb object [ending])."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_ENDS)]
        s = " ".join(p for p in parts if p)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def split(n: int = N_SENTENCES) -> tuple[list[int], list[int]]:
    """(training, held-out) sentence indices."""
    held = [i for i in range(n) if i % HOLDOUT == HOLDOUT - 1]
    return [i for i in range(n) if i % HOLDOUT != HOLDOUT - 1], held


def encode_text(text: str) -> list[int]:
    """Character ids (1..len(ALPHABET)) of the letters the alphabet has; other characters are dropped."""
    return [ALPHABET.index(c) + 1 for c in text.lower() if c in ALPHABET]


def decode_ids(ids: list[int]) -> str:
    return "".join(ALPHABET[i - 1] for i in ids if 1 <= i <= len(ALPHABET))


def have_espeak() -> bool:
    return shutil.which(ESPEAK) is not None


def speak(text: str, voice: str) -> np.ndarray:
    """One sentence by one espeak-ng voice: float32 mono at 16 kHz, silence trimmed, peak 0.9."""
    import librosa
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run([ESPEAK, *VOICES[voice], "-w", str(wav), text], check=True, capture_output=True, timeout=60)
        x, rate = sf.read(str(wav), dtype="float32")
    if x.ndim > 1:
        x = x.mean(axis=1)
    x = resample(x, rate, SAMPLE_RATE)
    x, _ = librosa.effects.trim(x, top_db=40)
    return normalise(np.pad(x, (800, 800)))


def clip_path(folder: Path, voice: str, i: int) -> Path:
    return Path(folder) / voice / f"{i:03d}.ogg"


def make_clips(folder: str | Path, n: int = N_SENTENCES, progress=None) -> dict:
    """Synthesise the parallel clips into ``folder`` (``neutral/NNN.ogg``, ``excited/NNN.ogg``, ``sentences.json``)."""
    import soundfile as sf

    if not have_espeak():
        raise SlimError("espeak-ng is not installed, so the demo's speech cannot be generated here",
                        hint="install espeak-ng, or use the clips shipped in resources/demo/voice/clips")
    folder = Path(folder)
    texts = sentences(n)
    for voice in VOICES:
        (folder / voice).mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        for voice in VOICES:
            sf.write(str(clip_path(folder, voice, i)), speak(text, voice), SAMPLE_RATE, format="OGG", subtype="OPUS",
                     compression_level=CLIP_QUALITY)
        if progress is not None:
            progress(i + 1, len(texts), f"speaking sentence {i + 1} of {len(texts)}")
    (folder / "sentences.json").write_text(json.dumps({"voices": VOICES, "sentences": texts, "holdout_every": HOLDOUT},
                                                      indent=1) + "\n", encoding="utf-8")
    return {"folder": str(folder), "sentences": len(texts)}


def clips_complete(folder: str | Path) -> bool:
    folder = Path(folder)
    f = folder / "sentences.json"
    if not f.is_file():
        return False
    try:
        n = len(json.loads(f.read_text(encoding="utf-8"))["sentences"])
    except (ValueError, KeyError, TypeError):
        return False
    return all(clip_path(folder, v, i).is_file() for v in VOICES for i in range(n))


class Corpus:
    """The parallel clips of a folder, read once: ``texts``, ``wave[voice][i]`` (float32 16 kHz)."""

    def __init__(self, folder: str | Path):
        import soundfile as sf

        folder = Path(folder)
        if not clips_complete(folder):
            raise SlimError(f"{folder} does not hold the demo's parallel clips",
                            hint="rebuild them: python -m slimgui_families.voice.demo --clips-only")
        self.folder = folder
        self.texts: list[str] = json.loads((folder / "sentences.json").read_text(encoding="utf-8"))["sentences"]
        self.wave: dict[str, list[np.ndarray]] = {v: [] for v in VOICES}
        for v in VOICES:
            for i in range(len(self.texts)):
                x, _ = sf.read(str(clip_path(folder, v, i)), dtype="float32")
                self.wave[v].append(x)
        self.train, self.held = split(len(self.texts))

    def __len__(self) -> int:
        return len(self.texts)
