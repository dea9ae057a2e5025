"""A table of bad inputs: every row is one CLI invocation that must end in exactly one clear line.

For every case: exit code 2, one line on stderr starting with ``slimgui: error:``, no traceback, the
expected words in it, nothing written or changed anywhere under the case's folder (the source model,
existing outputs and the current folder all byte-for-byte as before), and a wall-time bound against
hangs.  The next bad input someone finds is one more row.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from slimgui.cli import main

sys.path.insert(0, str(Path(__file__).parent))

from helpers import sample_text  # noqa: E402

TIME_LIMIT_S = 20  # per case: a bound against hangs, not a performance test


@pytest.fixture(scope="session")
def tiny_unet(tmp_path_factory) -> Path:
    from diffusion_models import tiny_unet2d

    return tiny_unet2d(tmp_path_factory.mktemp("unet") / "unet")


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory) -> Path:
    """A tiny transformers ViT folder (random weights): 3 blocks of 4 heads, 16×16 images in 4×4 patches."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    labels = {i: f"class{i}" for i in range(3)}
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, image_size=16,
                    patch_size=4, id2label=labels, label2id={v: k for k, v in labels.items()})
    out = tmp_path_factory.mktemp("vit") / "vit"
    ViTForImageClassification(cfg).eval().save_pretrained(out)
    return out


class Ctx:
    """Builds one case's bad input inside its own folder."""

    def __init__(self, root: Path, models: dict[str, Path], unet: Path, vit: Path | None = None):
        self.root = root
        self._models = models
        self._unet = unet
        self._vit = vit
        self.out = str(root / "out")

    def vit(self, name: str = "vit") -> Path:
        dst = self.root / name
        if not dst.exists():
            assert self._vit is not None
            shutil.copytree(self._vit, dst)
        return dst

    def vit_with(self, **changes: Any) -> str:
        return self.config(self.vit(), **changes)

    def images(self, name: str, files: dict[str, bytes]) -> str:
        """An image folder: ``files`` maps "class/file.png" to its bytes."""
        root = self.root / name
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        root.mkdir(parents=True, exist_ok=True)
        return str(root)

    def timm_variant(self, **extra_shapes: list[int]) -> str:
        """The tiny ViT written as a timm checkpoint (one .safetensors file) with extra tensors of these shapes."""
        import torch
        from safetensors.torch import load_file, save_file

        sd = load_file(self.vit() / "model.safetensors")
        b = "vit.encoder.layer."
        out = {"cls_token": sd["vit.embeddings.cls_token"], "pos_embed": sd["vit.embeddings.position_embeddings"],
               "patch_embed.proj.weight": sd["vit.embeddings.patch_embeddings.projection.weight"],
               "blocks.0.attn.qkv.weight": torch.cat([sd[f"{b}0.attention.attention.{p}.weight"]
                                                      for p in ("query", "key", "value")]),
               "blocks.0.mlp.fc1.weight": sd[f"{b}0.intermediate.dense.weight"]}
        out.update({k: torch.zeros(v) for k, v in extra_shapes.items()})
        path = self.root / "timm.safetensors"
        save_file({k: v.contiguous() for k, v in out.items()}, str(path))
        return str(path)

    # models -------------------------------------------------------------------------------------
    def llm(self, arch: str = "llama", name: str = "src") -> Path:
        dst = self.root / name
        if not dst.exists():
            shutil.copytree(self._models[arch], dst)
        return dst

    def unet(self, name: str = "unet") -> Path:
        dst = self.root / name
        if not dst.exists():
            shutil.copytree(self._unet, dst)
        return dst

    def config(self, folder: Path, **changes: Any) -> str:
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(changes)
        (folder / "config.json").write_text(json.dumps(cfg))
        return str(folder)

    def raw_config(self, folder: Path, data: bytes | str) -> str:
        (folder / "config.json").write_bytes(data.encode() if isinstance(data, str) else data)
        return str(folder)

    def llm_with(self, **changes: Any) -> str:
        return self.config(self.llm(), **changes)

    def unet_with(self, **changes: Any) -> str:
        return self.config(self.unet(), **changes)

    def no_weights(self, folder: Path) -> Path:
        for f in folder.glob("*.safetensors"):
            f.unlink()
        return folder

    # files --------------------------------------------------------------------------------------
    def text(self, name: str = "calib.txt", content: str | bytes | None = None) -> str:
        path = self.root / name
        data = sample_text() if content is None else content
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    def fifo(self, name: str = "pipe") -> str:
        path = self.root / name
        os.mkfifo(path)
        return str(path)

    def loop(self, name: str = "loop") -> str:
        path = self.root / name
        os.symlink(path.name, path)
        return str(path)

    def folder(self, name: str, files: dict[str, str] | None = None) -> str:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        for n, t in (files or {}).items():
            (path / n).write_text(t)
        return str(path)

    def json_file(self, name: str, doc: Any) -> str:
        path = self.root / name
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return str(path)

    def scores(self, values: Any, **extra: Any) -> str:
        return self.json_file("scores.json", {"kind": "scores", "schema_version": 1, "criterion": "magnitude",
                                              "values": values, **extra})

    def session(self, **fields: Any) -> str:
        doc = {"kind": "session", "schema_version": 1, "model": {"path": str(self.llm()), "adapter": "transformers"},
               "scores": [], "results": {}}
        doc.update(fields)
        return self.json_file("s.slim", doc)

    def prune(self, src: str | Path, *extra: str) -> list[str]:
        return ["prune", str(src), "--remove", "1", *extra]


