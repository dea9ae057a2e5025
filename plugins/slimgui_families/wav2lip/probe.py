"""What opens: Wav2Lip generators as people have them, read from the keys and shapes alone (safetensors headers, or
``torch.load(weights_only=True, map_location="meta")``: no weights are read).

- the official checkpoints (``wav2lip.pth``, ``wav2lip_gan.pth``, ``checkpoint_stepN.pth``): ``{"state_dict",
  "optimizer", "global_step", "global_epoch"}``, keys with or without DataParallel's ``module.``;
- nota-wav2lip's compressed checkpoints: a plain state dict of ``NotaWav2Lip(nef, naf, ndf, x_size)``;
- safetensors of either, and SlimGUI's own outputs (``slimgui_wav2lip.json`` beside the weights: every block's
  stride, padding and residual flag, which shapes alone do not say).

The width of every block is read from its weight's shape; which blocks are residual and their strides follow the
official layout (:func:`infer`): the first block of every face-encoder and decoder stage is a plain (or transposed)
conv and the ones after it residual; the audio encoder's blocks are matched in order against its six plain convs,
each followed by at most the official number of residual ones.  Then every key is checked against the generator that
config builds and the first one that does not fit is named.  A SyncNet expert (``lipsync_expert.pth``) or
Wav2Lip's visual-quality discriminator (``visual_quality_disc.pth``) dropped by mistake is recognised and refused
with what it is (Wav2Lip users meet ``KeyError: 'state_dict'`` or missing keys on exactly this).
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.io import MAX_CONFIG_BYTES, read_json_file

CONFIG = "slimgui_wav2lip.json"
EXPERT_CONFIG = "slimgui_syncnet.json"
SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".safetensors")
MAX_WIDTH = 16_384
MAX_BLOCKS = 64
GEN_PARTS = ("face_encoder_blocks.", "audio_encoder.", "face_decoder_blocks.", "output_block.")
BLOCK_KEY = re.compile(r"^(face_encoder_blocks|face_decoder_blocks)\.(\d+)\.(\d+)\.conv_block\.0\.weight$")
SEQ_KEY = re.compile(r"^(audio_encoder|face_encoder)\.(\d+)\.conv_block\.0\.weight$")


# -- files ----------------------------------------------------------------------------------------------------------
def weight_file(path: Path) -> Path | None:
    """The weights ``path`` names: the file itself, or in a folder the one its ``slimgui_wav2lip.json`` names, else
    a lone weights file (safetensors first)."""
    if path.is_file():
        return path if path.suffix.lower() in SUFFIXES else None
    if not path.is_dir():
        return None
    side = path / CONFIG
    if side.is_file():
        try:
            doc = read_json_file(side, "SlimGUI's Wav2Lip description", limit=MAX_CONFIG_BYTES)
        except SlimError:
            doc = {}
        name = doc.get("weights") if isinstance(doc, dict) else None
        if isinstance(name, str) and "/" not in name and (path / name).is_file():
            return path / name
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES),
                   key=lambda p: (p.suffix != ".safetensors", p.name))
    return files[0] if files else None


def read_sidecar(folder: Path, name: str = CONFIG) -> dict[str, Any]:
    f = folder / name
    if not f.is_file():
        return {}
    doc = read_json_file(f, "SlimGUI's Wav2Lip description", limit=MAX_CONFIG_BYTES)
    if not isinstance(doc, dict):
        raise SlimError(f"{f} is not a JSON object")
    return doc


def _load(file: Path, device: str) -> Any:
    import torch

    try:
        return torch.load(file, map_location=device, weights_only=True, mmap=zipfile.is_zipfile(file))
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SlimError(f"{file.name} is not a readable PyTorch checkpoint ({msg[:160]})",
                        hint="SlimGUI loads checkpoints with torch.load(weights_only=True) only: a file that needs "
                             "code to unpickle is refused") from None


def read_state(file: Path, *, meta: bool = False) -> dict[str, Any]:
    """The state dict in ``file`` (tensors on the meta device when ``meta``), unwrapped and without ``module.``."""
    if file.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as fh:
                if meta:
                    import torch

                    state = {k: torch.empty(tuple(fh.get_slice(k).get_shape()), device="meta") for k in fh.keys()}
                else:
                    state = {k: fh.get_tensor(k) for k in fh.keys()}
        except SlimError:
            raise
        except Exception as exc:
            raise SlimError(f"{file.name} is not a valid safetensors file ({str(exc).splitlines()[0][:120]})") from None
        return strip_prefix(state)
    return strip_prefix(unwrap(_load(file, "meta" if meta else "cpu"), file))


def unwrap(obj: Any, file: Path) -> dict:
    """The state dict of a checkpoint: under "state_dict" (Wav2Lip's train scripts save it so), "model", "netG" or
    "generator", or the object itself."""
    if not isinstance(obj, dict):
        raise SlimError(f"{file.name} holds a {type(obj).__name__}, not a state dict",
                        hint="Wav2Lip saves {'state_dict': model.state_dict(), ...}; nota-wav2lip a plain state dict")
    if not any(hasattr(v, "shape") for v in obj.values()):
        for key in ("state_dict", "model", "netG", "generator", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                return obj[key]
        raise SlimError(f"{file.name} holds no tensors (keys: {', '.join(map(str, list(obj)[:6]))})",
                        hint="open a Wav2Lip checkpoint (wav2lip.pth, wav2lip_gan.pth) or a generator state dict")
    return obj


def strip_prefix(d: dict) -> dict:
    if d and all(isinstance(k, str) and k.startswith("module.") for k in d):
        return {k[len("module."):]: v for k, v in d.items()}
    return d


def header_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, read as the format defines it (an 8-byte little-endian
    length, then JSON), without torch: probing runs for every path opened, of every family."""
    try:
        with open(file, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if not 2 <= n <= 100 * 2**20:
                raise ValueError(f"header length {n}")
            header = json.loads(fh.read(n))
        shapes = {k: tuple(int(d) for d in v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise SlimError(f"{file.name} is not a valid safetensors file ({exc})") from None
    return strip_prefix(shapes)


def shapes_of(state: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


# -- what the keys are ----------------------------------------------------------------------------------------------
def kind_of(shapes: dict[str, tuple[int, ...]]) -> str:
    """"generator", "syncnet", "discriminator" or "other"."""
    keys = set(shapes)
    if any(k.startswith("binary_pred.") for k in keys) and any(k.startswith("face_encoder_blocks.") for k in keys):
        return "discriminator"
    if any(k.startswith("face_encoder.") for k in keys) and any(k.startswith("audio_encoder.") for k in keys):
        return "syncnet"
    if all(any(k.startswith(p) for k in keys) for p in GEN_PARTS):
        return "generator"
    return "other"


WHAT = {
    "syncnet": "a SyncNet lip-sync expert (SyncNet_color, lipsync_expert.pth), not a Wav2Lip generator",
    "discriminator": "Wav2Lip's visual-quality discriminator (Wav2Lip_disc_qual, visual_quality_disc.pth), not the "
                     "generator",
}


def refuse_other(kind: str, where: str) -> None:
    if kind in WHAT:
        hint = ("open the generator (wav2lip.pth / wav2lip_gan.pth); give an expert to the evaluation or healing as "
                "--expert" if kind == "syncnet" else "open the generator (wav2lip_gan.pth), not the discriminator")
        raise SlimError(f"{where} holds {WHAT[kind]}", hint=hint)
    if kind != "generator":
        raise SlimError(f"{where} is not a Wav2Lip generator: it lacks face_encoder_blocks / audio_encoder / "
                        "face_decoder_blocks / output_block keys", hint="open wav2lip.pth, wav2lip_gan.pth or a "
                        "nota-wav2lip checkpoint")


# -- config from shapes -------------------------------------------------------------------------------------------------
def _conv(shapes, key, where, transposed=False) -> tuple[int, int, tuple[int, int]]:
    """(cin, cout, kernel) of a conv weight key."""
    s = shapes.get(key)
    if s is None or len(s) != 4:
        raise SlimError(f"{where}: {key} is missing or not a 4-d conv weight")
    cin, cout = (s[0], s[1]) if transposed else (s[1], s[0])
    for v in (cin, cout):
        if not 1 <= v <= MAX_WIDTH:
            raise SlimError(f"{where}: {key} has a width of {v} channels, outside 1..{MAX_WIDTH}")
    return int(cin), int(cout), (int(s[2]), int(s[3]))


def _indices(shapes, prefix: str) -> list[int]:
    idx = sorted({int(k[len(prefix):].split(".")[0]) for k in shapes if k.startswith(prefix)
                  and k[len(prefix):].split(".")[0].isdigit()})
    if len(idx) > MAX_BLOCKS:
        raise SlimError(f"{prefix[:-1]} has {len(idx)} blocks, more than {MAX_BLOCKS}")
    if idx != list(range(len(idx))):
        raise SlimError(f"{prefix[:-1]} skips a block index ({idx[:12]})")
    return idx


def assign(convs: list[tuple[int, int, tuple[int, int]]], slots: list[dict], max_res: list[int], where: str,
           part: str) -> list:
    """Blocks of a flat Sequential: ``convs`` (cin, cout, kernel) matched in order to the plain ``slots`` (stride,
    padding), each followed by at most ``max_res`` residual 3×3 blocks (same width)."""
    from .modeling import Block

    blocks: list[Block] = []
    t = -1
    res_used = 0
    for j, (cin, cout, k) in enumerate(convs):
        remaining_plain = len(slots) - (t + 1)
        left = len(convs) - j
        can_res = t >= 0 and cin == cout and k == (3, 3) and res_used < max_res[t] and left > remaining_plain
        if can_res:
            blocks.append(Block(cout, (3, 3), (1, 1), (1, 1), res=True))
            res_used += 1
            continue
        t += 1
        if t >= len(slots):
            raise SlimError(f"{where}: {part} has more blocks than the Wav2Lip layout allows ({len(convs)})")
        sl = slots[t]
        blocks.append(Block(cout, k, sl["s"], sl.get("p", (1, 1)) if k != (1, 1) else (0, 0)))
        res_used = 0
    if t != len(slots) - 1:
        raise SlimError(f"{where}: {part} has {t + 1} plain conv blocks, the Wav2Lip layout has {len(slots)}")
    return blocks


AUDIO_SLOTS = [dict(s=(1, 1), p=(1, 1)), dict(s=(3, 1), p=(1, 1)), dict(s=(3, 3), p=(1, 1)), dict(s=(3, 2), p=(1, 1)),
               dict(s=(1, 1), p=(0, 0)), dict(s=(1, 1), p=(0, 0))]
AUDIO_RES = [2, 2, 2, 1, 0, 0]
SYNC_AUDIO_RES = [2, 2, 2, 2, 0, 0]
SYNC_FACE_SLOTS = [dict(s=(1, 1), p=(3, 3)), dict(s=(1, 2), p=(1, 1)), dict(s=(2, 2), p=(1, 1)),
                   dict(s=(2, 2), p=(1, 1)), dict(s=(2, 2), p=(1, 1)), dict(s=(2, 2), p=(1, 1)),
                   dict(s=(1, 1), p=(0, 0)), dict(s=(1, 1), p=(0, 0))]
SYNC_FACE_RES = [0, 2, 3, 2, 2, 0, 0, 0]


def infer(shapes: dict[str, tuple[int, ...]], where: str) -> Any:
    """The :class:`~.modeling.Wav2LipConfig` of a generator state dict given as ``{key: shape}``."""
    from .modeling import Block, Wav2LipConfig

    refuse_other(kind_of(shapes), where)
    face: list[list[Block]] = []
    stages = _indices(shapes, "face_encoder_blocks.")
    if len(stages) != 7:
        raise SlimError(f"{where}: the face encoder has {len(stages)} blocks, Wav2Lip's has 7")
    for i in stages:
        js = _indices(shapes, f"face_encoder_blocks.{i}.")
        blk = []
        for j in js:
            _, cout, k = _conv(shapes, f"face_encoder_blocks.{i}.{j}.conv_block.0.weight", where)
            if i == 0 and j == 0:
                blk.append(Block(cout, k, (1, 1), (k[0] // 2, k[1] // 2)))
            elif i == 6:
                blk.append(Block(cout, k, (1, 1), (0, 0)))
            elif j == 0:
                blk.append(Block(cout, k, (2, 2), (1, 1)))
            else:
                blk.append(Block(cout, k, (1, 1), (1, 1), res=True))
        face.append(blk)
    x_size = 32 * face[6][0].k[0]
    a_idx = _indices(shapes, "audio_encoder.")
    audio = assign([_conv(shapes, f"audio_encoder.{j}.conv_block.0.weight", where) for j in a_idx], AUDIO_SLOTS,
                   AUDIO_RES, where, "the audio encoder")
    decoder: list[list[Block]] = []
    d_stages = _indices(shapes, "face_decoder_blocks.")
    if len(d_stages) != 7:
        raise SlimError(f"{where}: the decoder has {len(d_stages)} blocks, Wav2Lip's has 7")
    for i in d_stages:
        blk = []
        for j in _indices(shapes, f"face_decoder_blocks.{i}."):
            key = f"face_decoder_blocks.{i}.{j}.conv_block.0.weight"
            if j == 0 and i == 0:
                _, cout, k = _conv(shapes, key, where)
                blk.append(Block(cout, k, (1, 1), (0, 0)))
            elif j == 0:
                _, cout, k = _conv(shapes, key, where, transposed=True)
                blk.append(Block(cout, k, (1, 1), (0, 0), t=True) if i == 1 else
                           Block(cout, k, (2, 2), (1, 1), op=1, t=True))
            else:
                _, cout, k = _conv(shapes, key, where)
                blk.append(Block(cout, k, (1, 1), (1, 1), res=True))
        decoder.append(blk)
    _, mid, _ = _conv(shapes, "output_block.0.conv_block.0.weight", where)
    for name, seqs in (("face_encoder_blocks", face), ("face_decoder_blocks", decoder)):
        for i, blk in enumerate(seqs):
            for j in range(1, len(blk)):
                if blk[j].res and blk[j].c != blk[j - 1].c:
                    raise SlimError(f"{where}: {name}.{i}.{j} is a residual block of {blk[j].c} channels after one of "
                                    f"{blk[j - 1].c} ({name}.{i}.{j - 1}.conv_block.0.weight)",
                                    hint="the file is not a consistent Wav2Lip state dict")
    cfg = Wav2LipConfig(face, audio, decoder, mid, x_size)
    check(cfg, shapes, where)
    return cfg


def expected_shapes(cfg: Any) -> dict[str, tuple[int, ...]]:
    import torch

    from .modeling import Wav2Lip

    try:
        with torch.device("meta"):
            return {k: tuple(v.shape) for k, v in Wav2Lip(cfg).state_dict().items()}
    except ValueError as exc:
        raise SlimError(f"the Wav2Lip layout does not fit: {exc}") from None


def check(cfg: Any, shapes: dict[str, tuple[int, ...]], where: str) -> None:
    """Every key of ``shapes`` against the generator ``cfg`` builds; one SlimError naming the first that does not fit."""
    expected = expected_shapes(cfg)
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked") and k in expected:
            continue
        if k not in expected:
            raise SlimError(f"{where}: the key {k} {list(s)} does not fit the Wav2Lip generator its shapes describe",
                            hint="the state dict belongs to another architecture")
        if expected[k] != tuple(s):
            raise SlimError(f"{where}: {k} is {list(s)}, but the generator its other shapes describe needs "
                            f"{list(expected[k])}", hint="the file is not a consistent Wav2Lip state dict")
    missing = [k for k in expected if k not in shapes and not k.endswith("num_batches_tracked")]
    if missing:
        raise SlimError(f"{where}: the key {missing[0]} is missing ({len(missing)} missing in all)",
                        hint="the state dict is incomplete")


def infer_syncnet(shapes: dict[str, tuple[int, ...]], where: str) -> Any:
    """The :class:`~.modeling.SyncNetConfig` of a SyncNet_color state dict."""
    import torch

    from .modeling import SyncNet, SyncNetConfig

    if kind_of(shapes) != "syncnet":
        raise SlimError(f"{where} is not a SyncNet lip-sync expert (no face_encoder.N / audio_encoder.N keys)",
                        hint="give Wav2Lip's lipsync_expert.pth or the demo's expert folder")
    f_idx = _indices(shapes, "face_encoder.")
    a_idx = _indices(shapes, "audio_encoder.")
    face = assign([_conv(shapes, f"face_encoder.{j}.conv_block.0.weight", where) for j in f_idx], SYNC_FACE_SLOTS,
                  SYNC_FACE_RES, where, "the expert's face encoder")
    audio = assign([_conv(shapes, f"audio_encoder.{j}.conv_block.0.weight", where) for j in a_idx], AUDIO_SLOTS,
                   SYNC_AUDIO_RES, where, "the expert's audio encoder")
    cfg = SyncNetConfig(face, audio)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in SyncNet(cfg).state_dict().items()}
    bad = [k for k in shapes if expected.get(k) != shapes[k]] + [k for k in expected if k not in shapes]
    if bad:
        raise SlimError(f"{where}: the expert's key {bad[0]} does not fit a SyncNet_color layout",
                        hint="give Wav2Lip's lipsync_expert.pth or the demo's expert folder")
    return cfg


def match(path: str) -> float | tuple[float, dict[str, Any]]:
    """A Wav2Lip generator (file or folder) → 0.9; a SyncNet or Wav2Lip discriminator → 0.3, so that opening it says
    what it is; anything else 0."""
    p = Path(path)
    if not p.exists():
        return 0.0
    file = weight_file(p)
    if file is None:
        return 0.0
    if p.is_file() and (p.parent / "config.json").is_file():
        return 0.0
    try:
        shapes = header_shapes(file) if file.suffix.lower() == ".safetensors" else shapes_of(read_state(file, meta=True))
        ab = read_sidecar(file.parent).get("abconv") if (file.parent / CONFIG).is_file() else None
        if ab:  # ABConv layers read as the convolutions they replaced (torch imported only then)
            from slimgui.core.abconv import abconv_map, plain_shapes

            shapes = plain_shapes(shapes, abconv_map(ab, CONFIG))
    except SlimError:
        return 0.0
    kind = kind_of(shapes)
    info = {"file": str(file), "kind": kind}
    if kind == "generator":
        return 0.9, info
    if kind in WHAT:
        return 0.3, info
    return 0.0
