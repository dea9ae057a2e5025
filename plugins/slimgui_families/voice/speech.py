"""Running SpeechT5 converters: batching waveforms, the teacher-forced pass and its losses (what the demo, the criteria
and the healing methods train or measure), the text branch of the multitask recipe, conversion by autoregressive
generation, and the demo's CTC character recogniser.

Losses of one teacher-forced pass on a batch (source waveforms → target log-mels Y, reduction factor r)::

    L_mel  = L1(before_postnet, Y) + L1(after_postnet, Y)          (over real frames)
    L_stop = BCE(stop logits, 1 on each utterance's last frame)    (over real frames)
    L_att  = mean_{layer, head, n} Σ_t A[n, t] · (1 − exp(−(n/N − t/T)² / (2·0.2²)))   (guided attention, Tachibana
             et al. 2018: a cross-attention far from the diagonal costs; only while training the demo)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .audio import DEFAULT_MEL, MelSettings, log_mel


def prepare_wave(wave: np.ndarray, normalize: bool) -> np.ndarray:
    w = np.asarray(wave, dtype=np.float32)
    if normalize:
        w = (w - w.mean()) / math.sqrt(float(w.var()) + 1e-7)
    return w


def wave_batch(waves: list[np.ndarray], normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_values (B, N), attention_mask (B, N)) of waveforms padded with zeros."""
    n = max(len(w) for w in waves)
    x = torch.zeros(len(waves), n)
    m = torch.zeros(len(waves), n, dtype=torch.long)
    for i, w in enumerate(waves):
        x[i, :len(w)] = torch.from_numpy(prepare_wave(w, normalize))
        m[i, :len(w)] = 1
    return x, m


def mel_batch(mels: list[np.ndarray], r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (B, T, n_mels) padded to a multiple of ``r`` with the floor, frame mask (B, T))."""
    t = max(len(m) for m in mels)
    t = int(math.ceil(t / r) * r)
    floor = float(min(m.min() for m in mels))
    y = torch.full((len(mels), t, mels[0].shape[1]), floor)
    mask = torch.zeros(len(mels), t)
    for i, m in enumerate(mels):
        y[i, :len(m)] = torch.from_numpy(m)
        mask[i, :len(m)] = 1
    return y, mask


def stop_targets(mask: torch.Tensor) -> torch.Tensor:
    lengths = mask.sum(1).long()
    s = torch.zeros_like(mask)
    s[torch.arange(len(s)), (lengths - 1).clamp(min=0)] = 1.0
    return s


def decoder_inputs(labels: torch.Tensor, mask: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SpeechT5's teacher forcing: every r-th target frame, shifted right by one step (zeros first)."""
    x = labels[:, r - 1::r]
    x = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
    dmask = mask[:, r - 1::r].clone()
    dmask[:, 0] = 1
    return x, dmask.long()


def speaker_batch(speaker: torch.Tensor | None, b: int, dim: int) -> torch.Tensor:
    if speaker is None:
        return torch.zeros(b, dim)
    return speaker.reshape(1, -1).expand(b, -1)


def teacher_forced(model: nn.Module, batch: dict[str, torch.Tensor], *, attentions: bool = False,
                   hidden: bool = False, encoder: nn.Module | None = None) -> dict[str, Any]:
    """One teacher-forced pass of a SpeechT5ForSpeechToSpeech (or of its shared body with another ``encoder``, the
    text branch): the mels before and after the post-net, stop logits, cross-attentions, decoder hidden states."""
    cfg = model.config
    r = cfg.reduction_factor
    dec_in, dmask = decoder_inputs(batch["labels"], batch["mel_mask"], r)
    body = model.speecht5
    enc = encoder if encoder is not None else body.encoder
    if "input_ids" in batch:
        enc_out = enc(input_values=batch["input_ids"], attention_mask=batch["text_mask"], return_dict=True)
        enc_mask = batch["text_mask"]
    else:
        enc_out = enc(input_values=batch["input_values"], attention_mask=batch["attention_mask"], return_dict=True)
        enc_mask = body.encoder.prenet._get_feature_vector_attention_mask(enc_out[0].shape[1], batch["attention_mask"])
    spk = speaker_batch(batch.get("speaker"), dec_in.shape[0], cfg.speaker_embedding_dim)
    dec = body.decoder(input_values=dec_in, attention_mask=dmask, encoder_hidden_states=enc_out[0],
                       encoder_attention_mask=enc_mask, speaker_embeddings=spk, output_attentions=attentions,
                       output_hidden_states=hidden, use_cache=False, return_dict=True)
    before, after, logits = model.speech_decoder_postnet(dec.last_hidden_state)
    return {"before": before, "after": after, "stop": logits, "enc_mask": enc_mask, "dec_mask": dmask,
            "cross": dec.cross_attentions if attentions else None,
            "hidden": dec.hidden_states if hidden else None, "last": dec.last_hidden_state}


