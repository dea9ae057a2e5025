"""Vision transformers (transformers ViT / DeiT, and SlimGUI's pruned ViTs) as a graph of blocks, heads, query/key
pairs, value neurons and MLP neurons, pruned into a physically smaller model.

Unit ids (positions in the model as it is now; ``config.block_origin`` / ``head_origin`` say where they came from)::

    embed                         patch embedding, class/distillation tokens, positions
    block.{l}                     a whole block                                   (prunable)
    block.{l}.attn                its attention (a container)
    block.{l}.head.{h}            one head                                        (prunable)
    block.{l}.head.{h}.qk.{g}     query/key pairs g*G .. g*G+G-1 of the head      (prunable; G = groups["qk"])
    block.{l}.head.{h}.v.{g}      value neurons g*G .. g*G+G-1 of the head        (prunable; G = groups["v"])
    block.{l}.mlp                 its MLP (a container)
    block.{l}.mlp.{g}             MLP neurons g*G .. g*G+G-1                      (prunable; G = groups["mlp"])
    norm, pooler, classifier

What a plan turns into (said in the pruned model's ``extra["notes"]`` and the plan's ``meta["notes"]``, which is
saved with it as slimgui_plan.json): a head left with no query/key pair or no
value neuron is removed; a block left with no head loses its attention (it keeps its MLP, the residual passes
through); a block left with no MLP neuron loses its MLP; a block left with neither is removed.  A plan that leaves
no block at all is refused.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimgui.core.bench import BenchRun
from slimgui.core.errors import SlimError
from slimgui.core.graph import Unit, UnitGraph
from slimgui.core.model import LoadedModel, origin_with
from slimgui.core.plugins import ModelAdapter
from slimgui.core.progress import CancelToken, ProgressFn, report
from slimgui.core.safety import check_pickle_checkpoint, check_safetensors

from . import probe
from .modeling import SlimViTConfig, SlimViTForImageClassification, _pair, macs_per_image

FAMILY = "vit"
ADAPTER = "vit"
LAYOUT = "vit"
MODELING_FILE = "modeling_slimgui_vit.py"
PREPROCESSOR = "preprocessor_config.json"
ID = re.compile(r"^block\.(\d+)(?:\.(attn|mlp)(?:\.(\d+))?|\.head\.(\d+)(?:\.(qk|v)\.(\d+))?)?$")

# -- names of transformers' checkpoints <-> ours ------------------------------------------------------------
_LAYER = r"(?:encoder\.layer|layers)\.(\d+)\."
_RULES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.distillation_token$", "dist_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.(weight|bias)$", r"patch_embed.\1"),
    (rf"^{_LAYER}attention\.attention\.query\.(weight|bias)$", r"blocks.\1.attn.q_proj.\2"),
    (rf"^{_LAYER}attention\.attention\.key\.(weight|bias)$", r"blocks.\1.attn.k_proj.\2"),
    (rf"^{_LAYER}attention\.attention\.value\.(weight|bias)$", r"blocks.\1.attn.v_proj.\2"),
    (rf"^{_LAYER}attention\.output\.dense\.(weight|bias)$", r"blocks.\1.attn.o_proj.\2"),
    (rf"^{_LAYER}attention\.(q|k|v|o)_proj\.(weight|bias)$", r"blocks.\1.attn.\2_proj.\3"),
    (rf"^{_LAYER}intermediate\.dense\.(weight|bias)$", r"blocks.\1.mlp.fc1.\2"),
    (rf"^{_LAYER}output\.dense\.(weight|bias)$", r"blocks.\1.mlp.fc2.\2"),
    (rf"^{_LAYER}mlp\.(fc1|fc2)\.(weight|bias)$", r"blocks.\1.mlp.\2.\3"),
    (rf"^{_LAYER}layernorm_before\.(weight|bias)$", r"blocks.\1.norm1.\2"),
    (rf"^{_LAYER}layernorm_after\.(weight|bias)$", r"blocks.\1.norm2.\2"),
    (r"^layernorm\.(weight|bias)$", r"norm.\1"),
    (r"^pooler\.dense\.(weight|bias)$", r"pooler.\1"),
]
_HEADS = {"classifier": "classifier", "cls_classifier": "classifier", "distillation_classifier": "dist_classifier"}
_IGNORED = re.compile(r"(^|\.)(mask_token|position_ids)$")


def ours(name: str) -> str | None:
    """Our parameter name of a transformers ViT/DeiT tensor name (legacy or v5 names, with or without the
    vit./deit. prefix); None for a tensor we do not keep (mask token); "" for one we do not know."""
    if _IGNORED.search(name):
        return None
    head, _, rest = name.partition(".")
    if head in _HEADS and rest in ("weight", "bias"):
        return f"{_HEADS[head]}.{rest}"
    if head in ("vit", "deit"):
        name = rest
    for pat, repl in _RULES:
        if re.match(pat, name):
            return re.sub(pat, repl, name)
    return ""


def theirs(name: str, arch: str) -> str:
    """The transformers (legacy, what every version loads) name of one of our parameters, for ``arch``."""
    prefix = {"ViTForImageClassification": "vit.", "DeiTForImageClassification": "deit.",
              "DeiTForImageClassificationWithTeacher": "deit."}.get(arch, "")
    teacher = arch == "DeiTForImageClassificationWithTeacher"
    m = re.match(r"^blocks\.(\d+)\.(.*)$", name)
    if m:
        i, rest = m.groups()
        rest = {"attn.q_proj": "attention.attention.query", "attn.k_proj": "attention.attention.key",
                "attn.v_proj": "attention.attention.value", "attn.o_proj": "attention.output.dense",
                "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense", "norm1": "layernorm_before",
                "norm2": "layernorm_after"}[rest.rsplit(".", 1)[0]] + "." + rest.rsplit(".", 1)[1]
        return f"{prefix}encoder.layer.{i}.{rest}"
    base, _, leaf = name.rpartition(".")
    if base == "classifier" and leaf in ("weight", "bias"):
        return f"{'cls_classifier' if teacher else 'classifier'}.{leaf}"
    if base == "dist_classifier":
        return f"distillation_classifier.{leaf}"
    fixed = {"cls_token": "embeddings.cls_token", "dist_token": "embeddings.distillation_token",
             "pos_embed": "embeddings.position_embeddings", "patch_embed.weight": "embeddings.patch_embeddings.projection.weight",
             "patch_embed.bias": "embeddings.patch_embeddings.projection.bias", "norm.weight": "layernorm.weight",
             "norm.bias": "layernorm.bias", "pooler.weight": "pooler.dense.weight", "pooler.bias": "pooler.dense.bias"}
    return prefix + fixed[name]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _shape(shape) -> str:
    return "×".join(str(int(s)) for s in shape) or "scalar"


class _Slices(nn.Module):
    """A unit's weights as parameters of their own (copies of slices of the model's, with the slices of their
    gradients when the model has some): what the core's magnitude and taylor criteria read."""

    def __init__(self, parts: dict[str, torch.Tensor | None]):
        super().__init__()
        for name, (value, grad) in parts.items():
            p = nn.Parameter(value.detach().clone(), requires_grad=False)
            if grad is not None:
                p.grad = grad.detach().clone()
            self.register_parameter(name, p)


