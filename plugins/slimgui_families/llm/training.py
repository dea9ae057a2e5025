"""The language-model family's healing methods (the manifest's MethodSpecs ``lora``, ``cpt`` and ``kd``): each
builds the :class:`~slimgui.core.train.TrainTask` the core loop runs — token blocks of the training text, the
LoRA / full / distillation loss, the validation perplexity and the final save.

The builders receive the adapter, the job's :class:`~slimgui.core.train.TrainConfig` and the method's options
(:class:`~slimgui_families.llm.options.LoraOptions`, none, :class:`~slimgui_families.llm.options.DistillOptions`); how the text is
read and cut (:class:`~slimgui_families.llm.options.TextDataOptions`) is read from ``cfg.options``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimgui.core.data import read_text_file
from slimgui.core.errors import SlimError
from slimgui.core.metrics import Metric
from slimgui.core.model import made_from
from slimgui.core.options import from_dict
from slimgui.core.train import TrainConfig, TrainTask

from .blocks import (
    bos_token,
    causal_lm_loss,
    check_context,
    copy_sentence_transformers,
    find_stack,
    is_decoder,
    mask_tokens,
    need_tokenizer,
)
from .options import DistillOptions, LoraOptions, TextDataOptions

TEXT_SUFFIXES = {".txt", ".md", ".py", ".rst", ".text", ".csv", ".tex", ".html", ".c", ".h", ".js", ".java"}


VAL_PPL = Metric("val_ppl", "Validation perplexity", better="lower", fmt="{:.3f}",
                 help="exp of the mean next-token loss on the held-out token blocks")


# -- data ------------------------------------------------------------------------------------------
def data_options(source: Any) -> TextDataOptions:
    """The training-data options of ``source``: a TextDataOptions itself, or a TrainConfig's ``options`` (checked)."""
    if isinstance(source, TextDataOptions):
        return source
    return from_dict(TextDataOptions, getattr(source, "options", None) or {}, where="retraining option")


def _jsonl_texts(path: Path, cfg: TextDataOptions) -> list[str]:
    texts = []
    for n, line in enumerate(read_text_file(path, "data file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SlimError(f"{path} line {n} is not JSON ({exc.msg})", hint="JSONL needs one JSON object per line") from None
        texts.append(_record_text(obj, cfg, f"{path} line {n}"))
    return texts


def _record_text(obj: Any, cfg: TextDataOptions, where: str) -> str:
    if not isinstance(obj, dict):
        raise SlimError(f"{where} is not a JSON object")
    if isinstance(obj.get(cfg.text_field), str):
        return obj[cfg.text_field]
    if isinstance(obj.get("instruction"), str) and isinstance(obj.get("response"), str):
        try:
            return cfg.prompt_template.format(**obj)
        except KeyError as exc:
            raise SlimError(f"the prompt template needs field {exc} that {where} lacks") from None
    raise SlimError(f"{where} has no '{cfg.text_field}' field and no instruction/response fields",
                    hint="set --text-field, or give instruction and response fields")


def _dataset_texts(path: Path, cfg: TextDataOptions) -> list[str]:
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError:
        raise SlimError("reading a saved dataset needs the `datasets` package", hint="pip install datasets") from None
    try:
        ds = load_from_disk(str(path))
    except Exception as exc:
        raise SlimError(f"{path} is not a dataset saved with datasets.save_to_disk ({str(exc)[:120]})") from None
    if isinstance(ds, DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    return [_record_text(row, cfg, f"{path} row {i}") for i, row in enumerate(ds)]


def load_texts(paths: list[str], cfg: TextDataOptions | TrainConfig) -> list[str]:
    """Documents from text files, folders of text files, JSONL files and saved datasets (``cfg``: the
    training-data options, or a job whose options hold them)."""
    cfg = data_options(cfg)
    texts: list[str] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise SlimError(f"data {p} does not exist")
        if p.is_dir() and ((p / "dataset_info.json").is_file() or (p / "dataset_dict.json").is_file()
                           or (p / "state.json").is_file()):
            texts += _dataset_texts(p, cfg)
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES | {".jsonl"})
            if not files:
                raise SlimError(f"data folder {p} holds no text or JSONL files")
            texts += load_texts([str(f) for f in files], cfg)
        elif p.suffix.lower() == ".jsonl":
            texts += _jsonl_texts(p, cfg)
        else:
            texts.append(read_text_file(p, "data file"))
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise SlimError("the training data is empty", hint="give text, JSONL or a saved dataset with content")
    return texts


def token_blocks(texts: list[str], tokenizer, cfg: TextDataOptions, val_fraction: float = 0.05,
                 bos_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate documents (separated by EOS) into ``seq_len`` blocks; every k-th block is held out
    (k = 1 / ``val_fraction``).  ``bos_id``: each block is that token and ``seq_len`` − 1 tokens of text, as
    calibration and evaluation cut their windows."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    ids: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]:
        ids.extend(enc)
        if eos is not None:
            ids.append(eos)
        if cfg.max_train_tokens and len(ids) >= cfg.max_train_tokens:
            ids = ids[: cfg.max_train_tokens]
            break
    span = cfg.seq_len - (bos_id is not None)
    n = len(ids) // span
    if n < 2:
        raise SlimError(f"the training data gives {len(ids)} tokens: fewer than two {cfg.seq_len}-token sequences",
                        hint="give more text or a smaller --seq-len")
    blocks = torch.tensor(ids[: n * span], dtype=torch.long).view(n, span)
    if bos_id is not None:
        blocks = torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), blocks], dim=1)
    every = max(2, round(1 / val_fraction))
    val_mask = torch.zeros(n, dtype=torch.bool)
    val_mask[every - 1::every] = True
    if not val_mask.any():
        val_mask[-1] = True
    return blocks[~val_mask], blocks[val_mask]


