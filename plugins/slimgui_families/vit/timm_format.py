"""timm ``VisionTransformer`` checkpoints (safetensors): recognised from the tensor names in the file's header, their
shapes turned into the config transformers' ViT / DeiT would have, and their tensors into ours.

A timm ViT has no config.json of transformers' kind: its sizes are read from the shapes (width from the patch
embedding, blocks from ``blocks.N``, MLP width from ``fc1``, image size from the position embedding's length and
the patch size, classes from ``head``, a DeiT's distillation token from ``dist_token``).  The one number the shapes
do not hold is the number of heads: it comes from a timm ``config.json`` beside the file (``model_args.num_heads``,
or the architecture's name: tiny 3, small 6, base 12, large/huge 16), else a head width of 64 is assumed (every
timm ViT / DeiT size has it) and the load says so.  timm's block is transformers' ViT block (pre-norm, one fused
``qkv`` projection whose rows are the queries, keys and values of the heads in order, exact GELU, LayerNorm eps
1e-6, class-token pooling), so the weights map one to one; ``qkv`` is split into q/k/v.

Refused with a message naming the part: models that pool by averaging (``fc_norm``), LayerScale (``ls1``),
register tokens, a norm before the blocks (``norm_pre``), q/k norms, and position embeddings without the class
token.  Nothing here imports timm.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.io import MAX_CONFIG_BYTES, read_json_file

NEEDED = ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "cls_token", "pos_embed")
UNSUPPORTED = [
    (re.compile(r"^fc_norm\."), "global average pooling (fc_norm)"),
    (re.compile(r"^blocks\.\d+\.ls[12]\."), "LayerScale (ls1/ls2)"),
    (re.compile(r"^reg_token$"), "register tokens"),
    (re.compile(r"^norm_pre\."), "a norm before the blocks (norm_pre)"),
    (re.compile(r"^blocks\.\d+\.attn\.(q_norm|k_norm)\."), "query/key norms"),
    (re.compile(r"^attn_pool\."), "attention pooling (attn_pool)"),
]
HEADS_BY_SIZE = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16}


def header_shapes(file: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header (no tensor is read)."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as fh:
        return {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}


def is_timm(names: set[str] | dict[str, Any]) -> bool:
    return all(n in names for n in NEEDED)


def locate(p: Path) -> tuple[Path, dict[str, Any] | None] | None:
    """(the safetensors file, timm's config.json or None) when ``p`` is a timm ViT checkpoint — the file itself, or
    a folder holding one ``*.safetensors`` and no transformers config — else None.  Reads headers only."""
    if p.is_file() and p.suffix == ".safetensors":
        file, folder = p, p.parent
    elif p.is_dir():
        files = sorted(p.glob("*.safetensors"))
        if len(files) != 1:
            return None
        file, folder = files[0], p
    else:
        return None
    doc = None
    cfg = folder / "config.json"
    if cfg.is_file():
        try:
            doc = read_json_file(cfg, "timm's config", limit=MAX_CONFIG_BYTES)
        except SlimError:
            doc = None
        if isinstance(doc, dict) and doc.get("model_type"):
            return None  # a transformers folder: not timm's
        if not isinstance(doc, dict):
            doc = None
    try:
        names = header_shapes(file)
    except Exception:  # noqa: BLE001 - not a safetensors file: not ours to open
        return None
    return (file, doc) if is_timm(names) else None


def _heads(width: int, doc: dict[str, Any] | None) -> tuple[int, str | None]:
    if doc:
        args = doc.get("model_args") if isinstance(doc.get("model_args"), dict) else {}
        n = args.get("num_heads")
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n, None
        arch = str(doc.get("architecture") or "")
        for size, heads in HEADS_BY_SIZE.items():
            if f"_{size}_" in f"_{arch}_".replace("_patch", "_"):
                return heads, None
    if width % 64:
        raise SlimError(f"cannot tell how many heads this timm ViT has (width {width} is not a multiple of 64)",
                        hint="put timm's config.json (with model_args.num_heads or its architecture) beside the file")
    return width // 64, (f"the number of heads ({width // 64}) was not given; a head width of 64 was assumed "
                         "(timm's config.json beside the file says it for sure)")


def config_of(shapes: dict[str, list[int]], doc: dict[str, Any] | None, where: str) -> tuple[dict[str, Any], list[str]]:
    """The transformers ViT / DeiT config.json (as a dict) a timm checkpoint with these tensor shapes has, and notes
    on what was assumed.  Refuses the timm variants transformers' ViT cannot express."""
    for name in shapes:
        for pat, what in UNSUPPORTED:
            if pat.search(name):
                raise SlimError(f"{where}: this timm ViT uses {what}, which the ViT family does not open yet",
                                hint="the family opens timm's plain VisionTransformer / DeiT (class-token pooling)")
    pe = shapes["patch_embed.proj.weight"]
    if len(pe) != 4 or pe[2] < 1 or pe[3] < 1:
        raise SlimError(f"{where}: patch_embed.proj.weight is {pe}, not a convolution's [width, channels, h, w]")
    width, channels, ph, pw = pe
    blocks = sorted({int(m.group(1)) for n in shapes if (m := re.match(r"^blocks\.(\d+)\.", n))})
    if blocks != list(range(len(blocks))):
        raise SlimError(f"{where}: the blocks are not numbered 0 to {len(blocks) - 1}")
    qkv = shapes["blocks.0.attn.qkv.weight"]
    if qkv != [3 * width, width]:
        raise SlimError(f"{where}: blocks.0.attn.qkv.weight is {qkv}, expected [{3 * width}, {width}]")
    fc1 = shapes.get("blocks.0.mlp.fc1.weight")
    if not fc1 or len(fc1) != 2:
        raise SlimError(f"{where}: blocks.0.mlp.fc1.weight is missing", hint="the file may not hold a whole ViT")
    distilled = "dist_token" in shapes
    tokens = 2 if distilled else 1
    pos = shapes["pos_embed"]
    if len(pos) != 3 or pos[2] != width:
        raise SlimError(f"{where}: pos_embed is {pos}, expected [1, tokens, {width}]")
    patches = pos[1] - tokens
    side = math.isqrt(max(patches, 0))
    if patches < 1 or side * side != patches:
        raise SlimError(f"{where}: pos_embed holds {pos[1]} positions: not {tokens} token(s) and a square grid of "
                        "patches", hint="timm ViTs without a class token in their position embedding are not opened")
    if ph != pw:
        raise SlimError(f"{where}: the patches are {ph}x{pw}; only square patches are read from timm checkpoints")
    heads, note = _heads(width, doc)
    if width % heads:
        raise SlimError(f"{where}: the width {width} is not divisible by the {heads} heads")
    head = shapes.get("head.weight")
    classes = head[0] if head and len(head) == 2 else 0
    if doc and isinstance(doc.get("label_names"), list) and len(doc["label_names"]) == classes:
        labels = {str(i): str(n) for i, n in enumerate(doc["label_names"])}
    else:
        labels = {str(i): f"LABEL_{i}" for i in range(classes)}
    model_type = "deit" if distilled else "vit"
    arch = ("DeiTForImageClassificationWithTeacher" if distilled else "ViTForImageClassification") if classes else (
        "DeiTModel" if distilled else "ViTModel")
    cfg = {
        "model_type": model_type, "architectures": [arch], "hidden_size": width, "num_hidden_layers": len(blocks),
        "num_attention_heads": heads, "intermediate_size": fc1[0], "image_size": side * ph, "patch_size": ph,
        "num_channels": channels, "qkv_bias": "blocks.0.attn.qkv.bias" in shapes, "layer_norm_eps": 1e-6,
        "hidden_act": "gelu", "id2label": labels, "label2id": {v: int(k) for k, v in labels.items()},
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    }
    notes = [f"opened a timm checkpoint ({Path(where).name}) as a transformers {arch}"] + ([note] if note else [])
    return cfg, notes


def preprocess_of(doc: dict[str, Any] | None) -> dict[str, Any]:
    """transformers' image-processor settings from timm's ``pretrained_cfg`` (mean, std, input size), or {}."""
    pre = (doc or {}).get("pretrained_cfg") if isinstance((doc or {}).get("pretrained_cfg"), dict) else None
    if not pre:
        return {}
    out: dict[str, Any] = {"do_normalize": True}
    if isinstance(pre.get("mean"), list):
        out["image_mean"] = pre["mean"]
    if isinstance(pre.get("std"), list):
        out["image_std"] = pre["std"]
    return out


def ours(name: str) -> list[tuple[str, int | None]] | None:
    """Our names for one timm tensor: [(name, part)] where ``part`` is 0/1/2 for the q/k/v third of a fused qkv
    tensor (None: the whole tensor); None for a tensor we do not keep; [] for one we do not know."""
    fixed = {"cls_token": "cls_token", "dist_token": "dist_token", "pos_embed": "pos_embed",
             "patch_embed.proj.weight": "patch_embed.weight", "patch_embed.proj.bias": "patch_embed.bias",
             "norm.weight": "norm.weight", "norm.bias": "norm.bias", "head.weight": "classifier.weight",
             "head.bias": "classifier.bias", "head_dist.weight": "dist_classifier.weight",
             "head_dist.bias": "dist_classifier.bias"}
    if name in fixed:
        return [(fixed[name], None)]
    m = re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$", name)
    if not m:
        return []
    i, part, leaf = m.groups()
    if part == "attn.qkv":
        return [(f"blocks.{i}.attn.{p}_proj.{leaf}", j) for j, p in enumerate("qkv")]
    mapped = {"attn.proj": "attn.o_proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2", "norm1": "norm1",
              "norm2": "norm2"}.get(part)
    return [(f"blocks.{i}.{mapped}.{leaf}", None)] if mapped else []


def timm_name(name: str) -> str:
    """The timm tensor name one of ours comes from (q/k/v projections: the fused qkv), for messages."""
    m = re.match(r"^blocks\.(\d+)\.attn\.[qkv]_proj\.(weight|bias)$", name)
    if m:
        return f"blocks.{m.group(1)}.attn.qkv.{m.group(2)}"
    for theirs, mine in (("patch_embed.proj.", "patch_embed."), ("head_dist.", "dist_classifier."), ("head.", "classifier.")):
        if name.startswith(mine):
            return theirs + name[len(mine):]
    return name.replace("attn.o_proj", "attn.proj")