BENCH_ROW = {"model": "m", "runtime": "torch", "batch": 1, "seq": 8, "prefill_median_ms": 1.0, "prefill_p90_ms": 1.2}
BLOCKS = {f"block.{i}": float(i) for i in range(4)}


@dataclass
class Case:
    id: str
    argv: Callable[[Ctx], list[str]]
    expect: str | None = None  # a substring of the error line
    patch: dict[str, Any] = field(default_factory=dict)  # "module.attr": value, e.g. a smaller size limit


C = Case
CASES: list[Case] = [
    # -- language-model configs ------------------------------------------------------------------
    C("llm-layers-1e9", lambda c: ["inspect", c.llm_with(num_hidden_layers=10**9)], "num_hidden_layers"),
    C("llm-layers-1e9-config-only", lambda c: ["inspect", c.config(c.no_weights(c.llm()), num_hidden_layers=10**9)],
      "num_hidden_layers"),
    C("llm-layers-1e9-analyze", lambda c: ["analyze", c.llm_with(num_hidden_layers=10**9), "--criterion", "magnitude"],
      "outside the range"),
    C("llm-hidden-string", lambda c: ["inspect", c.llm_with(hidden_size="32")], "hidden_size must be a whole number"),
    C("llm-layers-float", lambda c: ["inspect", c.llm_with(num_hidden_layers=2.5)], "whole number"),
    C("llm-layers-bool", lambda c: ["inspect", c.llm_with(num_hidden_layers=True)], "whole number"),
    C("llm-vocab-negative", lambda c: ["inspect", c.llm_with(vocab_size=-1)], "vocab_size"),
    C("llm-vocab-huge", lambda c: ["inspect", c.llm_with(vocab_size=10**10)], "vocab_size"),
    C("llm-heads-zero", lambda c: ["inspect", c.llm_with(num_attention_heads=0)], "num_attention_heads"),
    C("llm-kv-heads-above-heads", lambda c: ["inspect", c.llm_with(num_key_value_heads=8)], "num_key_value_heads"),
    C("llm-positions-1e12", lambda c: ["inspect", c.llm_with(max_position_embeddings=10**12)], "max_position_embeddings"),
    C("llm-nested-text-config", lambda c: ["inspect", c.llm_with(text_config={"num_hidden_layers": 10**9})],
      "text_config.num_hidden_layers"),
    C("llm-layer-types-length", lambda c: ["inspect", c.llm_with(layer_types=["full_attention"] * 3)], "layer_types"),
    C("llm-model-type-number", lambda c: ["inspect", c.llm_with(model_type=123)], "model_type"),
    C("gpt2-hidden-not-divisible", lambda c: ["inspect", c.config(c.llm("gpt2"), n_embd=30)], "not divisible"),
    C("llm-config-int-too-long", lambda c: ["inspect", c.raw_config(c.llm(), '{"model_type": "llama", '
                                                                           '"num_hidden_layers": 1' + "0" * 5000 + "}")],
      "config.json"),
    C("llm-config-list", lambda c: ["inspect", c.raw_config(c.llm(), "[1, 2, 3]")], "not a JSON object"),
    C("llm-config-invalid-utf8", lambda c: ["inspect", c.raw_config(c.llm(), b'{"model_type": "ll\xffama"}')],
      "not UTF-8"),
    C("llm-config-deeply-nested", lambda c: ["inspect", c.raw_config(c.llm(), '{"a": ' + "[" * 100_000 + "]" * 100_000
                                                                     + "}")], "nested too deeply"),
    C("llm-config-empty", lambda c: ["inspect", c.raw_config(c.llm(), b"")], "empty"),
    C("llm-config-not-json", lambda c: ["inspect", c.raw_config(c.llm(), "{ this is not json")], "not valid JSON"),
    C("llm-config-too-large", lambda c: ["inspect", c.llm_with(notes="x" * 5000)], "larger than",
      patch={"slimgui_families.llm.probe.MAX_CONFIG_BYTES": 4096}),
    C("llm-config-is-a-folder", lambda c: ["inspect", _swap_config(c, "folder")], "is a folder"),
    C("llm-config-symlink-loop", lambda c: ["inspect", _swap_config(c, "loop")], "symbolic links"),
    C("llm-config-fifo", lambda c: ["inspect", _swap_config(c, "fifo")], "FIFO"),
    # -- diffusion U-Net configs ---------------------------------------------------------------
    C("unet-sample-size-1e9", lambda c: ["inspect", c.unet_with(sample_size=10**9)], "sample_size"),
    C("unet-channels-string", lambda c: ["inspect", c.unet_with(block_out_channels=["a", 32, 32])],
      "block_out_channels[0] must be a whole number"),
    C("unet-channels-empty", lambda c: ["inspect", c.unet_with(block_out_channels=[])], "block_out_channels"),
    C("unet-channels-huge", lambda c: ["inspect", c.unet_with(block_out_channels=[16, 32, 10**7])], "block_out_channels"),
    C("unet-unknown-block-type", lambda c: ["inspect", c.unet_with(down_block_types=["NoSuchBlock2D", "AttnDownBlock2D",
                                                                                    "AttnDownBlock2D"])],
      "unknown block type"),
    C("unet-layers-per-block-zero", lambda c: ["inspect", c.unet_with(layers_per_block=0)], "layers_per_block"),
    C("unet-layers-per-block-length", lambda c: ["inspect", c.unet_with(layers_per_block=[2, 2])], "layers_per_block"),
    C("unet-groups-not-dividing", lambda c: ["inspect", c.unet_with(norm_num_groups=7)], "norm_num_groups"),
    C("unet-in-channels-zero", lambda c: ["inspect", c.unet_with(in_channels=0)], "in_channels"),
    C("unet-sample-size-triple", lambda c: ["inspect", c.unet_with(sample_size=[8, 8, 8])], "sample_size"),
    # -- weights ---------------------------------------------------------------------------------
    C("weights-truncated", lambda c: ["inspect", str(_truncate(c.llm() / "model.safetensors"))],
      "not a valid safetensors file"),
    C("weights-empty-file", lambda c: ["inspect", str(_truncate(c.llm() / "model.safetensors", 0))]),
    C("weights-garbage", lambda c: ["inspect", str(_overwrite(c.llm() / "model.safetensors", os.urandom(4096)))]),
    C("weights-of-another-model", lambda c: ["inspect", str(_replace(c.llm(), c.llm("gpt2", "other")))], "do not match"),
    C("weights-wrong-shape", lambda c: ["inspect", str(_reshape_first(c.llm()))]),
    # -- data files ------------------------------------------------------------------------------
    C("analyze-data-dev-zero", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--data", "/dev/zero"],
      "not a regular file"),
    C("analyze-data-fifo", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--data", c.fifo()], "FIFO"),
    C("eval-data-fifo", lambda c: ["eval", str(c.llm()), "--data", c.fifo()], "FIFO"),
    C("eval-data-dev-zero", lambda c: ["eval", str(c.llm()), "--data", "/dev/zero"], "not a regular file"),
    C("analyze-data-folder", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--data", c.folder("d")],
      "is a folder"),
    C("analyze-data-missing", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--data", c.out + ".txt"],
      "does not exist"),
    C("analyze-data-empty", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--data", c.text(content=" \n")],
      "is empty"),
    C("analyze-data-binary", lambda c: ["analyze", str(c.llm()), "--criterion", "bi",
                                        "--data", c.text(content=bytes(range(256)) * 8)], "not a text file"),
    C("eval-data-latin1", lambda c: ["eval", str(c.llm()), "--data", c.text(content="café crème".encode("latin-1"))],
      "not UTF-8"),
    C("analyze-data-too-large", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--data", c.text()],
      "larger than", patch={"slimgui.core.data.MAX_TEXT_BYTES": 1000}),
    C("analyze-data-symlink-loop", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--data", c.loop()],
      "symbolic links"),
    C("analyze-data-too-short", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl",
                                           "--data", c.text(content="x = 1")], "at least 128"),
    C("retrain-data-fifo", lambda c: ["retrain", str(c.llm()), "--data", c.fifo(), "--steps", "1", "--out", c.out],
      "FIFO"),
    C("export-data-fifo", lambda c: ["export", str(c.llm()), "--format", "onnx", "--data", c.fifo(),
                                     "--out", c.out + ".onnx"], "FIFO"),
    # -- numeric options -------------------------------------------------------------------------
    C("eval-max-new-tokens-negative", lambda c: ["eval", str(c.llm()), "--data", c.text(), "--max-new-tokens", "-1"],
      "--max-new-tokens"),
    C("eval-max-new-tokens-beyond-context", lambda c: ["eval", str(c.llm()), "--data", c.text(),
                                                       "--max-new-tokens", "100000"], "context of 256 tokens"),
    C("eval-seq-len-1", lambda c: ["eval", str(c.llm()), "--data", c.text(), "--seq-len", "1"], "--seq-len"),
    C("eval-seq-len-beyond-context", lambda c: ["eval", str(c.llm()), "--data", c.text(), "--seq-len", "100000"],
      "max_position_embeddings"),
    C("eval-stride-zero", lambda c: ["eval", str(c.llm()), "--data", c.text(), "--stride", "0"], "--stride"),
    C("eval-stride-above-seq-len", lambda c: ["eval", str(c.llm()), "--data", c.text(), "--stride", "500"], "--stride"),
    C("eval-max-tokens-zero", lambda c: ["eval", str(c.llm()), "--data", c.text(), "--max-tokens", "0"], "--max-tokens"),
    C("eval-steps-zero", lambda c: ["eval", str(c.unet()), "--steps", "0"], "--steps"),
    C("eval-guidance-inf", lambda c: ["eval", str(c.unet()), "--guidance", "inf"], "--guidance"),
    C("bench-new-tokens-zero", lambda c: ["bench", str(c.llm()), "--new-tokens", "0"], "--new-tokens"),
    C("bench-new-tokens-negative", lambda c: ["bench", str(c.llm()), "--new-tokens", "-3"], "--new-tokens"),
    C("bench-repeats-zero", lambda c: ["bench", str(c.llm()), "--repeats", "0"], "--repeats"),
    C("bench-threads-negative", lambda c: ["bench", str(c.llm()), "--threads", "-1"], "--threads"),
    C("bench-seq-beyond-context", lambda c: ["bench", str(c.llm()), "--seq", "100000", "--batch", "1"],
      "context of 256 tokens"),
    C("bench-new-tokens-beyond-context", lambda c: ["bench", str(c.llm()), "--seq", "8", "--batch", "1",
                                                    "--new-tokens", "5000"], "--new-tokens"),
    C("bench-batch-zero", lambda c: ["bench", str(c.llm()), "--batch", "0"], "--batch"),
    C("bench-batch-not-numbers", lambda c: ["bench", str(c.llm()), "--batch", "1,x"], "--batch"),
    C("bench-vs-other-family", lambda c: ["bench", str(c.llm()), "--vs", str(c.unet()), "--batch", "1", "--seq", "8"],
      "different families"),
    C("bench-onnx-missing", lambda c: ["bench", str(c.llm()), "--vs", c.out + ".onnx", "--batch", "1"], "does not exist"),
    C("prune-count-negative", lambda c: ["prune", str(c.llm()), "--criterion", "magnitude", "--count", "-1",
                                         "--out", c.out], "--count"),
    C("prune-count-all", lambda c: ["prune", str(c.llm()), "--criterion", "magnitude", "--count", "4", "--out", c.out],
      "4"),
    C("prune-ratio-2", lambda c: ["prune", str(c.llm()), "--criterion", "magnitude", "--ratio", "2", "--out", c.out],
      "--ratio"),
    C("prune-ratio-nan", lambda c: ["prune", str(c.llm()), "--criterion", "magnitude", "--ratio", "nan", "--out", c.out],
      "--ratio"),
    C("prune-ratio-and-count", lambda c: ["prune", str(c.llm()), "--criterion", "magnitude", "--ratio", "0.5",
                                          "--count", "1", "--out", c.out], "not both"),
    C("analyze-samples-zero", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--samples", "0"], "--samples"),
    C("analyze-seq-len-1", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--seq-len", "1"], "--seq-len"),
    C("analyze-seq-len-beyond-context", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--data", c.text(),
                                                   "--seq-len", "4096"], "context of 256 tokens"),
    C("analyze-batch-size-zero", lambda c: ["analyze", str(c.llm()), "--criterion", "ppl", "--batch-size", "0"],
      "--batch-size"),
    C("retrain-steps-zero", lambda c: ["retrain", str(c.llm()), "--data", c.text(), "--steps", "0", "--out", c.out],
      "--steps"),
    C("retrain-lr-negative", lambda c: ["retrain", str(c.llm()), "--data", c.text(), "--lr", "-1", "--out", c.out],
      "--lr"),
    C("retrain-warmup-negative", lambda c: ["retrain", str(c.llm()), "--data", c.text(), "--warmup", "-1",
                                            "--out", c.out], "--warmup"),
    C("retrain-lora-alpha-negative", lambda c: ["retrain", str(c.llm()), "--data", c.text(), "--lora-alpha", "-4",
                                                "--out", c.out], "--lora-alpha"),
    C("retrain-lora-dropout-2", lambda c: ["retrain", str(c.llm()), "--data", c.text(), "--lora-dropout", "2",
                                           "--out", c.out], "--lora-dropout"),
    C("retrain-batch-size-zero", lambda c: ["retrain", str(c.llm()), "--data", c.text(), "--batch-size", "0",
                                            "--out", c.out], "--batch-size"),
    C("retrain-seq-len-beyond-context", lambda c: ["retrain", str(c.llm()), "--data", c.text(), "--seq-len", "100000",
                                                   "--out", c.out], "context of 256 tokens"),
    C("retrain-kd-all-weights-zero", lambda c: ["retrain", str(c.llm()), "--method", "kd", "--data", c.text(),
                                                "--kd-ce", "0", "--kd-kl", "0", "--kd-hidden", "0", "--out", c.out],
      "all 0"),
    # -- methods of another family (flags of another method, format or family: warned, see test_cli) -----
    C("retrain-method-of-another-family", lambda c: ["retrain", str(c.llm()), "--method", "lcm", "--data", c.text(),
                                                     "--out", c.out], "use one of: lora, cpt, kd"),
    C("retrain-method-unknown", lambda c: ["retrain", str(c.llm()), "--method", "magic", "--data", c.text(),
                                           "--out", c.out], "invalid choice"),
    C("export-int8-and-mixed", lambda c: ["export", str(c.llm()), "--format", "onnx", "--int8", "--mixed",
                                          "--out", c.out + ".onnx"], "not allowed with"),
    C("generate-out-not-the-media", lambda c: ["generate", str(c.llm()), "--out", c.out + ".png"],
      "--out must be a .txt file"),
    C("export-fp32-fraction-2", lambda c: ["export", str(c.llm()), "--format", "onnx", "--mixed", "--fp32-fraction", "2",
                                           "--out", c.out + ".onnx"], "--fp32-fraction"),
    C("generate-n-zero", lambda c: ["generate", str(c.unet()), "--n", "0", "--out", c.out + ".png"], "--n"),
    C("generate-guidance-nan", lambda c: ["generate", str(c.unet()), "--guidance", "nan", "--out", c.out + ".png"],
      "--guidance"),
    C("generate-seed-negative", lambda c: ["generate", str(c.unet()), "--seed", "-5", "--out", c.out + ".png"], "--seed"),
    # -- scores files ----------------------------------------------------------------------------
    C("scores-string-value", lambda c: ["prune", str(c.llm()), "--scores", c.scores({**BLOCKS, "block.1": "low"}),
                                        "--count", "1", "--out", c.out], "values.block.1"),
    C("scores-values-a-list", lambda c: ["prune", str(c.llm()), "--scores", c.scores([1, 2, 3]), "--count", "1",
                                         "--out", c.out], "values"),
    C("scores-file-a-list", lambda c: ["prune", str(c.llm()), "--scores", c.json_file("scores.json", [1]),
                                       "--count", "1", "--out", c.out], "not a SlimGUI scores file"),
    C("scores-dev-zero", lambda c: ["prune", str(c.llm()), "--scores", "/dev/zero", "--count", "1", "--out", c.out],
      "not a regular file"),
    C("scores-empty", lambda c: ["prune", str(c.llm()), "--scores", c.json_file("scores.json", ""), "--count", "1",
                                 "--out", c.out], "empty"),
    C("scores-of-another-model", lambda c: ["prune", str(c.llm()), "--scores", c.scores({"block.0": 1.0, "block.1": 2.0}),
                                            "--count", "1", "--out", c.out], "do not cover"),
    C("scores-all-nan", lambda c: ["prune", str(c.llm()), "--scores",
                                   c.json_file("scores.json", '{"kind": "scores", "schema_version": 1, "criterion": "x", '
                                               '"values": {"block.0": NaN, "block.1": NaN, "block.2": NaN, '
                                               '"block.3": NaN}}'), "--count", "1", "--out", c.out], "NaN"),
    C("scores-locked-not-list", lambda c: ["prune", str(c.llm()), "--scores", c.scores(BLOCKS, locked="block.0"),
                                           "--count", "1", "--out", c.out], "locked"),
    # -- sessions and reports --------------------------------------------------------------------
    C("session-bench-string-number", lambda c: ["report", c.session(results={"bench": {"rows": [
        {**BENCH_ROW, "prefill_median_ms": "fast"}]}}), "--out", c.out + ".html"], "prefill_median_ms"),
    C("session-bench-rows-strings", lambda c: ["report", c.session(results={"bench": {"rows": ["a", "b"]}}),
                                               "--out", c.out + ".html"], "results.bench.rows[0]"),
    C("session-layer-sensitivity-string", lambda c: ["report", c.session(results={"export": {"runs": [
        {"file": "m.onnx", "layers": [{"layer": "l0", "sensitivity": "high"}]}]}}), "--out", c.out + ".html"],
      "sensitivity"),
    C("session-dev-zero", lambda c: ["report", "/dev/zero", "--out", c.out + ".html"], "not a regular file"),
    C("session-fifo", lambda c: ["report", c.fifo("s.slim"), "--out", c.out + ".html"], "FIFO"),
    C("session-scores-string", lambda c: ["report", c.session(scores=[{"criterion": "ppl", "values": {"block.0": "x"}}]),
                                          "--out", c.out + ".html"], "scores[0].values.block.0"),
    C("session-preview-number-name", lambda c: ["report", c.session(preview={"previewer": 40}),
                                                "--out", c.out + ".html"], "preview.previewer"),
    C("session-options-not-object", lambda c: ["report", c.session(schema_version=2,
                                                                   retrain={"options": {"lora": "r=8"}}),
                                               "--out", c.out + ".html"], "retrain.options.lora"),
    C("session-remove-not-list", lambda c: ["report", c.session(remove="block.1"), "--out", c.out + ".html"], "remove"),
    C("session-a-list", lambda c: ["report", c.json_file("s.slim", [1, 2]), "--out", c.out + ".html"],
      "not a SlimGUI session"),
    C("session-newer-schema", lambda c: ["report", c.json_file("s.slim", {"kind": "session", "schema_version": 99}),
                                         "--out", c.out + ".html"], "newer SlimGUI"),
    C("session-deeply-nested", lambda c: ["report", c.json_file("s.slim", "[" * 100_000 + "]" * 100_000),
                                          "--out", c.out + ".html"], "nested too deeply"),
    C("session-too-large", lambda c: ["report", c.session(view={"pad": "x" * 5000}), "--out", c.out + ".html"],
      "larger than", patch={"slimgui.core.io.MAX_JSON_BYTES": 4096}),
    C("report-bench-file-bad-rows", lambda c: ["report", c.session(), "--bench",
                                               c.json_file("b.json", {"rows": [{**BENCH_ROW, "batch": "one"}]}),
                                               "--out", c.out + ".html"], "rows[0].batch"),
    C("report-bench-file-dev-zero", lambda c: ["report", c.session(), "--bench", "/dev/zero", "--out", c.out + ".html"],
      "not a regular file"),
    C("report-out-proc", lambda c: ["report", c.session(), "--out", "/proc/x.html"], "not writable"),
    C("report-out-folder", lambda c: ["report", c.session(), "--out", c.folder("html")], "is a folder"),
    # -- vision transformers ----------------------------------------------------------------------
    C("vit-config-sizes-disagree", lambda c: ["inspect", c.vit_with(hidden_size=48)], "do not match its config.json"),
    C("vit-patch-does-not-divide", lambda c: ["inspect", c.vit_with(patch_size=5)], "does not divide the image size"),
    C("vit-heads-do-not-divide", lambda c: ["inspect", c.vit_with(num_attention_heads=3)], "not divisible"),
    C("vit-eval-empty-folder", lambda c: ["eval", str(c.vit()), "--data", c.folder("imgs")], "is empty"),
    C("vit-eval-no-images", lambda c: ["eval", str(c.vit()), "--data", c.images("imgs", {"class0/a.txt": b"hi"})],
      "holds no images"),
    C("vit-eval-unreadable-image", lambda c: ["eval", str(c.vit()), "--data",
                                              c.images("imgs", {"class0/x.png": b"\x89PNG not really"})],
      "not a readable image"),
    C("vit-eval-unknown-class", lambda c: ["eval", str(c.vit()), "--data",
                                           c.images("imgs", {"zebra/x.png": b"\x89PNG not really"})],
      "matches none of the model's"),
    C("vit-prune-every-block", lambda c: ["prune", str(c.vit()), "--remove", "block.0,block.1,block.2",
                                          "--out", c.out], "leaves none"),
    C("vit-prune-every-head-and-neuron", lambda c: ["prune", str(c.vit()), "--remove", ",".join(
        [f"block.{b}.head.{h}" for b in range(3) for h in range(4)] + [f"block.{b}.mlp.{g}" for b in range(3)
                                                                         for g in range(8)]), "--out", c.out],
      "leaves none"),
    C("vit-preview-missing-image", lambda c: ["generate", str(c.vit()), "--image", str(c.root / "nope.png"),
                                              "--out", c.out + ".png"], "does not exist"),
    C("vit-timm-layerscale", lambda c: ["inspect", c.timm_variant(**{"blocks.0.ls1.gamma": [32]})], "LayerScale"),
    C("vit-timm-average-pooling", lambda c: ["inspect", c.timm_variant(**{"fc_norm.weight": [32]})],
      "global average pooling"),
    # -- output paths ----------------------------------------------------------------------------
    C("prune-out-proc", lambda c: c.prune(c.llm(), "--out", "/proc/x"), "not writable"),
    C("prune-out-sys", lambda c: c.prune(c.llm(), "--out", "/sys/x"), "not writable"),
    C("prune-out-empty", lambda c: c.prune(c.llm(), "--out", ""), "--out is empty"),
    C("prune-out-dot", lambda c: c.prune(c.llm(), "--out", "."), "current folder"),
    C("prune-out-dot-force", lambda c: c.prune(c.llm(), "--out", ".", "--force"), "current folder"),
    C("prune-out-parent-of-cwd", lambda c: c.prune(c.llm(), "--out", "..", "--force"), "contains the"),
    C("prune-out-root", lambda c: c.prune(c.llm(), "--out", "/", "--force"), "root"),
    C("prune-out-is-source", lambda c: c.prune(c.llm(), "--out", str(c.llm()), "--force"), "model folder itself"),
    C("prune-out-contains-source", lambda c: c.prune(c.llm(), "--out", str(c.root), "--force"), "contains the model"),
    C("prune-out-inside-source", lambda c: c.prune(c.llm(), "--out", str(c.llm() / "slim")), "inside the model folder"),
    C("prune-out-existing-file", lambda c: c.prune(c.llm(), "--out", c.text("out")), "already exists"),
    C("prune-out-existing-folder", lambda c: c.prune(c.llm(), "--out", c.folder("out", {"keep.txt": "user data"})),
      "already exists"),
    C("prune-out-under-a-file", lambda c: c.prune(c.llm(), "--out", c.text("f.txt") + "/sub"), "is a file"),
    C("prune-out-symlink-loop", lambda c: c.prune(c.llm(), "--out", c.loop("out")), "cannot be resolved"),
    C("prune-out-name-too-long", lambda c: c.prune(c.llm(), "--out", str(c.root / ("x" * 300))), "longer than 255"),
    C("prune-out-dev-null", lambda c: c.prune(c.llm(), "--out", "/dev/null", "--force"), "device"),
    C("export-onnx-out-proc", lambda c: ["export", str(c.llm()), "--format", "onnx", "--out", "/proc/x"], "not writable"),
    C("export-onnx-out-inside-source", lambda c: ["export", str(c.llm()), "--format", "onnx",
                                                  "--out", str(c.llm() / "model.onnx")], "inside the model folder"),
    C("export-onnx-out-a-folder", lambda c: ["export", str(c.llm()), "--format", "onnx", "--out", c.folder("o.onnx"),
                                             "--force"], "is a folder"),
    C("export-hf-out-is-source", lambda c: ["export", str(c.llm()), "--format", "hf", "--out", str(c.llm()), "--force"],
      "model folder itself"),
    C("analyze-out-proc", lambda c: ["analyze", str(c.llm()), "--criterion", "magnitude", "--out", "/proc/s.json"],
      "not writable"),
    C("analyze-out-a-folder", lambda c: ["analyze", str(c.llm()), "--criterion", "magnitude", "--out", c.folder("s")],
      "is a folder"),
    C("generate-out-proc", lambda c: ["generate", str(c.unet()), "--out", "/proc/x.png"], "not writable"),
    C("retrain-out-is-source", lambda c: ["retrain", str(c.llm()), "--data", c.text(), "--out", str(c.llm())],
      "model folder itself"),
    C("retrain-out-proc", lambda c: ["retrain", str(c.llm()), "--data", c.text(), "--out", "/proc/run"], "not writable"),
]


def _swap_config(c: Ctx, kind: str) -> str:
    """The model folder with its config.json replaced by a folder, a symlink to itself or a FIFO."""
    folder = c.llm()
    cfg = folder / "config.json"
    cfg.unlink()
    if kind == "folder":
        cfg.mkdir()
    elif kind == "loop":
        os.symlink(cfg.name, cfg)
    else:
        os.mkfifo(cfg)
    return str(folder)


def _truncate(path: Path, size: int | None = None) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if size is None else size])
    return path.parent


