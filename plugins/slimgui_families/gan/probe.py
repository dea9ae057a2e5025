"""What opens: Pix2Pix U-Net generators as junyanz/pytorch-CycleGAN-and-pix2pix saves them, read from the keys and
shapes alone (safetensors headers, or ``torch.load(weights_only=True, map_location="meta")``: no weights are read).

:func:`infer` turns ``{key: shape}`` into a :class:`~.modeling.UNetConfig`: the levels from the nesting of the keys
(``model.model.1.model.3.model...``), the widths from the shapes, the norm from which convs carry a bias (instance
norm) and whether norm weights / running statistics exist (batch norm); then every key is checked against the
generator that config builds, and the first one that does not fit is named.  Networks of the same code base that are
not U-Net generators (CycleGAN's ResNet generator, the PatchGAN and pixel discriminators) are recognised and refused
with what they are.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.io import MAX_CONFIG_BYTES, read_bytes_limited, read_json_file

CONFIG = "slimgui_gan.json"
TRAIN_OPT = "train_opt.txt"
SUFFIXES = (".pth", ".pt", ".safetensors")
MAX_LEVELS = 12
MAX_WIDTH = 16_384
G_NAME = re.compile(r"^(?:(latest)|(\d+)|(.+))_net_G\.(?:pth|pt|safetensors)$")


# -- files --------------------------------------------------------------------------------------------------------
def weight_file(path: Path) -> Path | None:
    """The generator file ``path`` names: the file itself, or in a folder ``latest_net_G`` (else the highest epoch's
    ``N_net_G``, else any ``*_net_G``, else a lone weights file), safetensors before .pth."""
    if path.is_file():
        return path if path.suffix.lower() in SUFFIXES else None
    if not path.is_dir():
        return None
    files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES]
    named = [p for p in files if G_NAME.match(p.name)]

    def rank(p: Path) -> tuple:
        m = G_NAME.match(p.name)
        return (0 if m.group(1) else 1 if m.group(2) else 2, -int(m.group(2) or 0), p.suffix != ".safetensors", p.name)
    if named:
        return sorted(named, key=rank)[0]
    if (path / CONFIG).is_file():
        safes = sorted(p for p in files if p.suffix == ".safetensors")
        return (safes or sorted(files) or [None])[0]
    return None


def read_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a state-dict file (``module.`` prefixes of DataParallel removed); reads no weights."""
    if file.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as fh:
                shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
        except Exception as exc:
            raise SlimError(f"{file.name} is not a valid safetensors file ({str(exc).splitlines()[0][:120]})") from None
    else:
        import torch

        try:
            state = torch.load(file, map_location="meta", weights_only=True, mmap=zipfile.is_zipfile(file))
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SlimError(f"{file.name} is not a readable PyTorch state dict ({msg[:160]})",
                            hint="SlimGUI loads checkpoints with torch.load(weights_only=True) only") from None
        state = unwrap(state, file)
        shapes = {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    return strip_prefix(shapes)


def unwrap(state: Any, file: Path) -> dict:
    """The state dict in a checkpoint: the object itself, or under "state_dict" / "netG" / "model" / "G"."""
    if isinstance(state, dict) and not any(hasattr(v, "shape") for v in state.values()):
        for key in ("state_dict", "netG", "G", "generator", "model"):
            if isinstance(state.get(key), dict):
                return state[key]
    if not isinstance(state, dict):
        raise SlimError(f"{file.name} holds a {type(state).__name__}, not a state dict",
                        hint="junyanz's code saves net.state_dict() as *_net_G.pth")
    return state


def strip_prefix(d: dict) -> dict:
    if d and all(k.startswith("module.") for k in d):
        return {k[len("module."):]: v for k, v in d.items()}
    return d


def read_train_opt(folder: Path) -> dict[str, str]:
    """``train_opt.txt`` of junyanz's checkpoints folder (``name: value  [default: ...]`` lines), if there."""
    f = folder / TRAIN_OPT
    if not f.is_file():
        return {}
    try:
        text = read_bytes_limited(f, "train_opt.txt", limit=1 << 20).decode("utf-8", "replace")
    except SlimError:
        return {}
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(\w+):\s*(\S+)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def read_sidecar(folder: Path) -> dict[str, Any]:
    f = folder / CONFIG
    if not f.is_file():
        return {}
    doc = read_json_file(f, "SlimGUI's U-Net description", limit=MAX_CONFIG_BYTES)
    if not isinstance(doc, dict):
        raise SlimError(f"{f} is not a JSON object")
    return doc


# -- what the keys are --------------------------------------------------------------------------------------------
def other_network(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """What a state dict of the same code base that is not a U-Net generator is, or None."""
    keys = set(shapes)
    if any(re.match(r"^model\.\d+\.conv_block\.\d+\.weight$", k) for k in keys):
        blocks = len({k.split(".")[1] for k in keys if ".conv_block." in k})
        return f"a ResNet generator (CycleGAN / pix2pix resnet_{blocks}blocks), not a U-Net"
    convs = sorted(((int(k.split(".")[1]), s) for k, s in shapes.items()
                    if re.match(r"^model\.\d+\.weight$", k) and len(s) == 4), key=lambda t: t[0])
    if convs and not any(k.startswith("model.model.") for k in keys):
        last = convs[-1][1]
        if last[0] == 1:
            if all(s[2:] == (1, 1) for _, s in convs):
                return "a pixel discriminator (PixelGAN, *_net_D.pth), not a generator"
            return f"a PatchGAN discriminator ({len(convs)} convs, NLayerDiscriminator, *_net_D.pth), not a generator"
    if any(k.startswith("net.") for k in keys) and any("upsample" in k or "downsample" in k for k in keys):
        return "a U-Net in another layout than junyanz's (not UnetGenerator)"
    return None


def level_prefix(k: int) -> str:
    return "model.model" + ".1.model" * (k >= 1) + ".3.model" * max(0, k - 1)


def infer(shapes: dict[str, tuple[int, ...]], where: str, side: dict[str, Any] | None = None,
          train_opt: dict[str, str] | None = None) -> tuple[Any, list[str]]:
    """(UNetConfig, notes) of a junyanz U-Net generator state dict given as ``{key: shape}``; one SlimError naming the
    first key that does not fit otherwise.  ``side``: SlimGUI's ``slimgui_gan.json``; ``train_opt``: junyanz's."""
    from .modeling import UNetConfig, UnetGenerator

    side, train_opt = side or {}, train_opt or {}
    notes: list[str] = []
    what = other_network(shapes)
    if what:
        raise SlimError(f"{where} holds {what}", hint="SlimGUI's gan family opens Pix2Pix U-Net generators "
                        "(unet_256 / unet_128 *_net_G.pth)")
    if "model.model.0.weight" not in shapes:
        first = next(iter(shapes), "nothing")
        raise SlimError(f"{where} is not a Pix2Pix U-Net generator: it has no model.model.0.weight (its first key "
                        f"is {first})", hint="open a UnetGenerator state dict saved by pytorch-CycleGAN-and-pix2pix")
    # levels, from the nesting
    levels = 1
    while levels < MAX_LEVELS + 1 and any(k.startswith(level_prefix(levels) + ".") for k in shapes):
        levels += 1
    if levels > MAX_LEVELS:
        raise SlimError(f"{where} nests more than {MAX_LEVELS} U-Net levels", hint="a broken or hostile state dict")
    if levels < 2:
        raise SlimError(f"{where} has an outermost block but no inner level (no key starts with model.model.1.)")
    n = levels
    # which convs carry a bias, and whether norm parameters / running statistics exist
    down_bias = "model.model.0.bias" in shapes
    norm_keys = [k for k in shapes if re.search(r"\.(running_mean|running_var|num_batches_tracked)$", k)]
    norm_weights = [k for k in shapes if k.endswith(".weight") and len(shapes[k]) == 1]
    if down_bias and norm_weights:
        raise SlimError(f"{where} mixes the two norm kinds: the convs carry biases ({'model.model.0.bias'}), as in an "
                        f"instance-norm U-Net, but {norm_weights[0]} is a batch-norm weight",
                        hint="the file is not a junyanz UnetGenerator of one --norm; re-save it")
    norm = "instance" if down_bias else "batch"
    if norm == "instance" and norm_keys:
        notes.append(f"running statistics of the instance norms ({len(norm_keys)} tensors, from an old PyTorch) are "
                     "ignored, as junyanz's load_networks does")
    if norm == "batch" and not norm_weights:
        raise SlimError(f"{where}: its convs carry no bias, so it would be a batch-norm U-Net, but it holds no "
                        "batch-norm weights", hint="the state dict is incomplete")
    for source, claimed in (("train_opt.txt", train_opt.get("norm")), (CONFIG, side.get("norm"))):
        if claimed and claimed != norm:
            evidence = "model.model.0.bias exists" if norm == "instance" else \
                f"the convs carry no bias and {norm_weights[0]} exists"
            raise SlimError(f"{where}: {source} says norm '{claimed}', but the weights are a {norm}-norm U-Net "
                            f"({evidence})", hint=f"fix {source} or use the weights it belongs to")
    # widths
    down, up = [], []
    for k in range(n):
        p = level_prefix(k)
        dkey = f"{p}.0.weight" if k == 0 else f"{p}.1.weight"
        if dkey not in shapes or len(shapes[dkey]) != 4:
            raise SlimError(f"{where}: level {k}'s down conv {dkey} is missing or not a 4-d conv weight")
        down.append(int(shapes[dkey][0]))
    inner = level_prefix(n - 1)
    inner_norm = f"{inner}.2.weight" in shapes or bool(side.get("inner_norm"))
    for k in range(n):
        p = level_prefix(k)
        ukey = f"{p}.3.weight" if k == 0 else (f"{p}.5.weight" if k < n - 1 else
                                                 f"{p}.{4 if inner_norm else 3}.weight")
        if ukey not in shapes or len(shapes[ukey]) != 4:
            raise SlimError(f"{where}: level {k}'s up conv {ukey} is missing or not a 4-d ConvTranspose2d weight")
        up.append(int(shapes[ukey][1]))
    input_nc = int(shapes["model.model.0.weight"][1])
    for v in down + up + [input_nc]:
        if not 1 <= v <= MAX_WIDTH:
            raise SlimError(f"{where}: a width of {v} channels is outside 1..{MAX_WIDTH}")
    use_dropout = bool(side.get("use_dropout", train_opt.get("no_dropout", "False") != "True"))
    size = side.get("image_size") or (int(train_opt["crop_size"]) if str(train_opt.get("crop_size", "")).isdigit()
                                      else 2 ** n)
    cfg = UNetConfig(down=down, up=up, input_nc=input_nc, output_nc=up[0], norm=norm, use_dropout=use_dropout,
                     inner_norm=inner_norm, image_size=int(size), origin_levels=side.get("origin_levels"),
                     extra=dict(side.get("extra") or {}))
    # every key against the generator this config builds
    import torch

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in UnetGenerator(cfg).state_dict().items()}
    for k, s in shapes.items():
        if norm == "instance" and k in norm_keys:
            continue
        if k not in expected:
            raise SlimError(f"{where}: the key {k} {list(s)} does not fit a {n}-level {norm}-norm U-Net generator "
                            f"(widths {down})", hint="the state dict belongs to another architecture or options")
        if expected[k] != tuple(s):
            raise SlimError(f"{where}: {k} is {list(s)}, but a {n}-level U-Net with widths {down} needs "
                            f"{list(expected[k])}", hint="the file is not a consistent UnetGenerator state dict")
    missing = [k for k in expected if k not in shapes]
    if missing:
        raise SlimError(f"{where}: the key {missing[0]} is missing ({len(missing)} missing in all)",
                        hint="the state dict is incomplete")
    return cfg, notes


def name_of(cfg: Any) -> str:
    std, ngf = cfg.is_standard()
    if std:
        return {8: "unet_256", 7: "unet_128"}.get(cfg.levels, f"unet ({cfg.levels} downs)") + f", ngf {ngf}"
    return f"slimmed U-Net ({cfg.levels} levels)"


def match(path: str) -> float | tuple[float, dict[str, Any]]:
    """How sure the gan family is that it opens ``path``: a U-Net generator state dict (a file, or a folder holding
    ``*_net_G.pth`` / ``.safetensors`` or SlimGUI's ``slimgui_gan.json``) → 0.9; a state dict of the same code base
    that is another network (ResNet generator, discriminator) → 0.3, so that opening it says what it is."""
    p = Path(path)
    if not p.exists():
        return 0.0
    file = weight_file(p)
    if file is None:
        return 0.0
    if p.is_file() and (p.parent / "config.json").is_file() and not G_NAME.match(p.name):
        return 0.0  # a transformers / diffusers folder's weights
    try:
        shapes = read_shapes(file)
        ab = read_sidecar(file.parent).get("abconv")
        if ab:  # ABConv layers read as the convolutions they replaced (torch imported only then)
            from slimgui.core.abconv import abconv_map, plain_shapes

            shapes = plain_shapes(shapes, abconv_map(ab, CONFIG))
    except SlimError:
        return 0.0
    info = {"file": str(file)}
    if "model.model.0.weight" in shapes:
        return 0.9, info
    if other_network(shapes):
        return 0.3, info
    return 0.0
