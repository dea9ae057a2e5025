"""What previewers return: plain media the GUI has one viewer for (plugins never draw).

Besides the media types, the few pure helpers every front end needs: for images, stacking several
previews' rows into one grid (:func:`stack_images`) and writing a PNG (:func:`save_png`); for audio,
WAV files (:func:`save_wav`, :func:`load_wav`) and a spectrogram (:func:`spectrogram`); for video, MP4
files with their sound (:func:`save_video`, :func:`read_frames`, :func:`extract_audio`); and every media
type as JSON for sessions (:func:`media_to_json`, :func:`media_from_json`).

Video goes through the ffmpeg program that the ``imageio-ffmpeg`` wheel ships, run with ``subprocess``.
Why that one rather than PyAV or OpenCV: it is maintained by the imageio project, its wheels carry a
static ffmpeg for Linux, macOS and Windows (with libx264 and AAC), so nothing has to be installed on
the system; it has no compiled Python extension tied to one ffmpeg ABI (PyAV has); and the same binary
both writes (raw RGB frames piped in, the sound muxed from a WAV) and reads (``imageio_ffmpeg.read_frames``
also parses the frame rate and size), so reading needs no OpenCV.  WAV files are written with the
standard library's ``wave`` (16-bit PCM) and read with ``scipy.io.wavfile`` (8/16/24/32-bit PCM and
float, WAVE_FORMAT_EXTENSIBLE), scipy being a dependency already.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SlimError


@dataclass
class TextMedia:
    text: str
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TableMedia:
    columns: list[str]
    rows: list[list[Any]]
    title: str = ""


@dataclass
class ImageMedia:
    """An image or a grid of images: ``image`` is an H×W (grey) or H×W×3 uint8 numpy array.

    ``tiles`` optionally names the cells of a grid: ``[{"label": "seed 0", "box": [x, y, w, h]}, ...]``.
    """

    image: Any
    title: str = ""
    tiles: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AudioMedia:
    """Sound: ``samples`` is a float array in [-1, 1], (N,) mono or (N, C) with C channels, at ``sample_rate`` Hz.

    ``path`` is the WAV file the samples came from, if any (sessions then keep a long clip as a reference)."""

    samples: Any
    sample_rate: int
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def duration(self) -> float:
        return duration(self)


@dataclass
class VideoMedia:
    """A video: either ``path``, a video file (with its sound track), or ``frames``, a T×H×W×3 uint8 array
    shown at ``fps`` frames a second with an optional ``audio`` track starting with the first frame."""

    path: str | None = None
    frames: Any = None
    fps: float = 25.0
    audio: AudioMedia | None = None
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


# -- image helpers -------------------------------------------------------------------------------
def image_array(media: ImageMedia) -> Any:
    """``media.image`` checked: a C-contiguous H×W or H×W×3 uint8 array (H×W×1 becomes H×W, H×W×4 drops alpha);
    raises SlimError for anything else."""
    import numpy as np

    arr = np.asarray(media.image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SlimError(f"an image must be H×W or H×W×3, got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = np.nan_to_num(arr) * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def stack_images(rows: Sequence[ImageMedia], *, gap: int = 4, title: str = "",
                 meta: dict[str, Any] | None = None) -> ImageMedia:
    """One image of several, one under another (e.g. the original's, the slimmed and the healed model's
    rows of the same seeds): widths are padded with white, a grey image becomes RGB when another is in
    colour, and every tile keeps its label with its box moved to where it now is.  ``meta["rows"]`` lists
    each part's rows (its ``meta["rows"]``, else its tiles' rows, else its title)."""
    import numpy as np

    parts = [r for r in rows if r is not None]
    if not parts:
        raise SlimError("no images to put together", hint="generate the previews first")
    arrays = [image_array(p) for p in parts]
    colour = any(a.ndim == 3 for a in arrays)
    if colour:
        arrays = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
    width = max(a.shape[1] for a in arrays)
    height = sum(a.shape[0] for a in arrays) + gap * (len(arrays) - 1)
    canvas = np.full((height, width, 3) if colour else (height, width), 255, dtype=np.uint8)
    tiles: list[dict[str, Any]] = []
    names: list[str] = []
    y = 0
    for part, arr in zip(parts, arrays):
        h, w = arr.shape[:2]
        canvas[y:y + h, :w] = arr
        for tile in part.tiles:
            t = dict(tile)
            box = t.get("box")
            if isinstance(box, (list, tuple)) and len(box) == 4:
                t["box"] = [int(box[0]), int(box[1]) + y, int(box[2]), int(box[3])]
            tiles.append(t)
        if not part.tiles:  # a plain image: one tile, so its label is still shown
            tiles.append({"label": part.title or f"image {len(names) + 1}", "box": [0, y, w, h]})
        own = part.meta.get("rows") or list(dict.fromkeys(str(t["row"]) for t in part.tiles if t.get("row")))
        names += [str(n) for n in (own or [part.title or f"image {len(names) + 1}"])]
        y += h + gap
    return ImageMedia(canvas, title=title or " / ".join(dict.fromkeys(p.title for p in parts if p.title)),
                      tiles=tiles, meta={"rows": names, **(meta or {})})


def labelled(media: ImageMedia) -> Any:
    """The image with the name of each row of tiles (their ``"row"``) written in a white strip on its left, as
    a uint8 array: what a saved comparison needs to say which model drew which row.  An image without named
    rows comes back as it is."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    arr = image_array(media)
    rows: dict[tuple[str, int], int] = {}  # (name, top) -> height, one entry per row of tiles
    for t in media.tiles:
        box = t.get("box")
        if t.get("row") and isinstance(box, (list, tuple)) and len(box) == 4:
            rows.setdefault((str(t["row"]), int(box[1])), int(box[3]))
    if not rows:
        return arr
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    width = 12 + max(int(measure.textlength(name, font=font)) for name, _ in rows)
    base = Image.fromarray(arr)
    grey = base.mode == "L"
    canvas = Image.new(base.mode, (base.width + width, base.height), 255 if grey else (255, 255, 255))
    canvas.paste(base, (width, 0))
    draw = ImageDraw.Draw(canvas)
    for (name, top), height in rows.items():
        draw.text((6, top + height // 2 - 6), name, fill=0 if grey else (0, 0, 0), font=font)
    return np.asarray(canvas)


def png_bytes(media: ImageMedia, *, labels: bool = False) -> bytes:
    """The image encoded as PNG (lossless, grey or RGB); with ``labels``, with its rows' names (:func:`labelled`)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(labelled(media) if labels else image_array(media)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(media: ImageMedia, path: str | os.PathLike, *, labels: bool = False) -> Path:
    """Write the image to ``path`` as a PNG, atomically (a temporary file in the same folder, then a rename).
    ``labels``: with the name of each row of tiles in a strip on the left (:func:`labelled`), as a comparison
    grid saved by a front end shows which model drew which row."""
    from .io import atomic_write_bytes

    out = Path(path).expanduser()
    if out.suffix.lower() != ".png":
        raise SlimError(f"{out.name} does not end in .png", hint="give the image a name ending in .png")
    return atomic_write_bytes(out, png_bytes(media, labels=labels))


# -- audio helpers -------------------------------------------------------------------------------
MAX_WAV_BYTES = 512 * 2**20  # load_wav refuses bigger files (about 45 min of 48 kHz stereo 16-bit)
MAX_SAMPLE_RATE = 768_000


def _sample_rate(rate: Any) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) \
            or int(rate) != rate or not 1 <= rate <= MAX_SAMPLE_RATE:
        raise SlimError(f"an audio sample rate must be a whole number of Hz from 1 to {MAX_SAMPLE_RATE}, got {rate!r}")
    return int(rate)


def audio_array(media: AudioMedia) -> Any:
    """``media.samples`` checked: a C-contiguous float32 array, (N,) mono or (N, C), in [-1, 1].

    NaN becomes silence and ±inf full scale; integer samples are scaled by their type's range; a (C, N) array
    with a few channels and many samples (torchaudio's layout) is turned into (N, C); (N, 1) becomes (N,)."""
    import numpy as np

    _sample_rate(media.sample_rate)
    arr = np.asarray(media.samples)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise SlimError(f"audio samples must be numbers, got {arr.dtype}")
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        arr = (arr.astype(np.float64) - (info.max + 1 if info.min == 0 else 0)) / (info.max if info.min else info.max // 2)
    if arr.ndim == 2 and arr.shape[0] <= 16 < arr.shape[1]:
        arr = arr.T
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim not in (1, 2) or arr.shape[0] == 0 or (arr.ndim == 2 and not 1 <= arr.shape[1] <= 64):
        raise SlimError(f"audio must be (N,) mono or (N, C) samples, got shape {tuple(arr.shape)}",
                        hint="give at least one sample and at most 64 channels")
    arr = np.nan_to_num(arr.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.ascontiguousarray(np.clip(arr, -1.0, 1.0), dtype=np.float32)


def duration(media: AudioMedia | VideoMedia) -> float:
    """How long the media lasts, in seconds (a video file's as its header says)."""
    if isinstance(media, AudioMedia):
        import numpy as np

        return int(np.shape(media.samples)[0]) / _sample_rate(media.sample_rate) if np.ndim(media.samples) else 0.0
    if isinstance(media, VideoMedia):
        if media.frames is not None:
            return len(media.frames) / _fps(media.fps)
        return float(_video_meta(media.path).get("duration") or 0.0)
    raise SlimError(f"{type(media).__name__} has no duration")


def wav_bytes(media: AudioMedia) -> bytes:
    """The sound as a 16-bit PCM WAV file."""
    import io
    import wave

    import numpy as np

    arr = audio_array(media)
    pcm = np.round(arr * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1 if arr.ndim == 1 else arr.shape[1])
        w.setsampwidth(2)
        w.setframerate(_sample_rate(media.sample_rate))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def save_wav(media: AudioMedia, path: str | os.PathLike) -> Path:
    """Write the sound to ``path`` as a 16-bit WAV, atomically (a temporary file in the same folder, then a rename)."""
    from .io import atomic_write_bytes

    out = Path(path).expanduser()
    if out.suffix.lower() != ".wav":
        raise SlimError(f"{out.name} does not end in .wav", hint="give the sound a name ending in .wav")
    return atomic_write_bytes(out, wav_bytes(media))


def _wav_from_bytes(data: bytes, where: str) -> tuple[Any, int]:
    import io
    import warnings

    import numpy as np
    from scipy.io import wavfile

    bad = f"{where} is not a readable WAV file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", wavfile.WavFileWarning)
            rate, arr = wavfile.read(io.BytesIO(data))
    except wavfile.WavFileWarning as exc:
        raise SlimError(f"{bad}: it is truncated or damaged ({exc})", hint="write it again or give another file") from None
    except Exception as exc:  # ValueError, struct.error, EOFError, ...: all mean a damaged file
        raise SlimError(f"{bad}: {exc or type(exc).__name__}",
                        hint="give a PCM or float WAV file (16-bit PCM is the most common)") from None
    arr = np.asarray(arr)
    if arr.size == 0:
        raise SlimError(f"{where} holds no sound", hint="give a WAV file with at least one sample")
    if arr.dtype == np.int16:  # the scale save_wav writes with, so a round trip is exact to ½ step
        arr = arr.astype(np.float32) / 32767.0
    elif arr.dtype == np.int32:  # 24-bit files come back as int32 too, left-justified
        arr = arr.astype(np.float64) / 2147483647.0
    return arr, int(rate)


def load_wav(path: str | os.PathLike, *, limit: int = MAX_WAV_BYTES) -> AudioMedia:
    """A WAV file as :class:`AudioMedia` (files over ``limit`` bytes are refused); SlimError when damaged."""
    from .io import read_bytes_limited

    p = Path(path).expanduser()
    arr, rate = _wav_from_bytes(read_bytes_limited(p, "WAV file", limit=limit), str(p))
    media = AudioMedia(arr, rate, title=p.stem, path=str(p))
    media.samples = audio_array(media)
    return media


def spectrogram(media: AudioMedia, *, n_fft: int = 512, hop: int | None = None, floor_db: float = -100.0) -> Any:
    """The magnitude of the short-time Fourier transform in dB (channels mixed to mono, a Hann window):
    a float32 array of shape (n_fft // 2 + 1, frames).  Row k is k·sample_rate/n_fft Hz, column j starts at
    j·hop/sample_rate s (hop defaults to n_fft // 4); a full-scale sine peaks near 0 dB, silence is ``floor_db``."""
    import numpy as np

    if not isinstance(n_fft, int) or n_fft < 8:
        raise SlimError(f"n_fft must be a whole number ≥ 8, got {n_fft!r}")
    hop = hop or max(1, n_fft // 4)
    arr = audio_array(media)
    mono = arr if arr.ndim == 1 else arr.mean(axis=1)
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    windows = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop]
    win = np.hanning(n_fft).astype(np.float32)
    scale = 2.0 / float(win.sum())
    floor = 10.0 ** (floor_db / 20.0)
    out = np.empty((len(windows), n_fft // 2 + 1), dtype=np.float32)
    for start in range(0, len(windows), 2048):  # in chunks: bounded memory for long clips
        mag = np.abs(np.fft.rfft(windows[start:start + 2048] * win, axis=1)) * scale
        out[start:start + 2048] = 20.0 * np.log10(np.maximum(mag, floor))
    return np.ascontiguousarray(out.T)


# -- media <-> JSON (sessions) ---------------------------------------------------------------------
MAX_INLINE_BYTES = 256 * 2**10  # images and sounds up to this size are kept inside a session file
THUMBNAIL_PX = 256


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError:
        raise SlimError(f"the session's {what} is not valid base64", hint="it may have been edited by hand") from None


def media_to_json(media: Any) -> dict[str, Any] | None:
    """A previewer's result as JSON for a session; None for what is not media.

    Text and tables whole; images and sounds as base64 PNG / WAV up to :data:`MAX_INLINE_BYTES` (a bigger image
    as a thumbnail, a bigger sound as its file's path, or ``"omitted": true``); videos as their file's path
    (frames in memory are ``"omitted": true``: save the video to keep it)."""
    from .scores import _jsonable

    if isinstance(media, TextMedia):
        return {"type": "text", "text": media.text, "title": media.title, "meta": _jsonable(media.meta)}
    if isinstance(media, TableMedia):
        return {"type": "table", "columns": list(media.columns), "rows": _jsonable(media.rows), "title": media.title}
    if isinstance(media, ImageMedia):
        doc = {"type": "image", "title": media.title, "tiles": _jsonable(media.tiles), "meta": _jsonable(media.meta)}
        png = png_bytes(media)
        if len(png) <= MAX_INLINE_BYTES:
            return {**doc, "png": _b64(png)}
        import numpy as np
        from PIL import Image

        img = Image.fromarray(image_array(media))
        w, h = img.size
        k = THUMBNAIL_PX / max(w, h)
        img = img.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.LANCZOS)
        thumb = ImageMedia(np.asarray(img))
        tiles = [{**t, "box": [round(v * k) for v in t["box"]]} if isinstance(t.get("box"), list) else t
                 for t in doc["tiles"]]
        return {**doc, "tiles": tiles, "png": _b64(png_bytes(thumb)), "thumbnail": True, "size": [w, h]}
    if isinstance(media, AudioMedia):
        doc = {"type": "audio", "title": media.title, "meta": _jsonable(media.meta),
               "sample_rate": _sample_rate(media.sample_rate)}
        wav = wav_bytes(media)
        if len(wav) <= MAX_INLINE_BYTES:
            return {**doc, "wav": _b64(wav)}
        if media.path:
            return {**doc, "path": str(media.path)}
        return {**doc, "omitted": True, "seconds": round(duration(media), 3)}
    if isinstance(media, VideoMedia):
        doc = {"type": "video", "title": media.title, "meta": _jsonable(media.meta), "fps": _fps(media.fps)}
        if media.path and media.frames is None:
            return {**doc, "path": str(media.path)}
        return {**doc, "omitted": True, "frames": len(media.frames) if media.frames is not None else 0}
    return None


def _omitted(kind: str, title: str) -> TextMedia:
    return TextMedia(text=f"This {kind} was too large to keep in the session and had no file to refer to; "
                          "generate the preview again (or save it to a file before saving the session).",
                     title=title, meta={"omitted": kind})


def media_from_json(doc: Mapping[str, Any] | None) -> Any:
    """The media :func:`media_to_json` wrote (None for anything else); what the session could not keep comes
    back as a :class:`TextMedia` saying so, with ``meta["omitted"]`` naming its type."""
    if not isinstance(doc, Mapping):
        return None
    kind = doc.get("type")
    title = str(doc.get("title", ""))
    meta = dict(doc.get("meta") or {}) if isinstance(doc.get("meta"), Mapping) else {}
    if kind == "text":
        return TextMedia(text=str(doc.get("text", "")), title=title, meta=meta)
    if kind == "table":
        return TableMedia(columns=list(doc.get("columns") or []), rows=list(doc.get("rows") or []), title=title)
    if kind in ("image", "audio", "video") and doc.get("omitted"):
        return _omitted(kind, title)
    if kind == "image" and "png" in doc:
        import io

        import numpy as np
        from PIL import Image

        try:
            with Image.open(io.BytesIO(_unb64(doc["png"], "image"))) as img:
                arr = np.asarray(img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode))
        except (OSError, ValueError) as exc:
            raise SlimError(f"the session's image is not a valid PNG: {exc}", hint="it may have been edited by hand") from None
        tiles = [dict(t) for t in doc.get("tiles") or [] if isinstance(t, Mapping)]
        if doc.get("thumbnail"):
            meta = {**meta, "thumbnail_of": doc.get("size")}
        return ImageMedia(arr, title=title, tiles=tiles, meta=meta)
    if kind == "audio" and "wav" in doc:
        arr, rate = _wav_from_bytes(_unb64(doc["wav"], "sound"), "the session's sound")
        media = AudioMedia(arr, rate, title=title, meta=meta)
        media.samples = audio_array(media)
        return media
    if kind == "audio" and doc.get("path"):
        try:
            media = load_wav(str(doc["path"]))
        except SlimError as exc:
            return TextMedia(text=f"The sound could not be read back: {exc.one_line()}", title=title,
                             meta={"omitted": "audio", "path": str(doc["path"])})
        media.title, media.meta = title, meta
        return media
    if kind == "video" and doc.get("path"):
        fps = doc.get("fps")
        return VideoMedia(path=str(doc["path"]), fps=float(fps) if isinstance(fps, (int, float)) else 25.0,
                          title=title, meta=meta)
    return None


# the video helpers live in .video (imported last: they use the types above)
from .video import (  # noqa: E402,F401
    FFMPEG_TIMEOUT_S,
    MAX_VIDEO_BYTES,
    _fps,
    _video_meta,
    extract_audio,
    ffmpeg_exe,
    read_frames,
    save_video,
    video_codec,
    video_frames,
)
