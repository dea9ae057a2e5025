"""Perplexity on a text file (sliding windows) and greedy text generation for language models."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from slimgui.core.data import read_text_file
from slimgui.core.errors import SlimError
from slimgui.core.media import TextMedia
from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .blocks import bos_token, check_context, is_decoder, mask_tokens, need_tokenizer


def perplexity(model, data_path: str | None, *, seq_len: int = 128, stride: int | None = None,
               max_tokens: int | None = 4096, bos: bool | None = None, batch_size: int = 16, progress: ProgressFn | None = None,
               cancel: CancelToken | None = None, **_: Any) -> dict[str, Any]:
    """Perplexity over the file (its first ``max_tokens`` tokens; None: all) in windows of ``seq_len`` tokens
    moved by ``stride`` (None: the window length).  The keywords are :class:`~slimgui_families.llm.options.PerplexityOptions`.

    Every token after the first is predicted exactly once; in windows after the first, only the
    last ``stride`` tokens are scored and the ones before serve as context (the usual HF recipe).
    ``bos`` (None: as the tokenizer does, i.e. where it adds a BOS token itself): each window is the BOS token
    followed by ``seq_len`` − 1 tokens of the text, and the text's first token is predicted too (from BOS).
    Encoders with a masked-LM head report masked-LM perplexity on a fixed 15% of the tokens.
    """
    from .stream import refuse_streamed

    refuse_streamed(model, "perplexity")
    if data_path is None or not str(data_path).strip():
        raise SlimError("perplexity needs a text file", hint="pass --data FILE")
    if seq_len < 2:
        raise SlimError(f"--seq-len must be at least 2, got {seq_len}")
    if stride is not None and not 0 < stride <= seq_len:
        raise SlimError(f"--stride {stride} is longer than --seq-len {seq_len}" if stride > seq_len
                        else f"--stride must be at least 1, got {stride}",
                        hint="the stride moves the window: at most the window length")
    stride = stride or seq_len
    check_context(model, "--seq-len", seq_len)
    tok = need_tokenizer(model)
    decoder = is_decoder(model)
    bos_id = bos_token(model, bos) if decoder else None  # encoders: masked-LM windows as they are
    lead = 0 if bos_id is None else 1
    span = seq_len - lead  # text tokens per window
    stride = min(stride, span)
    text = read_text_file(data_path, "evaluation file")
    ids = tok(text, add_special_tokens=False, verbose=False)["input_ids"]
    if max_tokens:
        ids = ids[:max_tokens]
    if len(ids) < 2 - lead:
        raise SlimError(f"evaluation file {data_path} has fewer than {2 - lead} token{'s' if lead == 0 else ''}")
    ids_t = torch.tensor(ids, dtype=torch.long)
    if not decoder and model.module.get_output_embeddings() is None:
        raise SlimError("perplexity needs a language-modelling head; this encoder has none",
                        hint="open the model with its masked-LM head, or compare hidden states instead")
    windows: list[tuple[int, int, int]] = []  # (start, end, first scored position)
    prev_end = 0
    for start in range(0, len(ids), stride):
        end = min(start + span, len(ids))
        first = max(prev_end, start + 1 - lead) if decoder else start
        if lead + end - start >= 2 and end > first:
            windows.append((start, end, first))
        prev_end = end
        if end == len(ids):
            break
    module = model.module
    nll, count = 0.0, 0
    t0 = time.perf_counter()
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            groups: dict[int, list[tuple[int, int, int]]] = {}
            for w in windows:
                groups.setdefault(w[1] - w[0], []).append(w)
            done = 0
            for ws in groups.values():
                for i in range(0, len(ws), batch_size):
                    check(cancel)
                    chunk = ws[i:i + batch_size]
                    batch = torch.stack([ids_t[s:e] for s, e, _ in chunk])
                    if lead:
                        batch = torch.cat([torch.full_like(batch[:, :1], bos_id), batch], dim=1)
                    if decoder:
                        labels = batch.clone()
                        for row, (s, _e, first) in enumerate(chunk):
                            labels[row, : lead + first - s] = -100
                        logits = module(input_ids=batch, use_cache=False).logits
                        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                                           labels[:, 1:].flatten(), ignore_index=-100, reduction="sum")
                        n = int((labels[:, 1:] != -100).sum())
                    else:
                        masked, labels = mask_tokens(batch, tok, seed=i)
                        logits = module(input_ids=masked, attention_mask=torch.ones_like(batch)).logits
                        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(),
                                                           ignore_index=-100, reduction="sum")
                        n = int((labels != -100).sum())
                    nll += loss.item()
                    count += n
                    done += len(chunk)
                    report(progress, done, len(windows), "perplexity")
    finally:
        module.train(was_training)
    mean = nll / max(1, count)
    return {
        "perplexity": math.exp(mean), "nll_per_token": mean, "tokens": count, "windows": len(windows),
        "seq_len": seq_len, "stride": stride, "file": str(data_path), "kind": "causal" if decoder else "masked",
        "bos": bool(lead),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def generate_text(model, prompt: str = "def ", *, max_new_tokens: int = 40, bos: bool | None = None,
                  **_: Any) -> TextMedia:
    """Greedy continuation of ``prompt`` (the same decoding settings for every model compared).  The keywords
    are :class:`~slimgui_families.llm.options.GenerateOptions`; ``bos`` (None: as the tokenizer does) puts the
    BOS token before the prompt."""
    from .stream import refuse_streamed

    refuse_streamed(model, "text generation")
    if not is_decoder(model):
        raise SlimError("text generation needs a decoder language model; this one is an encoder")
    tok = need_tokenizer(model)
    bos_id = bos_token(model, bos)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        raise SlimError("the prompt is empty", hint="type some text to continue")
    ids = ([] if bos_id is None else [bos_id]) + list(ids)
    input_ids = torch.tensor([ids], dtype=torch.long)
    enc = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    n_prompt = len(ids)
    check_context(model, "--max-new-tokens", max_new_tokens + n_prompt,
                  what=f" (with the prompt's {n_prompt} tokens)")
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.module.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tok.pad_token_id, eos_token_id=None)
    new = out[0, enc["input_ids"].shape[1]:]
    seconds = time.perf_counter() - t0
    return TextMedia(text=prompt + tok.decode(new, skip_special_tokens=True), title="greedy generation",
                     meta={"new_tokens": int(new.numel()), "seconds": round(seconds, 3), "bos": bos_id is not None,
                           "tokens_per_s": round(new.numel() / max(seconds, 1e-9), 1)})
