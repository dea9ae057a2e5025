"""Cheap probing and checking of ViT folders: reads config.json (and safetensors headers), never weights or torch.

:func:`match` says how sure the family is that it opens a path, from ``config.json`` alone: transformers ViT and
DeiT configs (``model_type`` "vit" / "deit") and SlimGUI's own pruned ViTs ("slimgui_vit").  :func:`slim_kwargs`
is the gate every load passes: it checks the numbers that decide the model's size against :data:`BOUNDS` and the
shapes that must agree (the patch size divides the image size, the heads divide the hidden size), and turns the
config into the arguments of :class:`~slimgui_families.vit.modeling.SlimViTConfig` — one SlimError, one line,
for anything wrong, before anything is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.io import MAX_CONFIG_BYTES, read_json_file

MODEL_TYPES = {"vit", "deit"}
SLIM_TYPE = "slimgui_vit"
WEIGHT_SUFFIXES = {".safetensors", ".bin"}
# architecture -> (base model type, classifier: "cls" | "cls+distillation" | "none")
ARCHITECTURES = {
    "ViTForImageClassification": ("vit", "cls"),
    "ViTModel": ("vit", "none"),
    "DeiTForImageClassification": ("deit", "cls"),
    "DeiTForImageClassificationWithTeacher": ("deit", "cls+distillation"),
    "DeiTModel": ("deit", "none"),
}
REFUSED = {"ViTForMaskedImageModeling", "DeiTForMaskedImageModeling"}
# What a config may ask for: (lowest, highest).  Generous for real ViTs (ViT-22B: width 6144, 48 blocks, 48 heads);
# a value outside is a broken or hostile config, refused before anything is built.
BOUNDS: dict[str, tuple[int, int]] = {
    "hidden_size": (1, 65_536),
    "num_hidden_layers": (1, 1024),
    "num_attention_heads": (1, 1024),
    "intermediate_size": (1, 1_048_576),
    "head_dim": (1, 16_384),
    "num_channels": (1, 64),
    "pooler_output_size": (1, 65_536),
}
IMAGE = (1, 16_384)
MAX_PATCHES = 1_048_576
MAX_LABELS = 1_000_000
SLIM_KEYS = ("hidden_size", "qk_dims", "v_dims", "intermediate_sizes", "head_size", "image_size", "patch_size",
             "num_channels", "hidden_act", "layer_norm_eps", "qkv_bias", "distillation_token", "classifier", "pooler",
             "pooler_output_size", "pooler_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
             "initializer_range", "block_origin", "head_origin", "base_model_type", "base_architecture",
             "base_config", "groups")
DROP_FROM_BASE = ("_name_or_path", "transformers_version", "auto_map", "torch_dtype", "dtype", "architectures")


def _folder(p: Path) -> Path | None:
    if p.is_dir():
        return p
    if p.is_file() and (p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES):
        return p.parent if (p.parent / "config.json").is_file() else None
    return None


def match(path: str) -> float | tuple[float, dict[str, Any]]:
    """How sure the ViT family is that it opens ``path``: ``(confidence, {"folder", "config"})`` for a folder (or its
    config/weights file) whose config.json is a ViT's, DeiT's or SlimGUI's pruned ViT's; ``(0.9, {"timm", "timm_config"})``
    for a timm VisionTransformer checkpoint (from its safetensors header); 0 otherwise.  Reads the
    JSON only; a config whose numbers are wrong still matches, and ``load`` says what is wrong with it."""
    p = Path(path)
    if not p.exists():
        return 0.0
    folder = _folder(p)
    if folder is None or (p.is_dir() and not (p / "config.json").is_file()):
        from .timm_format import locate  # a timm checkpoint: a .safetensors file, or a folder with one

        found = locate(p)
        if found is not None:
            return 0.9, {"timm": str(found[0]), "timm_config": found[1]}
        return 0.0
    cfg = folder / "config.json"
    if not cfg.is_file() or (folder / "model_index.json").is_file():
        return 0.0
    try:
        doc = read_json_file(cfg, "the model's config", limit=MAX_CONFIG_BYTES)
    except SlimError:
        return 0.0
    if not isinstance(doc, dict):
        return 0.0
    model_type = doc.get("model_type")
    info = {"folder": str(folder), "config": doc}
    if model_type == SLIM_TYPE:
        return 1.0, info
    if model_type in MODEL_TYPES:
        return 0.95, info
    if not model_type and "architecture" in doc:  # timm's own config.json beside a timm checkpoint
        from .timm_format import locate

        found = locate(p)
        if found is not None:
            return 0.9, {"timm": str(found[0]), "timm_config": found[1]}
    return 0.0


def read_config(folder: str | Path) -> dict[str, Any]:
    cfg = Path(folder) / "config.json"
    if not cfg.exists():
        raise SlimError(f"{folder} has no config.json", hint="a ViT folder holds config.json and model.safetensors")
    doc = read_json_file(cfg, "the model's config", limit=MAX_CONFIG_BYTES)
    if not isinstance(doc, dict):
        raise SlimError(f"{cfg} is not a JSON object", hint="repair or replace the model's config.json")
    return doc


# -- checking ------------------------------------------------------------------------------------------------
def _whole(doc: dict[str, Any], key: str, default: Any, lo: int, hi: int, where: str) -> int:
    v = doc.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, int):
        raise SlimError(f"{where}: {key} must be a whole number, got {v!r:.60}", hint="repair or replace config.json")
    if not lo <= v <= hi:
        raise SlimError(f"{where}: {key} is {v:,}, outside the range SlimGUI accepts ({lo:,} to {hi:,})",
                        hint="the config is broken or not a real model's; repair or replace it")
    return v


def _size(doc: dict[str, Any], key: str, default: int, where: str) -> tuple[int, int]:
    v = doc.get(key, default)
    pair = list(v) if isinstance(v, (list, tuple)) else [v, v]
    if len(pair) != 2 or any(isinstance(x, bool) or not isinstance(x, int) for x in pair):
        raise SlimError(f"{where}: {key} must be a whole number or a [height, width] pair, got {v!r:.60}")
    for x in pair:
        if not IMAGE[0] <= x <= IMAGE[1]:
            raise SlimError(f"{where}: {key} is {x:,}, outside the range SlimGUI accepts ({IMAGE[0]} to {IMAGE[1]:,})")
    return pair[0], pair[1]


def _float(doc: dict[str, Any], key: str, default: float, lo: float, hi: float, where: str) -> float:
    v = doc.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
        raise SlimError(f"{where}: {key} must be a number from {lo:g} to {hi:g}, got {v!r:.60}")
    return float(v)


def _labels(doc: dict[str, Any], where: str) -> dict[int, str]:
    raw = doc.get("id2label")
    if raw is None:
        n = doc.get("num_labels", 2)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_LABELS:
            raise SlimError(f"{where}: num_labels must be a whole number from 0 to {MAX_LABELS:,}, got {n!r:.40}")
        return {i: f"LABEL_{i}" for i in range(n)}
    if not isinstance(raw, dict) or len(raw) > MAX_LABELS:
        raise SlimError(f"{where}: id2label must map label numbers to names")
    out: dict[int, str] = {}
    for k, v in raw.items():
        try:
            i = int(k)
        except (TypeError, ValueError):
            raise SlimError(f"{where}: id2label has the key {k!r:.30}, not a label number") from None
        out[i] = str(v)
    if sorted(out) != list(range(len(out))):
        raise SlimError(f"{where}: id2label must number its labels 0 to {len(out) - 1}")
    return out


def _common(doc: dict[str, Any], where: str) -> dict[str, Any]:
    image = _size(doc, "image_size", 224, where)
    patch = _size(doc, "patch_size", 16, where)
    if any(i % p for i, p in zip(image, patch)):
        raise SlimError(f"{where}: the patch size {patch[0]}x{patch[1]} does not divide the image size "
                        f"{image[0]}x{image[1]}", hint="the image must be a whole number of patches; repair config.json")
    if (image[0] // patch[0]) * (image[1] // patch[1]) > MAX_PATCHES:
        raise SlimError(f"{where}: {image[0]}x{image[1]} images in {patch[0]}x{patch[1]} patches make more than "
                        f"{MAX_PATCHES:,} patches")
    act = doc.get("hidden_act", "gelu")
    if not isinstance(act, str):
        raise SlimError(f"{where}: hidden_act must be an activation's name, got {act!r:.40}")
    from transformers.activations import ACT2CLS  # a dict of names (no model code)

    if act not in ACT2CLS:
        raise SlimError(f"{where}: unknown activation '{act:.40}'", hint="use one transformers knows (gelu, relu, ...)")
    labels = _labels(doc, where)
    return {
        "image_size": image[0] if image[0] == image[1] else list(image),
        "patch_size": patch[0] if patch[0] == patch[1] else list(patch),
        "num_channels": _whole(doc, "num_channels", 3, *BOUNDS["num_channels"], where),
        "hidden_act": act,
        "layer_norm_eps": _float(doc, "layer_norm_eps", 1e-12, 0.0, 1.0, where),
        "qkv_bias": bool(doc.get("qkv_bias", True)),
        "hidden_dropout_prob": _float(doc, "hidden_dropout_prob", 0.0, 0.0, 1.0, where),
        "attention_probs_dropout_prob": _float(doc, "attention_probs_dropout_prob", 0.0, 0.0, 1.0, where),
        "initializer_range": _float(doc, "initializer_range", 0.02, 0.0, 100.0, where),
        "pooler_act": str(doc.get("pooler_act", "tanh")),
        "id2label": labels,
        "label2id": {v: k for k, v in labels.items()},
    }


def default_groups(head_size: int, intermediate: int) -> dict[str, int]:
    """How many query/key pairs, value neurons and MLP neurons one unit of the graph holds (a 12-block DeiT-Small
    stays at ~3,500 units): 4 per head side (fewer for heads under 8 wide), 16 MLP neurons from 1024 up, else 8."""
    side = 4 if head_size >= 8 else max(1, head_size // 2)
    mlp = 16 if intermediate >= 1024 else (8 if intermediate >= 64 else max(1, intermediate // 8))
    return {"qk": side, "v": side, "mlp": mlp}


def slim_kwargs(doc: dict[str, Any], where: str = "config.json") -> dict[str, Any]:
    """Check a ViT / DeiT / pruned-ViT config and return the keyword arguments of ``SlimViTConfig`` (plain data)."""
    model_type = doc.get("model_type")
    if model_type == SLIM_TYPE:
        return _slim(doc, where)
    if model_type not in MODEL_TYPES:
        raise SlimError(f"{where}: model_type is {model_type!r:.40}, not a ViT's",
                        hint="the ViT family opens vit, deit and slimgui_vit models")
    archs = doc.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise SlimError(f"{where}: architectures must be a list of class names, got {archs!r:.60}")
    refused = [a for a in archs if a in REFUSED or (a not in ARCHITECTURES and a.startswith(("ViT", "DeiT")))]
    known = [a for a in archs if a in ARCHITECTURES]
    if not known and refused:
        raise SlimError(f"{where}: {refused[0]} is not supported",
                        hint="the ViT family opens " + ", ".join(ARCHITECTURES))
    arch = known[0] if known else ("DeiTForImageClassification" if model_type == "deit" else "ViTForImageClassification")
    hidden = _whole(doc, "hidden_size", 768, *BOUNDS["hidden_size"], where)
    layers = _whole(doc, "num_hidden_layers", 12, *BOUNDS["num_hidden_layers"], where)
    heads = _whole(doc, "num_attention_heads", 12, *BOUNDS["num_attention_heads"], where)
    inter = _whole(doc, "intermediate_size", 3072, *BOUNDS["intermediate_size"], where)
    if doc.get("head_dim") is not None:
        head = _whole(doc, "head_dim", None, *BOUNDS["head_dim"], where)
    else:
        if hidden % heads:
            raise SlimError(f"{where}: the hidden size {hidden} is not divisible by the {heads} attention heads",
                            hint="repair or replace the model's config.json")
        head = hidden // heads
    common = _common(doc, where)
    classifier = ARCHITECTURES[arch][1]
    pooler_size = _whole(doc, "pooler_output_size", hidden, *BOUNDS["pooler_output_size"], where)
    base = {k: v for k, v in doc.items() if k not in DROP_FROM_BASE}
    return {
        **common, "hidden_size": hidden, "qk_dims": [[head] * heads for _ in range(layers)],
        "v_dims": [[head] * heads for _ in range(layers)], "intermediate_sizes": [inter] * layers, "head_size": head,
        "distillation_token": model_type == "deit", "classifier": classifier, "pooler": classifier == "none",
        "pooler_output_size": pooler_size, "block_origin": list(range(layers)),
        "head_origin": [list(range(heads)) for _ in range(layers)], "base_model_type": model_type,
        "base_architecture": arch, "base_config": base, "groups": default_groups(head, inter),
    }


def _int_rows(v: Any, name: str, lo: int, hi: int, where: str) -> list[list[int]]:
    if not isinstance(v, list) or not all(isinstance(r, list) for r in v):
        raise SlimError(f"{where}: {name} must be a list (one per block) of lists (one per head)")
    for row in v:
        for x in row:
            if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
                raise SlimError(f"{where}: {name} holds {x!r:.30}; each must be a whole number from {lo} to {hi:,}")
    return [list(r) for r in v]


def _slim(doc: dict[str, Any], where: str) -> dict[str, Any]:
    hidden = _whole(doc, "hidden_size", None, *BOUNDS["hidden_size"], where)
    qk = _int_rows(doc.get("qk_dims"), "qk_dims", 1, BOUNDS["head_dim"][1], where)
    v = _int_rows(doc.get("v_dims"), "v_dims", 1, BOUNDS["head_dim"][1], where)
    layers = len(qk)
    if not BOUNDS["num_hidden_layers"][0] <= layers <= BOUNDS["num_hidden_layers"][1]:
        raise SlimError(f"{where}: qk_dims names {layers} blocks; a model has 1 to {BOUNDS['num_hidden_layers'][1]}")
    if [len(r) for r in v] != [len(r) for r in qk]:
        raise SlimError(f"{where}: v_dims and qk_dims must name the same heads in the same blocks")
    if any(len(r) > BOUNDS["num_attention_heads"][1] for r in qk):
        raise SlimError(f"{where}: a block has more than {BOUNDS['num_attention_heads'][1]} heads")
    inter = doc.get("intermediate_sizes")
    if (not isinstance(inter, list) or len(inter) != layers
            or any(isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= BOUNDS["intermediate_size"][1]
                   for x in inter)):
        raise SlimError(f"{where}: intermediate_sizes must hold one MLP width (0 to "
                        f"{BOUNDS['intermediate_size'][1]:,}) per block ({layers})")
    head_size = _whole(doc, "head_size", None, *BOUNDS["head_dim"], where)
    common = _common(doc, where)
    classifier = doc.get("classifier", "cls")
    if classifier not in ("cls", "cls+distillation", "none"):
        raise SlimError(f"{where}: classifier must be cls, cls+distillation or none, got {classifier!r:.40}")
    block_origin = doc.get("block_origin", list(range(layers)))
    if (not isinstance(block_origin, list) or len(block_origin) != layers
            or any(isinstance(x, bool) or not isinstance(x, int) for x in block_origin)):
        raise SlimError(f"{where}: block_origin must hold one block number per block")
    head_origin = _int_rows(doc.get("head_origin", [list(range(len(r))) for r in qk]), "head_origin", 0,
                            BOUNDS["num_attention_heads"][1], where)
    if [len(r) for r in head_origin] != [len(r) for r in qk]:
        raise SlimError(f"{where}: head_origin must name every head of qk_dims")
    groups = doc.get("groups") or {}
    if not isinstance(groups, dict) or any(isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= 65_536
                                           for x in groups.values()):
        raise SlimError(f"{where}: groups must map qk, v and mlp to group sizes")
    base = doc.get("base_config") or {}
    if not isinstance(base, dict):
        raise SlimError(f"{where}: base_config must be an object")
    base_type = doc.get("base_model_type", "vit")
    if base_type not in MODEL_TYPES:
        raise SlimError(f"{where}: base_model_type must be vit or deit, got {base_type!r:.40}")
    arch = doc.get("base_architecture", "ViTForImageClassification")
    if arch not in ARCHITECTURES:
        raise SlimError(f"{where}: base_architecture {arch!r:.60} is not one the ViT family knows")
    return {
        **common, "hidden_size": hidden, "qk_dims": qk, "v_dims": v, "intermediate_sizes": list(inter),
        "head_size": head_size, "distillation_token": bool(doc.get("distillation_token", False)),
        "classifier": classifier, "pooler": bool(doc.get("pooler", False)),
        "pooler_output_size": _whole(doc, "pooler_output_size", hidden, *BOUNDS["pooler_output_size"], where),
        "block_origin": list(block_origin), "head_origin": head_origin, "base_model_type": base_type,
        "base_architecture": arch, "base_config": base,
        "groups": {**default_groups(head_size, max(inter) if inter else 0), **groups},
    }
