"""The voice family's criteria for encoder and decoder blocks (higher = more important), on calibration utterances
(parallel source waveforms and target log-mels, teacher-forced):

- ``mel-change``: with block b taken out of the stack (the others unchanged), the mean absolute difference of the
  post-net's log-mel output from the full model's, over the real frames and mel bins of every calibration
  utterance: ``score_b = mean |M_full − M_without_b|`` (log10 units, so 0.1 ≈ 2 dB).
- ``bi`` (ShortGPT's block influence for the converter's blocks): ``1 − cos(h_in, h_out)`` of each block, averaged
  over the frames (encoder) or steps (decoder) of the calibration utterances — the language models' ``bi`` computed
  on SpeechT5's blocks (the registry picks the ``bi`` that applies to the model's family).

The core's ``magnitude`` (no data) and ``taylor`` / ``taylor-matrices`` (the adapter's teacher-forced loss) apply as
they are.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .adapter import layers
from .speech import teacher_forced


def _adapter(model):
    if model.impl is None:
        from slimgui.core.plugins import discover

        return discover().adapter(model.adapter)
    return model.impl


def _masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask.unsqueeze(-1)
    return float(((a - b).abs() * m).sum() / (m.sum() * a.shape[-1]))


class MelChange:
    name = "mel-change"

    def __init__(self) -> None:
        self.last_info: dict[str, Any] = {}

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        adapter = _adapter(model)
        batches = adapter.calibration_batches(model, data)
        module = model.module
        was = module.training
        module.eval()
        ids = [u.id for u in adapter.to_graph(model).prunable()]
        out: dict[str, float] = {uid: 0.0 for uid in ids}
        total = len(batches) * (len(ids) + 1)
        done = 0
        try:
            with torch.no_grad():
                for batch in batches:
                    torch.manual_seed(0)  # the decoder pre-net's dropout stays on: the same mask for every pass
                    full = teacher_forced(module, batch)["after"]
                    done += 1
                    for uid in ids:
                        check(cancel)
                        side, i = uid.split(".")
                        holder = module.speecht5.encoder.wrapped_encoder if side == "encoder" \
                            else module.speecht5.decoder.wrapped_decoder
                        kept = holder.layers
                        holder.layers = nn.ModuleList([b for j, b in enumerate(kept) if j != int(i)])
                        try:
                            torch.manual_seed(0)
                            cut = teacher_forced(module, batch)["after"]
                        finally:
                            holder.layers = kept
                        out[uid] += _masked_l1(full, cut, batch["mel_mask"]) / len(batches)
                        done += 1
                        report(progress, done, total, f"mel change without {uid}")
        finally:
            module.train(was)
        self.last_info = {"utterances": sum(int(b["labels"].shape[0]) for b in batches)}
        return out


class BlockInfluence:
    name = "bi"

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        adapter = _adapter(model)
        batches = adapter.calibration_batches(model, data)
        module = model.module
        was = module.training
        module.eval()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        inputs: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        hooks = []

        def pre(uid):
            def hook(_mod, args, kwargs):
                inputs[uid] = args[0] if args else kwargs["hidden_states"]
            return hook

        def post(uid):
            def hook(_mod, _args, result):
                h_out = result[0] if isinstance(result, (tuple, list)) else result
                cos = nn.functional.cosine_similarity(inputs.pop(uid), h_out, dim=-1)
                mask = masks.get(uid.split(".")[0])
                if mask is not None and mask.shape == cos.shape:
                    sums[uid] = sums.get(uid, 0.0) + float(((1 - cos) * mask).sum())
                    counts[uid] = counts.get(uid, 0) + int(mask.sum())
                else:
                    sums[uid] = sums.get(uid, 0.0) + float((1 - cos).sum())
                    counts[uid] = counts.get(uid, 0) + cos.numel()
            return hook

        for side in ("encoder", "decoder"):
            for i, b in enumerate(layers(module, side)):
                uid = f"{side}.{i}"
                hooks.append(b.register_forward_pre_hook(pre(uid), with_kwargs=True))
                hooks.append(b.register_forward_hook(post(uid)))
        try:
            with torch.no_grad():
                for k, batch in enumerate(batches):
                    check(cancel)
                    enc_frames = module.speecht5.encoder.prenet._get_feature_vector_attention_mask(
                        _frames(module, batch), batch["attention_mask"])
                    masks["encoder"] = enc_frames.float()
                    masks["decoder"] = batch["mel_mask"][:, module.config.reduction_factor - 1::
                                                         module.config.reduction_factor].float()
                    torch.manual_seed(0)
                    teacher_forced(module, batch)
                    report(progress, k + 1, len(batches), "block influence")
        finally:
            for h in hooks:
                h.remove()
            module.train(was)
        return {uid: sums[uid] / max(1, counts[uid]) for uid in sums}


def _frames(module, batch) -> int:
    lengths = module.speecht5.encoder.prenet.feature_encoder  # the conv stack: frames of the padded batch
    n = batch["input_values"].shape[1]
    for conv in lengths.conv_layers:
        c = conv.conv
        n = (n - c.kernel_size[0]) // c.stride[0] + 1
    return int(n)
