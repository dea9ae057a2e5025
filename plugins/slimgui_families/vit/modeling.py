# SlimGUI's vision transformer: one module class for every ViT / DeiT, pruned or not.
#
# This file is self-contained (it imports only torch and transformers): SlimGUI writes a copy of it, as
# modeling_slimgui_vit.py, beside the weights of every pruned ViT whose heads or MLPs are no longer uniform, so
# that plain transformers loads the folder with
#     AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
# SlimGUI itself never executes that copy: it reopens such folders with its own, installed class.
"""A ViT whose every attention head has its own query/key width and value width, and every block its own MLP width.

Layout of the weights (the names in ``model.safetensors``)::

    patch_embed.{weight,bias}             Conv2d(C, D, patch, stride=patch)
    cls_token, dist_token                 (1, 1, D); dist_token only for DeiT's distillation token
    pos_embed                             (1, tokens + patches, D)
    blocks.{l}.norm1.{weight,bias}        LayerNorm before attention (absent when the block has no attention)
    blocks.{l}.attn.q_proj / k_proj       Linear(D, sum(qk_dims[l]))  - rows of head h: qk_offsets[h]:qk_offsets[h+1]
    blocks.{l}.attn.v_proj                Linear(D, sum(v_dims[l]))   - rows of head h: v_offsets[h]:v_offsets[h+1]
    blocks.{l}.attn.o_proj                Linear(sum(v_dims[l]), D)   - columns of head h: v_offsets[h]:v_offsets[h+1]
    blocks.{l}.norm2.{weight,bias}        LayerNorm before the MLP (absent when the block has no MLP)
    blocks.{l}.mlp.fc1 / fc2              Linear(D, intermediate_sizes[l]) / Linear(intermediate_sizes[l], D)
    norm                                  final LayerNorm
    pooler                                Linear(D, pooler_output_size) + tanh (ViTModel checkpoints only)
    classifier, dist_classifier           Linear(D, labels) on the class token (and on the distillation token: DeiT
                                          "with teacher", whose logits are the mean of both heads)

The attention scores of every head are scaled by 1/sqrt(head_size), the ORIGINAL head size, whatever width the head
has now: removing a query/key pair removes one term of the dot product and nothing else.

Hook points for analysis (e.g. how removing a query/key pair changes the attention maps):

- ``forward(pixel_values, output_attentions=True)`` returns ``attentions``: one (batch, heads, T, T) tensor of
  attention probabilities per block (None for a block without attention);
- ``SlimViTAttention.qk_mask`` / ``v_mask``: None, or a tensor of ``sum(qk_dims)`` / ``sum(v_dims)`` multipliers
  applied to the queries / values; a 0 is exactly the removal of that query/key pair / value neuron;
- ``SlimViTAttention.scores_hook`` and ``probs_hook`` (``nn.Identity``): forward hooks on them see (and may replace)
  the scaled scores and the probabilities, (batch, heads, T, T);
- ``SlimViTAttention.head_slices()``: per head, the (query/key rows, value rows) slices of the projections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

MODEL_TYPE = "slimgui_vit"
CLASSIFIERS = ("cls", "cls+distillation", "none")


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


class SlimViTConfig(PretrainedConfig):
    """What a (pruned) ViT is: per block, per head query/key widths (``qk_dims[l][h]``) and value widths
    (``v_dims[l][h]``), per block MLP width (``intermediate_sizes[l]``; 0: the block has no MLP; a block with no
    head has no attention), the original head size (the attention scaling), the tokens (class, distillation) and
    where every block and head came from in the original (``block_origin``, ``head_origin``)."""

    model_type = MODEL_TYPE

    def __init__(self, hidden_size: int = 128, qk_dims=None, v_dims=None, intermediate_sizes=None,
                 head_size: int | None = None, image_size=32, patch_size=4, num_channels: int = 3,
                 hidden_act: str = "gelu", layer_norm_eps: float = 1e-12, qkv_bias: bool = True,
                 distillation_token: bool = False, classifier: str = "cls", pooler: bool = False,
                 pooler_output_size: int | None = None, pooler_act: str = "tanh", hidden_dropout_prob: float = 0.0,
                 attention_probs_dropout_prob: float = 0.0, initializer_range: float = 0.02,
                 block_origin=None, head_origin=None, base_model_type: str = "vit",
                 base_architecture: str = "ViTForImageClassification", base_config=None, groups=None, **kwargs):
        self.hidden_size = int(hidden_size)
        self.qk_dims = [list(map(int, row)) for row in (qk_dims if qk_dims is not None else [[32] * 4] * 6)]
        self.v_dims = [list(map(int, row)) for row in (v_dims if v_dims is not None else self.qk_dims)]
        n = len(self.qk_dims)
        self.intermediate_sizes = [int(x) for x in (intermediate_sizes if intermediate_sizes is not None
                                                    else [4 * self.hidden_size] * n)]
        self.head_size = int(head_size) if head_size else max([d for row in self.qk_dims for d in row] or [1])
        self.image_size = list(_pair(image_size)) if isinstance(image_size, (list, tuple)) else int(image_size)
        self.patch_size = list(_pair(patch_size)) if isinstance(patch_size, (list, tuple)) else int(patch_size)
        self.num_channels = int(num_channels)
        self.hidden_act = hidden_act
        self.layer_norm_eps = float(layer_norm_eps)
        self.qkv_bias = bool(qkv_bias)
        self.distillation_token = bool(distillation_token)
        self.classifier = classifier
        self.pooler = bool(pooler)
        self.pooler_output_size = int(pooler_output_size or self.hidden_size)
        self.pooler_act = pooler_act
        self.hidden_dropout_prob = float(hidden_dropout_prob)
        self.attention_probs_dropout_prob = float(attention_probs_dropout_prob)
        self.initializer_range = float(initializer_range)
        self.block_origin = [int(i) for i in (block_origin if block_origin is not None else range(n))]
        self.head_origin = [list(map(int, row)) for row in
                            (head_origin if head_origin is not None else [range(len(r)) for r in self.qk_dims])]
        self.base_model_type = base_model_type
        self.base_architecture = base_architecture
        self.base_config = dict(base_config or {})
        self.groups = dict(groups or {})
        # what generic transformers code reads
        self.num_hidden_layers = n
        self.num_attention_heads = max([len(r) for r in self.qk_dims] or [0])
        self.intermediate_size = max(self.intermediate_sizes or [0])
        super().__init__(**kwargs)

    # -- derived sizes ------------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        """Tokens before the patches: the class token, and DeiT's distillation token."""
        return 2 if self.distillation_token else 1

    @property
    def grid(self) -> tuple[int, int]:
        (h, w), (ph, pw) = _pair(self.image_size), _pair(self.patch_size)
        return h // ph, w // pw

    @property
    def num_patches(self) -> int:
        gh, gw = self.grid
        return gh * gw

    @property
    def seq_len(self) -> int:
        return self.num_tokens + self.num_patches


