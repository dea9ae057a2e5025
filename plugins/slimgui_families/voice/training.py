"""The voice family's healing methods (MethodSpecs ``finetune``, ``kd`` and ``multitask``): each builds the
:class:`~slimgui.core.train.TrainTask` the core loop runs (schedule, checkpoints, resume, cancel are the core's).

Data: a folder of parallel clips (the demo's layout: ``sentences.json``, ``neutral/NNN.ogg`` the source voice,
``excited/NNN.ogg`` the target voice; :mod:`.data`), ``cfg.data`` or — for the demo and models made from it — the
demo's own.  A sample is a sentence's index; its source waveform, target log-mels (the model's mel settings) and text
are looked up when its batch is built.  Held-out sentences (every 10th) are never trained on; every k-th training
sentence (k = round(1 / ``val_fraction``)) is the validation share.  Losses per batch (teacher-forced, :mod:`.speech`):

- ``finetune``: ``L_mel + stop_weight · L_stop`` on (source waveform → target mels);
- ``kd``: ``kd_mel · L1(student mels, teacher mels) + kd_hidden · mean_k MSE(h_k(student), h_{o(k)}(teacher))
  + kd_target · (L_mel + 0.5 L_stop)``, decoder block k of the student matched to the teacher's block o(k) it was kept
  from (its ``slimgui_plan.json``; both passes share the decoder pre-net's dropout mask);
- ``multitask`` (the paper's recipe): ``L_VC + tts_weight · L_TTS``, both ``L_mel + 0.5 L_stop``, the TTS pass running
  the sentence's characters through the text pre-net (``slimgui_text_prenet.safetensors`` beside the model, else the
  original's, else a fresh one) into the *shared* encoder body and decoder.

The validation loss of all three is the VC ``L_mel`` (comparable between them).
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
from slimgui.core.model import LoadedModel, made_from
from slimgui.core.options import from_dict
from slimgui.core.plan import PruningPlan
from slimgui.core.train import TrainConfig, TrainTask

from . import data as vdata
from .audio import MelSettings
from .options import DistillOptions, FinetuneOptions, MultitaskOptions, VoiceDataOptions
from .speech import (
    SharedTextEncoder,
    TextBranch,
    mel_batch,
    mel_loss,
    mels_of,
    stop_loss,
    teacher_forced,
    text_batch,
    wave_batch,
)

_CORPORA: dict[str, vdata.Corpus] = {}
_MELS: dict[tuple, list[np.ndarray]] = {}


def corpus(path: str | Path) -> vdata.Corpus:
    key = str(Path(path).resolve())
    if key not in _CORPORA:
        _CORPORA[key] = vdata.Corpus(path)
    return _CORPORA[key]


def target_mels(c: vdata.Corpus, mel: MelSettings, voice: str = vdata.TARGET) -> list[np.ndarray]:
    key = (str(c.folder), voice, mel)
    if key not in _MELS:
        _MELS[key] = mels_of(c.wave[voice], mel)
    return _MELS[key]


def spread(n: int, k: int | None) -> list[int]:
    if not k or k >= n:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / max(1, k - 1))) for i in range(k)})


def make_batch(model: LoadedModel | Any, c: vdata.Corpus, idx: list[int], *, text: bool = False,
               mel: MelSettings | None = None, normalize: bool | None = None) -> dict[str, torch.Tensor]:
    extra = model.extra if isinstance(model, LoadedModel) else {}
    mel = mel or extra.get("mel") or MelSettings()
    normalize = extra.get("normalize", True) if normalize is None else normalize
    r = (model.config if isinstance(model, LoadedModel) else model).reduction_factor
    mels = target_mels(c, mel)
    y, ym = mel_batch([mels[i] for i in idx], r)
    batch = {"labels": y, "mel_mask": ym}
    if text:
        t, tm = text_batch([c.texts[i] for i in idx])
        batch |= {"input_ids": t, "text_mask": tm}
    else:
        x, m = wave_batch([c.wave[vdata.SOURCE][i] for i in idx], normalize)
        batch |= {"input_values": x, "attention_mask": m}
    speaker = extra.get("speaker")
    if speaker is not None:
        batch["speaker"] = speaker
    return batch


def parallel_batches(model: LoadedModel, path: str, samples: int, batch_size: int,
                     split: str = "train") -> tuple[list[dict], int]:
    c = corpus(path)
    pool = c.train if split == "train" else c.held
    picks = [pool[i] for i in spread(len(pool), samples)]
    return [make_batch(model, c, picks[i:i + batch_size]) for i in range(0, len(picks), batch_size)], len(picks)


def data_path(adapter: Any, cfg: TrainConfig, student: LoadedModel) -> str:
    if cfg.data:
        return cfg.data[0]
    path = adapter.default_data(student)
    if path is None:
        raise SlimError("no parallel speech given", hint="pass --data FOLDER (sentences.json, neutral/NNN.ogg, "
                                                         "excited/NNN.ogg: the demo's layout)")
    return path


def _prepare(adapter: Any, cfg: TrainConfig):
    student = adapter.load(cfg.model)
    if not student.has_weights:
        raise SlimError(f"{cfg.model} has no weights to retrain")
    if student.extra.get("kind") != "speech":
        raise SlimError("the voice family heals speech-to-speech converters; this is a text-to-speech model",
                        hint="open a SpeechT5ForSpeechToSpeech folder")
    opts = from_dict(VoiceDataOptions, cfg.options or {}, where="retraining option")
    path = data_path(adapter, cfg, student)
    c = corpus(path)
    pool = [c.train[i] for i in spread(len(c.train), opts.max_utterances)]
    every = max(2, round(1 / cfg.val_fraction))
    val = [i for j, i in enumerate(pool) if j % every == every - 1]
    train = [i for j, i in enumerate(pool) if j % every != every - 1]
    if not val and train:
        val = [train.pop()]
    for p in student.module.parameters():
        p.requires_grad_(True)
    student.module.train()
    info: dict[str, Any] = {
        "items": "utterances", "items_per_sample": 1, "data": path, "train_sequences": len(train),
        "val_sequences": len(val), "activation_bytes_per_sample": 200 * student.config.hidden_size * 4 * 60
        * (student.config.encoder_layers + student.config.decoder_layers),
        "too_little_data": "give a folder with more parallel utterances", "too_much_memory": "lower --batch-size",
    }
    return student, c, {"index": torch.tensor(train, dtype=torch.long)}, {"index": torch.tensor(val, dtype=torch.long)}, info


def _saver(adapter: Any, student: LoadedModel, method: str, text: TextBranch | None = None):
    from safetensors.torch import save_file

    from .adapter import TEXT_PRENET

    source = Path(student.source)

    def save(model: nn.Module, out_dir: str) -> None:
        module = model.student if isinstance(model, _Multitask) else model
        out = Path(out_dir)
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        healed = LoadedModel(family=student.family, adapter=student.adapter, source=str(source), module=module.eval(),
                             config=module.config, has_weights=True, impl=adapter, extra=dict(student.extra))
        adapter.save(healed, str(tmp))
        if text is not None:
            save_file({k: v.detach().contiguous() for k, v in text.state_dict().items()}, str(tmp / TEXT_PRENET))
        if (source / "slimgui_plan.json").is_file():
            shutil.copy(source / "slimgui_plan.json", tmp / "slimgui_plan.json")
        (tmp / "slimgui_healed_from.json").write_text(json.dumps({"model": str(source), "method": method}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    return save


def _indices(batch: dict[str, torch.Tensor]) -> list[int]:
    return batch["index"].detach().cpu().tolist()


def _eval(student: LoadedModel, c: vdata.Corpus):
    def eval_loss(model, batch):
        module = model.student if isinstance(model, _Multitask) else model
        b = make_batch(student, c, _indices(batch))
        return mel_loss(teacher_forced(module, b), b)
    return eval_loss


def build_finetune(adapter: Any, cfg: TrainConfig, options: FinetuneOptions | None, *, registry: Any = None) -> TrainTask:
    options = options if options is not None else FinetuneOptions()
    student, c, train, val, info = _prepare(adapter, cfg)
    w = float(options.stop_weight)

    def loss(model, batch):
        b = make_batch(student, c, _indices(batch))
        out = teacher_forced(model, b)
        lm, ls = mel_loss(out, b), stop_loss(out, b)
        return lm + w * ls, {"mel_l1": lm.item(), "stop": ls.item()}

    return TrainTask(model=student.module, train_blocks=train, val_blocks=val, loss=loss,
                     save=_saver(adapter, student, "finetune"), eval_loss=_eval(student, c), info=info)


def decoder_map(student: LoadedModel, teacher: LoadedModel) -> list[tuple[int, int]]:
    """(student decoder block, teacher decoder block) pairs: by the student's plan when it has one, else by position
    when the two have as many blocks."""
    n_s, n_t = student.config.decoder_layers, teacher.config.decoder_layers
    plan_file = Path(student.source) / "slimgui_plan.json"
    if plan_file.is_file():
        try:
            plan = PruningPlan.load(plan_file)
            gone = {int(u.split(".")[1]) for u in plan.remove if str(u).startswith("decoder.")}
            kept = [i for i in range(n_t) if i not in gone]
            if len(kept) == n_s:
                return list(enumerate(kept))
        except (SlimError, ValueError, IndexError):
            pass
    if n_s == n_t:
        return [(i, i) for i in range(n_s)]
    raise SlimError(f"cannot tell which of the teacher's {n_t} decoder blocks the student's {n_s} are",
                    hint="give the model the student was pruned from as --teacher (its plan must map onto it)")


def build_kd(adapter: Any, cfg: TrainConfig, options: DistillOptions | None, *, registry: Any = None) -> TrainTask:
    options = options if options is not None else DistillOptions()
    if options.kd_mel == options.kd_hidden == options.kd_target == 0:
        raise SlimError("--kd-mel, --kd-hidden and --kd-target are all 0: distillation would learn nothing",
                        hint="give at least one a weight above 0")
    student, c, train, val, info = _prepare(adapter, cfg)
    origin = made_from(student.source)
    teacher_path = cfg.teacher or (str(origin) if origin is not None else None)
    if not teacher_path:
        raise SlimError("distillation needs a teacher: this model was not pruned by SlimGUI from another",
                        hint="pass --teacher ORIGINAL_MODEL, or use --method finetune")
    teacher = adapter.load(teacher_path)
    if not teacher.has_weights or teacher.config.hidden_size != student.config.hidden_size \
            or teacher.config.num_mel_bins != student.config.num_mel_bins:
        raise SlimError(f"the teacher {teacher_path} does not match the student (width or mel bins differ)",
                        hint="give the model the student was pruned from as --teacher")
    pairs = decoder_map(student, teacher)
    t_module = teacher.module.eval()
    for p in t_module.parameters():
        p.requires_grad_(False)
    info.update(teacher=str(teacher_path), teacher_params=sum(p.numel() for p in t_module.parameters()),
                block_map=[list(p) for p in pairs])

    def loss(model, batch):
        b = make_batch(student, c, _indices(batch))
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            out = teacher_forced(model, b, hidden=True)
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(seed)
            t_out = teacher_forced(t_module, b, hidden=True)
        m = b["mel_mask"].unsqueeze(-1)
        n = m.sum() * b["labels"].shape[-1]
        l_mel = ((out["after"] - t_out["after"]).abs() * m).sum() / n
        dm = b["mel_mask"][:, model.config.reduction_factor - 1::model.config.reduction_factor].unsqueeze(-1)
        hid = torch.stack([(((out["hidden"][k + 1] - t_out["hidden"][j + 1]) ** 2) * dm).sum()
                           / (dm.sum() * out["hidden"][k + 1].shape[-1]) for k, j in pairs]).mean()
        target = mel_loss(out, b) + 0.5 * stop_loss(out, b)
        total = options.kd_mel * l_mel + options.kd_hidden * hid + options.kd_target * target
        return total, {"teacher_mel_l1": l_mel.item(), "hidden_mse": hid.item(), "target": target.item()}

    return TrainTask(model=student.module, train_blocks=train, val_blocks=val, loss=loss,
                     save=_saver(adapter, student, "kd"), eval_loss=_eval(student, c), info=info)


class _Multitask(nn.Module):
    """The converter and the text pre-net of its TTS branch, trained together."""

    def __init__(self, student: nn.Module, text: TextBranch):
        super().__init__()
        self.student, self.text = student, text


def text_branch(student: LoadedModel, teacher_path: str | None) -> tuple[TextBranch, str]:
    """The TTS branch's text pre-net: the student's file, else the original's, else a fresh one."""
    from safetensors.torch import load_file

    from slimgui.core.safety import check_safetensors

    from .adapter import TEXT_PRENET

    branch = TextBranch(student.config)
    for folder in [Path(student.source)] + ([Path(teacher_path)] if teacher_path else []):
        f = folder / TEXT_PRENET
        if f.is_file():
            check_safetensors(f)
            try:
                branch.load_state_dict(load_file(str(f)))
            except RuntimeError:
                continue  # another width or vocabulary: not this model's
            return branch, str(f)
    return branch, "new (no text pre-net beside the model or its original)"


