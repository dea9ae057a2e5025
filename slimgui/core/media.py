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
import functools
import math
import os
import re
import shutil
import subprocess
import tempfile
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


# -- video helpers -------------------------------------------------------------------------------
MAX_VIDEO_BYTES = 2 * 2**30  # read_frames refuses to hold more decoded RGB than this
FFMPEG_TIMEOUT_S = 600
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def _fps(fps: Any) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or not 0 < fps <= 1000:
        raise SlimError(f"a video's frame rate must be above 0 and at most 1000 frames a second, got {fps!r}")
    return float(fps)


def video_frames(media: VideoMedia) -> Any:
    """``media.frames`` checked: a C-contiguous T×H×W×3 uint8 array (T×H×W grey becomes RGB, alpha is dropped)."""
    import numpy as np

    if media.frames is None:
        raise SlimError("this video has no frames in memory", hint="read them with read_frames(path)")
    arr = np.asarray(media.frames)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim == 4 and arr.shape[3] in (1, 4):
        arr = np.repeat(arr, 3, axis=3) if arr.shape[3] == 1 else arr[..., :3]
    if arr.ndim != 4 or arr.shape[3] != 3 or min(arr.shape[:3]) == 0:
        raise SlimError(f"video frames must be T×H×W×3, got shape {tuple(arr.shape)}", hint="give at least one frame")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and float(np.nanmax(arr)) <= 1.0:
            arr = np.nan_to_num(arr) * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def ffmpeg_exe() -> str:
    """The ffmpeg program of the imageio-ffmpeg wheel (or IMAGEIO_FFMPEG_EXE)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise SlimError("video needs the imageio-ffmpeg package", hint="pip install imageio-ffmpeg") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise SlimError(f"no ffmpeg program found: {exc}",
                        hint="reinstall imageio-ffmpeg, or set IMAGEIO_FFMPEG_EXE to an ffmpeg program") from None


@functools.cache
def video_codec() -> str:
    """"libx264" (H.264) when the ffmpeg program has it, else "mpeg4", which every build has."""
    try:
        out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return "mpeg4"
    return "libx264" if re.search(r"^\s*V\S*\s+libx264\s", out, re.M) else "mpeg4"


def _ffmpeg(args: list[str], what: str, *, feed: Any = None, hint: str = "check the file") -> str:
    """Run ffmpeg with ``args``, ``feed`` (an iterable of byte strings) piped to its stdin; its log on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *([] if feed is not None else ["-nostdin"]), *args]
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if feed is not None else subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=log)
        except OSError as exc:
            raise SlimError(f"cannot start ffmpeg to {what}: {exc.strerror or exc}",
                            hint="reinstall imageio-ffmpeg") from None
        try:
            if feed is not None:
                try:
                    for chunk in feed:
                        proc.stdin.write(chunk)
                except BrokenPipeError:
                    pass  # ffmpeg stopped early: its log says why
                finally:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass
            rc = proc.wait(timeout=FFMPEG_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise SlimError(f"ffmpeg took over {FFMPEG_TIMEOUT_S} s to {what}", hint="try a shorter video") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        log.seek(0)
        text = log.read().decode("utf-8", "replace").strip()
    if rc != 0:
        first = [ln for ln in text.splitlines() if ln.strip()][:1] or [f"exit code {rc}"]  # the cause, usually
        raise SlimError(f"ffmpeg could not {what}: {first[0][:300]}", hint=hint)
    return text


def _codec_args(with_audio: bool, rate: int = 0) -> list[str]:
    codec = video_codec()
    args = ["-c:v", codec, *(["-preset", "veryfast", "-crf", "18"] if codec == "libx264" else ["-q:v", "3"]),
            "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    if with_audio:
        args += ["-c:a", "aac", "-b:a", "160k"]
        if rate and rate not in _AAC_RATES:
            args += ["-ar", str(min((r for r in _AAC_RATES if r >= rate), default=96000))]
    return args + ["-movflags", "+faststart", "-f", "mp4", "-y"]


def save_video(media: VideoMedia, path: str | os.PathLike) -> Path:
    """Write the video to ``path`` as an MP4 (H.264 when ffmpeg has it, else MPEG-4 part 2; AAC sound), atomically.

    Frames in memory are encoded with their ``audio``; a video file is copied (an .mp4) or converted."""
    import numpy as np

    from .io import _umask, regular_file_stat

    out = Path(path).expanduser()
    if out.suffix.lower() != ".mp4":
        raise SlimError(f"{out.name} does not end in .mp4", hint="give the video a name ending in .mp4")
    if media.frames is None and not media.path:
        raise SlimError("this video has neither frames nor a file", hint="generate the preview again")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".mp4", dir=out.parent)
        os.close(fd)
    except OSError as exc:
        raise SlimError(f"cannot write {out}: {exc.strerror or exc}", hint="choose a writable location") from None
    try:
        if media.frames is None:
            src = Path(media.path).expanduser()
            regular_file_stat(src, "video")
            if src.resolve() == out.resolve():
                os.unlink(tmp)
                return out
            if src.suffix.lower() == ".mp4":
                shutil.copyfile(src, tmp)
            else:
                _ffmpeg(["-i", str(src.resolve()), "-map", "0:v:0", "-map", "0:a:0?", *_codec_args(True), tmp],
                        f"convert {src.name} to MP4", hint="give a video file ffmpeg can read")
        else:
            frames = video_frames(media)
            t, h, w, _ = frames.shape
            with tempfile.TemporaryDirectory(prefix="slimgui-video-") as td:
                args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", f"{_fps(media.fps):.6g}",
                        "-i", "-"]
                rate = 0
                if media.audio is not None:
                    wav = Path(td) / "audio.wav"
                    wav.write_bytes(wav_bytes(media.audio))
                    rate = _sample_rate(media.audio.sample_rate)
                    args += ["-i", str(wav), "-map", "0:v:0", "-map", "1:a:0"]
                feed = (np.ascontiguousarray(frames[i]).tobytes() for i in range(t))
                _ffmpeg([*args, *_codec_args(media.audio is not None, rate), tmp], f"encode {out.name}", feed=feed,
                        hint="check the frames and the frame rate")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise SlimError(f"cannot write {out}: {exc.strerror or exc}", hint="choose a writable location") from None
        raise
    return out


