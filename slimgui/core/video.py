"""Video media as files: MP4 (H.264 + AAC) written and read through the ffmpeg program of ``imageio-ffmpeg``.

:func:`save_video` (frames piped in as raw RGB, the sound muxed from a WAV), :func:`read_frames` (frames and
frame rate back, with a memory limit), :func:`extract_audio` (the sound track as :class:`~.media.AudioMedia`),
:func:`video_frames` (a frame array checked) and :func:`ffmpeg_exe` (the program).  Why that ffmpeg is said in
:mod:`slimgui.core.media`, which re-exports these names.  No Qt here.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .errors import SlimError
from .media import AudioMedia, VideoMedia, _sample_rate, load_wav, wav_bytes  # noqa: F401

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

    from .io import atomic_file, regular_file_stat

    out = Path(path).expanduser()
    if out.suffix.lower() != ".mp4":
        raise SlimError(f"{out.name} does not end in .mp4", hint="give the video a name ending in .mp4")
    if media.frames is None and not media.path:
        raise SlimError("this video has neither frames nor a file", hint="generate the preview again")
    if media.frames is None:
        src = Path(media.path).expanduser()
        regular_file_stat(src, "video")
        if src.resolve() == out.resolve():
            return out
    with atomic_file(out, suffix=".mp4") as tmp:
        if media.frames is None:
            if src.suffix.lower() == ".mp4":
                shutil.copyfile(src, tmp)
            else:
                _ffmpeg(["-i", str(src.resolve()), "-map", "0:v:0", "-map", "0:a:0?", *_codec_args(True), str(tmp)],
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
                _ffmpeg([*args, *_codec_args(media.audio is not None, rate), str(tmp)], f"encode {out.name}", feed=feed,
                        hint="check the frames and the frame rate")
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