def _overwrite(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path.parent


def _replace(folder: Path, other: Path) -> Path:
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    return folder


def _reshape_first(folder: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    sd = load_file(folder / "model.safetensors")
    key = next(k for k in sd if k.endswith("embed_tokens.weight"))
    sd[key] = torch.zeros(sd[key].shape[0] + 7, sd[key].shape[1])
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a hash of each regular file, the target of each link, the kind of the rest."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = f"special:{stat.S_IFMT(st.st_mode)}"
    return out


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(case: Case, tmp_path, tiny_models, tiny_unet, tiny_vit, capsys, monkeypatch):
    root = tmp_path / "case"
    cwd = root / "cwd"
    cwd.mkdir(parents=True)
    ctx = Ctx(root, tiny_models, tiny_unet, tiny_vit)
    argv = case.argv(ctx)
    assert argv, "the case builds no command"
    for target, value in case.patch.items():
        monkeypatch.setattr(target, value)
    monkeypatch.chdir(cwd)
    before = _snapshot(root)
    capsys.readouterr()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S + 10)
    t0 = time.perf_counter()
    try:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
        except _Hang:
            pytest.fail(f"{case.id}: still running after {TIME_LIMIT_S + 10}s (a hang)")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    elapsed = time.perf_counter() - t0
    _, err = capsys.readouterr()
    # progress lines (stderr not a terminal: one every few seconds of work) are not messages
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("slimgui: progress: ")]
    assert code == 2, f"exit code {code}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("slimgui: error: "), lines[0]
    if case.expect is not None:
        assert case.expect in lines[0], lines[0]
    assert elapsed < TIME_LIMIT_S, f"{case.id} took {elapsed:.1f}s"
    assert _snapshot(root) == before, "the command changed or left files behind"


def test_corpus_is_large_and_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)
