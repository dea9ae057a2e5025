"""Lip-sync measured with a SyncNet expert, as the Wav2Lip papers report it (Joon Son Chung's ``syncnet_python``):
for every 5-frame window of a video (lower halves of the 96×96 faces) and every audio offset from −``vshift`` to
+``vshift`` frames, the distance between the expert's face and audio embeddings; averaged over the windows per offset,

- LSE-D = the smallest mean distance (over the offsets; lower is better),
- LSE-C = the median mean distance minus that (the confidence; higher is better),
- the AV offset = the offset of the smallest distance (0 for a video in sync),
- ``sync_distance`` = the mean distance at offset 0 (what shifting the audio makes worse; SlimGUI's addition).

Frames here are tensors (T, 3, 96, 96) in [0, 1] (BGR, as Wav2Lip's code feeds them), mel chunks (T, 1, 80, 16).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def embed(expert, frames: torch.Tensor, mels: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(face embeddings of the windows starting at 0 … T−5, audio embeddings of the chunks 0 … T−5)."""
    n = len(frames) - 4
    if n < 1:
        raise ValueError("lip-sync needs at least 5 frames")
    size = frames.shape[-2]
    halves = frames[:, :, size // 2:]
    f_out, a_out = [], []
    with torch.no_grad():
        for s in range(0, n, batch):
            idx = range(s, min(n, s + batch))
            win = torch.stack([torch.cat([halves[i + k] for k in range(5)], 0) for i in idx])
            a, f = expert(mels[s:s + len(idx)], win)
            f_out.append(f)
            a_out.append(a)
    return torch.cat(f_out), torch.cat(a_out)


def lse(expert, frames: torch.Tensor, mels: torch.Tensor, vshift: int = 15) -> dict[str, float]:
    """LSE-D, LSE-C, the AV offset and the distance at offset 0 of one video (module docstring)."""
    face, audio = embed(expert, frames, mels)
    n = len(face)
    vshift = max(0, min(vshift, n - 1))
    pad = torch.nn.functional.pad(audio.T, (vshift, vshift), mode="replicate").T
    dists = torch.stack([torch.linalg.vector_norm(face[i:i + 1] - pad[i:i + 2 * vshift + 1], dim=1) for i in range(n)])
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    return {"lse_d": float(minval), "lse_c": float(torch.median(mdist) - minval), "av_offset": int(vshift - minidx),
            "sync_distance": float(mdist[vshift]), "windows": n}


def mouth_opening(frames: torch.Tensor) -> np.ndarray:
    """Share of dark pixels (all channels < 0.25) in the lower face (rows 55–90 %, columns 20–80 % of the crop) of
    each frame: how open a drawn mouth is."""
    h, w = frames.shape[-2:]
    region = frames[:, :, int(0.55 * h):int(0.9 * h), int(0.2 * w):int(0.8 * w)]
    return (region.amax(1) < 0.25).float().flatten(1).mean(1).numpy()


def still_inputs(face: np.ndarray, n: int) -> torch.Tensor:
    """(n, 6, H, W) generator inputs of one BGR uint8 face: its masked copy and itself (Wav2Lip's inference)."""
    masked = face.copy()
    masked[face.shape[0] // 2:] = 0
    x = torch.from_numpy(np.concatenate([masked, face], axis=2)).permute(2, 0, 1).float() / 255.0
    return x[None].expand(n, -1, -1, -1).contiguous()


def generate(gen, faces: torch.Tensor, mels: torch.Tensor, batch: int = 64) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for s in range(0, len(mels), batch):
            out.append(gen(mels[s:s + batch], faces[s:s + batch]))
    return torch.cat(out)


def clip_mels(clip) -> torch.Tensor:
    from .audio import chunk_at

    return torch.from_numpy(np.stack([chunk_at(clip.mel, i, clip.fps) for i in range(len(clip.frames))]))[:, None]


def sync_report(gen, expert, clips, shift: int = 10) -> dict[str, Any]:
    """On each clip: the generator speaks the clip's audio from a still face with its mouth closed; then the
    expert's LSE-D / LSE-C of the result with its audio and with the audio ``shift`` frames late, and how well the
    generated mouth opening follows the clip's (correlation)."""
    from .demo import draw_face, look_of

    rows = []
    gen = gen.eval()
    expert = expert.eval()
    for k, clip in enumerate(clips):
        mels = clip_mels(clip)
        look = look_of(len(clips) + k + 100)  # a face the generator never saw
        still = draw_face(0.0, look)
        out = generate(gen, still_inputs(still, len(mels)), mels)
        good = lse(expert, out, mels)
        late = lse(expert, out, torch.roll(mels, shifts=shift, dims=0))
        opening = mouth_opening(out)
        corr = float(np.corrcoef(opening, clip.openness)[0, 1]) if np.std(opening) > 0 else 0.0
        rows.append({"lse_d": good["lse_d"], "lse_c": good["lse_c"], "sync_distance": good["sync_distance"],
                     "av_offset": good["av_offset"], "shifted_sync_distance": late["sync_distance"],
                     "mouth_corr": corr, "frames": len(mels)})
    mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}
    mean["clips"] = len(rows)
    mean["shift_frames"] = shift
    return mean