def mel_loss(out: dict[str, Any], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    y, mask = batch["labels"], batch["mel_mask"].unsqueeze(-1)
    n = mask.sum() * y.shape[-1]
    return ((out["before"] - y).abs() * mask).sum() / n + ((out["after"] - y).abs() * mask).sum() / n


def stop_loss(out: dict[str, Any], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    mask = batch["mel_mask"]
    target = stop_targets(mask)
    bce = nn.functional.binary_cross_entropy_with_logits(out["stop"], target, reduction="none",
                                                         pos_weight=torch.tensor(5.0))
    return (bce * mask).sum() / mask.sum()


def guided_attention(out: dict[str, Any], g: float = 0.2) -> torch.Tensor:
    cross = out["cross"]
    enc_len = out["enc_mask"].sum(1).float()
    dec_len = out["dec_mask"].sum(1).float()
    a = torch.stack(list(cross), 0)  # (L, B, H, N, T)
    n = torch.arange(a.shape[3]).float()
    t = torch.arange(a.shape[4]).float()
    w = 1 - torch.exp(-((n[None, :, None] / dec_len[:, None, None]) - (t[None, None, :] / enc_len[:, None, None])) ** 2
                      / (2 * g * g))  # (B, N, T)
    valid = (out["dec_mask"].float()[:, :, None] * out["enc_mask"].float()[:, None, :])
    # summed over the encoder frames (each attention row sums to 1), averaged over decoder steps, layers and heads
    steps = out["dec_mask"].float().sum()
    return (a * (w * valid)[None, :, None]).sum() / (steps * a.shape[0] * a.shape[2])


# -- conversion ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def convert(model: nn.Module, wave: np.ndarray, *, speaker: torch.Tensor | None = None, normalize: bool = True,
            seed: int = 0, maxlenratio: float = 2.0, threshold: float = 0.5) -> np.ndarray:
    """The converted log-mel spectrogram (frames, n_mels) of one waveform, by SpeechT5's autoregressive generation
    (its decoder pre-net keeps dropout on at inference, so the generator is seeded)."""
    cfg = model.config
    x, m = wave_batch([wave], normalize)
    spk = speaker_batch(speaker, 1, cfg.speaker_embedding_dim)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        mel = model.eval().generate_speech(x, spk, attention_mask=m, threshold=threshold, maxlenratio=maxlenratio)
    finally:
        torch.random.set_rng_state(state)
    return mel.detach().float().cpu().numpy()


def vocode(mel: np.ndarray, vocoder: nn.Module | None, s: MelSettings = DEFAULT_MEL) -> np.ndarray:
    """A waveform from a log-mel spectrogram: the HiFi-GAN vocoder when there is one, else Griffin-Lim."""
    from .audio import griffin_lim, normalise

    if vocoder is None:
        return griffin_lim(mel, s)
    with torch.no_grad():
        wave = vocoder(torch.from_numpy(np.asarray(mel, dtype=np.float32)))
    return normalise(wave.detach().float().cpu().numpy().reshape(-1))


# -- the text branch (multitask recipe) -------------------------------------------------------------------------------
class TextBranch(nn.Module):
    """SpeechT5's text encoder pre-net (character embeddings + scaled positions) in front of the converter's own
    encoder body: the TTS path that shares the converter's encoder and decoder."""

    def __init__(self, config):
        super().__init__()
        from transformers.models.speecht5.modeling_speecht5 import SpeechT5TextEncoderPrenet

        self.prenet = SpeechT5TextEncoderPrenet(config)

    def encode(self, body: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor):
        h = self.prenet(input_ids)
        return body.encoder.wrapped_encoder(hidden_states=h, attention_mask=mask, return_dict=True)


class SharedTextEncoder(nn.Module):
    """An encoder callable like SpeechT5's (``input_values``, ``attention_mask``) running text through the text
    pre-net and the converter's encoder body."""

    def __init__(self, branch: TextBranch, body: nn.Module):
        super().__init__()
        self.branch, self.body = branch, [body]  # a list: the body is the converter's, not a submodule of this

    def forward(self, input_values, attention_mask, return_dict=True):
        return self.branch.encode(self.body[0], input_values, attention_mask)


def text_batch(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from .data import encode_text

    ids = [encode_text(t) or [1] for t in texts]
    n = max(len(i) for i in ids)
    x = torch.zeros(len(ids), n, dtype=torch.long)
    m = torch.zeros(len(ids), n, dtype=torch.long)
    for k, i in enumerate(ids):
        x[k, :len(i)] = torch.tensor(i)
        m[k, :len(i)] = 1
    return x, m


# -- the demo's recogniser --------------------------------------------------------------------------------------------
class Recogniser(nn.Module):
    """A small CTC character recogniser on log-mels: two 1-D convolutions, a bidirectional GRU, a linear layer over
    blank + the alphabet.  Input (B, T, n_mels) log10 mels (clamped at −5, centred on −2)."""

    def __init__(self, n_mels: int = 80, width: int = 160, classes: int = 29):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(n_mels, width, 5, padding=2), nn.GELU(),
                                  nn.Conv1d(width, width, 5, padding=2), nn.GELU())
        self.rnn = nn.GRU(width, width // 2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(width, classes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = (mel.clamp(min=-5.0) + 2.0)
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        x, _ = self.rnn(x)
        return self.out(x)  # (B, T, classes) logits


def greedy_ctc(logits: torch.Tensor) -> list[list[int]]:
    best = logits.argmax(-1).tolist()
    out = []
    for row in best:
        ids, prev = [], 0
        for c in row:
            if c != prev and c != 0:
                ids.append(c)
            prev = c
        out.append(ids)
    return out


def cer(hyp: str, ref: str) -> float:
    """Character error rate: Levenshtein distance / reference length."""
    prev = list(range(len(hyp) + 1))
    for i, rc in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, hc in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rc != hc))
        prev = cur
    return prev[-1] / max(1, len(ref))


@torch.no_grad()
def recognise(rec: nn.Module, mels: list[np.ndarray]) -> list[str]:
    from .data import decode_ids

    rec.eval()
    out = []
    for m in mels:
        logits = rec(torch.from_numpy(np.asarray(m, dtype=np.float32))[None])
        out.append(decode_ids(greedy_ctc(logits)[0]))
    return out


def mels_of(waves: list[np.ndarray], s: MelSettings = DEFAULT_MEL) -> list[np.ndarray]:
    return [np.maximum(log_mel(w, s), np.log10(s.floor)) for w in waves]
