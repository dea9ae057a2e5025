"""The ``lipsync`` evaluator: on talking-face videos with their sound (or the demo's held-out clips), the generator
redraws every frame's mouth from the audio as Wav2Lip's inference does (the frame masked below the middle + the frame
itself as the reference); then

- LSE-D / LSE-C (and the distance at offset 0) of its frames with the audio, by a SyncNet expert (:mod:`.sync`),
- PSNR / SSIM of its frames to the original generator's (the one it was slimmed from), on the same inputs,
- frames per second of the generator alone (torch, this machine, batches of 16).

The expert: ``--expert`` (Wav2Lip's ``lipsync_expert.pth`` or a SlimGUI expert folder), else the demo's for the demo
and the generators made from it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimgui.core.errors import SlimError
from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .data import DEMO


def load_expert(path: str | Path):
    """A SyncNet expert from a SlimGUI expert folder (``slimgui_syncnet.json`` + safetensors) or a SyncNet_color
    checkpoint (``{"state_dict": ...}`` or plain, .pth through ``torch.load(weights_only=True)``, or safetensors)."""
    from . import probe
    from .modeling import SyncNet, SyncNetConfig

    p = Path(path).expanduser()
    if not p.exists():
        raise SlimError(f"the expert {path} does not exist", hint="give lipsync_expert.pth or an expert folder")
    side = probe.read_sidecar(p, probe.EXPERT_CONFIG) if p.is_dir() else {}
    file = p if p.is_file() else next(iter(sorted((f for f in p.iterdir() if f.suffix.lower() in probe.SUFFIXES),
                                                  key=lambda f: (f.suffix != ".safetensors", f.name))), None)
    if file is None:
        raise SlimError(f"{p} holds no expert weights", hint="give lipsync_expert.pth or an expert folder")
    state = probe.read_state(file)
    shapes = probe.shapes_of(state)
    kind = probe.kind_of(shapes)
    if kind == "generator":
        raise SlimError(f"{file.name} is a Wav2Lip generator, not a SyncNet expert",
                        hint="give Wav2Lip's lipsync_expert.pth as the expert")
    cfg = SyncNetConfig.from_json(side["config"]) if side.get("config") else probe.infer_syncnet(shapes, file.name)
    net = SyncNet(cfg)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return net.eval()


def expert_for(model, expert: str | None):
    """The expert to use: ``expert``, else the one the model's folder names (the demo's), else None."""
    if expert:
        return load_expert(expert)
    from .adapter import _expert_path
    from .preview import is_demo

    e = _expert_path(model)
    if e is None and is_demo(model):
        from .demo import EXPERT_DIR, demo_model_dir

        e = str(demo_model_dir() / EXPERT_DIR)
    return load_expert(e) if e else None


def own_inputs(clip) -> torch.Tensor:
    """(T, 6, 96, 96) Wav2Lip inference inputs of a clip: each frame masked + itself."""
    f = clip.frames
    masked = f.copy()
    masked[:, f.shape[1] // 2:] = 0
    return torch.from_numpy(np.concatenate([masked, f], axis=3)).permute(0, 3, 1, 2).float() / 255.0


def lipsync_quality(model, data_path: str | None = None, *, expert: str | None = None, max_clips: int | None = None,
                    vshift: int = 15, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                    **_: Any) -> dict[str, Any]:
    from slimgui.core.model import original_of
    from slimgui_families.gan.data import psnr, ssim

    from .data import clips_for
    from .preview import is_demo
    from .sync import clip_mels, generate, lse

    t0 = time.perf_counter()
    path = data_path if data_path and str(data_path).strip() else (DEMO if is_demo(model) else None)
    if path is None:
        raise SlimError("this evaluation needs talking-face videos with their sound",
                        hint="pass --data FOLDER (videos of one speaking face each)")
    clips = clips_for(path, split="test")[:max_clips]
    net = expert_for(model, expert)
    if net is None:
        raise SlimError("lip-sync is measured with a SyncNet expert, and none was given",
                        hint="pass --expert lipsync_expert.pth (Wav2Lip's) or a SlimGUI expert folder")
    original = original_of(model)
    module = model.module.eval()
    rows, ps, ss = [], [], []
    frames_total, gen_seconds = 0, 0.0
    for k, clip in enumerate(clips):
        check(cancel)
        x, mels = own_inputs(clip), clip_mels(clip)
        t = time.perf_counter()
        out = generate(module, x, mels, batch=16)
        gen_seconds += time.perf_counter() - t
        frames_total += len(out)
        rows.append(lse(net, out, mels, vshift=vshift))
        if original is not None:
            ref = generate(original.module.eval(), x, mels, batch=16)
            ps.append(psnr(out * 2 - 1, ref * 2 - 1).clamp_max(100))
            ss.append(ssim(out * 2 - 1, ref * 2 - 1))
        report(progress, k + 1, len(clips), "lip-sync")
    res: dict[str, Any] = {
        "lse_d": float(np.mean([r["lse_d"] for r in rows])), "lse_c": float(np.mean([r["lse_c"] for r in rows])),
        "sync_distance": float(np.mean([r["sync_distance"] for r in rows])),
        "av_offset": float(np.mean([r["av_offset"] for r in rows])), "clips": len(rows), "frames": frames_total,
        "frames_per_second": frames_total / max(gen_seconds, 1e-9), "data": "the demo's held-out clips" if path == DEMO else path,
        "threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - t0, 3),
    }
    if ps:
        res["psnr_to_original"] = float(torch.cat(ps).mean())
        res["ssim_to_original"] = float(torch.cat(ss).mean())
        res["original"] = original.source
    return res
