"""The ViT family's healing methods (the manifest's MethodSpecs ``finetune`` and ``kd``): each builds the
:class:`~slimgui.core.train.TrainTask` the core loop runs (which owns the schedule, checkpoints, resume and cancel).

Data: the image folders of ``cfg.data`` (one sub-folder per class, named after the model's labels or their numbers;
several folders are concatenated), or — when none is given — the demo's training digits for the demo and the models
made from it.  Images are read lazily, a batch at a time: a sample is an image's index (and its label), so a folder
of any size trains in little memory.  Every k-th image (k = round(1 / ``cfg.val_fraction``)) is held out for
validation; ``max_train_images`` (the family's training-data option) spreads a smaller share over the classes.
Nothing is random but what the core seeds and checkpoints (no augmentation; dropout only where the model has it),
so a resumed run continues the same run.

Losses (per batch of images x with labels y):

- ``finetune``: ``CE(student(x), y)`` with ``label_smoothing``;
- ``kd``: ``kd_ce·CE(student(x), y) + kd_kl·T²·KL(softmax(teacher(x)/T) ‖ softmax(student(x)/T))
  + kd_hidden·mean_k MSE(block_k(student), block_{o(k)}(teacher)) + kd_attn·mean over matched heads of
  mean_{image, query} Σ_key (P_student − P_teacher)²``, where block k of the student is matched to the teacher's
  block with the same ``config.block_origin`` and head h to the teacher's head with the same ``head_origin`` (so any
  teacher the student was pruned from, directly or in several rounds, maps; a plain transformers folder, which
  cannot record them, is mapped by its ``slimgui_plan.json`` applied to the teacher); block outputs are the residual
  stream after the block.  The validation loss of both methods is the cross-entropy (comparable between them), and
  ``val_accuracy`` the top-1 accuracy on the held-out share.  The teacher is ``cfg.teacher``, else the model the student was pruned from (its
  ``slimgui_plan.json`` / ``slimgui_healed_from.json``, :func:`slimgui.core.model.made_from`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimgui.core.errors import SlimError
from slimgui.core.metrics import Metric
from slimgui.core.model import LoadedModel, made_from
from slimgui.core.options import from_dict
from slimgui.core.plan import PruningPlan
from slimgui.core.train import TrainConfig, TrainTask

from .data import digits_for, label_ids, load_batch, preprocess_of, scan_folder, spread
from .options import DistillOptions, FinetuneOptions, ImageDataOptions

VAL_ACCURACY = Metric("val_accuracy", "Validation accuracy", better="higher", fmt="{:.1%}",
                      help="top-1 accuracy on the held-out share of the training images")


class Images:
    """The training images: an in-memory tensor (the demo's digits) or files read a batch at a time."""

    def __init__(self, pre, tensor: torch.Tensor | None = None, files: list[Path] | None = None):
        self.pre, self.tensor, self.files = pre, tensor, files or []

    def __len__(self) -> int:
        return len(self.tensor) if self.tensor is not None else len(self.files)

    def get(self, index: torch.Tensor) -> torch.Tensor:
        idx = index.detach().cpu().tolist()
        if self.tensor is not None:
            return self.tensor[idx]
        return load_batch([self.files[i] for i in idx], self.pre)


def training_images(adapter: Any, cfg: TrainConfig, student: LoadedModel) -> tuple[Images, torch.Tensor, str]:
    """(images, labels, where they come from) of a job: its folders, else the demo's training digits."""
    pre = preprocess_of(student)
    if student.module.classifier is None:
        raise SlimError("this model has no classifier (a ViTModel backbone): there is nothing to heal on labels",
                        hint="retrain a ViT/DeiT image classifier")
    if not cfg.data:
        if adapter.default_data(student) is None:
            raise SlimError("no training images given", hint="pass --data FOLDER (one sub-folder of images per class)")
        x, y = digits_for(pre, "train")
        return Images(pre, tensor=x), y, "the demo's training digits"
    files: list[Path] = []
    labels: list[int] = []
    for path in cfg.data:
        folder = scan_folder(path, need_classes=True, what="training folder")
        ids = label_ids(folder.classes, student.config)
        files += [p for p, _ in folder.files]
        labels += [ids[c] for _, c in folder.files]
    return Images(pre, files=files), torch.tensor(labels, dtype=torch.long), ", ".join(cfg.data)


def _split(n: int, labels: torch.Tensor, cfg: TrainConfig, limit: int | None):
    """Index/label samples of the training and validation shares."""
    keep = spread(n, limit) if limit else list(range(n))
    every = max(2, round(1 / cfg.val_fraction))
    val = [i for j, i in enumerate(keep) if j % every == every - 1]
    train = [i for j, i in enumerate(keep) if j % every != every - 1]
    if not val and train:
        val = [train.pop()]

    def samples(idx: list[int]) -> dict[str, torch.Tensor]:
        t = torch.tensor(idx, dtype=torch.long)
        return {"index": t, "labels": labels[t] if len(idx) else torch.zeros(0, dtype=torch.long)}
    return samples(train), samples(val)


def _prepare(adapter: Any, cfg: TrainConfig):
    student = adapter.load(cfg.model, trust_remote_code=cfg.trust_remote_code)
    if not student.has_weights:
        raise SlimError(f"{cfg.model} has no weights to retrain")
    data_opts = from_dict(ImageDataOptions, cfg.options or {}, where="retraining option")
    images, labels, source = training_images(adapter, cfg, student)
    train, val = _split(len(images), labels, cfg, data_opts.max_train_images)
    module = student.module
    for p in module.parameters():
        p.requires_grad_(True)
    module.train()
    c = student.config
    info: dict[str, Any] = {
        "items": "images", "items_per_sample": 1, "data": source,
        "train_sequences": int(len(train["index"])), "val_sequences": int(len(val["index"])),
        # activations of one image: every block's token states (about 40 bytes per hidden unit) and attention maps
        "activation_bytes_per_sample": c.seq_len * (c.hidden_size * 40 + c.seq_len * max(c.num_attention_heads, 1) * 12)
        * max(1, len(c.qk_dims)),
        "val_metric": "val_accuracy", "metrics": [VAL_ACCURACY.to_json()],
        "too_little_data": "give a folder with more images per class",
        "too_much_memory": "lower --batch-size",
    }
    return student, images, train, val, info


def _saver(adapter: Any, student: LoadedModel, method: str):
    source = Path(student.source)

    def save(model: nn.Module, out_dir: str) -> None:
        out = Path(out_dir)
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        healed = LoadedModel(family=student.family, adapter=student.adapter, source=str(source), module=model.eval(),
                             config=model.config, has_weights=True, impl=adapter,
                             extra={"preprocess": student.extra.get("preprocess") or {}})
        adapter.save(healed, str(tmp))
        if (source / "slimgui_plan.json").is_file():
            shutil.copy(source / "slimgui_plan.json", tmp / "slimgui_plan.json")
        (tmp / "slimgui_healed_from.json").write_text(json.dumps({"model": str(source), "method": method}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    return save


def _accuracy_tracker():
    """An eval loss that also counts correct predictions, and the val metric that reads (and resets) the count."""
    seen = {"correct": 0, "total": 0}

    def count(logits: torch.Tensor, labels: torch.Tensor) -> None:
        seen["correct"] += int((logits.argmax(-1) == labels).sum())
        seen["total"] += int(labels.numel())

    def metric(_mean: float) -> dict[str, float]:
        acc = seen["correct"] / seen["total"] if seen["total"] else float("nan")
        seen["correct"] = seen["total"] = 0
        return {"val_accuracy": acc}
    return count, metric


def build_finetune(adapter: Any, cfg: TrainConfig, options: FinetuneOptions | None, *, registry: Any = None) -> TrainTask:
    """Fine-tuning: every weight trains with cross-entropy (``label_smoothing``) on the images."""
    options = options if options is not None else FinetuneOptions()
    student, images, train, val, info = _prepare(adapter, cfg)
    smoothing = float(options.label_smoothing)
    count, metric = _accuracy_tracker()

    def loss(model, batch):
        x = images.get(batch["index"]).to(batch["labels"].device)
        logits = model(pixel_values=x).logits.float()
        ce = nn.functional.cross_entropy(logits, batch["labels"], label_smoothing=smoothing)
        return ce, {"train_accuracy": float((logits.argmax(-1) == batch["labels"]).float().mean())}

    def eval_loss(model, batch):
        x = images.get(batch["index"]).to(batch["labels"].device)
        logits = model(pixel_values=x).logits.float()
        count(logits, batch["labels"])
        return nn.functional.cross_entropy(logits, batch["labels"])

    return TrainTask(model=student.module, train_blocks=train, val_blocks=val, loss=loss,
                     save=_saver(adapter, student, "finetune"), eval_loss=eval_loss, info=info, val_metrics=metric)


class _Tap:
    """Forward hooks keeping each block's output (residual stream) and attention maps of the latest pass."""

    def __init__(self, blocks: nn.ModuleList):
        self.out: list[Any] = [None] * len(blocks)
        self.probs: list[Any] = [None] * len(blocks)
        self.handles = [b.register_forward_hook(self._hook(i)) for i, b in enumerate(blocks)]

    def _hook(self, i: int):
        def hook(_mod, _args, result):
            self.out[i], self.probs[i] = result[0], result[1]
        return hook


def origins(adapter: Any, student: LoadedModel, teacher: LoadedModel) -> tuple[list[int], list[list[int]]]:
    """(block_origin, head_origin) of the student: its config's, except for a plain transformers folder (which
    cannot record them) with fewer blocks than the teacher — then the student's ``slimgui_plan.json`` applied to the
    teacher says which blocks it kept (it must give the student's shape)."""
    cfg, t_cfg = student.config, teacher.config
    if not adapter.is_plain(cfg) or len(cfg.qk_dims) == len(t_cfg.qk_dims):
        return list(cfg.block_origin), [list(r) for r in cfg.head_origin]
    plan_file = Path(student.source) / "slimgui_plan.json"
    if plan_file.is_file():
        try:
            shaped = adapter.apply_plan(teacher, PruningPlan.load(plan_file)).config
        except SlimError:
            shaped = None
        if shaped is not None and shaped.qk_dims == cfg.qk_dims and shaped.intermediate_sizes == cfg.intermediate_sizes:
            return list(shaped.block_origin), [list(r) for r in shaped.head_origin]
    raise SlimError(f"cannot tell which of the teacher's {len(t_cfg.qk_dims)} blocks the student's {len(cfg.qk_dims)} "
                    "are: the student is a plain transformers folder without a plan that maps onto the teacher",
                    hint="give the model the student was pruned from as --teacher")


def matching(block_origin: list[int], head_origin: list[list[int]], teacher_cfg) -> list[tuple[int, int, list]]:
    """(student block, teacher block, [(student head, teacher head)]) of every student block whose origin the
    teacher has, matched by ``block_origin`` / ``head_origin``."""
    out = []
    for k, origin in enumerate(block_origin):
        if origin not in teacher_cfg.block_origin:
            continue
        j = teacher_cfg.block_origin.index(origin)
        t_heads = teacher_cfg.head_origin[j]
        heads = [(h, t_heads.index(o)) for h, o in enumerate(head_origin[k]) if o in t_heads]
        out.append((k, j, heads))
    return out


def build_kd(adapter: Any, cfg: TrainConfig, options: DistillOptions | None, *, registry: Any = None) -> TrainTask:
    """Distillation from the original (module docstring): CE, KL on the logits, MSE of the kept blocks' outputs and
    squared error of the kept heads' attention maps, weighted by ``kd_ce``/``kd_kl``/``kd_hidden``/``kd_attn``."""
    options = options if options is not None else DistillOptions()
    if options.kd_ce == options.kd_kl == options.kd_hidden == options.kd_attn == 0:
        raise SlimError("--kd-ce, --kd-kl, --kd-hidden and --kd-attn are all 0: distillation would learn nothing",
                        hint="give at least one a weight above 0")
    student, images, train, val, info = _prepare(adapter, cfg)
    origin = made_from(student.source)
    teacher_path = cfg.teacher or (str(origin) if origin is not None else None)
    if not teacher_path:
        raise SlimError("distillation needs a teacher: this model was not pruned by SlimGUI from another",
                        hint="pass --teacher ORIGINAL_MODEL, or use --method finetune")
    teacher = adapter.load(teacher_path, trust_remote_code=cfg.trust_remote_code)
    if not teacher.has_weights or teacher.module.classifier is None:
        raise SlimError(f"the teacher {teacher_path} has no weights or no classifier",
                        hint="give the image classifier the student was pruned from")
    if teacher.config.num_labels != student.config.num_labels or teacher.config.hidden_size != student.config.hidden_size:
        raise SlimError(f"the teacher {teacher_path} does not match the student (labels or width differ)",
                        hint="give the model the student was pruned from as --teacher")
    pairs = matching(*origins(adapter, student, teacher), teacher.config)
    if not pairs and (options.kd_hidden or options.kd_attn):
        raise SlimError("none of the student's blocks comes from the teacher's (block_origin)",
                        hint="give the model the student was pruned from as --teacher")
    t_module = teacher.module.eval()
    for p in t_module.parameters():
        p.requires_grad_(False)
    s_tap, t_tap = _Tap(student.module.blocks), _Tap(t_module.blocks)
    info.update(teacher=str(teacher_path), teacher_params=sum(p.numel() for p in t_module.parameters()),
                block_map=[[k, j] for k, j, _ in pairs])
    temp = float(options.kd_temperature)
    count, metric = _accuracy_tracker()

    def kd_loss(model, batch):
        labels = batch["labels"]
        x = images.get(batch["index"]).to(labels.device)
        if next(t_module.parameters()).device != labels.device:
            t_module.to(labels.device)
        s_logits = model(pixel_values=x).logits.float()
        with torch.no_grad():
            t_logits = t_module(pixel_values=x).logits.float()
        ce = nn.functional.cross_entropy(s_logits, labels)
        kl = nn.functional.kl_div(nn.functional.log_softmax(s_logits / temp, dim=-1),
                                  nn.functional.log_softmax(t_logits / temp, dim=-1),
                                  log_target=True, reduction="batchmean") * temp * temp
        zero = s_logits.new_zeros(())
        hid = torch.stack([nn.functional.mse_loss(s_tap.out[k], t_tap.out[j]) for k, j, _ in pairs]).mean() \
            if pairs else zero
        attn_terms = [(s_tap.probs[k][:, sh] - t_tap.probs[j][:, th]).pow(2).sum(-1).mean()
                      for k, j, heads in pairs for sh, th in heads
                      if s_tap.probs[k] is not None and t_tap.probs[j] is not None]
        att = torch.stack(attn_terms).mean() if attn_terms else zero
        total = options.kd_ce * ce + options.kd_kl * kl + options.kd_hidden * hid + options.kd_attn * att
        return total, {"ce": ce.item(), "kl": kl.item(), "hidden_mse": hid.item(), "attn_se": att.item()}

    def eval_loss(model, batch):
        x = images.get(batch["index"]).to(batch["labels"].device)
        logits = model(pixel_values=x).logits.float()
        count(logits, batch["labels"])
        return nn.functional.cross_entropy(logits, batch["labels"])

    return TrainTask(model=student.module, train_blocks=train, val_blocks=val, loss=kd_loss,
                     save=_saver(adapter, student, "kd"), eval_loss=eval_loss, info=info, val_metrics=metric)
