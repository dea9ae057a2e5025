"""Small real models built from configs, saved as real transformers folders (no hub, no network)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

TEXT_SAMPLE = Path(__file__).resolve().parents[1] / "slimgui" / "cli.py"


def sample_text() -> str:
    # real text every machine has: the Python standard library's own source
    import argparse as _argparse
    import json as _json

    return Path(_json.__file__).read_text() + Path(_argparse.__file__).read_text()


def tiny_tokenizer(vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>", "[MASK]"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([sample_text()], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>", bos_token="<eos>",
                                   mask_token="[MASK]")


def tiny_config(arch: str, layers: int = 4, vocab: int = 300):
    import transformers as tf

    common = dict(vocab_size=vocab)
    if arch == "llama":
        return tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                              num_key_value_heads=2, max_position_embeddings=256, **common), tf.LlamaForCausalLM
    if arch == "mistral":
        return tf.MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                                num_key_value_heads=2, max_position_embeddings=256, sliding_window=64,
                                **common), tf.MistralForCausalLM
    if arch == "qwen2":
        return tf.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                              num_key_value_heads=2, max_position_embeddings=256, use_sliding_window=True,
                              sliding_window=32, max_window_layers=2, **common), tf.Qwen2ForCausalLM
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=32, n_layer=layers, n_head=4, n_positions=256, bos_token_id=0, eos_token_id=0,
                             **common), tf.GPT2LMHeadModel
    if arch == "opt":
        return tf.OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=layers, num_attention_heads=4,
                            max_position_embeddings=256, word_embed_proj_dim=32, bos_token_id=0, eos_token_id=0,
                            pad_token_id=0, **common), tf.OPTForCausalLM
    if arch == "bert":
        return tf.BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                             max_position_embeddings=256, pad_token_id=0, **common), tf.BertForMaskedLM
    if arch == "bert-base":
        return tf.BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                             max_position_embeddings=256, pad_token_id=0, **common), tf.BertModel
    raise ValueError(arch)


def save_tiny_model(arch: str, folder: Path, layers: int = 4, tokenizer=None, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config, cls = tiny_config(arch, layers)
    model = cls(config).eval()
    model.save_pretrained(folder)
    (tokenizer or tiny_tokenizer()).save_pretrained(folder)
    return folder


def run_cli(*args: str, env_extra: dict | None = None, cwd: Path | None = None):
    """Run the real ``slimgui`` command in a subprocess; returns CompletedProcess."""
    import os
    import subprocess

    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "slimgui.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)
