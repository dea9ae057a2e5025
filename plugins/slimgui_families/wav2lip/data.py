"""Talking-face data: a face video or still image read for the preview, and folders of talking-face videos (one
speaking face each, with its sound) cut into Wav2Lip's training samples — 96×96 face crops (the face found in every
frame, :mod:`.face`), the masked frame + a reference frame, the frame's mel chunk.  ``demo:wav2lip`` names the
demo's clips (:mod:`.demo`).  Frames are BGR uint8 (OpenCV's order, what Wav2Lip's code feeds its generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slimgui.core.errors import SlimError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}
MAX_FRAMES = 25 * 120  # two minutes at 25 fps
DEMO = "demo:wav2lip"


def read_face_source(path: str | Path, max_frames: int = MAX_FRAMES) -> tuple[np.ndarray, float, bool]:
    """(BGR frames T×H×W×3, fps, still) of a face video or image."""
    import cv2

    from slimgui.core.io import regular_file_stat
    from slimgui.core.media import read_frames

    p = Path(path).expanduser()
    regular_file_stat(p, "face image or video")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise SlimError(f"{p.name} is not an image OpenCV can read", hint="give a PNG or JPEG of a face")
        return img[None], 25.0, True
    frames, fps = read_frames(p, max_frames=max_frames)
    return np.ascontiguousarray(frames[..., ::-1]), float(fps), False


def video_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def clip_of_video(path: Path, box: str | None = None):
    """One :class:`~.demo.TalkingClip` of a video with sound: its faces cropped to 96×96."""
    from slimgui.core.media import extract_audio

    from .audio import SAMPLE_RATE, melspectrogram, resample
    from .demo import TalkingClip
    from .face import crop, track

    frames, fps, _ = read_face_source(path)
    sound = extract_audio(str(path))
    x = np.asarray(sound.samples, dtype=np.float32)
    x = x.mean(axis=1) if x.ndim > 1 else x
    wav = resample(x, int(sound.sample_rate), SAMPLE_RATE)
    t = track(frames, box)
    faces = np.stack([crop(f, b) for f, b in zip(frames, t.boxes)])
    n = min(len(faces), int(len(wav) / SAMPLE_RATE * fps))
    if n < 5:
        raise SlimError(f"{path.name} has under 5 frames with sound", hint="give videos of at least a fifth of a second")
    return TalkingClip(faces[:n], wav, melspectrogram(wav), fps, None, path.stem)


def clips_for(path: str, split: str = "all", box: str | None = None) -> list:
    """The talking-face clips of ``path``: ``demo:wav2lip`` (the demo's; ``split`` train / test / all) or a folder
    of videos with sound (or one video)."""
    if str(path) == DEMO:
        from .demo import load_clips

        return load_clips(split)
    p = Path(path).expanduser()
    if p.is_file():
        return [clip_of_video(p, box)]
    if not p.is_dir():
        raise SlimError(f"{path} is neither a video nor a folder", hint="give a folder of talking-face videos with sound")
    files = video_files(p)
    if not files:
        raise SlimError(f"{p} holds no videos ({', '.join(sorted(VIDEO_SUFFIXES))})",
                        hint="give a folder of talking-face videos with sound")
    return [clip_of_video(f, box) for f in files]


def frame_batches(clips: list, samples: int = 32, batch: int = 16, seed: int = 0) -> list[dict]:
    """``samples`` random frames (seeded) as ``{"mel", "face", "target"}`` batches of ``batch``."""
    from .demo import gen_batch

    rng = np.random.default_rng(seed)
    out = []
    left = samples
    while left > 0:
        n = min(batch, left)
        m, f, y = gen_batch(clips, n, rng)
        out.append({"mel": m, "face": f, "target": y})
        left -= n
    return out
