"""The talking-face preview: a face video or still image + speech → a lip-synced video with the sound, the original
generator's and this one's side by side (the original is the generator this one was slimmed from; a generator that
was not slimmed shows its own only).  Wav2Lip's inference, step by step: the speech's mel spectrogram
(:mod:`.audio`), one 16-frame chunk per video frame (frame i's starts at ``int(i · 80 / fps)``), the face found and
smoothed in every frame (:mod:`.face`), each 96×96 crop masked below the middle and stacked with itself as the
reference, the generated face pasted back into its box.  A still image is repeated; a video shorter than the speech
loops, a longer one is cut to the speech (both said in ``meta["notes"]``); silent speech gives a closed mouth (said
too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimgui.core.errors import SlimError
from slimgui.core.media import AudioMedia, VideoMedia
from slimgui.core.model import original_of
from slimgui.core.progress import CancelToken, ProgressFn, check, report

GAP = 6


def is_demo(model) -> bool:
    from slimgui.core.model import origin_with

    return bool(model.extra.get("demo")) or origin_with(model.source, "slimgui_demo.json") is not None


def default_inputs(model, face: str | None, audio: str | None) -> tuple[str, str]:
    if face and audio:
        return face, audio
    if not is_demo(model):
        raise SlimError("this preview needs a face and a speech recording",
                        hint="pass --face VIDEO_OR_IMAGE and --audio WAV")
    from slimgui.core.model import origin_with

    from .demo import MARKER, N_CLIPS, SAMPLE_FACE, ensure_demo

    root = origin_with(model.source, MARKER) if Path(model.source).is_dir() else None
    if root is not None and (root / SAMPLE_FACE).is_file() and (root / "clips" / f"{N_CLIPS - 1:02d}.flac").is_file():
        d = {"face": str(root / SAMPLE_FACE), "audio": str(root / "clips" / f"{N_CLIPS - 1:02d}.flac")}
    else:
        d = ensure_demo()
    return face or d["face"], audio or d["audio"]


def prepare(face_path: str, audio_path: str, *, box: str | None = None, max_seconds: float = 20.0) -> dict[str, Any]:
    """Everything the generators need, computed once: frames, boxes, crops, mel chunks, the speech, notes."""
    from .audio import SAMPLE_RATE, is_silent, load_speech, mel_chunks, melspectrogram
    from .data import read_face_source
    from .face import crop, track

    wav = load_speech(audio_path)
    wav = wav[:int(max_seconds * SAMPLE_RATE)]
    frames, fps, still = read_face_source(face_path)
    notes = []
    if is_silent(wav):
        notes.append("the speech is silent: the mouth stays still")
    mel = melspectrogram(wav)
    chunks = mel_chunks(mel, fps)
    n = len(chunks)
    if still:
        frames = np.repeat(frames, 1, axis=0)
    elif len(frames) < n:
        notes.append(f"the video ({len(frames)} frames) is shorter than the speech ({n} frames): it loops")
    elif len(frames) > n:
        notes.append(f"the video ({len(frames)} frames) is longer than the speech ({n} frames): cut to it")
        frames = frames[:n]
    t = track(frames, box)
    if t.missing:
        notes.append(f"no face found in {len(t.missing)} of {len(frames)} frames (first: frame {t.missing[0]}): "
                     "they use the nearest frame's box")
    crops = np.stack([crop(f, b) for f, b in zip(frames, t.boxes)])
    wav_out = wav[:int(round(n / fps * SAMPLE_RATE))]
    return {"frames": frames, "boxes": t.boxes, "crops": crops, "chunks": chunks, "fps": fps, "wav": wav_out,
            "notes": notes, "still": still, "missing": t.missing, "detector": t.detector, "n": n}


def lipsync(module: torch.nn.Module, prep: dict[str, Any], *, batch: int = 32, progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> np.ndarray:
    """The generated faces (N, 96, 96, 3) BGR uint8, frame i from crop i mod T and chunk i."""
    crops, chunks, n = prep["crops"], prep["chunks"], prep["n"]
    out = []
    module = module.eval()
    s = crops.shape[1]
    with torch.no_grad():
        for start in range(0, n, batch):
            check(cancel)
            idx = [i % len(crops) for i in range(start, min(n, start + batch))]
            faces = crops[idx]
            masked = faces.copy()
            masked[:, s // 2:] = 0
            x = torch.from_numpy(np.concatenate([masked, faces], axis=3)).permute(0, 3, 1, 2).float() / 255.0
            m = torch.from_numpy(chunks[start:start + len(idx)])[:, None]
            y = module(m, x)
            out.append((y.permute(0, 2, 3, 1).clamp(0, 1).numpy() * 255).round().astype(np.uint8))
            report(progress, min(n, start + batch), n, "lip-syncing")
    return np.concatenate(out)


def composite(prep: dict[str, Any], faces: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) RGB frames: each face pasted back into its frame."""
    from .face import paste

    frames, boxes = prep["frames"], prep["boxes"]
    out = np.empty((len(faces), *frames.shape[1:]), np.uint8)
    for i, f in enumerate(faces):
        k = i % len(frames)
        out[i] = paste(frames[k], f, boxes[k])[..., ::-1]
    return out


def side_by_side(videos: list[np.ndarray]) -> np.ndarray:
    n, h, w, _ = videos[0].shape
    canvas = np.full((n, h, len(videos) * (w + GAP) - GAP, 3), 255, np.uint8)
    for k, v in enumerate(videos):
        canvas[:, :, k * (w + GAP):k * (w + GAP) + w] = v
    return canvas


def lipsync_preview(model, *, face: str | None = None, audio: str | None = None, face_box: str | None = None,
                    max_seconds: float = 20.0, label: str | None = None, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None, **_: Any) -> VideoMedia:
    from .audio import SAMPLE_RATE

    box = face_box
    own_face = not face
    face, audio = default_inputs(model, face, audio)
    notes = []
    if own_face and not box:
        from .demo import sample_face_box
        from .face import detector_available

        if not detector_available():
            box = sample_face_box()
            notes.append(f"this OpenCV has no face cascades: the demo face's known box {box} is used")
    prep = prepare(face, audio, box=box, max_seconds=max_seconds)
    prep["notes"] = notes + prep["notes"]
    original = original_of(model)
    columns = []
    models = [("original", original)] if original is not None else []
    models.append((label or "this model", model))
    for k, (name, m) in enumerate(models):
        def sub(done, total, msg="", k=k, name=name):
            report(progress, k * total + done, len(models) * total, f"{msg} ({name})")
        faces = lipsync(m.module, prep, progress=sub, cancel=cancel)
        columns.append((name, composite(prep, faces)))
    frames = side_by_side([c[1] for c in columns]) if len(columns) > 1 else columns[0][1]
    sound = AudioMedia(prep["wav"].astype(np.float32), SAMPLE_RATE, title=Path(audio).stem)
    title = " | ".join(n for n, _ in columns)
    meta = {"columns": [n for n, _ in columns], "frames": prep["n"], "fps": prep["fps"], "notes": prep["notes"],
            "frames_without_face": len(prep["missing"]), "detector": prep["detector"], "face": str(face),
            "audio": str(audio), "still": prep["still"],
            "models": [{"label": n, "model": m.source} for n, m in models]}
    return VideoMedia(frames=frames, fps=prep["fps"], audio=sound, title=title, meta=meta)
