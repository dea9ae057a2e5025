"""The diffusion demo's data: scikit-learn's digits upsampled to 16×16 with a fixed held-out split, their
captions, and the small CLIP BPE tokenizer the demo's text encoder reads (see :mod:`.demo`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimgui.core.io import atomic_write_text

if TYPE_CHECKING:
    from torch import Tensor
    from transformers import CLIPTokenizer

DEMO_VERSION = 1
IMAGE_SIZE = 16
HELD_OUT_PERCENT = 15
MAX_TOKENS = 16
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
NUMERALS = tuple(str(d) for d in range(10))
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
OTHER_WORDS = ("a", "an", "handwritten", "digit", "number", "the", "of", "image", "drawing")
PUNCTUATION = (".", ",", "-", "'", "!", "?")
PROMPT_TEMPLATE = "a handwritten digit {digit}"
CAPTION_TEMPLATES = (
    "a handwritten digit {numeral}",
    "a handwritten digit {word}",
    "{numeral}",
    "{word}",
    "the number {word}",
    "the number {numeral}",
    "digit {numeral}",
    "an image of the digit {word}",
    "a drawing of the number {numeral}",
)

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=1,
    out_channels=1,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=16,
    sample_size=IMAGE_SIZE,
)
TEXT_ENCODER_CONFIG: dict[str, Any] = dict(  # vocab_size and the special token ids come from the tokenizer
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=MAX_TOKENS,
    projection_dim=64,
    hidden_act="quick_gelu",
)
UNET_CONFIG: dict[str, Any] = dict(
    sample_size=IMAGE_SIZE // 2,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64, 64, 64),
    layers_per_block=2,
    cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=16,
    mid_block_type="UNetMidBlock2DCrossAttn",
)
# The training DDPMScheduler: Stable Diffusion 1.x's own noise schedule.  (A cosine schedule trains as well but
# its last alpha_bar is ~1e-9, so any sampler that starts at t=999 -- trailing spacing, LCM -- divides the noise
# prediction by ~5e-5 and draws garbage; SD's scaled_linear schedule ends at alpha_bar ~0.005 and is safe.)
NOISE_SCHEDULE: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    prediction_type="epsilon",
    clip_sample=False,
)
# The shipped DDIMScheduler: built from NOISE_SCHEDULE with Stable Diffusion 1.5's sampling settings.
SAMPLER_SETTINGS: dict[str, Any] = dict(timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False)
# ---------------------------------------------------------------------------------------------------------------
# data


def is_held_out(index: int) -> bool:
    """Whether digit ``index`` (its position in ``sklearn.datasets.load_digits``) belongs to the held-out split.

    A hash of the index, so the split is the same on every machine and independent of any random seed.
    """
    h = int.from_bytes(hashlib.sha256(f"slimgui-digits-{index}".encode()).digest()[:8], "big")
    return h % 100 < HELD_OUT_PERCENT


def load_digit_images() -> tuple[Tensor, Tensor, Tensor]:
    """All 1797 scikit-learn digits as ``(images, labels, indices)``: float ``N×1×16×16`` in [-1, 1].

    Each 8×8 image (values 0..16) is upsampled bilinearly to 16×16.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    x = (x * 2 - 1).clamp(-1, 1)
    return x, torch.tensor(digits.target, dtype=torch.long), torch.arange(len(x))


def digit_split() -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """``{"train": (images, labels, indices), "eval": (...)}`` split by :func:`is_held_out`."""
    import torch

    x, y, idx = load_digit_images()
    held = torch.tensor([is_held_out(int(i)) for i in idx])
    return {"train": (x[~held], y[~held], idx[~held]), "eval": (x[held], y[held], idx[held])}


def captions_for(digit: int) -> list[str]:
    """Every training caption of ``digit`` (one per template)."""
    return [t.format(numeral=NUMERALS[digit], word=DIGIT_WORDS[digit]) for t in CAPTION_TEMPLATES]


# ---------------------------------------------------------------------------------------------------------------
# tokenizer


def tokenizer_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP BPE vocabulary and merge list in which every prompt word is one whole-word token.

    Characters appear with and without the ``</w>`` end-of-word mark (so unseen words still tokenize);
    each word gets the left-to-right merges that build it.
    """
    tokens: list[str] = []
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789" + "".join(PUNCTUATION):
        tokens += [ch, ch + "</w>"]
    merges: list[tuple[str, str]] = []
    for word in OTHER_WORDS + DIGIT_WORDS:
        if len(word) < 2:
            continue
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merged = current + piece
            if (current, piece) not in merges:
                merges.append((current, piece))
            if merged not in tokens:
                tokens.append(merged)
            current = merged
    tokens += [BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_tokenizer_files(folder: Path) -> None:
    """Write ``vocab.json``, ``merges.txt`` and the tokenizer configs that :class:`CLIPTokenizer` reads."""
    vocab, merges = tokenizer_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False, indent=1) + "\n")
    atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    atomic_write_text(folder / "special_tokens_map.json", json.dumps(specials, indent=2) + "\n")
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_TOKENS, "do_lower_case": True, **specials},
        indent=2) + "\n")


def build_tokenizer(folder: Path) -> CLIPTokenizer:
    """Write the tokenizer files into ``folder`` and load them back as a real :class:`CLIPTokenizer`.

    Checks that every prompt word comes out as one whole-word token.
    """
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder)
    tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    for word in NUMERALS + DIGIT_WORDS + OTHER_WORDS:
        pieces = tok.tokenize(word)
        if pieces != [word + "</w>"]:
            raise RuntimeError(f"demo tokenizer splits {word!r} into {pieces}")
    return tok


