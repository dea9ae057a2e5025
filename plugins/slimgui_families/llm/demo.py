"""The built-in demo language model: a 12-block LLaMA trained on the Python standard library.

Reproducible from scratch with::

    python -m slimgui_families.llm.demo --out resources/demo/llm          # ~25 min on 2 CPU cores

The repository ships the result (fp16 safetensors, ~21 MB) so that ``slimgui demo llm`` is ready
in seconds; when the shipped copy is missing it is rebuilt with this same script into the user
cache, with a progress bar.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from slimgui.core.io import atomic_write_text, cache_dir, resources_dir
from slimgui.core.progress import CancelToken, ProgressFn, report

from . import corpus

DEMO_VERSION = 1
VOCAB_SIZE = 4096
EOS = "<|endoftext|>"
MODEL_CONFIG = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=12,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=512,
    tie_word_embeddings=True,
    rms_norm_eps=1e-5,
)
TRAIN = dict(steps=900, batch=16, seq_len=256, lr=2e-3, warmup=40, weight_decay=0.1, seed=0)


def train_tokenizer(text: str):
    """Byte-level BPE trained on the training split; wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    chunks = text.split("\n# ---- ")
    tok.train_from_iterator(chunks, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, model_max_length=512
    )


def encode_corpus(tokenizer, text: str):
    import torch

    chunks = [c for c in text.split("\n# ---- ") if c.strip()]
    ids: list[int] = []
    for enc in tokenizer.backend_tokenizer.encode_batch(chunks, add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def train_demo(out_dir: Path, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
               steps: int | None = None) -> dict:
    """Train the demo model from scratch into ``out_dir`` (written atomically as a folder)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(TRAIN)
    if steps is not None:
        cfg["steps"] = steps
    torch.manual_seed(cfg["seed"])
    train_text, eval_text = corpus.build_corpus()
    report(progress, 0, cfg["steps"], "training tokenizer")
    tokenizer = train_tokenizer(train_text)
    train_ids = encode_corpus(tokenizer, train_text)
    eval_ids = encode_corpus(tokenizer, eval_text)
    model = LlamaForCausalLM(LlamaConfig(**MODEL_CONFIG, bos_token_id=tokenizer.eos_token_id,
                                         eos_token_id=tokenizer.eos_token_id,
                                         pad_token_id=tokenizer.eos_token_id))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < cfg["warmup"]:
            return cfg["lr"] * (step + 1) / cfg["warmup"]
        t = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
        return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    gen = torch.Generator().manual_seed(cfg["seed"])
    seq, bs = cfg["seq_len"], cfg["batch"]
    eval_windows = eval_ids[: (min(len(eval_ids), 64 * seq) // seq) * seq].view(-1, seq)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            losses = [model(input_ids=b, labels=b).loss.item() for b in eval_windows.split(16)]
        model.train()
        return sum(losses) / len(losses)

    history = []
    t0 = time.time()
    model.train()
    for step in range(cfg["steps"]):
        if cancel is not None:
            cancel.raise_if_cancelled()
        starts = torch.randint(0, len(train_ids) - seq - 1, (bs,), generator=gen)
        batch = torch.stack([train_ids[s: s + seq] for s in starts.tolist()])
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == cfg["steps"] - 1:
            ev = eval_loss()
            history.append({"step": step, "train_loss": round(loss.item(), 4), "eval_loss": round(ev, 4)})
            print(json.dumps(history[-1] | {"elapsed_s": round(time.time() - t0)}), file=sys.stderr, flush=True)
        report(progress, step + 1, cfg["steps"], f"training demo model (loss {loss.item():.3f})")

    meta = {
        "demo_version": DEMO_VERSION,
        "script": "python -m slimgui_families.llm.demo",
        "python": sys.version.split()[0],
        "train_chars": len(train_text), "eval_chars": len(eval_text),
        "train_tokens": int(len(train_ids)), "eval_tokens": int(len(eval_ids)),
        "model_config": MODEL_CONFIG, "train_config": cfg, "history": history,
        "train_seconds": round(time.time() - t0),
    }
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
    model.to(torch.float16).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    atomic_write_text(tmp / "slimgui_demo.json", json.dumps(meta, indent=2))
    if out_dir.exists():
        import shutil
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return meta


def shipped_model_dir() -> Path:
    return resources_dir() / "demo" / "llm"


def _is_complete(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file() \
        and (model_dir / "tokenizer.json").is_file()


def ensure_demo(progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, str]:
    """Return {"model": DIR, "train": FILE, "eval": FILE}, building what is missing."""
    model_dir = shipped_model_dir()
    if not _is_complete(model_dir):
        model_dir = cache_dir() / f"demo-llm-v{DEMO_VERSION}" / "model"
        if not _is_complete(model_dir):
            model_dir.parent.mkdir(parents=True, exist_ok=True)
            train_demo(model_dir, progress, cancel)
    data_dir = cache_dir() / f"demo-llm-v{DEMO_VERSION}" / f"py{sys.version_info[0]}{sys.version_info[1]}"
    train_file, eval_file = data_dir / "train.txt", data_dir / "eval.txt"
    if not (train_file.is_file() and eval_file.is_file()):
        report(progress, 0, 1, "extracting the standard library corpus")
        train_text, eval_text = corpus.build_corpus()
        atomic_write_text(train_file, train_text)
        atomic_write_text(eval_file, eval_text)
    return {"model": str(model_dir), "train": str(train_file), "eval": str(eval_file)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train SlimGUI's demo language model from scratch.")
    ap.add_argument("--out", type=Path, default=shipped_model_dir())
    ap.add_argument("--steps", type=int, default=TRAIN["steps"])
    args = ap.parse_args(argv)
    meta = train_demo(args.out, steps=args.steps)
    print(json.dumps({"out": str(args.out), "final": meta["history"][-1], "seconds": meta["train_seconds"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