@dataclass
class SlimViTOutput(ModelOutput):
    """``logits`` (None without a classifier), the class / distillation heads' own logits, the final hidden states,
    the pooled output (ViTModel checkpoints), and when asked ``hidden_states`` (the input of every block and the
    final output) and ``attentions`` (per block: (batch, heads, T, T) probabilities, None without attention)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cls_logits: torch.Tensor | None = None
    distillation_logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


class SlimViTAttention(nn.Module):
    """Multi-head self-attention whose heads have their own query/key and value widths."""

    def __init__(self, config: SlimViTConfig, layer: int):
        super().__init__()
        self.qk_dims = list(config.qk_dims[layer])
        self.v_dims = list(config.v_dims[layer])
        if len(self.qk_dims) != len(self.v_dims):
            raise ValueError(f"block {layer}: {len(self.qk_dims)} query/key widths but {len(self.v_dims)} value widths")
        d = config.hidden_size
        self.num_heads = len(self.qk_dims)
        self.scaling = float(config.head_size) ** -0.5  # the ORIGINAL head size, whatever the widths are now
        self.q_proj = nn.Linear(d, sum(self.qk_dims), bias=config.qkv_bias)
        self.k_proj = nn.Linear(d, sum(self.qk_dims), bias=config.qkv_bias)
        self.v_proj = nn.Linear(d, sum(self.v_dims), bias=config.qkv_bias)
        self.o_proj = nn.Linear(sum(self.v_dims), d)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.qk_offsets = [0]
        for w in self.qk_dims:
            self.qk_offsets.append(self.qk_offsets[-1] + w)
        self.v_offsets = [0]
        for w in self.v_dims:
            self.v_offsets.append(self.v_offsets[-1] + w)
        self.uniform = len(set(self.qk_dims)) == 1 and len(set(self.v_dims)) == 1
        self.qk_mask: torch.Tensor | None = None  # multipliers of the queries' dims (0 = that q/k pair removed)
        self.v_mask: torch.Tensor | None = None  # multipliers of the value neurons (0 = that neuron removed)
        self.scores_hook = nn.Identity()  # sees the scaled scores (batch, heads, T, T)
        self.probs_hook = nn.Identity()  # sees the attention probabilities (batch, heads, T, T)

    def head_slices(self) -> list[tuple[slice, slice]]:
        """Per head: (its rows of q_proj and k_proj, its rows of v_proj = its columns of o_proj)."""
        return [(slice(self.qk_offsets[h], self.qk_offsets[h + 1]), slice(self.v_offsets[h], self.v_offsets[h + 1]))
                for h in range(self.num_heads)]

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of all heads side by side, (batch, T, width), the masks applied."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.qk_mask is not None:
            q = q * self.qk_mask.to(q)
        if self.v_mask is not None:
            v = v * self.v_mask.to(v)
        return q, k, v

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        q, k, v = self.qkv(x)
        h = self.num_heads
        if self.uniform:
            dq, dv = self.qk_dims[0], self.v_dims[0]
            qh = q.view(b, t, h, dq).transpose(1, 2)
            kh = k.view(b, t, h, dq).transpose(1, 2)
            vh = v.view(b, t, h, dv).transpose(1, 2)
            scores = self.scores_hook(torch.matmul(qh, kh.transpose(-1, -2)) * self.scaling)
            probs = self.probs_hook(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype))
            out = torch.matmul(self.dropout(probs), vh).transpose(1, 2).reshape(b, t, h * dv)
        else:
            parts = self.head_slices()
            scores = torch.stack([torch.matmul(q[..., sq], k[..., sq].transpose(-1, -2)) for sq, _ in parts], dim=1)
            scores = self.scores_hook(scores * self.scaling)
            probs = self.probs_hook(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype))
            dropped = self.dropout(probs)
            out = torch.cat([torch.matmul(dropped[:, i], v[..., sv]) for i, (_, sv) in enumerate(parts)], dim=-1)
        return self.o_proj(out), probs


class SlimViTMLP(nn.Module):
    def __init__(self, config: SlimViTConfig, layer: int):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_sizes[layer])
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_sizes[layer], config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SlimViTBlock(nn.Module):
    """Pre-norm transformer block; ``attn`` is None when every head was removed, ``mlp`` when every neuron was."""

    def __init__(self, config: SlimViTConfig, layer: int):
        super().__init__()
        d, eps = config.hidden_size, config.layer_norm_eps
        has_attn = len(config.qk_dims[layer]) > 0
        has_mlp = config.intermediate_sizes[layer] > 0
        self.norm1 = nn.LayerNorm(d, eps=eps) if has_attn else None
        self.attn = SlimViTAttention(config, layer) if has_attn else None
        self.norm2 = nn.LayerNorm(d, eps=eps) if has_mlp else None
        self.mlp = SlimViTMLP(config, layer) if has_mlp else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        probs = None
        if self.attn is not None:
            out, probs = self.attn(self.norm1(x))
            x = x + self.dropout(out)
        if self.mlp is not None:
            x = x + self.dropout(self.mlp(self.norm2(x)))
        return x, probs


class SlimViTPreTrainedModel(PreTrainedModel):
    config_class = SlimViTConfig
    base_model_prefix = "slimvit"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, SlimViTForImageClassification):
            for p in (module.cls_token, module.dist_token, module.pos_embed):
                if p is not None:
                    nn.init.trunc_normal_(p, std=std)


class SlimViTForImageClassification(SlimViTPreTrainedModel):
    """Every ViT of the family: ViT / DeiT classifiers, DeiT with its distillation head, headless ViTModel."""

    def __init__(self, config: SlimViTConfig):
        super().__init__(config)
        d = config.hidden_size
        ph, pw = _pair(config.patch_size)
        self.patch_embed = nn.Conv2d(config.num_channels, d, kernel_size=(ph, pw), stride=(ph, pw))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d)) if config.distillation_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, config.seq_len, d))
        self.embed_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.blocks = nn.ModuleList([SlimViTBlock(config, i) for i in range(len(config.qk_dims))])
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.pooler = nn.Linear(d, config.pooler_output_size) if config.pooler else None
        self.pooler_act = ACT2FN[config.pooler_act] if config.pooler else None
        labels = int(getattr(config, "num_labels", 0) or 0)
        has_head = config.classifier in ("cls", "cls+distillation") and labels > 0
        self.classifier = nn.Linear(d, labels) if has_head else None
        self.dist_classifier = nn.Linear(d, labels) if has_head and config.classifier == "cls+distillation" else None
        self.post_init()

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch embedding, tokens and positions: (batch, T, D)."""
        b, _, hgt, wid = pixel_values.shape
        size = _pair(self.config.image_size)
        if (hgt, wid) != size:
            raise ValueError(f"this model takes {size[0]}x{size[1]} images, got {hgt}x{wid}")
        x = self.patch_embed(pixel_values.to(self.patch_embed.weight.dtype)).flatten(2).transpose(1, 2)
        tokens = [self.cls_token.expand(b, -1, -1)]
        if self.dist_token is not None:
            tokens.append(self.dist_token.expand(b, -1, -1))
        x = torch.cat([*tokens, x], dim=1) + self.pos_embed
        return self.embed_dropout(x)

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> SlimViTOutput:
        x = self.embed(pixel_values)
        hidden, attentions = [], []
        for block in self.blocks:
            if output_hidden_states:
                hidden.append(x)
            x, probs = block(x)
            if output_attentions:
                attentions.append(probs)
        x = self.norm(x)
        if output_hidden_states:
            hidden.append(x)
        pooled = self.pooler_act(self.pooler(x[:, 0])) if self.pooler is not None else None
        logits = cls_logits = dist_logits = None
        if self.classifier is not None:
            cls_logits = self.classifier(x[:, 0])
            logits = cls_logits
            if self.dist_classifier is not None:
                dist_logits = self.dist_classifier(x[:, 1])
                logits = (cls_logits + dist_logits) / 2
        loss = None
        if labels is not None and logits is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels)
        return SlimViTOutput(loss=loss, logits=logits, cls_logits=cls_logits, distillation_logits=dist_logits,
                             last_hidden_state=x, pooler_output=pooled,
                             hidden_states=tuple(hidden) if output_hidden_states else None,
                             attentions=tuple(attentions) if output_attentions else None)

    # -- for analysis ---------------------------------------------------------------------------------------
    def attention_maps(self, pixel_values: torch.Tensor) -> list[torch.Tensor | None]:
        """Attention probabilities of every block, (batch, heads, T, T) each (None: a block without attention)."""
        return list(self.forward(pixel_values, output_attentions=True).attentions)


def macs_per_image(config: SlimViTConfig) -> int:
    """Multiply-accumulates of one forward pass on one image (projections, scores, weighted sums, MLPs, head)."""
    d, t = config.hidden_size, config.seq_len
    ph, pw = _pair(config.patch_size)
    total = config.num_patches * config.num_channels * ph * pw * d
    for qk, v, inter in zip(config.qk_dims, config.v_dims, config.intermediate_sizes):
        total += t * d * (2 * sum(qk) + 2 * sum(v)) + t * t * (sum(qk) + sum(v)) + 2 * t * d * inter
    if config.pooler:
        total += d * config.pooler_output_size
    labels = int(getattr(config, "num_labels", 0) or 0) if config.classifier != "none" else 0
    total += d * labels * (2 if config.classifier == "cls+distillation" else 1)
    return int(total)


__all__ = ["SlimViTConfig", "SlimViTForImageClassification", "SlimViTAttention", "SlimViTOutput", "macs_per_image",
           "MODEL_TYPE"]

