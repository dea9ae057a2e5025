"""The wav2lip family's healing method ``kd`` (the unified compression's distillation, no adversarial loss), as a
:class:`~slimgui.core.train.TrainTask` the core loop runs (schedule, checkpoints, resume, cancel are the core's).

Samples are 5-frame windows of the talking-face clips (a folder of videos with sound, or the demo's training
clips): for each, the 5 frames masked below the middle with a reference frame of the same clip (a fixed, seeded other
frame) and their mel chunks.  Per batch (S the student, T the original generator, E the SyncNet expert)::

    kd_out · |S(x) − T(x)|₁ + kd_feat · mean_l MSE(S_l(x), T_l(x)[kept channels])
      + kd_sync · −log cos(E_audio(mel), E_face(lower halves of S's 5 frames)) + kd_target · |S(x) − y|₁

over every stage output l both generators have (the 7 face-encoder stages, the audio embedding, the 7 decoder
blocks), the teacher's channels those the pruning kept (``slimgui_wav2lip.json``'s ``config.extra.kept``).  The sync
term needs an expert: ``--expert``, else the demo's for the demo's generators, else it is left out (said in the
job's info).  Validation: L1 to the original's frames on every k-th window (``val_l1_to_original``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimgui.core.errors import SlimError
from slimgui.core.metrics import Metric
from slimgui.core.model import LoadedModel, made_from
from slimgui.core.options import from_dict
from slimgui.core.train import TrainConfig, TrainTask

from .data import DEMO, clips_for
from .options import DistillOptions, TalkDataOptions

VAL = Metric("val_l1_to_original", "Validation L1 to original", better="lower", fmt="{:.4f}",
             help="mean |S(x) − T(x)| of the frames on the held-out windows")
WINDOW = 5


def _saver(adapter: Any, student: LoadedModel, method: str):
    source = Path(student.source)

    def save(model: nn.Module, out_dir: str) -> None:
        out = Path(out_dir)
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        healed = LoadedModel(family=student.family, adapter=student.adapter, source=str(source), module=model.eval(),
                             config=model.config, has_weights=True, impl=adapter,
                             extra={"demo": student.extra.get("demo"), "expert": student.extra.get("expert")})
        adapter.save(healed, str(tmp))
        if source.is_dir() and (source / "slimgui_plan.json").is_file():
            shutil.copy(source / "slimgui_plan.json", tmp / "slimgui_plan.json")
        (tmp / "slimgui_healed_from.json").write_text(json.dumps({"model": str(source), "method": method}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    return save


class _Tap:
    """Stage outputs of a generator: ``face.i``, ``audio``, ``dec.i``."""

    def __init__(self, module):
        self.out: dict[str, torch.Tensor] = {}
        mods = {f"face.{i}": m for i, m in enumerate(module.face_encoder_blocks)}
        mods["audio"] = module.audio_encoder
        mods.update({f"dec.{i}": m for i, m in enumerate(module.face_decoder_blocks)})
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in mods.items()]

    def _hook(self, name):
        def hook(_m, _i, out):
            self.out[name] = out
        return hook


def feature_pairs(s_cfg, t_cfg) -> list[tuple[str, list[int] | None]]:
    """(stage, teacher channels to compare or None for all) of every stage output both generators have."""
    from .pruning import groups

    kept = (s_cfg.extra or {}).get("kept") or {}
    parent = (s_cfg.extra or {}).get("parent") or {}
    same = bool(parent) and {k: v for k, v in parent.items() if k != "extra"} == \
        {k: v for k, v in t_cfg.to_json().items() if k != "extra"}
    t_groups = groups(t_cfg)
    out = []

    def last_group(cfg_blocks, prefix):
        j = len(cfg_blocks) - 1
        bid = f"{prefix}{j}"
        return next(g for g, bids in t_groups.items() if bid in bids)
    stages = [(f"face.{i}", t_cfg.face[i], s_cfg.face[i], f"face.{i}.") for i in range(len(t_cfg.face))]
    stages.append(("audio", t_cfg.audio, s_cfg.audio, "audio."))
    stages += [(f"dec.{i}", t_cfg.decoder[i], s_cfg.decoder[i], f"dec.{i}.") for i in range(len(t_cfg.decoder))]
    for name, t_blocks, s_blocks, prefix in stages:
        g = last_group(t_blocks, prefix)
        sw, tw = s_blocks[-1].c, t_blocks[-1].c
        if same and g in kept and len(kept[g]) == sw:
            out.append((name, list(kept[g])))
        elif sw == tw:
            out.append((name, None))
    return out


def _windows(clips: list, seed: int = 0) -> torch.Tensor:
    """(N, 3) rows of (clip, first frame, reference frame) of every 5-frame window (stride 2), seeded references."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, clip in enumerate(clips):
        t = len(clip.frames)
        for i in range(0, t - WINDOW + 1, 2):
            ref = int(rng.integers(t))
            rows.append((c, i, ref))
    return torch.tensor(rows, dtype=torch.long)