def _rows(p: torch.Tensor, idx: slice | list[int]):
    return p[idx], (p.grad[idx] if p.grad is not None else None)


def _cols(p: torch.Tensor, idx: slice | list[int]):
    return p[:, idx], (p.grad[:, idx] if p.grad is not None else None)


class ViTAdapter(ModelAdapter):
    """Opens transformers ViT / DeiT folders and SlimGUI's pruned ViTs.  Declared capabilities (see the manifest):
    calibration, default-data, bench."""

    family = FAMILY

    def warm_up(self) -> None:
        import transformers.modeling_utils  # noqa: F401

    # -- opening ---------------------------------------------------------------------------------------------
    def load(self, path: str, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
             weights: bool = True, match: Any = None, **_: Any) -> LoadedModel:
        """Open a ViT folder (or its config.json / weights file).  SlimGUI's pruned ViTs are built with the
        installed class: the ``modeling_slimgui_vit.py`` beside their weights is never executed."""
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        report(progress, 0, 3, "reading config")
        p = Path(path).expanduser()
        if isinstance(match, dict) and match.get("timm"):
            return self._load_timm(Path(match["timm"]), match.get("timm_config"), weights, progress, cancel)
        if p.exists() and (p.suffix == ".safetensors" or p.is_dir()):
            from .timm_format import locate

            found = locate(p)
            if found is not None:
                return self._load_timm(found[0], found[1], weights, progress, cancel)
        folder = probe._folder(p) if p.exists() else None
        if folder is None:
            raise SlimError(f"{path} is not a ViT model folder", hint="a folder with config.json (and model.safetensors)")
        if isinstance(match, dict) and match.get("folder") == str(folder) and isinstance(match.get("config"), dict):
            doc = match["config"]
        else:
            doc = probe.read_config(folder)
        where = str(folder / "config.json")
        kwargs = probe.slim_kwargs(doc, where)
        slim = doc.get("model_type") == probe.SLIM_TYPE
        files = self._weight_files(folder) if weights else []
        report(progress, 1, 3, "loading weights" if files else "building structure (no weights)")
        if files:
            names = self._tensor_names(files, slim)
            if "pooler.weight" not in names and kwargs["pooler"]:
                kwargs["pooler"] = False  # a ViTModel saved without its pooler
            if not slim:
                has_cls = "classifier.weight" in names
                if kwargs["classifier"] != "none" and not has_cls:
                    raise SlimError(f"the weights in {folder} have no classifier, but config.json names "
                                    f"{kwargs['base_architecture']}", hint="open a folder whose weights match its config")
                if kwargs["classifier"] == "none" and has_cls:
                    kwargs["classifier"] = "cls+distillation" if "dist_classifier.weight" in names else "cls"
        config = SlimViTConfig(**kwargs)
        with torch.device("meta"):
            module = SlimViTForImageClassification(config)
        if files:
            self._load_weights(module, files, folder, slim, cancel)
        module.eval()
        report(progress, 3, 3, "loaded")
        extra: dict[str, Any] = {"weight_files": [str(f) for f in files], "preprocess": self._preprocess(folder)}
        return LoadedModel(family=FAMILY, adapter=ADAPTER, source=str(folder), module=module, config=config,
                           has_weights=bool(files), impl=self, extra=extra)

    def _load_timm(self, file: Path, doc: dict[str, Any] | None, weights: bool, progress: ProgressFn | None,
                   cancel: CancelToken | None) -> LoadedModel:
        """A timm VisionTransformer / DeiT checkpoint (see :mod:`.timm_format`): its config from the shapes, its
        fused qkv split into our q/k/v projections."""
        from safetensors import safe_open

        from . import timm_format

        check_safetensors(file)
        shapes = timm_format.header_shapes(file)
        doc_hf, notes = timm_format.config_of(shapes, doc, str(file))
        kwargs = probe.slim_kwargs(doc_hf, str(file))
        config = SlimViTConfig(**kwargs)
        with torch.device("meta"):
            module = SlimViTForImageClassification(config)
        report(progress, 1, 3, "loading weights" if weights else "building structure (no weights)")
        if weights:
            expected = {n: tuple(t.shape) for n, t in module.state_dict().items()}
            state: dict[str, torch.Tensor] = {}
            with safe_open(str(file), framework="pt") as fh:
                for key in fh.keys():
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    targets = timm_format.ours(key)
                    if targets is None:
                        continue
                    if not targets:
                        raise SlimError(f"{file.name} holds the tensor {key}, which a timm VisionTransformer of this "
                                        "shape does not have", hint="the family opens timm's plain ViT / DeiT")
                    tensor = fh.get_tensor(key).to(torch.float32)
                    for name, part in targets:
                        t = tensor if part is None else tensor.chunk(3, dim=0)[part]
                        if name not in expected or tuple(t.shape) != expected[name]:
                            raise SlimError(f"{file.name}: {key} is {_shape(tensor.shape)}, which does not fit a ViT "
                                            f"of width {config.hidden_size} with {len(config.qk_dims)} blocks",
                                            hint="the file may be damaged or not a timm ViT")
                        state[name] = t.contiguous()
            missing = [n for n in expected if n not in state]
            if missing:
                raise SlimError(f"{file.name} lacks {timm_format.timm_name(missing[0])} (and {len(missing) - 1} more)"
                                if len(missing) > 1 else f"{file.name} lacks {timm_format.timm_name(missing[0])}",
                                hint="the file may not hold a whole timm ViT")
            module.load_state_dict(state, strict=True, assign=True)
        module.eval()
        report(progress, 3, 3, "loaded")
        extra: dict[str, Any] = {"weight_files": [str(file)] if weights else [], "notes": notes,
                                 "preprocess": timm_format.preprocess_of(doc), "format": "timm"}
        return LoadedModel(family=FAMILY, adapter=ADAPTER, source=str(file), module=module, config=config,
                           has_weights=weights, impl=self, extra=extra)

    @staticmethod
    def _weight_files(folder: Path) -> list[Path]:
        safes = sorted(folder.glob("*.safetensors"))
        for f in safes:
            check_safetensors(f)
        if safes:
            return safes
        pickles = sorted(folder.glob("pytorch_model*.bin"))
        for f in pickles:
            check_pickle_checkpoint(f)
        return pickles

    @staticmethod
    def _read(files: list[Path]):
        """(file, tensor name, loader) of every tensor; nothing is read until a loader is called."""
        from safetensors import safe_open

        for f in files:
            if f.suffix == ".safetensors":
                with safe_open(str(f), framework="pt") as fh:
                    for key in fh.keys():
                        yield f, key, fh.get_slice(key).get_shape(), (lambda fh=fh, key=key: fh.get_tensor(key))
            else:
                state = torch.load(f, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(f))
                for key, t in state.items():
                    yield f, key, list(t.shape), (lambda t=t: t)

    def _tensor_names(self, files: list[Path], slim: bool) -> set[str]:
        """Our names of the tensors in ``files`` (headers only: nothing is read)."""
        from safetensors import safe_open

        out = set()
        for f in files:
            if f.suffix == ".safetensors":
                with safe_open(str(f), framework="pt") as fh:
                    keys = list(fh.keys())
            else:
                keys = list(torch.load(f, map_location="meta", weights_only=True, mmap=zipfile.is_zipfile(f)).keys())
            out.update(n for n in (k if slim else ours(k) for k in keys) if n)
        return out

    def _load_weights(self, module: nn.Module, files: list[Path], folder: Path, slim: bool,
                      cancel: CancelToken | None) -> None:
        expected = {n: tuple(p.shape) for n, p in module.state_dict().items()}
        state: dict[str, torch.Tensor] = {}
        for f, key, shape, get in self._read(files):
            if cancel is not None:
                cancel.raise_if_cancelled()
            name = key if slim else ours(key)
            if name is None:
                continue
            if not name or name not in expected:
                raise SlimError(f"{f.name} holds the tensor {key}, which a "
                                f"{'ViT' if not slim else 'pruned ViT'} with this config.json does not have",
                                hint="the weights may belong to another model")
            if tuple(shape) != expected[name]:
                raise SlimError(f"the weights in {folder} do not match its config.json: {key} is {_shape(shape)} in "
                                f"{f.name}, the config asks for {_shape(expected[name])}",
                                hint="repair config.json or use the weights that belong to it")
            state[name] = get().to(torch.float32)
        missing = [n for n in expected if n not in state]
        if missing:
            raise SlimError(f"the weights in {folder} do not match its config.json: {len(missing)} tensor(s) are "
                            f"missing (e.g. {missing[0]})", hint="the weights may belong to another model")
        module.load_state_dict(state, strict=True, assign=True)

    @staticmethod
    def _preprocess(folder: Path) -> dict[str, Any]:
        from slimgui.core.io import read_json_file

        f = folder / PREPROCESSOR
        if not f.is_file():
            return {}
        try:
            doc = read_json_file(f, "the image processor's config", limit=1 << 20)
        except SlimError:
            return {}
        return doc if isinstance(doc, dict) else {}

    # -- structure ---------------------------------------------------------------------------------------------
    @staticmethod
    def groups(config: SlimViTConfig) -> dict[str, int]:
        g = probe.default_groups(config.head_size, max(config.intermediate_sizes or [0]))
        g.update({k: int(v) for k, v in (config.groups or {}).items() if k in g})
        return g

    def to_graph(self, model: LoadedModel) -> UnitGraph:
        cfg: SlimViTConfig = model.config
        module = model.module
        d, t = cfg.hidden_size, cfg.seq_len
        bias = 1 if cfg.qkv_bias else 0
        groups = self.groups(cfg)
        ph, pw = _pair(cfg.patch_size)
        units: list[Unit] = []
        embed_params = sum(p.numel() for n, p in module.named_parameters()
                           if n.startswith(("patch_embed", "cls_token", "dist_token", "pos_embed")))
        units.append(Unit("embed", "embedding", "Patch embedding", params=int(embed_params),
                          macs=cfg.num_patches * cfg.num_channels * ph * pw * d,
                          attrs={"patches": cfg.num_patches, "tokens": cfg.num_tokens, "patch_size": [ph, pw]}))
        ids = ["embed"]
        for li, (qk_row, v_row, inter) in enumerate(zip(cfg.qk_dims, cfg.v_dims, cfg.intermediate_sizes)):
            bid = f"block.{li}"
            block = module.blocks[li]
            block_params = int(sum(p.numel() for p in block.parameters()))
            head_units: list[Unit] = []
            attn_macs = 0
            for h, (wq, wv) in enumerate(zip(qk_row, v_row)):
                hid = f"{bid}.head.{h}"
                qk_units = [Unit(f"{hid}.qk.{g}", "qk", f"q/k pairs {s}-{s + n - 1}", parent=hid,
                                 params=2 * n * (d + bias), macs=2 * n * d * t + n * t * t, prunable=True,
                                 attrs={"dims": [s, s + n], "group": groups["qk"]})
                            for g, (s, n) in enumerate(_chunks(wq, groups["qk"]))]
                v_units = [Unit(f"{hid}.v.{g}", "value", f"value neurons {s}-{s + n - 1}", parent=hid,
                                params=n * (d + bias) + n * d, macs=2 * n * d * t + n * t * t, prunable=True,
                                attrs={"dims": [s, s + n], "group": groups["v"]})
                           for g, (s, n) in enumerate(_chunks(wv, groups["v"]))]
                hp = sum(u.params for u in qk_units + v_units)
                hm = sum(u.macs for u in qk_units + v_units)
                attn_macs += hm
                head_units.append(Unit(hid, "head", f"Block {li} head {h} · q/k {wq}, v {wv}", parent=f"{bid}.attn", params=hp, macs=hm,
                                       prunable=True,
                                       attrs={"index": h, "origin": cfg.head_origin[li][h], "qk_width": wq,
                                              "v_width": wv, "head_size": cfg.head_size,
                                              # a head left with no q/k pair or no value neuron is removed
                                              "removed_with_all": [[u.id for u in qk_units], [u.id for u in v_units]]}))
                head_units += qk_units + v_units
            mlp_units = [Unit(f"{bid}.mlp.{g}", "neurons", f"neurons {s}-{s + n - 1}", parent=f"{bid}.mlp",
                              params=n * (d + 1) + n * d, macs=2 * n * d * t, prunable=True,
                              attrs={"dims": [s, s + n], "group": groups["mlp"]})
                         for g, (s, n) in enumerate(_chunks(inter, groups["mlp"]))]
            mlp_macs = sum(u.macs for u in mlp_units)
            units.append(Unit(bid, "block", f"Block {li}", params=block_params, macs=attn_macs + mlp_macs,
                              prunable=True,
                              attrs={"index": li, "origin": cfg.block_origin[li], "heads": len(qk_row),
                                     "qk_widths": list(qk_row), "v_widths": list(v_row), "mlp_width": inter,
                                     # a block left with neither a head nor an MLP neuron is removed
                                     "removed_with_all": [[f"{bid}.head.{h}" for h in range(len(qk_row))]
                                                          + [u.id for u in mlp_units]]}))
            if block.attn is not None:
                attn_params = int(sum(p.numel() for p in block.attn.parameters()) + 2 * d)
                units.append(Unit(f"{bid}.attn", "attention", f"Attention · {len(qk_row)} heads", parent=bid,
                                  params=attn_params, macs=attn_macs,
                                  attrs={"heads": len(qk_row), "qk_width": sum(qk_row), "v_width": sum(v_row),
                                         "cells": "children",  # the app draws its heads as coloured cells
                                         "removed_with_all": [[f"{bid}.head.{h}" for h in range(len(qk_row))]],
                                         "note": "its heads; the output projection's bias and the norm go with the "
                                                 "last head"}))
                units += head_units
            if block.mlp is not None:
                units.append(Unit(f"{bid}.mlp", "mlp", f"Block {li} MLP · {inter} neurons", parent=bid,
                                  params=int(sum(p.numel() for p in block.mlp.parameters()) + 2 * d), macs=mlp_macs,
                                  attrs={"width": inter, "group": groups["mlp"],
                                         "removed_with_all": [[u.id for u in mlp_units]]}))
                units += mlp_units
            ids.append(bid)
        units.append(Unit("norm", "norm", "Final norm", params=2 * d))
        ids.append("norm")
        if module.pooler is not None:
            units.append(Unit("pooler", "pooler", "Pooler", params=int(sum(p.numel() for p in module.pooler.parameters())),
                              macs=d * cfg.pooler_output_size))
            ids.append("pooler")
        if module.classifier is not None:
            heads = [module.classifier] + ([module.dist_classifier] if module.dist_classifier is not None else [])
            units.append(Unit("classifier", "classifier",
                              "Classifier" + (" (class + distillation)" if len(heads) == 2 else ""),
                              params=int(sum(p.numel() for m in heads for p in m.parameters())),
                              macs=int(sum(m.weight.numel() for m in heads)), attrs={"labels": cfg.num_labels}))
            ids.append("classifier")
        total = int(sum(p.numel() for p in module.parameters()))
        (ih, iw) = _pair(cfg.image_size)
        attrs = {
            "layout": LAYOUT, "architecture": cfg.base_architecture if self.is_plain(cfg) else "SlimViT",
            "model_type": probe.SLIM_TYPE if not self.is_plain(cfg) else cfg.base_model_type,
            "base_architecture": cfg.base_architecture, "blocks": len(cfg.qk_dims), "hidden_size": d,
            "heads": [len(r) for r in cfg.qk_dims], "head_size": cfg.head_size, "image_size": [ih, iw],
            "patch_size": [ph, pw], "tokens": t, "total_params": total, "macs_per": "image",
            "macs_note": f"MACs per {ih}×{iw} image ({t} tokens)", "total_macs": macs_per_image(cfg),
            "groups": groups, "unit_word": "unit",
            "rules": "a head left with no query/key pair or no value neuron is removed; a block left with no head "
                     "loses its attention; a block left with no MLP neuron loses its MLP; a block left with neither "
                     "is removed; a plan leaving no block is refused",
        }
        return UnitGraph(FAMILY, units, edges=list(zip(ids, ids[1:])), attrs=attrs)

    @staticmethod
    def is_plain(cfg: SlimViTConfig) -> bool:
        """Whether transformers' own ViT / DeiT expresses this model: every block keeps every original head at the
        original size, and all MLPs have one width."""
        heads = int(cfg.base_config.get("num_attention_heads") or max(len(r) for r in cfg.qk_dims))
        inter = set(cfg.intermediate_sizes)
        return (len(inter) == 1 and 0 not in inter
                and all(len(q) == heads and len(v) == heads and set(q) == {cfg.head_size} and set(v) == {cfg.head_size}
                        for q, v in zip(cfg.qk_dims, cfg.v_dims)))

    def _parse(self, model: LoadedModel, unit_id: str) -> tuple:
        m = ID.match(unit_id)
        cfg = model.config
        if m:
            li = int(m.group(1))
            if li < len(cfg.qk_dims):
                return (li, *m.groups()[1:])
        raise SlimError(f"unknown unit '{unit_id}'", hint="`slimgui inspect MODEL` lists the unit ids")

    def unit_module(self, model: LoadedModel, unit_id: str) -> nn.Module:
        """A module whose parameters are the unit's weights: the model's own module for the embedding, a block, its
        attention or MLP, the norm and the classifier; copies of the weight slices (with their gradients) for a
        head, a group of query/key pairs (q and k rows), of value neurons (v rows, o columns) or of MLP neurons
        (fc1 rows, fc2 columns)."""
        module = model.module
        simple = {"norm": module.norm, "pooler": module.pooler, "classifier": module.classifier}
        if unit_id in simple and simple[unit_id] is not None:
            if unit_id == "classifier" and module.dist_classifier is not None:
                return nn.ModuleList([module.classifier, module.dist_classifier])
            return simple[unit_id]
        if unit_id == "embed":
            holder = nn.Module()
            holder.patch_embed = module.patch_embed
            holder.cls_token, holder.pos_embed = module.cls_token, module.pos_embed
            if module.dist_token is not None:
                holder.dist_token = module.dist_token
            return holder
        li, part, mlp_g, head, side, g = self._parse(model, unit_id)
        block = module.blocks[li]
        groups = self.groups(model.config)
        if part == "attn" and block.attn is not None and mlp_g is None:
            return block.attn
        if part == "mlp" and block.mlp is not None:
            if mlp_g is None:
                return block.mlp
            idx = _group_slice(block.mlp.fc1.out_features, groups["mlp"], int(mlp_g), unit_id)
            return _Slices({"fc1_weight": _rows(block.mlp.fc1.weight, idx), "fc1_bias": _rows(block.mlp.fc1.bias, idx),
                            "fc2_weight": _cols(block.mlp.fc2.weight, idx)})
        if part is None and head is None:
            return block
        if head is not None and block.attn is not None and int(head) < block.attn.num_heads:
            attn = block.attn
            sq, sv = attn.head_slices()[int(head)]
            if side == "qk":
                sq = _sub(sq, groups["qk"], int(g), unit_id)
            elif side == "v":
                sv = _sub(sv, groups["v"], int(g), unit_id)
            parts: dict[str, Any] = {}
            if side in (None, "qk"):
                parts |= {"q_weight": _rows(attn.q_proj.weight, sq), "k_weight": _rows(attn.k_proj.weight, sq)}
                if attn.q_proj.bias is not None:
                    parts |= {"q_bias": _rows(attn.q_proj.bias, sq), "k_bias": _rows(attn.k_proj.bias, sq)}
            if side in (None, "v"):
                parts |= {"v_weight": _rows(attn.v_proj.weight, sv), "o_weight": _cols(attn.o_proj.weight, sv)}
                if attn.v_proj.bias is not None:
                    parts["v_bias"] = _rows(attn.v_proj.bias, sv)
            return _Slices(parts)
        raise SlimError(f"unit '{unit_id}' has no module of its own in this model")

    # -- pruning -----------------------------------------------------------------------------------------------
    def apply_plan(self, model: LoadedModel, plan, *, copy: bool = True) -> LoadedModel:
        """A physically smaller model without the plan's units (the rules are in the module's docstring; what they
        did is listed in ``extra["notes"]``).  The original model is never changed."""
        graph = self.to_graph(model)
        for uid in plan.remove:
            graph.resolve(uid)
        cfg: SlimViTConfig = model.config
        groups = self.groups(cfg)
        gone_blocks: set[int] = set()
        gone_heads: set[tuple[int, int]] = set()
        gone_qk: dict[tuple[int, int], set[int]] = {}
        gone_v: dict[tuple[int, int], set[int]] = {}
        gone_mlp: dict[int, set[int]] = {}
        for uid in plan.remove:
            li, part, mlp_g, head, side, g = self._parse(model, uid)
            if part is None and head is None:
                gone_blocks.add(li)
            elif part == "mlp" and mlp_g is not None:
                s = _group_slice(cfg.intermediate_sizes[li], groups["mlp"], int(mlp_g), uid)
                gone_mlp.setdefault(li, set()).update(range(s.start, s.stop))
            elif head is not None and side is None:
                gone_heads.add((li, int(head)))
            elif side == "qk":
                s = _group_slice(cfg.qk_dims[li][int(head)], groups["qk"], int(g), uid)
                gone_qk.setdefault((li, int(head)), set()).update(range(s.start, s.stop))
            elif side == "v":
                s = _group_slice(cfg.v_dims[li][int(head)], groups["v"], int(g), uid)
                gone_v.setdefault((li, int(head)), set()).update(range(s.start, s.stop))
            else:
                raise SlimError(f"unit '{uid}' cannot be removed", hint="choose one of the prunable units")
        notes: list[str] = []
        keep_blocks: list[int] = []
        heads_kept: list[list[tuple[int, list[int], list[int]]]] = []
        mlp_kept: list[list[int]] = []
        for li, (qk_row, v_row, inter) in enumerate(zip(cfg.qk_dims, cfg.v_dims, cfg.intermediate_sizes)):
            if li in gone_blocks:
                continue
            heads = []
            for h, (wq, wv) in enumerate(zip(qk_row, v_row)):
                if (li, h) in gone_heads:
                    continue
                kq = [i for i in range(wq) if i not in gone_qk.get((li, h), set())]
                kv = [i for i in range(wv) if i not in gone_v.get((li, h), set())]
                if not kq or not kv:
                    notes.append(f"block.{li}.head.{h}: every {'query/key pair' if not kq else 'value neuron'} is "
                                 "removed, so the head is removed")
                    continue
                heads.append((h, kq, kv))
            if qk_row and not heads:
                notes.append(f"block.{li}: every head is removed, so the block's attention is removed (its MLP stays)")
            km = [i for i in range(inter) if i not in gone_mlp.get(li, set())]
            if inter and not km:
                notes.append(f"block.{li}: every MLP neuron is removed, so the block's MLP is removed")
            if not heads and not km:
                if qk_row or inter:
                    notes.append(f"block.{li}: neither attention nor MLP is left, so the block is removed")
                continue
            keep_blocks.append(li)
            heads_kept.append(heads)
            mlp_kept.append(km)
        if not keep_blocks:
            raise SlimError(f"the plan leaves none of the {len(cfg.qk_dims)} blocks",
                            hint="at least one block must keep some attention or MLP; remove fewer units")
        module = _sliced(model.module, cfg, keep_blocks, heads_kept, mlp_kept)
        if notes and isinstance(getattr(plan, "meta", None), dict):
            plan.meta["notes"] = list(notes)  # saved with the plan (slimgui_plan.json): what the plan turned into
        extra = {k: v for k, v in model.extra.items() if k in ("preprocess",)}
        extra |= {"notes": notes, "kept_blocks": keep_blocks, "weight_files": []}
        return LoadedModel(family=FAMILY, adapter=model.adapter, source=model.source, module=module,
                           config=module.config, has_weights=model.has_weights, impl=self, extra=extra)

    # -- saving ------------------------------------------------------------------------------------------------
    def save(self, model: LoadedModel, out_dir: str) -> str:
        """Into ``out_dir`` (a folder the core stages and moves into place): a plain transformers ViT/DeiT folder when
        transformers' own class expresses the model (:meth:`is_plain`), else config.json (model_type slimgui_vit,
        with an ``auto_map``), model.safetensors and ``modeling_slimgui_vit.py``, a copy of the class that loads it
        with ``trust_remote_code=True``.  The image processor's settings are kept."""
        from safetensors.torch import save_file

        if not model.has_weights:
            raise SlimError("a model opened without weights cannot be saved", hint="open a folder with weights")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        cfg: SlimViTConfig = model.config
        state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.module.state_dict().items()}
        if self.is_plain(cfg):
            arch = self._plain_arch(model)
            doc = self.plain_config(cfg, arch)
            save_file({theirs(k, arch): v for k, v in state.items()}, str(out / "model.safetensors"),
                      metadata={"format": "pt"})
        else:
            doc = self.slim_config(cfg)
            save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
            (out / MODELING_FILE).write_text((Path(__file__).parent / "modeling.py").read_text(encoding="utf-8"),
                                             encoding="utf-8")
        (out / "config.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        pre = model.extra.get("preprocess")
        if pre:
            (out / PREPROCESSOR).write_text(json.dumps(pre, indent=2) + "\n", encoding="utf-8")
        return str(out)

    @staticmethod
    def _plain_arch(model: LoadedModel) -> str:
        cfg = model.config
        if cfg.base_model_type == "deit":
            return {"cls": "DeiTForImageClassification", "cls+distillation": "DeiTForImageClassificationWithTeacher",
                    "none": "DeiTModel"}[cfg.classifier]
        return "ViTModel" if cfg.classifier == "none" else "ViTForImageClassification"

    @staticmethod
    def plain_config(cfg: SlimViTConfig, arch: str) -> dict[str, Any]:
        import transformers

        doc = dict(cfg.base_config)
        doc.update({
            "model_type": cfg.base_model_type, "architectures": [arch], "hidden_size": cfg.hidden_size,
            "num_hidden_layers": len(cfg.qk_dims), "num_attention_heads": len(cfg.qk_dims[0]),
            "intermediate_size": cfg.intermediate_sizes[0], "image_size": cfg.image_size, "patch_size": cfg.patch_size,
            "num_channels": cfg.num_channels, "hidden_act": cfg.hidden_act, "layer_norm_eps": cfg.layer_norm_eps,
            "qkv_bias": cfg.qkv_bias, "id2label": {str(k): v for k, v in cfg.id2label.items()},
            "label2id": {v: int(k) for k, v in cfg.id2label.items()}, "pooler_output_size": cfg.pooler_output_size,
            "pooler_act": cfg.pooler_act, "dtype": "float32", "transformers_version": transformers.__version__,
        })
        if cfg.head_size * len(cfg.qk_dims[0]) != cfg.hidden_size:
            doc["head_dim"] = cfg.head_size
        return doc

    @staticmethod
    def slim_config(cfg: SlimViTConfig) -> dict[str, Any]:
        import transformers

        doc = {k: getattr(cfg, k) for k in probe.SLIM_KEYS}
        doc.update({
            "model_type": probe.SLIM_TYPE, "architectures": ["SlimViTForImageClassification"],
            "id2label": {str(k): v for k, v in cfg.id2label.items()},
            "label2id": {v: int(k) for k, v in cfg.id2label.items()},
            "auto_map": {"AutoConfig": f"{MODELING_FILE[:-3]}.SlimViTConfig",
                         "AutoModel": f"{MODELING_FILE[:-3]}.SlimViTForImageClassification",
                         "AutoModelForImageClassification": f"{MODELING_FILE[:-3]}.SlimViTForImageClassification"},
            "num_hidden_layers": len(cfg.qk_dims), "dtype": "float32", "transformers_version": transformers.__version__,
        })
        return doc

    # -- data, loss and benchmark ---------------------------------------------------------------------------------
    def default_data(self, model: LoadedModel) -> str | None:
        """The demo's training digits (an image folder in the cache) for the demo model and models made from it."""
        if origin_with(model.source, "slimgui_demo.json") is None:
            return None
        from .demo import digits_folder

        return str(digits_folder("train"))

    def calibration_batches(self, model: LoadedModel, data: Any) -> list[dict[str, torch.Tensor]]:
        """``samples`` images spread evenly over an image folder (sorted by class, so every class is in), in batches
        of ``batch_size``: ``{"pixel_values", "labels"}``.  The labels are the class sub-folders' (matched to the
        model's labels by name or number); a folder of loose images gets the model's own predictions as labels."""
        from slimgui.core.data import CalibrationData

        from .data import label_ids, load_batch, preprocess_of, scan_folder, spread

        if data is None:
            path = self.default_data(model)
            if path is None:
                raise SlimError("this criterion needs calibration images",
                                hint="pass --data FOLDER (one sub-folder of images per class)")
            data = CalibrationData(path)
        spec = data if isinstance(data, CalibrationData) else CalibrationData(str(data))
        self._need_classifier(model)
        folder = scan_folder(spec.path, what="calibration folder")
        pre = preprocess_of(model)
        picks = [folder.files[i] for i in spread(len(folder.files), spec.samples)]
        ids = label_ids(folder.classes, model.config) if folder.labelled else []
        x = load_batch([p for p, _ in picks], pre)
        if folder.labelled:
            y = torch.tensor([ids[c] for _, c in picks], dtype=torch.long)
        else:
            with torch.no_grad():
                y = torch.cat([model.module(pixel_values=b).logits.argmax(-1) for b in x.split(spec.batch_size)])
        model.extra["calibration_used"] = {"data": {"path": str(spec.path), "samples": len(picks),
                                                    "samples_requested": spec.samples, "batch_size": spec.batch_size,
                                                    "labels": "folders" if folder.labelled else "model predictions"},
                                           "warnings": [] if len(picks) >= spec.samples else
                                           [f"calibration used {len(picks)} images, not the {spec.samples} asked "
                                            f"for: {spec.path} holds only {len(folder.files)}"]}
        return [{"pixel_values": xb, "labels": yb}
                for xb, yb in zip(x.split(spec.batch_size), y.split(spec.batch_size))]

    @staticmethod
    def _need_classifier(model: LoadedModel) -> None:
        if model.module.classifier is None:
            raise SlimError("this model has no classifier (a ViTModel backbone), so it has no loss on labels",
                            hint="use a criterion that needs no data, e.g. magnitude")

    def loss(self, model: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the model's logits (DeiT with its teacher head: their mean) on the batch's labels."""
        self._need_classifier(model)
        logits = model.module(pixel_values=batch["pixel_values"]).logits
        return nn.functional.cross_entropy(logits.float(), batch["labels"])

    def bench_runner(self, model: LoadedModel, batch: int, options: Any, mode: str) -> BenchRun | None:
        if mode != "forward":
            return None
        if not model.has_weights:
            raise SlimError(f"{model.source} has no weights to benchmark")
        h, w = _pair(model.config.image_size)
        x = torch.randn(batch, model.config.num_channels, h, w, generator=torch.Generator().manual_seed(0))
        module = model.module.eval()

        def run():
            with torch.no_grad():
                module(pixel_values=x)
        return BenchRun("forward", run, items=batch, label="forward pass")

    def describe_result(self, model: LoadedModel) -> dict[str, Any]:
        cfg = model.config
        h, w = _pair(cfg.image_size)
        return {"image size": f"{h}×{w}", "patch": "×".join(map(str, _pair(cfg.patch_size))), "tokens": cfg.seq_len,
                "heads": sum(len(r) for r in cfg.qk_dims), "MACs per image": f"{macs_per_image(cfg):,}",
                "format": "transformers " + cfg.base_architecture if self.is_plain(cfg) else "SlimViT (remote code)"}


def _chunks(width: int, group: int) -> list[tuple[int, int]]:
    """(start, size) of the groups of ``width`` neurons, ``group`` at a time (the last may be smaller)."""
    return [(s, min(group, width - s)) for s in range(0, width, group)]


def _group_slice(width: int, group: int, g: int, uid: str) -> slice:
    chunks = _chunks(width, group)
    if not 0 <= g < len(chunks):
        raise SlimError(f"unknown unit '{uid}'", hint="`slimgui inspect MODEL` lists the unit ids")
    s, n = chunks[g]
    return slice(s, s + n)


def _sub(outer: slice, group: int, g: int, uid: str) -> slice:
    inner = _group_slice(outer.stop - outer.start, group, g, uid)
    return slice(outer.start + inner.start, outer.start + inner.stop)


def _sliced(module: SlimViTForImageClassification, cfg: SlimViTConfig, keep_blocks: list[int],
            heads_kept: list[list[tuple[int, list[int], list[int]]]], mlp_kept: list[list[int]]):
    """A new SlimViT holding only the kept blocks, heads, query/key pairs, value neurons and MLP neurons."""
    kwargs = {k: getattr(cfg, k) for k in probe.SLIM_KEYS}
    kwargs.update({
        "qk_dims": [[len(kq) for _, kq, _ in hs] for hs in heads_kept],
        "v_dims": [[len(kv) for _, _, kv in hs] for hs in heads_kept],
        "intermediate_sizes": [len(km) for km in mlp_kept],
        "block_origin": [cfg.block_origin[li] for li in keep_blocks],
        "head_origin": [[cfg.head_origin[li][h] for h, _, _ in hs] for li, hs in zip(keep_blocks, heads_kept)],
        "groups": ViTAdapter.groups(cfg), "id2label": dict(cfg.id2label), "label2id": dict(cfg.label2id),
    })
    new_cfg = SlimViTConfig(**kwargs)
    old = module.state_dict()
    state: dict[str, torch.Tensor] = {}
    for name, t in old.items():
        if not name.startswith("blocks."):
            state[name] = t
    for new_i, (li, hs, km) in enumerate(zip(keep_blocks, heads_kept, mlp_kept)):
        src, dst = f"blocks.{li}.", f"blocks.{new_i}."
        if hs:
            attn = module.blocks[li].attn
            slices = attn.head_slices()
            q_rows = [slices[h][0].start + i for h, kq, _ in hs for i in kq]
            v_rows = [slices[h][1].start + i for h, _, kv in hs for i in kv]
            qi, vi = torch.tensor(q_rows, dtype=torch.long), torch.tensor(v_rows, dtype=torch.long)
            for proj, idx in (("q_proj", qi), ("k_proj", qi), ("v_proj", vi)):
                state[f"{dst}attn.{proj}.weight"] = old[f"{src}attn.{proj}.weight"][idx]
                if f"{src}attn.{proj}.bias" in old:
                    state[f"{dst}attn.{proj}.bias"] = old[f"{src}attn.{proj}.bias"][idx]
            state[f"{dst}attn.o_proj.weight"] = old[f"{src}attn.o_proj.weight"][:, vi]
            state[f"{dst}attn.o_proj.bias"] = old[f"{src}attn.o_proj.bias"]
            for leaf in ("weight", "bias"):
                state[f"{dst}norm1.{leaf}"] = old[f"{src}norm1.{leaf}"]
        if km:
            mi = torch.tensor(km, dtype=torch.long)
            state[f"{dst}mlp.fc1.weight"] = old[f"{src}mlp.fc1.weight"][mi]
            state[f"{dst}mlp.fc1.bias"] = old[f"{src}mlp.fc1.bias"][mi]
            state[f"{dst}mlp.fc2.weight"] = old[f"{src}mlp.fc2.weight"][:, mi]
            state[f"{dst}mlp.fc2.bias"] = old[f"{src}mlp.fc2.bias"]
            for leaf in ("weight", "bias"):
                state[f"{dst}norm2.{leaf}"] = old[f"{src}norm2.{leaf}"]
    with torch.device("meta"):
        new = SlimViTForImageClassification(new_cfg)
    new.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True, assign=True)
    return new.train(module.training)