def build_multitask(adapter: Any, cfg: TrainConfig, options: MultitaskOptions | None, *,
                    registry: Any = None) -> TrainTask:
    options = options if options is not None else MultitaskOptions()
    student, c, train, val, info = _prepare(adapter, cfg)
    origin = made_from(student.source)
    text, where = text_branch(student, cfg.teacher or (str(origin) if origin is not None else None))
    text.train()
    wrapper = _Multitask(student.module, text)
    w = float(options.tts_weight)
    info.update(text_prenet=where, tts_weight=w)

    def loss(model, batch):
        idx = _indices(batch)
        b = make_batch(student, c, idx)
        out = teacher_forced(model.student, b)
        vc = mel_loss(out, b) + 0.5 * stop_loss(out, b)
        if w <= 0:
            return vc, {"vc": vc.item()}
        tb = make_batch(student, c, idx, text=True)
        t_out = teacher_forced(model.student, tb, encoder=SharedTextEncoder(model.text, model.student.speecht5))
        tts = mel_loss(t_out, tb) + 0.5 * stop_loss(t_out, tb)
        return vc + w * tts, {"vc": vc.item(), "tts": tts.item()}

    return TrainTask(model=wrapper, train_blocks=train, val_blocks=val, loss=loss,
                     save=_saver(adapter, student, "multitask", text), eval_loss=_eval(student, c), info=info)
