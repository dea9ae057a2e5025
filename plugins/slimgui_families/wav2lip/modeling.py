"""The Wav2Lip generator and its SyncNet lip-sync expert, written so the state-dict keys are exactly those of
Rudrabha/Wav2Lip (``models/wav2lip.py``, ``models/conv.py``, ``models/syncnet.py``) and of nota-wav2lip
(``nota_wav2lip/models/wav2lip_compressed.py``: ``NotaWav2Lip(nef, naf, ndf, x_size)``).

The generator (``Wav2Lip``):

- ``face_encoder_blocks``: a ModuleList of 7 Sequentials of conv blocks (96×96 → 48 → 24 → 12 → 6 → 3 → 1),
- ``audio_encoder``: one Sequential of conv blocks on an 80×16 mel chunk (→ 1×1),
- ``face_decoder_blocks``: 7 Sequentials (1×1 → 3 → 6 → … → 96), each block's output concatenated with the face
  encoder's features of the same resolution (the skips: decoder block i meets face block 6 − i),
- ``output_block``: ``Conv2d`` block, ``nn.Conv2d(·, 3, 1)``, ``Sigmoid``.

A conv block is ``conv_block = Sequential(Conv2d | ConvTranspose2d, BatchNorm2d)`` + ReLU; a *residual* block (3×3,
stride 1, same width) adds its input before the ReLU.  Keys: ``face_encoder_blocks.N.M.conv_block.0.weight``,
``audio_encoder.M.conv_block.1.running_mean``, ``output_block.1.weight`` ...

:class:`Wav2LipConfig` lists every block (:class:`Block`: width, kernel, stride, padding, output padding, transposed,
residual), so the official generator (16/32/32 base widths, 36.3 M parameters), NotaWav2Lip(4, 8, 8) (residual blocks
removed) and anything in between (fewer residual blocks, pruned widths) are one class.  :func:`standard` builds the
family: ``standard(16, 32, 32)`` is the official ``Wav2Lip()``, ``standard(4, 8, 8, residual=False)`` nota's.  This
file is self-contained (torch only): SlimGUI copies it beside a slimmed generator as ``slimgui_wav2lip.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

FACE_IN, AUDIO_IN = 6, 1
MEL_BINS, MEL_STEPS = 80, 16


@dataclass
class Block:
    """One conv block: ``c`` output channels, kernel ``k``, stride ``s``, padding ``p`` (each (h, w)), output padding
    ``op`` (transposed convs), ``t`` transposed, ``res`` residual (its input added before the ReLU)."""

    c: int
    k: tuple[int, int] = (3, 3)
    s: tuple[int, int] = (1, 1)
    p: tuple[int, int] = (1, 1)
    op: int = 0
    t: bool = False
    res: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"c": self.c, "k": list(self.k), "s": list(self.s), "p": list(self.p), "op": self.op, "t": self.t,
                "res": self.res}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Block:
        def pair(v):
            return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))
        return cls(int(d["c"]), pair(d.get("k", 3)), pair(d.get("s", 1)), pair(d.get("p", 1)), int(d.get("op", 0)),
                   bool(d.get("t", False)), bool(d.get("res", False)))


def _b(c, k=3, s=1, p=1, op=0, t=False, res=False) -> Block:
    def two(v):
        return (v, v) if isinstance(v, int) else tuple(v)
    return Block(int(c), two(k), two(s), two(p), op, t, res)


@dataclass
class Wav2LipConfig:
    """Every block of a Wav2Lip generator (module docstring); ``out_mid`` the width of the output block's conv."""

    face: list[list[Block]]
    audio: list[Block]
    decoder: list[list[Block]]
    out_mid: int
    image_size: int = 96
    extra: dict[str, Any] = field(default_factory=dict)

    # -- widths ----------------------------------------------------------------------------------------------------
    def face_widths(self) -> list[int]:
        return [blk[-1].c for blk in self.face]

    def decoder_inputs(self) -> list[int]:
        """Input channels of each decoder block: the audio embedding, then the previous block's output + the skip."""
        fw = self.face_widths()
        out = [self.audio[-1].c]
        for i in range(1, len(self.decoder)):
            out.append(self.decoder[i - 1][-1].c + fw[len(self.face) - i])
        return out

    def out_input(self) -> int:
        return self.decoder[-1][-1].c + self.face_widths()[0]

    def residual_count(self) -> int:
        return sum(b.res for blk in self.face + self.decoder for b in blk) + sum(b.res for b in self.audio)

    def to_json(self) -> dict[str, Any]:
        return {"face": [[b.to_json() for b in blk] for blk in self.face], "audio": [b.to_json() for b in self.audio],
                "decoder": [[b.to_json() for b in blk] for blk in self.decoder], "out_mid": self.out_mid,
                "image_size": self.image_size, "extra": dict(self.extra)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Wav2LipConfig:
        return cls([[Block.from_json(b) for b in blk] for blk in d["face"]], [Block.from_json(b) for b in d["audio"]],
                   [[Block.from_json(b) for b in blk] for blk in d["decoder"]], int(d["out_mid"]),
                   int(d.get("image_size", 96)), dict(d.get("extra") or {}))


def standard(nef: int = 16, naf: int = 32, ndf: int = 32, *, residual: bool = True, x_size: int = 96) -> Wav2LipConfig:
    """The Wav2Lip generator of base widths nef/naf/ndf: (16, 32, 32) with residual blocks is the official one,
    (4, 8, 8) without them nota-wav2lip's ``NotaWav2Lip``; ``x_size`` 96 or 128 (nota's ``ker_sz_last``)."""
    kl = x_size // 32
    r = residual

    def res(c, n):
        return [_b(c, res=True) for _ in range(n if r else 0)]
    face = [[_b(nef, 7, 1, 3)],
            [_b(nef * 2, 3, 2, 1)] + res(nef * 2, 2),
            [_b(nef * 4, 3, 2, 1)] + res(nef * 4, 3),
            [_b(nef * 8, 3, 2, 1)] + res(nef * 8, 2),
            [_b(nef * 16, 3, 2, 1)] + res(nef * 16, 2),
            [_b(nef * 32, 3, 2, 1)] + res(nef * 32, 1),
            [_b(nef * 32, kl, 1, 0), _b(nef * 32, 1, 1, 0)]]
    audio = ([_b(naf, 3, 1, 1)] + res(naf, 2) + [_b(naf * 2, 3, (3, 1), 1)] + res(naf * 2, 2) +
             [_b(naf * 4, 3, 3, 1)] + res(naf * 4, 2) + [_b(naf * 8, 3, (3, 2), 1)] + res(naf * 8, 1) +
             [_b(naf * 16, 3, 1, 0), _b(naf * 16, 1, 1, 0)])
    up = dict(k=3, s=2, p=1, op=1, t=True)
    decoder = [[_b(naf * 16, 1, 1, 0)],
               [_b(ndf * 16, kl, 1, 0, t=True)] + res(ndf * 16, 1),
               [_b(ndf * 16, **up)] + res(ndf * 16, 2),
               [_b(ndf * 12, **up)] + res(ndf * 12, 2),
               [_b(ndf * 8, **up)] + res(ndf * 8, 2),
               [_b(ndf * 4, **up)] + res(ndf * 4, 2),
               [_b(ndf * 2, **up)] + res(ndf * 2, 2)]
    return Wav2LipConfig(face, audio, decoder, ndf, x_size)


# -- blocks (Rudrabha/Wav2Lip models/conv.py) -------------------------------------------------------------------------
class Conv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class Conv2dTranspose(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, output_padding: int = 0):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding),
                                        nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def make_block(cin: int, b: Block) -> nn.Module:
    if b.t:
        return Conv2dTranspose(cin, b.c, b.k, b.s, b.p, b.op)
    return Conv2d(cin, b.c, b.k, b.s, b.p, residual=b.res)


