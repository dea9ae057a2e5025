"""Healing of the cnn family: ``distill`` (the slimmed / ABConv network learns the original's softened logits, plus
a share of the true labels) and ``finetune`` (labels only), on the digits' training split.  :func:`distill_loop` is
the same distillation as a plain loop, for the demo script and the benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from slimgui.core.errors import SlimError

from .options import DistillOptions


def kd_loss(s_logits, t_logits, y, temperature: float, hard_weight: float):
    t = temperature
    soft = F.kl_div(F.log_softmax(s_logits / t, 1), F.softmax(t_logits / t, 1), reduction="batchmean") * t * t
    hard = F.cross_entropy(s_logits, y)
    return (1 - hard_weight) * soft + hard_weight * hard


def distill_loop(student, teacher, x, y, *, steps: int = 300, batch: int = 64, lr: float = 2e-3,
                 temperature: float = 4.0, hard_weight: float = 0.1, seed: int = 0) -> list[float]:
    """Distil ``teacher`` into ``student`` for ``steps`` Adam steps (cosine schedule); returns the losses."""
    g = torch.Generator().manual_seed(seed)
    teacher.eval()
    student.train()
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(y), (batch,), generator=g)
        with torch.no_grad():
            t_out = teacher(x[idx])
        loss = kd_loss(student(x[idx]), t_out, y[idx], temperature, hard_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    student.eval()
    return losses


def _prepare(adapter, cfg):
    from .data import digits

    model = adapter.load(cfg.model)
    if model.config["in_channels"] != 1 or model.config["num_classes"] != 10:
        raise SlimError("the cnn family retrains on the digits: the network needs 1 input channel and 10 classes")
    x, y = digits("train")
    if model.config["image_size"] != x.shape[-1]:
        x = F.interpolate(x, size=(model.config["image_size"],) * 2, mode="bilinear", align_corners=False)
    n_val = max(1, int(len(y) * cfg.val_fraction))
    idx = torch.arange(len(y))
    return model, x, y, {"index": idx[n_val:]}, {"index": idx[:n_val]}


def _saver(adapter, model):
    def save(module, out_dir: str) -> None:
        from slimgui.core.model import LoadedModel

        adapter.save(LoadedModel(model.family, model.adapter, model.source, module, dict(model.config), impl=adapter,
                                 extra={"made_from": model.extra.get("made_from")}), out_dir)
    return save


def build_distill(adapter: Any, cfg: Any, options: DistillOptions | None, *, registry: Any = None):
    from slimgui.core.train import TrainTask

    options = options or DistillOptions()
    student, x, y, train, val = _prepare(adapter, cfg)
    teacher_path = cfg.teacher or student.extra.get("made_from")
    if not teacher_path or not Path(str(teacher_path)).exists():
        raise SlimError("distillation needs a teacher: this network names no original it was made from",
                        hint="pass --teacher ORIGINAL, or use --method finetune")
    teacher = adapter.load(str(teacher_path)).module.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss(model, batch):
        idx = batch["index"].cpu()
        out = model(x[idx])
        with torch.no_grad():
            t_out = teacher(x[idx])
        value = kd_loss(out, t_out, y[idx], options.temperature, options.hard_weight)
        return value, {"train_accuracy": float((out.argmax(1) == y[idx]).float().mean())}

    return TrainTask(model=student.module.train(), train_blocks=train, val_blocks=val, loss=loss,
                     save=_saver(adapter, student), info={"items": "images", "items_per_sample": 1,
                                                          "teacher": str(teacher_path)})


def build_finetune(adapter: Any, cfg: Any, options: Any, *, registry: Any = None):
    from slimgui.core.train import TrainTask

    student, x, y, train, val = _prepare(adapter, cfg)

    def loss(model, batch):
        idx = batch["index"].cpu()
        out = model(x[idx])
        return F.cross_entropy(out, y[idx]), {"train_accuracy": float((out.argmax(1) == y[idx]).float().mean())}

    return TrainTask(model=student.module.train(), train_blocks=train, val_blocks=val, loss=loss,
                     save=_saver(adapter, student), info={"items": "images", "items_per_sample": 1})
