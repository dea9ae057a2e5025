"""The gan family's healing methods (the manifest's ``finetune`` and ``kd``): each builds the
:class:`~slimgui.core.train.TrainTask` the core loop runs (schedule, checkpoints, resume and cancel are the core's).

Data: the paired folders of ``cfg.data`` (A/ and B/, or side-by-side AB images; several are concatenated), or, when
none is given, the demo's training pairs for the demo and the generators made from it.  Every k-th pair
(k = round(1 / ``cfg.val_fraction``)) is held out for validation.

Losses (per batch of inputs x with targets y; G the generator being healed, T the original):

- ``finetune`` (Pix2Pix): ``λ_L1·|G(x) − y|₁`` (+ ``λ_GAN·BCE(D(x, G(x)), 1)`` with a 70×70-style PatchGAN D trained
  alongside on ``BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)`` — off by default, ``lambda_gan`` 0); D's weights and its
  optimizer are checkpointed with the run, so a resumed run continues the same one;
- ``kd`` (no adversarial loss, as the Wav2Lip compression paper distils): ``kd_out·|G(x) − T(x)|₁ + kd_feat·mean_l
  MSE(G_l(x), T_l(x)[kept channels]) + kd_target·|G(x) − y|₁`` over every layer l (down and up convs, after their
  norms) both generators have, the teacher's channels those the pruning kept (``slimgui_gan.json``'s ``kept``).

The validation loss of both is the L1 to the targets (comparable), ``val_psnr`` the PSNR on the held-out share.
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
from slimgui.core.train import TrainConfig, TrainTask

from .data import load_pairs, psnr
from .options import DistillOptions, FinetuneOptions, PairDataOptions

VAL_PSNR = Metric("val_psnr", "Validation PSNR", unit="dB", better="higher", fmt="{:.2f}",
                  help="PSNR to the targets on the held-out share of the training pairs")


def training_pairs(adapter: Any, cfg: TrainConfig, student: LoadedModel) -> tuple[torch.Tensor, torch.Tensor, str]:
    if not cfg.data:
        if adapter.default_data(student) is None:
            raise SlimError("no training pairs given", hint="pass --data FOLDER (A/ and B/, or side-by-side AB images)")
        from .demo import _tensor, make_pairs

        x, y = make_pairs("train")
        return _tensor(x), _tensor(y), "the demo's training pairs"
    xs, ys = [], []
    for path in cfg.data:
        x, y = load_pairs(path, student.config)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys), ", ".join(cfg.data)


def _prepare(adapter: Any, cfg: TrainConfig):
    student = adapter.load(cfg.model)
    if not student.has_weights:
        raise SlimError(f"{cfg.model} has no weights to retrain")
    opts = from_dict(PairDataOptions, {k: v for k, v in (cfg.options or {}).items() if k == "max_train_pairs"},
                     where="retraining option")
    x, y, source = training_pairs(adapter, cfg, student)
    n = len(x) if not opts.max_train_pairs else min(len(x), opts.max_train_pairs)
    every = max(2, round(1 / cfg.val_fraction))
    val = [i for i in range(n) if i % every == every - 1]
    train = [i for i in range(n) if i % every != every - 1]
    module = student.module
    for p in module.parameters():
        p.requires_grad_(True)
    module.train()
    s = student.config.image_size
    info: dict[str, Any] = {
        "items": "images", "items_per_sample": 1, "data": source, "train_sequences": len(train),
        "val_sequences": len(val), "activation_bytes_per_sample": s * s * 4 * 40 * sum(student.config.down[:2]) // 8,
        "val_metric": "val_psnr", "metrics": [VAL_PSNR.to_json()], "too_little_data": "give a folder with more pairs",
        "too_much_memory": "lower --batch-size",
    }
    return student, x, y, {"index": torch.tensor(train, dtype=torch.long)}, \
        {"index": torch.tensor(val, dtype=torch.long)}, info


def _saver(adapter: Any, student: LoadedModel, method: str):
    source = Path(student.source)

    def save(model: nn.Module, out_dir: str) -> None:
        out = Path(out_dir)
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        healed = LoadedModel(family=student.family, adapter=student.adapter, source=str(source), module=model.eval(),
                             config=model.config, has_weights=True, impl=adapter, extra={"demo": student.extra.get("demo")})
        adapter.save(healed, str(tmp))
        if source.is_dir() and (source / "slimgui_plan.json").is_file():
            shutil.copy(source / "slimgui_plan.json", tmp / "slimgui_plan.json")
        (tmp / "slimgui_healed_from.json").write_text(json.dumps({"model": str(source), "method": method}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    return save


def _psnr_tracker():
    seen = {"sum": 0.0, "n": 0}

    def count(out: torch.Tensor, y: torch.Tensor) -> None:
        seen["sum"] += float(psnr(out, y).sum())
        seen["n"] += len(y)

    def metric(_mean: float) -> dict[str, float]:
        v = seen["sum"] / seen["n"] if seen["n"] else float("nan")
        seen["sum"], seen["n"] = 0.0, 0
        return {"val_psnr": v}
    return count, metric


def _eval(x: torch.Tensor, y: torch.Tensor, count):
    def eval_loss(model, batch):
        idx = batch["index"].cpu()
        dev = batch["index"].device
        out = model(x[idx].to(dev))
        count(out.detach().cpu(), y[idx])
        return (out - y[idx].to(dev)).abs().mean()
    return eval_loss


class PatchGAN(nn.Module):
    """junyanz's NLayerDiscriminator (n_layers 3, batch norm) on the input and output concatenated."""

    def __init__(self, in_nc: int, ndf: int = 32):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(in_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, 3):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2)]
        seq += [nn.Conv2d(ndf * mult, ndf * 8, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2),
                nn.Conv2d(ndf * 8, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def build_finetune(adapter: Any, cfg: TrainConfig, options: FinetuneOptions | None, *, registry: Any = None) -> TrainTask:
    """Pix2Pix fine-tuning: L1 to the targets (+ the PatchGAN term when ``lambda_gan`` > 0)."""
    options = options if options is not None else FinetuneOptions()
    if options.lambda_l1 == 0 and options.lambda_gan == 0:
        raise SlimError("--lambda-l1 and --lambda-gan are both 0: fine-tuning would learn nothing")
    student, x, y, train, val, info = _prepare(adapter, cfg)
    count, metric = _psnr_tracker()
    disc = opt_d = None
    if options.lambda_gan > 0:
        torch.manual_seed(cfg.seed)
        disc = PatchGAN(student.config.input_nc + student.config.output_nc)
        opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
        info["discriminator_params"] = sum(p.numel() for p in disc.parameters())
    bce = nn.BCEWithLogitsLoss()

    def loss(model, batch):
        idx = batch["index"].cpu()
        dev = batch["index"].device
        xb, yb = x[idx].to(dev), y[idx].to(dev)
        out = model(xb)
        l1 = (out - yb).abs().mean()
        total = options.lambda_l1 * l1
        logs = {"l1": l1.item()}
        if disc is not None:
            disc.to(dev).train()
            real = disc(torch.cat([xb, yb], 1))
            fake = disc(torch.cat([xb, out.detach()], 1))
            d_loss = 0.5 * (bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake)))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            for p in disc.parameters():
                p.requires_grad_(False)
            pred = disc(torch.cat([xb, out], 1))
            for p in disc.parameters():
                p.requires_grad_(True)
            g_gan = bce(pred, torch.ones_like(pred))
            total = total + options.lambda_gan * g_gan
            logs |= {"g_gan": g_gan.item(), "d_loss": d_loss.item()}
        return total, logs

    extra_state = load_extra = None
    if disc is not None:
        params = list(disc.parameters())

        def extra_state():  # flat tensors (the core writes them as safetensors): D's weights and Adam's moments
            out = {f"D.{k}": v for k, v in disc.state_dict().items()}
            for i, p in enumerate(params):
                st = opt_d.state.get(p, {})
                for name in ("exp_avg", "exp_avg_sq", "step"):
                    if name in st:
                        out[f"optD.{i}.{name}"] = torch.as_tensor(st[name]).reshape(-1).float()
            return out

        def load_extra(state):
            d = {k[2:]: v for k, v in state.items() if k.startswith("D.")}
            if d:
                disc.load_state_dict(d)
            for i, p in enumerate(params):
                if f"optD.{i}.exp_avg" in state:
                    opt_d.state[p] = {"exp_avg": state[f"optD.{i}.exp_avg"].reshape(p.shape).clone(),
                                      "exp_avg_sq": state[f"optD.{i}.exp_avg_sq"].reshape(p.shape).clone(),
                                      "step": state[f"optD.{i}.step"].reshape(()).clone()}
    return TrainTask(model=student.module, train_blocks=train, val_blocks=val, loss=loss,
                     save=_saver(adapter, student, "finetune"), eval_loss=_eval(x, y, count), info=info,
                     val_metrics=metric, extra_state=extra_state, load_extra_state=load_extra)


