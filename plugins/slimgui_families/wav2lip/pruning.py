"""Residual-block removal and channel-width pruning of a Wav2Lip generator, by channel groups.

A *group* is the set of blocks whose outputs share channels: a stage's plain (or transposed) conv and the residual
blocks after it (a residual block adds its input, so it keeps its input's channels).  Its id is the plain block's
(``face.3.0``, ``audio.6``, ``dec.2.0``, ``out.0``).  What a kept channel list reaches:

==========================  ===========================================================================================
a group's channel           cuts
==========================  ===========================================================================================
its blocks' outputs         conv weight dim 0 (ConvTranspose2d: dim 1), bias, BatchNorm weight/bias/running stats
the next block's input      conv weight dim 1 (ConvTranspose2d: dim 0)
a face-encoder stage i      also the skip: decoder block 7 − i's input rows after the previous decoder block's channels
                            (face stage 0: the output block's conv, after the decoder's last channels)
==========================  ===========================================================================================

A removed residual block's output is its input, so removing it is dropping it from its Sequential.  The masked
equivalent of a pruned channel (what the tests compare the physically smaller generator with): the BatchNorm
weight and bias of every block of its group set to 0 — the channel is then 0 after every ReLU of the group.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .modeling import Wav2Lip, Wav2LipConfig

PARTS = {"nef": "face", "naf": "audio", "ndf": "decoder"}


def groups(cfg: Wav2LipConfig) -> dict[str, list[str]]:
    """{group id: the block ids whose outputs are its channels} (module docstring)."""
    out: dict[str, list[str]] = {}
    for i, blk in enumerate(cfg.face):
        g = None
        for j, b in enumerate(blk):
            if not b.res:
                g = f"face.{i}.{j}"
            out.setdefault(g, []).append(f"face.{i}.{j}")
    g = None
    for j, b in enumerate(cfg.audio):
        if not b.res:
            g = f"audio.{j}"
        out.setdefault(g, []).append(f"audio.{j}")
    for i, blk in enumerate(cfg.decoder):
        for j, b in enumerate(blk):
            if not b.res:
                g = f"dec.{i}.{j}"
            out.setdefault(g, []).append(f"dec.{i}.{j}")
    out["out.0"] = ["out.0"]
    return out


def part_of_group(gid: str, cfg: Wav2LipConfig) -> str:
    """Which base width a group scales with: ``nef`` (face encoder), ``naf`` (audio encoder and the decoder's first,
    1×1 block, naf·16 in NotaWav2Lip) or ``ndf`` (the rest of the decoder and the output block)."""
    if gid.startswith("face."):
        return "nef"
    if gid.startswith("audio.") or gid == "dec.0.0":
        return "naf"
    return "ndf"


def group_width(cfg: Wav2LipConfig, gid: str) -> int:
    return block_of(cfg, gid).c if gid != "out.0" else cfg.out_mid


def block_of(cfg: Wav2LipConfig, bid: str):
    p = bid.split(".")
    if p[0] == "face":
        return cfg.face[int(p[1])][int(p[2])]
    if p[0] == "audio":
        return cfg.audio[int(p[1])]
    if p[0] == "dec":
        return cfg.decoder[int(p[1])][int(p[2])]
    raise KeyError(bid)


def conv_of(module: Wav2Lip, bid: str) -> nn.Module:
    """The block module (``Conv2d`` / ``Conv2dTranspose``) of a block id."""
    p = bid.split(".")
    if p[0] == "face":
        return module.face_encoder_blocks[int(p[1])][int(p[2])]
    if p[0] == "audio":
        return module.audio_encoder[int(p[1])]
    if p[0] == "dec":
        return module.face_decoder_blocks[int(p[1])][int(p[2])]
    if bid == "out.0":
        return module.output_block[0]
    raise KeyError(bid)


def filter_importance(module: Wav2Lip, gid: str) -> torch.Tensor:
    """Per-channel importance of a group: the mean |w| of each output filter (divided by its fan-in) times |γ| of its
    BatchNorm, summed over the group's blocks."""
    cfg = module.config
    total = None
    for bid in groups(cfg)[gid]:
        blk = conv_of(module, bid)
        conv, bn = blk.conv_block[0], blk.conv_block[1]
        w = conv.weight.detach()
        w = w.transpose(0, 1) if isinstance(conv, nn.ConvTranspose2d) else w
        v = w.abs().flatten(1).mean(1) * bn.weight.detach().abs()
        total = v if total is None else total + v
    return total