def _batch(clips: list, rows: torch.Tensor):
    """(mel (B·5, 1, 80, 16), faces (B·5, 6, 96, 96), targets (B·5, 3, 96, 96)), frame-major within each window."""
    from .audio import chunk_at

    mels, faces, ys = [], [], []
    for c, i, ref in rows.tolist():
        clip = clips[c]
        for k in range(WINDOW):
            f = clip.frames[i + k]
            masked = f.copy()
            masked[f.shape[0] // 2:] = 0
            faces.append(np.concatenate([masked, clip.frames[ref]], axis=2))
            ys.append(f)
            mels.append(chunk_at(clip.mel, i + k, clip.fps))
    x = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(np.stack(ys)).permute(0, 3, 1, 2).float() / 255.0
    return torch.from_numpy(np.stack(mels))[:, None], x, y


def build_kd(adapter: Any, cfg: TrainConfig, options: DistillOptions | None, *, registry: Any = None) -> TrainTask:
    """Distillation from the original generator (module docstring)."""
    from .evaluate import expert_for
    from .preview import is_demo

    options = options if options is not None else DistillOptions()
    if options.kd_out == options.kd_feat == options.kd_sync == options.kd_target == 0:
        raise SlimError("--kd-out, --kd-feat, --kd-sync and --kd-target are all 0: distillation would learn nothing")
    student = adapter.load(cfg.model)
    if not student.has_weights:
        raise SlimError(f"{cfg.model} has no weights to retrain")
    origin = made_from(student.source) if Path(student.source).is_dir() else None
    teacher_path = cfg.teacher or (str(origin) if origin is not None else None)
    if not teacher_path:
        raise SlimError("distillation needs a teacher: this generator was not pruned by SlimGUI from another",
                        hint="pass --teacher ORIGINAL_GENERATOR")
    teacher = adapter.load(teacher_path)
    if teacher.config.image_size != student.config.image_size:
        raise SlimError(f"the teacher {teacher_path} makes {teacher.config.image_size}-pixel faces, the student "
                        f"{student.config.image_size}-pixel ones", hint="give the generator the student was pruned from")
    data_opts = from_dict(TalkDataOptions, {k: v for k, v in (cfg.options or {}).items() if k == "face_box"},
                          where="retraining option")
    if cfg.data:
        clips = [c for path in cfg.data for c in clips_for(path, box=data_opts.face_box)]
        source = ", ".join(cfg.data)
    elif is_demo(student):
        clips, source = clips_for(DEMO, split="train"), "the demo's training clips"
    else:
        raise SlimError("no talking-face videos given", hint="pass --data FOLDER (videos of one speaking face each, "
                        "with their sound)")
    rows = _windows(clips, cfg.seed)
    every = max(2, round(1 / cfg.val_fraction))
    val = rows[[i for i in range(len(rows)) if i % every == every - 1]]
    train = rows[[i for i in range(len(rows)) if i % every != every - 1]]
    expert = expert_for(student, options.expert) if options.kd_sync > 0 else None
    if expert is not None:
        for p in expert.parameters():
            p.requires_grad_(False)
    t_module = teacher.module.eval()
    for p in t_module.parameters():
        p.requires_grad_(False)
    module = student.module
    for p in module.parameters():
        p.requires_grad_(True)
    module.train()
    pairs = feature_pairs(student.config, teacher.config)
    s_tap, t_tap = _Tap(module), _Tap(t_module)
    info: dict[str, Any] = {
        "items": "frames", "items_per_sample": WINDOW, "data": source, "train_sequences": len(train),
        "val_sequences": len(val), "activation_bytes_per_sample": WINDOW * 96 * 96 * 4 * 60,
        "teacher": str(teacher_path), "teacher_params": sum(p.numel() for p in t_module.parameters()),
        "feature_stages": [n for n, _ in pairs], "sync_loss": expert is not None,
        "val_metric": "val_l1_to_original", "metrics": [VAL.to_json()],
        "too_little_data": "give more or longer videos", "too_much_memory": "lower --batch-size",
    }
    if options.kd_sync > 0 and expert is None:
        info["note"] = "no SyncNet expert given: the sync loss is left out (pass --expert lipsync_expert.pth)"
    seen = {"sum": 0.0, "n": 0}

    def kd_loss(model, batch):
        dev = batch.device
        m, x, y = (t.to(dev) for t in _batch(clips, batch.cpu()))
        if next(t_module.parameters()).device != dev:
            t_module.to(dev)
        out = model(m, x)
        with torch.no_grad():
            t_out = t_module(m, x)
        l_out = (out - t_out).abs().mean()
        feats = []
        for name, ch in pairs:
            s_f, t_f = s_tap.out[name], t_tap.out[name]
            if ch is not None:
                t_f = t_f[:, ch]
            if s_f.shape == t_f.shape:
                feats.append(nn.functional.mse_loss(s_f, t_f))
        l_feat = torch.stack(feats).mean() if feats else out.new_zeros(())
        l_sync = out.new_zeros(())
        if expert is not None and options.kd_sync:
            expert.to(dev)
            b = len(batch)
            wins = out.view(b, WINDOW, *out.shape[1:])
            h = out.shape[-2]
            faces = torch.cat([wins[:, k, :, h // 2:] for k in range(WINDOW)], dim=1)
            a, v = expert(m.view(b, WINDOW, *m.shape[1:])[:, 0], faces)
            d = nn.functional.cosine_similarity(a, v).clamp(1e-6, 1.0)
            l_sync = -torch.log(d).mean()
        l_tgt = (out - y).abs().mean() if options.kd_target else out.new_zeros(())
        total = options.kd_out * l_out + options.kd_feat * l_feat + options.kd_sync * l_sync + options.kd_target * l_tgt
        return total, {"out_l1": l_out.item(), "feat_mse": l_feat.item(), "sync": l_sync.item()}

    def eval_loss(model, batch):
        dev = batch.device
        m, x, _ = (t.to(dev) for t in _batch(clips, batch.cpu()))
        if next(t_module.parameters()).device != dev:
            t_module.to(dev)
        with torch.no_grad():
            d = (model(m, x) - t_module(m, x)).abs().mean()
        seen["sum"] += float(d) * len(batch)
        seen["n"] += len(batch)
        return d

    def metric(_mean: float) -> dict[str, float]:
        v = seen["sum"] / seen["n"] if seen["n"] else float("nan")
        seen["sum"], seen["n"] = 0.0, 0
        return {"val_l1_to_original": v}

    return TrainTask(model=module, train_blocks=train, val_blocks=val, loss=kd_loss,
                     save=_saver(adapter, student, "kd"), eval_loss=eval_loss, info=info, val_metrics=metric)