def make_seq(cin: int, blocks: list[Block]) -> nn.Sequential:
    mods = []
    for b in blocks:
        if b.res and cin != b.c:
            raise ValueError(f"a residual block needs as many input as output channels, got {cin} -> {b.c}")
        mods.append(make_block(cin, b))
        cin = b.c
    return nn.Sequential(*mods)


class Wav2Lip(nn.Module):
    """The Wav2Lip generator of a :class:`Wav2LipConfig` (module docstring).  ``forward(audio, face)`` takes
    mel chunks (B, 1, 80, 16) and faces (B, 6, H, W) — the masked frame and the reference, in [0, 1] — or the 5-d
    (B, T, 1, 80, 16) / (B, 6, T, H, W) sequences the official training code passes."""

    def __init__(self, config: Wav2LipConfig):
        super().__init__()
        c = config
        self.config = c
        fw = c.face_widths()
        cin = FACE_IN
        blocks = []
        for blk in c.face:
            blocks.append(make_seq(cin, blk))
            cin = blk[-1].c
        self.face_encoder_blocks = nn.ModuleList(blocks)
        self.audio_encoder = make_seq(AUDIO_IN, c.audio)
        if len(c.decoder) != len(c.face):
            raise ValueError(f"the decoder needs one block per face encoder block ({len(c.face)}), got {len(c.decoder)}")
        ins = c.decoder_inputs()
        self.face_decoder_blocks = nn.ModuleList([make_seq(ins[i], blk) for i, blk in enumerate(c.decoder)])
        self.output_block = nn.Sequential(Conv2d(c.out_input(), c.out_mid, 3, 1, 1),
                                          nn.Conv2d(c.out_mid, 3, kernel_size=1, stride=1, padding=0), nn.Sigmoid())
        del fw

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor) -> torch.Tensor:
        b = audio_sequences.size(0)
        five = face_sequences.dim() > 4
        if five:
            audio_sequences = torch.cat([audio_sequences[:, i] for i in range(audio_sequences.size(1))], dim=0)
            face_sequences = torch.cat([face_sequences[:, :, i] for i in range(face_sequences.size(2))], dim=0)
        x = self.decode(self.audio_encoder(audio_sequences), self.encode_face(face_sequences))
        if five:
            return torch.stack(torch.split(x, b, dim=0), dim=2)
        return x

    def encode_face(self, face: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = face
        for f in self.face_encoder_blocks:
            x = f(x)
            feats.append(x)
        return feats

    def decode(self, audio_embedding: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        feats = list(feats)
        x = audio_embedding
        for f in self.face_decoder_blocks:
            x = torch.cat((f(x), feats.pop()), dim=1)
        return self.output_block(x)


# -- the SyncNet expert (Rudrabha/Wav2Lip models/syncnet.py: SyncNet_color) -----------------------------------------
@dataclass
class SyncNetConfig:
    """SyncNet_color's two encoders: ``face`` on 5 stacked lower halves (15 × H/2 × W), ``audio`` on the mel chunk."""

    face: list[Block]
    audio: list[Block]
    image_size: int = 96
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"face": [b.to_json() for b in self.face], "audio": [b.to_json() for b in self.audio],
                "image_size": self.image_size, "extra": dict(self.extra)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SyncNetConfig:
        return cls([Block.from_json(b) for b in d["face"]], [Block.from_json(b) for b in d["audio"]],
                   int(d.get("image_size", 96)), dict(d.get("extra") or {}))


def syncnet_standard(nf: int = 32, na: int = 32, *, residual: bool = True) -> SyncNetConfig:
    """SyncNet_color (nf = na = 32 with residual blocks is the official expert)."""
    r = residual

    def res(c, n):
        return [_b(c, res=True) for _ in range(n if r else 0)]
    face = ([_b(nf, 7, 1, 3), _b(nf * 2, 5, (1, 2), 1)] + res(nf * 2, 2) + [_b(nf * 4, 3, 2, 1)] + res(nf * 4, 3) +
            [_b(nf * 8, 3, 2, 1)] + res(nf * 8, 2) + [_b(nf * 16, 3, 2, 1)] + res(nf * 16, 2) +
            [_b(nf * 16, 3, 2, 1), _b(nf * 16, 3, 1, 0), _b(nf * 16, 1, 1, 0)])
    audio = ([_b(na, 3, 1, 1)] + res(na, 2) + [_b(na * 2, 3, (3, 1), 1)] + res(na * 2, 2) +
             [_b(na * 4, 3, 3, 1)] + res(na * 4, 2) + [_b(na * 8, 3, (3, 2), 1)] + res(na * 8, 2) +
             [_b(na * 16, 3, 1, 0), _b(na * 16, 1, 1, 0)])
    return SyncNetConfig(face, audio)


class SyncNet(nn.Module):
    """SyncNet_color: ``forward(mel (B, 1, 80, 16), faces (B, 15, H/2, W))`` → L2-normalised (audio, face) embeddings."""

    def __init__(self, config: SyncNetConfig):
        super().__init__()
        self.config = config
        self.face_encoder = make_seq(15, config.face)
        self.audio_encoder = make_seq(1, config.audio)

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor):
        a = self.audio_encoder(audio_sequences).flatten(1)
        f = self.face_encoder(face_sequences).flatten(1)
        return nn.functional.normalize(a, p=2, dim=1), nn.functional.normalize(f, p=2, dim=1)


# -- shapes and MACs -----------------------------------------------------------------------------------------------
def out_size(hw: tuple[int, int], b: Block) -> tuple[int, int]:
    if b.t:
        return tuple((hw[i] - 1) * b.s[i] - 2 * b.p[i] + b.k[i] + b.op for i in range(2))
    return tuple((hw[i] + 2 * b.p[i] - b.k[i]) // b.s[i] + 1 for i in range(2))


def block_macs(cin: int, b: Block, hw_in: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """(multiply-accumulates, output size) of one conv block on an input of ``hw_in``: cin · cout · kh · kw per output
    position, transposed convs too (as the profilers the Wav2Lip compression paper's figures come from count them:
    6.16 G for the official generator per 96×96 frame; counting a transposed conv per input position, the work its
    scatter really does, gives 3.97 G — :func:`total_macs` with ``scatter=True``)."""
    hw = out_size(hw_in, b)
    macs = cin * b.c * b.k[0] * b.k[1] * hw[0] * hw[1]
    return int(macs), hw


def layer_table(cfg: Wav2LipConfig) -> list[dict[str, Any]]:
    """One row per conv block: id, state-dict prefix, cin, block, input/output size, params, MACs (one frame)."""
    rows = []
    hw = (cfg.image_size, cfg.image_size)
    cin = FACE_IN
    sizes = []
    for i, blk in enumerate(cfg.face):
        for j, b in enumerate(blk):
            m, out = block_macs(cin, b, hw)
            rows.append(dict(id=f"face.{i}.{j}", prefix=f"face_encoder_blocks.{i}.{j}", part="face", stage=i,
                             cin=cin, block=b, hw_in=hw, hw=out, macs=m, params=_params(cin, b)))
            cin, hw = b.c, out
        sizes.append(hw)
    hw, cin = (MEL_BINS, MEL_STEPS), AUDIO_IN
    for j, b in enumerate(cfg.audio):
        m, out = block_macs(cin, b, hw)
        rows.append(dict(id=f"audio.{j}", prefix=f"audio_encoder.{j}", part="audio", stage=j, cin=cin, block=b,
                         hw_in=hw, hw=out, macs=m, params=_params(cin, b)))
        cin, hw = b.c, out
    ins = cfg.decoder_inputs()
    for i, blk in enumerate(cfg.decoder):
        cin = ins[i]
        for j, b in enumerate(blk):
            m, out = block_macs(cin, b, hw)
            rows.append(dict(id=f"dec.{i}.{j}", prefix=f"face_decoder_blocks.{i}.{j}", part="decoder", stage=i,
                             cin=cin, block=b, hw_in=hw, hw=out, macs=m, params=_params(cin, b)))
            cin, hw = b.c, out
        hw = sizes[len(cfg.face) - 1 - i]
    ob = _b(cfg.out_mid, 3, 1, 1)
    m, _ = block_macs(cfg.out_input(), ob, hw)
    rows.append(dict(id="out.0", prefix="output_block.0", part="output", stage=0, cin=cfg.out_input(), block=ob,
                     hw_in=hw, hw=hw, macs=m, params=_params(cfg.out_input(), ob)))
    last = _b(3, 1, 1, 0)
    rows.append(dict(id="out.1", prefix="output_block.1", part="output", stage=1, cin=cfg.out_mid, block=last,
                     hw_in=hw, hw=hw, macs=cfg.out_mid * 3 * hw[0] * hw[1], params=cfg.out_mid * 3 + 3))
    return rows


def _params(cin: int, b: Block) -> int:
    return cin * b.c * b.k[0] * b.k[1] + b.c + 2 * b.c  # conv weight + bias + BN weight/bias


def total_macs(cfg: Wav2LipConfig, scatter: bool = False) -> int:
    """MACs of one frame (see :func:`block_macs`; ``scatter``: transposed convs per input position)."""
    return sum(r["macs"] // (r["block"].s[0] * r["block"].s[1] if scatter and r["block"].t else 1)
               for r in layer_table(cfg))


def as_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)