def keep_lists(module: Wav2Lip, widths: dict[str, int]) -> dict[str, list[int]]:
    """{group: the channels kept (sorted)} keeping the ``widths[group]`` most important of each group named."""
    out = {}
    for gid, w in widths.items():
        imp = filter_importance(module, gid)
        order = torch.argsort(imp, descending=True, stable=True)[:w]
        out[gid] = sorted(int(i) for i in order)
    return out


def new_config(cfg: Wav2LipConfig, drop_res: set[str], widths: dict[str, int]) -> Wav2LipConfig:
    """The config without the residual blocks ``drop_res`` and with the groups' new ``widths``."""
    c = copy.deepcopy(cfg)
    gmap = {bid: gid for gid, bids in groups(cfg).items() for bid in bids}

    def rebuild(blocks, prefix):
        out = []
        for j, b in enumerate(blocks):
            bid = f"{prefix}{j}"
            if bid in drop_res:
                continue
            g = gmap[bid]
            if g in widths:
                b.c = widths[g]
            out.append(b)
        return out
    c.face = [rebuild(blk, f"face.{i}.") for i, blk in enumerate(c.face)]
    c.audio = rebuild(c.audio, "audio.")
    c.decoder = [rebuild(blk, f"dec.{i}.") for i, blk in enumerate(c.decoder)]
    if "out.0" in widths:
        c.out_mid = widths["out.0"]
    return c


def _in_index(cfg: Wav2LipConfig, bid: str, keep: dict[str, list[int]], gmap: dict[str, str],
              prev: str | None) -> list[int] | None:
    """Input channels kept by a block (None: all), through the concatenation of decoder inputs."""
    def chans(g, width):
        return keep.get(g, list(range(width)))
    face_last = [gmap[f"face.{i}.{len(blk) - 1}"] for i, blk in enumerate(cfg.face)]
    p = bid.split(".")
    if bid in ("face.0.0", "audio.0"):
        return None
    if p[0] == "dec" and p[2] == "0" and p[1] != "0":
        i = int(p[1])
        a_g = gmap[f"dec.{i - 1}.{len(cfg.decoder[i - 1]) - 1}"]
        f_g = face_last[7 - i]
        wa = group_width(cfg, a_g)
        return chans(a_g, wa) + [wa + k for k in chans(f_g, group_width(cfg, f_g))]
    if bid == "out.0":
        a_g = gmap[f"dec.6.{len(cfg.decoder[6]) - 1}"]
        wa = group_width(cfg, a_g)
        return chans(a_g, wa) + [wa + k for k in chans(face_last[0], group_width(cfg, face_last[0]))]
    return chans(prev, group_width(cfg, prev))


