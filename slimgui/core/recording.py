"""Recording speech from a microphone into a WAV file (``sounddevice`` / PortAudio), for options that declare
``record="audio"`` (a source utterance a previewer converts).  No Qt here: the app's record button and
``slimgui record`` both call :func:`record_wav`.

Where there is no microphone (no PortAudio, no input device: this build machine, a server) :func:`input_device`
says why in one line and nothing is attempted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import SlimError

MAX_SECONDS = 600.0


def _sounddevice() -> tuple[Any, str]:
    try:
        import sounddevice
    except OSError as exc:  # the PortAudio library is missing
        return None, f"no microphone: PortAudio is not installed ({str(exc).splitlines()[0][:80]})"
    except ImportError:
        return None, "no microphone: the sounddevice package is not installed"
    return sounddevice, ""


def input_device() -> tuple[str | None, str]:
    """``(name of the default input device, "")`` where one can record, else ``(None, why not)``."""
    sd, why = _sounddevice()
    if sd is None:
        return None, why
    try:
        info = sd.query_devices(kind="input")
    except Exception as exc:  # noqa: BLE001 - PortAudio raises its own error types when there is no device
        return None, f"no microphone: {str(exc).splitlines()[0][:80] or 'no input device'}"
    if not info or int(info.get("max_input_channels", 0)) < 1:
        return None, "no microphone: the default device has no input channels"
    return str(info.get("name") or "default input"), ""


def record_wav(path: str | os.PathLike, seconds: float, *, rate: int = 16_000) -> Path:
    """Record ``seconds`` of mono speech at ``rate`` Hz from the default input device into the WAV file ``path``
    (written atomically).  A SlimError when there is no microphone or the recording fails."""
    import numpy as np

    from .media import AudioMedia, save_wav

    if not 0 < float(seconds) <= MAX_SECONDS:
        raise SlimError(f"a recording lasts 0 to {MAX_SECONDS:g} seconds, got {seconds}")
    name, why = input_device()
    if name is None:
        raise SlimError(why, hint="give a recorded WAV file instead")
    sd, _ = _sounddevice()
    try:
        data = sd.rec(int(round(float(seconds) * rate)), samplerate=rate, channels=1, dtype="float32")
        sd.wait()
    except Exception as exc:  # noqa: BLE001
        raise SlimError(f"recording from {name} failed: {str(exc).splitlines()[0][:120]}") from None
    samples = np.asarray(data, dtype=np.float32).reshape(-1)
    if samples.size == 0 or not np.isfinite(samples).all():
        raise SlimError(f"recording from {name} gave no usable sound")
    return save_wav(AudioMedia(samples=samples, sample_rate=rate, title=f"recorded from {name}"), path)