def _video_source(source: str | os.PathLike | VideoMedia) -> Path:
    from .io import regular_file_stat

    p = Path(source.path if isinstance(source, VideoMedia) else source).expanduser()
    regular_file_stat(p, "video")
    return p.resolve()


def _open_video(p: Path) -> tuple[Any, dict[str, Any]]:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise SlimError("video needs the imageio-ffmpeg package", hint="pip install imageio-ffmpeg") from None
    ffmpeg_exe()
    gen = imageio_ffmpeg.read_frames(str(p))
    try:
        meta = next(gen)
    except Exception:  # OSError, or the header parser's IndexError when there is no video stream
        gen.close()
        raise SlimError(f"{p.name} is not a video ffmpeg can read", hint="give an MP4, MOV, MKV, AVI or WebM file") from None
    return gen, meta


def _video_meta(path: Any) -> dict[str, Any]:
    gen, meta = _open_video(_video_source(path))
    gen.close()
    return meta


def read_frames(source: str | os.PathLike | VideoMedia, *, max_frames: int | None = None,
                limit_bytes: int = MAX_VIDEO_BYTES) -> tuple[Any, float]:
    """The frames (T×H×W×3 uint8) and frame rate of a video file or :class:`VideoMedia`; at most ``max_frames``,
    and SlimError rather than holding more than ``limit_bytes`` of decoded frames."""
    import numpy as np

    if isinstance(source, VideoMedia) and source.frames is not None:
        return video_frames(source)[:max_frames], _fps(source.fps)
    if isinstance(source, VideoMedia) and not source.path:
        raise SlimError("this video has neither frames nor a file", hint="generate the preview again")
    p = _video_source(source)
    gen, meta = _open_video(p)
    frames = []
    try:
        w, h = meta["size"]
        room = max(1, limit_bytes // max(1, w * h * 3))
        for raw in gen:
            if max_frames is not None and len(frames) >= max_frames:
                break
            if len(frames) >= room:
                raise SlimError(f"{p.name} has more frames than fit in {limit_bytes / 2**30:.3g} GiB",
                                hint="read fewer frames (max_frames) or give a shorter video")
            frames.append(np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3))
    except SlimError:
        raise
    except Exception as exc:  # RuntimeError from a stream cut short, ...
        raise SlimError(f"cannot decode {p.name}: {exc}", hint="the file may be damaged; give another") from None
    finally:
        gen.close()
    if not frames:
        raise SlimError(f"{p.name} holds no video frames", hint="give a video with at least one frame")
    fps = meta.get("fps") or 0
    return np.stack(frames), _fps(fps if fps else 25.0)


def extract_audio(source: str | os.PathLike | VideoMedia) -> AudioMedia:
    """The first sound track of a video file (or a :class:`VideoMedia`'s ``audio``); SlimError when it has none."""
    if isinstance(source, VideoMedia) and source.frames is not None:
        if source.audio is None:
            raise SlimError("this video has no sound", hint="give the previewer's audio with the frames")
        return source.audio
    p = _video_source(source)
    with tempfile.TemporaryDirectory(prefix="slimgui-audio-") as td:
        wav = Path(td) / "audio.wav"
        try:
            _ffmpeg(["-i", str(p), "-map", "0:a:0", "-vn", "-c:a", "pcm_s16le", "-f", "wav", "-y", str(wav)],
                    f"read the sound of {p.name}", hint="give a video file ffmpeg can read")
        except SlimError as exc:
            if "matches no streams" in exc.message or "does not contain any stream" in exc.message:
                raise SlimError(f"{p.name} has no sound track", hint="give a video with sound") from None
            raise
        media = load_wav(wav)
    media.path, media.title = None, p.stem
    return media


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