class _Tap:
    def __init__(self, module):
        self.out: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in module.taps().items()]

    def _hook(self, name):
        def hook(_m, _i, out):
            self.out[name] = out
        return hook


def feature_pairs(student_cfg, teacher_cfg) -> list[tuple[str, list[int] | None]]:
    """(layer, teacher channels kept or None for all) of every layer both have (not the output conv)."""
    kept = (student_cfg.extra or {}).get("kept") or {}
    parent = (student_cfg.extra or {}).get("parent") or {}
    same_parent = parent.get("down") == list(teacher_cfg.down) and parent.get("up") == list(teacher_cfg.up)
    out = []
    for k in range(min(student_cfg.levels, teacher_cfg.levels)):
        for side in ("down", "up"):
            if side == "up" and k == 0:
                continue
            layer = f"{side}.{k}"
            sw = (student_cfg.down if side == "down" else student_cfg.up)[k]
            tw = (teacher_cfg.down if side == "down" else teacher_cfg.up)[k]
            if same_parent and layer in kept and len(kept[layer]) == sw:
                out.append((layer, list(kept[layer])))
            elif sw == tw:
                out.append((layer, None))
    return out


def build_kd(adapter: Any, cfg: TrainConfig, options: DistillOptions | None, *, registry: Any = None) -> TrainTask:
    """Distillation from the original generator (module docstring)."""
    options = options if options is not None else DistillOptions()
    if options.kd_out == options.kd_feat == options.kd_target == 0:
        raise SlimError("--kd-out, --kd-feat and --kd-target are all 0: distillation would learn nothing")
    student, x, y, train, val, info = _prepare(adapter, cfg)
    origin = made_from(student.source) if Path(student.source).is_dir() else None
    teacher_path = cfg.teacher or (str(origin) if origin is not None else None)
    if not teacher_path:
        raise SlimError("distillation needs a teacher: this generator was not pruned by SlimGUI from another",
                        hint="pass --teacher ORIGINAL_GENERATOR, or use --method finetune")
    teacher = adapter.load(teacher_path)
    if (teacher.config.input_nc, teacher.config.output_nc) != (student.config.input_nc, student.config.output_nc):
        raise SlimError(f"the teacher {teacher_path} takes or makes other channels than the student",
                        hint="give the generator the student was pruned from as --teacher")
    t_module = teacher.module.eval()
    for p in t_module.parameters():
        p.requires_grad_(False)
    pairs = feature_pairs(student.config, teacher.config)
    s_tap, t_tap = _Tap(student.module), _Tap(t_module)
    info.update(teacher=str(teacher_path), teacher_params=sum(p.numel() for p in t_module.parameters()),
                feature_layers=[lay for lay, _ in pairs])
    count, metric = _psnr_tracker()

    def kd_loss(model, batch):
        idx = batch["index"].cpu()
        dev = batch["index"].device
        xb = x[idx].to(dev)
        if next(t_module.parameters()).device != dev:
            t_module.to(dev)
        out = model(xb)
        with torch.no_grad():
            t_out = t_module(xb)
        l_out = (out - t_out).abs().mean()
        feats = []
        for layer, ch in pairs:
            s_f, t_f = s_tap.out[layer], t_tap.out[layer]
            if ch is not None:
                t_f = t_f[:, ch]
            if s_f.shape == t_f.shape:
                feats.append(nn.functional.mse_loss(s_f, t_f))
        l_feat = torch.stack(feats).mean() if feats else out.new_zeros(())
        l_tgt = (out - y[idx].to(dev)).abs().mean() if options.kd_target else out.new_zeros(())
        total = options.kd_out * l_out + options.kd_feat * l_feat + options.kd_target * l_tgt
        return total, {"out_l1": l_out.item(), "feat_mse": l_feat.item(), "target_l1": l_tgt.item()}

    return TrainTask(model=student.module, train_blocks=train, val_blocks=val, loss=kd_loss,
                     save=_saver(adapter, student, "kd"), eval_loss=_eval(x, y, count), info=info, val_metrics=metric)
