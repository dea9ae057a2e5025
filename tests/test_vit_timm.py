"""timm VisionTransformer / DeiT checkpoints (safetensors) in the ViT family: recognised from the header alone, their
config read from the shapes, their fused qkv split — the same logits as transformers' class with the same weights —
then pruned and saved as a transformers folder; variants the family cannot express refused in one line.

There is no timm at test time: each checkpoint is written with timm's tensor names and layout (one fused ``qkv``
of the heads' queries, keys and values in order) from a transformers model, which is what timm's own conversion
scripts read and write."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from slimgui.core import ops
from slimgui.core.errors import SlimError
from slimgui.core.model import open_model, probe
from slimgui.core.plan import PruningPlan


def _timm_state(hf) -> dict[str, torch.Tensor]:
    """timm's state dict of a transformers ViT / DeiT model: its tensors under our names (the family's own mapping
    of transformers' names, tested against transformers elsewhere), then under timm's, q/k/v fused into qkv."""
    from slimgui_families.vit.adapter import ours

    sd = {n: v.detach().clone() for k, v in hf.state_dict().items() if (n := ours(k))}
    fixed = {"cls_token": "cls_token", "dist_token": "dist_token", "pos_embed": "pos_embed",
             "patch_embed.weight": "patch_embed.proj.weight", "patch_embed.bias": "patch_embed.proj.bias",
             "norm.weight": "norm.weight", "norm.bias": "norm.bias", "classifier.weight": "head.weight",
             "classifier.bias": "head.bias", "dist_classifier.weight": "head_dist.weight",
             "dist_classifier.bias": "head_dist.bias"}
    out = {fixed[k]: v for k, v in sd.items() if k in fixed}
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        b = f"blocks.{i}."
        for leaf in ("weight", "bias"):
            out[f"{b}attn.qkv.{leaf}"] = torch.cat([sd[f"{b}attn.{p}_proj.{leaf}"] for p in "qkv"])
            out[f"{b}attn.proj.{leaf}"] = sd[f"{b}attn.o_proj.{leaf}"]
            for part in ("mlp.fc1", "mlp.fc2", "norm1", "norm2"):
                out[f"{b}{part}.{leaf}"] = sd[f"{b}{part}.{leaf}"]
        i += 1
    assert len(out) + 4 * i == len(sd)  # every tensor is in (a block's six q/k/v tensors fused into two)
    return {k: v.contiguous() for k, v in out.items()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher, ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("timm")
    kw = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96, image_size=32,
              patch_size=8, num_channels=3, layer_norm_eps=1e-6, num_labels=7)
    vit = ViTForImageClassification(ViTConfig(**kw)).eval()
    deit = DeiTForImageClassificationWithTeacher(DeiTConfig(**kw)).eval()
    out = {"vit_model": vit, "deit_model": deit}
    (root / "vit").mkdir()
    save_file(_timm_state(vit), str(root / "vit" / "model.safetensors"))
    (root / "vit" / "config.json").write_text(json.dumps({
        "architecture": "vit_custom_patch8_32", "num_classes": 7, "model_args": {"num_heads": 2},
        "label_names": [f"n{i}" for i in range(7)],
        "pretrained_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "input_size": [3, 32, 32]}}))
    save_file(_timm_state(deit), str(root / "deit_tiny_distilled.safetensors"))
    out["vit"], out["deit"] = root / "vit", root / "deit_tiny_distilled.safetensors"
    return out


def test_a_timm_vit_opens_with_the_same_logits(checkpoints, registry):
    conf, _, spec = probe(str(checkpoints["vit"]), registry)[0]
    assert spec.name == "vit" and conf == pytest.approx(0.9)
    model = open_model(str(checkpoints["vit"]), registry=registry)
    cfg = model.config
    assert (cfg.hidden_size, len(cfg.qk_dims), len(cfg.qk_dims[0]), cfg.intermediate_sizes[0]) == (128, 2, 2, 96)
    assert cfg.id2label[3] == "n3" and model.extra["preprocess"]["image_mean"] == [0.5, 0.5, 0.5]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = checkpoints["vit_model"](pixel_values=x).logits
        got = model.module(pixel_values=x).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_timm_distilled_deit_without_config_assumes_64_wide_heads_and_says_so(checkpoints, registry):
    model = open_model(str(checkpoints["deit"]), registry=registry)
    assert model.config.distillation_token and model.config.classifier == "cls+distillation"
    assert any("head width of 64 was assumed" in n for n in model.extra["notes"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = checkpoints["deit_model"](pixel_values=x).logits
        got = model.module(pixel_values=x).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_pruned_timm_vit_saves_as_a_transformers_folder(checkpoints, registry, tmp_path):
    from transformers import AutoModelForImageClassification

    model = open_model(str(checkpoints["vit"]), registry=registry)
    graph = ops.graph_of(model, registry)
    pruned = ops.prune(model, PruningPlan(remove=["block.1", "block.0.head.1"], model=model.source), registry=registry)
    out = ops.save(pruned, tmp_path / "slim", registry=registry)
    assert ops.graph_of(pruned, registry).total_params < graph.total_params
    back = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(pixel_values=x).logits, pruned.module(pixel_values=x).logits, atol=1e-5, rtol=1e-5)
    again = open_model(str(out), registry=registry)
    assert again.config.id2label[3] == "n3"


@pytest.mark.parametrize("extra, message", [
    ({"fc_norm.weight": torch.ones(128)}, "global average pooling"),
    ({"blocks.0.ls1.gamma": torch.ones(128)}, "LayerScale"),
    ({"reg_token": torch.zeros(1, 4, 128)}, "register tokens"),
])
def test_timm_variants_the_family_cannot_express_are_refused(checkpoints, registry, tmp_path, extra, message):
    from safetensors.torch import load_file

    state = load_file(str(checkpoints["vit"] / "model.safetensors"))
    f = tmp_path / "variant.safetensors"
    save_file({**state, **extra}, str(f))
    with pytest.raises(SlimError, match=message):
        open_model(str(f), registry=registry)


def test_a_damaged_timm_file_is_one_message(checkpoints, registry, tmp_path):
    from safetensors.torch import load_file

    state = load_file(str(checkpoints["vit"] / "model.safetensors"))
    state["blocks.1.mlp.fc1.weight"] = torch.zeros(50, 128)  # another MLP width than block 0's
    f = tmp_path / "odd.safetensors"
    save_file(state, str(f))
    with pytest.raises(SlimError, match=r"blocks\.1\.mlp\.fc1\.weight is 50×128"):
        open_model(str(f), registry=registry)
    del state["blocks.1.mlp.fc1.weight"]
    save_file(state, str(f))
    with pytest.raises(SlimError, match=r"lacks blocks\.1\.mlp\.fc1\.weight"):
        open_model(str(f), registry=registry)
    # a safetensors file that is no ViT at all is not claimed by the family
    save_file({"weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    assert all(spec.name != "vit" or conf == 0 for conf, _, spec in probe(str(tmp_path / "other.safetensors"), registry))
