"""Tiny diffusers models built from configs, saved as real folders (random weights; no hub)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["a", "handwritten", "digit", "the", "number", "of", "cat", "dog", "photo",
         *[str(i) for i in range(10)], "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

SD_UNET = dict(sample_size=8, in_channels=4, out_channels=4,
               down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
               up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
               block_out_channels=(16, 32, 32, 32), layers_per_block=2, cross_attention_dim=32, attention_head_dim=8,
               norm_num_groups=8)


def write_clip_tokenizer(folder: Path, words=WORDS) -> None:
    """A real CLIP BPE tokenizer over a tiny vocabulary: characters, then merges that build each word."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for w in words for c in w})
    vocab: dict[str, int] = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[str] = []
    for w in words:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:
            pair = f"{parts[0]} {parts[1]}"
            if pair not in merges:
                merges.append(pair)
            parts = [parts[0] + parts[1], *parts[2:]]
            vocab.setdefault(parts[0], len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def tiny_sd_pipeline(out: Path, seed: int = 0, unet_config: dict | None = None) -> Path:
    """A Stable-Diffusion-shaped pipeline (4 stages, 2 pairs per down stage) of random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    tok_dir = out.parent / f".{out.name}-tok"
    write_clip_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=12)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=12,
                                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id))
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16),
                        layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=16)
    unet = UNet2DConditionModel(**(unet_config or SD_UNET))
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


def tiny_unet2d(out: Path, seed: int = 0) -> Path:
    """A bare UNet2DModel folder (unconditional, DDPM-style)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(16, 32, 32),
                down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
                layers_per_block=2).save_pretrained(str(out), safe_serialization=True)
    return out