# -- LoRA ----------------------------------------------------------------------------------------------
def linear_leaf_names(block_stack: nn.Module) -> list[str]:
    from transformers.pytorch_utils import Conv1D

    names = []
    for name, mod in block_stack.named_modules():
        if isinstance(mod, (nn.Linear, Conv1D)):
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in names:
                names.append(leaf)
    return names


def apply_lora(module: nn.Module, stack: nn.Module, cfg: LoraOptions, decoder: bool):
    from peft import LoraConfig, get_peft_model

    available = linear_leaf_names(stack)
    targets = cfg.lora_targets or available
    unknown = [t for t in targets if t not in available]
    if unknown:
        raise SlimError(f"unknown LoRA target module(s) {', '.join(unknown)}",
                        hint=f"this model's block layers are: {', '.join(available)}")
    if cfg.lora_r < 1:
        raise SlimError(f"LoRA rank must be at least 1, got {cfg.lora_r}")
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(targets), task_type="CAUSAL_LM" if decoder else None)
    return get_peft_model(module, lcfg)


# -- the task ------------------------------------------------------------------------------------------
class _BlockTap:
    """Forward hooks that keep each block's output of the latest forward pass."""

    def __init__(self, layers: nn.ModuleList):
        self.outputs: list[torch.Tensor | None] = [None] * len(layers)
        self.handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)]

    def _hook(self, i: int):
        def hook(_mod, _args, out):
            self.outputs[i] = out[0] if isinstance(out, (tuple, list)) else out
        return hook


def _kept_indices(student_dir: Path, n_student: int, n_teacher: int) -> list[int]:
    plan_file = student_dir / "slimgui_plan.json"
    if plan_file.is_file():
        doc = json.loads(plan_file.read_text(encoding="utf-8"))
        removed = {int(u.split(".")[1]) for u in doc.get("remove", []) if u.startswith("block.")}
        kept = [i for i in range(n_teacher) if i not in removed]
        if len(kept) == n_student:
            return kept
        raise SlimError(f"the student's plan does not map onto the teacher: {n_teacher} teacher blocks minus "
                        f"{len(removed)} removed is not the student's {n_student}",
                        hint="give the model the student was pruned from as --teacher")
    if n_student == n_teacher:
        return list(range(n_teacher))
    raise SlimError("cannot map the student's blocks to the teacher's: the student has no slimgui_plan.json",
                    hint="distil a model pruned by SlimGUI, or one with as many blocks as the teacher")


def build_lora(adapter: Any, cfg: TrainConfig, options: LoraOptions | None, *, registry: Any = None) -> TrainTask:
    """LoRA (peft) on the blocks' linear layers; merged into the weights at the end unless ``lora_merge`` is off."""
    return _build(adapter, cfg, "lora", options if options is not None else LoraOptions())


def build_cpt(adapter: Any, cfg: TrainConfig, options: Any = None, *, registry: Any = None) -> TrainTask:
    """Continued pretraining: every weight trains on the next-token (or masked-LM) loss."""
    return _build(adapter, cfg, "cpt", None)