def prune(module: Wav2Lip, drop_res: set[str], keep: dict[str, list[int]]) -> Wav2Lip:
    """A physically smaller copy of ``module``: residual blocks ``drop_res`` removed, each group of ``keep`` cut to
    its kept channels (module docstring)."""
    cfg = module.config
    gmap = {bid: gid for gid, bids in groups(cfg).items() for bid in bids}
    new_cfg = new_config(cfg, drop_res, {g: len(v) for g, v in keep.items()})
    new = Wav2Lip(new_cfg)
    # walk the original blocks in order, mapping each kept one to its new module
    seqs = [(f"face.{i}.", list(range(len(blk))), new.face_encoder_blocks[i]) for i, blk in enumerate(cfg.face)]
    seqs.append(("audio.", list(range(len(cfg.audio))), new.audio_encoder))
    seqs += [(f"dec.{i}.", list(range(len(blk))), new.face_decoder_blocks[i]) for i, blk in enumerate(cfg.decoder)]
    face_prev = None
    for prefix, js, target in seqs:
        k = 0
        prev = None
        if prefix.startswith("face.") and prefix != "face.0.":
            prev = face_prev
        if prefix.startswith("dec."):
            prev = gmap.get("audio." + str(len(cfg.audio) - 1)) if prefix == "dec.0." else None
        if prefix == "audio.":
            prev = None
        for j in js:
            bid = f"{prefix}{j}"
            g = gmap[bid]
            if bid in drop_res:
                continue
            _copy_block(conv_of(module, bid), target[k], keep.get(g), _in_index(cfg, bid, keep, gmap, prev))
            k += 1
            prev = g
        if prefix.startswith("face."):
            face_prev = prev
    _copy_block(module.output_block[0], new.output_block[0], keep.get("out.0"),
                _in_index(cfg, "out.0", keep, gmap, None))
    last_old, last_new = module.output_block[1], new.output_block[1]
    w = last_old.weight.detach()
    if "out.0" in keep:
        w = w[:, keep["out.0"]]
    last_new.weight.data.copy_(w)
    last_new.bias.data.copy_(last_old.bias.detach())
    return new.eval()


def _copy_block(old: nn.Module, new: nn.Module, out_idx: list[int] | None, in_idx: list[int] | None) -> None:
    conv_o, bn_o = old.conv_block[0], old.conv_block[1]
    conv_n, bn_n = new.conv_block[0], new.conv_block[1]
    w = conv_o.weight.detach()
    t = isinstance(conv_o, nn.ConvTranspose2d)
    out_dim, in_dim = (1, 0) if t else (0, 1)
    if out_idx is not None:
        w = w.index_select(out_dim, torch.tensor(out_idx))
    if in_idx is not None:
        w = w.index_select(in_dim, torch.tensor(in_idx))
    conv_n.weight.data.copy_(w)
    sel = (lambda v: v.detach()[out_idx]) if out_idx is not None else (lambda v: v.detach())
    conv_n.bias.data.copy_(sel(conv_o.bias))
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(bn_n, name).data.copy_(sel(getattr(bn_o, name)))
    bn_n.num_batches_tracked.data.copy_(bn_o.num_batches_tracked.detach())


def masked(module: Wav2Lip, drop_res: set[str], keep: dict[str, list[int]]) -> nn.Module:
    """The masked equivalent (module docstring): a copy with the pruned channels' BatchNorm weight and bias 0 and the
    dropped residual blocks replaced by the identity."""
    m = copy.deepcopy(module).eval()
    cfg = module.config
    for gid, kept in keep.items():
        gone = [c for c in range(group_width(cfg, gid)) if c not in set(kept)]
        for bid in groups(cfg)[gid]:
            bn = conv_of(m, bid).conv_block[1]
            bn.weight.data[gone] = 0
            bn.bias.data[gone] = 0
    for bid in drop_res:
        p = bid.split(".")
        if p[0] == "face":
            m.face_encoder_blocks[int(p[1])][int(p[2])] = nn.Identity()
        elif p[0] == "audio":
            m.audio_encoder[int(p[1])] = nn.Identity()
        else:
            m.face_decoder_blocks[int(p[1])][int(p[2])] = nn.Identity()
    return m


def scaled_widths(cfg: Wav2LipConfig, fractions: dict[str, int], steps: int = 8) -> dict[str, int]:
    """{group: new width} when ``fractions[part]`` eighths of every group of that part (nef/naf/ndf) go."""
    out = {}
    for gid in groups(cfg):
        j = fractions.get(part_of_group(gid, cfg), 0)
        if j:
            w = group_width(cfg, gid)
            out[gid] = max(1, w - j * w // steps)
    return out


def state_info(module: Wav2Lip) -> dict[str, Any]:
    return {"params": sum(p.numel() for p in module.parameters())}