def build_kd(adapter: Any, cfg: TrainConfig, options: DistillOptions | None, *, registry: Any = None) -> TrainTask:
    """Distillation from the original (``cfg.teacher``, else the model the student was pruned from):
    kd_ce · next-token loss + kd_kl · KL(teacher‖student, T) + kd_hidden · MSE of the matching block outputs."""
    options = options if options is not None else DistillOptions()
    if options.kd_ce == options.kd_kl == options.kd_hidden == 0:
        raise SlimError("--kd-ce, --kd-kl and --kd-hidden are all 0: distillation would learn nothing",
                        hint="give at least one a weight above 0")
    return _build(adapter, cfg, "kd", options)


def _build(adapter: Any, cfg: TrainConfig, method: str, options: Any) -> TrainTask:
    data = data_options(cfg)
    student = adapter.load(cfg.model, trust_remote_code=cfg.trust_remote_code)
    if not student.has_weights:
        raise SlimError(f"{cfg.model} has no weights to retrain")
    from .stream import refuse_streamed

    refuse_streamed(student, "retraining")
    check_context(student, "--seq-len", data.seq_len)
    tok = need_tokenizer(student)
    decoder = is_decoder(student)
    headless = not decoder and student.module.get_output_embeddings() is None
    if headless and method != "kd":
        raise SlimError(f"{method} retraining needs a language-modelling head; this encoder "
                        f"({type(student.module).__name__}) has none",
                        hint="heal it with --method kd: the pruned encoder learns the original's hidden states")
    if method == "kd" and not decoder and options.kd_hidden <= 0:
        raise SlimError("distillation of an encoder learns the original's hidden states: --kd-hidden must be above 0")
    if not cfg.data:
        raise SlimError("no training data given", hint="pass --data FILE (text, JSONL or a saved dataset)")
    bos_id = bos_token(student, data.bos) if decoder else None
    train_blocks, val_blocks = token_blocks(load_texts(cfg.data, data), tok, data, cfg.val_fraction, bos_id=bos_id)
    _, layers = find_stack(student)
    module = student.module
    hidden = int(getattr(student.config, "hidden_size", 0) or 0)
    vocab = int(getattr(student.config, "vocab_size", 0) or 0)
    info: dict[str, Any] = {
        "hidden_size": hidden, "layers": len(layers), "vocab_size": vocab, "decoder": decoder,
        "train_sequences": len(train_blocks), "val_sequences": len(val_blocks), "bos": bos_id is not None,
        "items": "tokens", "items_per_sample": data.seq_len,
        # activations of one sequence: the blocks' (about 34 bytes per hidden unit and layer) and the logits'
        "activation_bytes_per_sample": data.seq_len * (hidden * len(layers) * 34 + vocab * 12),
        "val_metric": "ppl", "metrics": [VAL_PPL.to_json()],
        "too_little_data": "give more text or a smaller --seq-len",
        "too_much_memory": "lower --batch-size or --seq-len",
    }

    def lm_loss(model, batch):
        if decoder:
            return causal_lm_loss(model(input_ids=batch, use_cache=False).logits, batch)
        masked, labels = mask_tokens(batch, tok, seed=int(batch.sum()) % 100_000)
        logits = model(input_ids=masked, attention_mask=torch.ones_like(batch)).logits
        return nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    if method == "lora":
        module = apply_lora(module, layers, options, decoder)
    else:
        for p in module.parameters():
            p.requires_grad_(True)

    loss_fn = lambda model, batch: (lm_loss(model, batch), {})  # noqa: E731
    eval_loss = lm_loss
    val_metrics = lambda mean: {"val_ppl": math.exp(min(mean, 50))}  # noqa: E731
    if method == "kd" and not decoder:  # encoders: hidden-state distillation from the original
        loss_fn = _encoder_distillation(adapter, cfg, student, layers, options, info)
        eval_loss = lambda model, batch: loss_fn(model, batch)[0]  # noqa: E731
        val_metrics = None
        info.update(val_metric=None, metrics=[])
    elif method == "kd":
        loss_fn = _distillation(adapter, cfg, student, layers, options, info)

    source_dir = Path(student.source)
    merge = method == "lora" and options.lora_merge

    def save(model, out_dir: str) -> None:
        out = Path(out_dir)
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        if merge:
            model = model.merge_and_unload()
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if (source_dir / "slimgui_plan.json").is_file():
            shutil.copy(source_dir / "slimgui_plan.json", tmp / "slimgui_plan.json")
        copy_sentence_transformers(source_dir, tmp, getattr(student.config, "hidden_size", None))
        (tmp / "slimgui_healed_from.json").write_text(json.dumps({"model": str(source_dir), "method": method}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)

    return TrainTask(model=module, train_blocks=train_blocks, val_blocks=val_blocks, loss=loss_fn, save=save,
                     eval_loss=eval_loss, info=info, val_metrics=val_metrics)


def _teacher(adapter: Any, cfg: TrainConfig, student: Any, layers: nn.ModuleList):
    """(teacher model, its block stack, the teacher block each student block stands for)."""
    origin = made_from(student.source)
    teacher_path = cfg.teacher or (str(origin) if origin is not None else None)
    if not teacher_path:
        raise SlimError("distillation needs a teacher", hint="pass --teacher ORIGINAL_MODEL")
    teacher = adapter.load(teacher_path, trust_remote_code=cfg.trust_remote_code)
    _, t_layers = find_stack(teacher)
    return teacher, t_layers, _kept_indices(Path(student.source), len(layers), len(t_layers))


def _encoder_distillation(adapter: Any, cfg: TrainConfig, student: Any, layers: nn.ModuleList,
                          options: DistillOptions, info: dict[str, Any]):
    """Hidden-state distillation of an encoder (no logits to match): the mean MSE between each kept block's output
    and the original's matching block, plus the MSE of the final hidden states (what a sentence encoder pools),
    both weighted by ``kd_hidden``."""
    teacher, t_layers, kept = _teacher(adapter, cfg, student, layers)
    if int(getattr(teacher.config, "hidden_size", 0) or 0) != int(getattr(student.config, "hidden_size", 0) or 0):
        raise SlimError("teacher and student have different hidden sizes",
                        hint="distil from the model the student was pruned from")
    t_module = teacher.module.eval()
    for p in t_module.parameters():
        p.requires_grad_(False)
    s_tap, t_tap = _BlockTap(layers), _BlockTap(t_layers)
    info.update(teacher_params=sum(p.numel() for p in t_module.parameters()), block_map=kept,
                distillation="hidden states")

    def base(module):
        return getattr(module, "base_model", module)

    def kd_loss(model, batch):
        if next(t_module.parameters()).device != batch.device:
            t_module.to(batch.device)
        mask = torch.ones_like(batch)
        s_out = base(model)(input_ids=batch, attention_mask=mask).last_hidden_state
        with torch.no_grad():
            t_out = base(t_module)(input_ids=batch, attention_mask=mask).last_hidden_state
        hid = torch.stack([nn.functional.mse_loss(s_tap.outputs[k], t_tap.outputs[j])
                           for k, j in enumerate(kept)]).mean()
        final = nn.functional.mse_loss(s_out, t_out)
        total = options.kd_hidden * (hid + final)
        return total, {"hidden_mse": hid.item(), "final_mse": final.item()}

    return kd_loss


def _distillation(adapter: Any, cfg: TrainConfig, student: Any, layers: nn.ModuleList, options: DistillOptions,
                  info: dict[str, Any]):
    """The distillation loss against the teacher (``cfg.teacher``, else the model ``student`` was pruned from)."""
    teacher, t_layers, kept = _teacher(adapter, cfg, student, layers)
    if teacher.config.vocab_size != student.config.vocab_size:
        raise SlimError("teacher and student have different vocabularies")
    t_module = teacher.module.eval()
    for p in t_module.parameters():
        p.requires_grad_(False)
    s_tap, t_tap = _BlockTap(layers), _BlockTap(t_layers)
    info.update(teacher_params=sum(p.numel() for p in t_module.parameters()), block_map=kept)
    temp = options.kd_temperature

    def kd_loss(model, batch):
        if next(t_module.parameters()).device != batch.device:
            t_module.to(batch.device)
        s_logits = model(input_ids=batch, use_cache=False).logits
        with torch.no_grad():
            t_logits = t_module(input_ids=batch, use_cache=False).logits
        ce = causal_lm_loss(s_logits, batch)
        v = s_logits.shape[-1]
        kl = nn.functional.kl_div(nn.functional.log_softmax(s_logits.reshape(-1, v) / temp, dim=-1),
                                  nn.functional.log_softmax(t_logits.reshape(-1, v) / temp, dim=-1),
                                  log_target=True, reduction="batchmean") * temp * temp
        hid = torch.stack([nn.functional.mse_loss(s_tap.outputs[k], t_tap.outputs[j])
                           for k, j in enumerate(kept)]).mean()
        total = options.kd_ce * ce + options.kd_kl * kl + options.kd_hidden * hid
        return total, {"ce": ce.item(), "kl": kl.item(), "hidden_mse": hid.item()}

    return kd_loss
