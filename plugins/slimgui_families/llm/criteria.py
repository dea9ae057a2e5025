"""Block importance for language models: perplexity with a block removed (``ppl``) and block influence (``bi``).

Higher score = more important.  For encoders, where perplexity does not apply, ``ppl`` scores the
change of the final hidden states (mean 1 − cos over tokens) when the block is removed.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from slimgui.core.plan import PruningPlan
from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .adapter import TransformersAdapter
from .blocks import causal_lm_loss, per_layer_config
from .stream import stream_of


class _Replay(nn.Module):
    """Stands in for a block before the removed one: returns what that block computed in the full pass."""

    def __init__(self, outputs: list[Any], state: dict[str, int]):
        super().__init__()
        self._outputs = outputs
        self._state = state

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._outputs[self._state["batch"]]


@contextmanager
def swapped_stack(adapter: TransformersAdapter, model, layers: list[nn.Module], keep: list[int] | None = None):
    """Run the model with ``layers`` as its block stack; ``keep`` (the original indices they stand for)
    also swaps the config's per-block entries (``layer_types``: sliding or full attention, and its RoPE)
    and ``num_hidden_layers``, as :meth:`TransformersAdapter.apply_plan` does, so that transformers,
    which looks up ``config.layer_types[i]`` for the i-th block of the list, gives each block its own."""
    path, original = adapter.stack(model)
    parent_path, _, attr = path.rpartition(".")
    parent = model.module.get_submodule(parent_path) if parent_path else model.module
    config = model.module.config
    saved: dict[str, Any] = {}
    if keep is not None:
        swap = per_layer_config(config, keep, len(original))
        if getattr(config, "num_hidden_layers", None) == len(original):
            swap["num_hidden_layers"] = len(keep)
        saved = {k: getattr(config, k) for k in swap}
        for k, v in swap.items():
            setattr(config, k, v)
    # the blocks' own layer_idx follows their new position, as apply_plan renumbers them
    renumbered: list[tuple[nn.Module, int]] = []
    if keep is not None:
        for new_idx, block in enumerate(layers):
            for sub in block.modules():
                idx = getattr(sub, "layer_idx", None)
                if isinstance(idx, int) and not isinstance(idx, bool) and idx != new_idx:
                    renumbered.append((sub, idx))
                    sub.layer_idx = new_idx
    setattr(parent, attr, nn.ModuleList(layers))
    try:
        yield
    finally:
        setattr(parent, attr, original)
        for k, v in saved.items():
            setattr(config, k, v)
        for sub, idx in renumbered:
            sub.layer_idx = idx


def _adapter(model) -> TransformersAdapter:
    return model.impl if isinstance(model.impl, TransformersAdapter) else TransformersAdapter()


class _Objective:
    """Decoder: summed next-token NLL → perplexity. Encoder: final hidden states → mean (1 − cos) to the full model's."""

    def __init__(self, adapter: TransformersAdapter, model):
        self.model = model
        self.decoder = adapter.is_decoder(model)
        self.reference: list[torch.Tensor] = []

    def run(self, batch: dict[str, torch.Tensor]):
        if self.decoder:
            logits = self.model.module(**batch, use_cache=False).logits
            return causal_lm_loss(logits, batch["input_ids"], reduction="sum").item(), batch["input_ids"][:, 1:].numel()
        return self.model.module.base_model(**batch).last_hidden_state

    def baseline(self, outs: list[Any]) -> float:
        if self.decoder:
            return math.exp(sum(o[0] for o in outs) / sum(o[1] for o in outs))
        self.reference = outs
        return 0.0

    def score(self, outs: list[Any]) -> float:
        if self.decoder:
            return math.exp(sum(o[0] for o in outs) / sum(o[1] for o in outs))
        total, count = 0.0, 0
        for ref, h in zip(self.reference, outs):
            cos = nn.functional.cosine_similarity(ref.float(), h.float(), dim=-1)
            total += (1 - cos).sum().item()
            count += cos.numel()
        return total / count


class PerplexityDrop:
    """Perplexity of the model with one block removed (the Shortened LLaMA PPL criterion).

    The full model runs once and every block's output is kept; removing block *i* then replays the
    outputs of blocks 0..i−1 and runs only blocks i+1.., so the blocks before the removed one are
    never recomputed (half the work of rebuilding the model per block).  ``naive=True`` does the
    rebuild-per-block for comparison (each model without one block is built by ``apply_plan``, as
    pruning builds it, and run whole); both give the same scores.
    """

    name = "ppl"

    def __init__(self, naive: bool = False):
        self.naive = naive
        self.last_info: dict[str, float] = {}

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        adapter = _adapter(model)
        if stream_of(model) is not None:  # weights read block by block (a model bigger than memory)
            from .stream_criteria import perplexity_drop

            scores, self.last_info = perplexity_drop(adapter, model, data, progress=progress, cancel=cancel)
            return scores
        batches = adapter.calibration_batches(model, data)
        _, layers = adapter.stack(model)
        blocks = list(layers)
        n = len(blocks)
        objective = _Objective(adapter, model)
        state = {"batch": 0}
        outputs: list[list[Any]] = [[None] * len(batches) for _ in range(n)]
        scores: dict[str, float] = {}
        was_training = model.module.training
        model.module.eval()
        try:
            with torch.no_grad():
                hooks = []
                if not self.naive:
                    def keeper(i):
                        def hook(_mod, _args, out):
                            outputs[i][state["batch"]] = out
                        return hook
                    hooks = [b.register_forward_hook(keeper(i)) for i, b in enumerate(blocks)]
                try:
                    base = []
                    for bi, batch in enumerate(batches):
                        state["batch"] = bi
                        base.append(objective.run(batch))
                finally:
                    for h in hooks:
                        h.remove()
                baseline = objective.baseline(base)
                report(progress, 1, n + 1, "full model")
                for i in range(n):
                    check(cancel)
                    if self.naive:  # build the model without block i, as pruning would, and run it whole
                        rebuilt = adapter.apply_plan(model, PruningPlan(remove=[f"block.{i}"]), copy=True)
                        outs = [_Objective(adapter, rebuilt).run(batch) for batch in batches]
                        del rebuilt
                    else:
                        stack = [_Replay(outputs[j], state) for j in range(i)] + blocks[i + 1:]
                        keep = [j for j in range(n) if j != i]
                        with swapped_stack(adapter, model, stack, keep):
                            outs = []
                            for bi, batch in enumerate(batches):
                                state["batch"] = bi
                                outs.append(objective.run(batch))
                    scores[f"block.{i}"] = objective.score(outs)
                    report(progress, i + 2, n + 1, f"block {i} removed")
        finally:
            model.module.train(was_training)
        self.last_info = ({"baseline_ppl": baseline, "baseline": baseline, "baseline_label": "perplexity"}
                          if objective.decoder else {})
        return scores


class BlockInfluence:
    """Block influence: mean over tokens of 1 − cos(h_in, h_out) of each block, from one forward pass."""

    name = "bi"

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        adapter = _adapter(model)
        if stream_of(model) is not None:  # weights read block by block (a model bigger than memory)
            from .stream_criteria import block_influence

            return block_influence(adapter, model, data, progress=progress, cancel=cancel)
        batches = adapter.calibration_batches(model, data)
        _, layers = adapter.stack(model)
        n = len(layers)
        sums = [0.0] * n
        counts = [0] * n
        inputs: dict[int, torch.Tensor] = {}

        def pre(i):
            def hook(_mod, args, kwargs):
                inputs[i] = args[0] if args else kwargs["hidden_states"]
            return hook

        def post(i):
            def hook(_mod, _args, out):
                h_out = out[0] if isinstance(out, (tuple, list)) else out
                cos = nn.functional.cosine_similarity(inputs.pop(i), h_out, dim=-1)
                sums[i] += (1 - cos).sum().item()
                counts[i] += cos.numel()
            return hook

        hooks = [b.register_forward_pre_hook(pre(i), with_kwargs=True) for i, b in enumerate(layers)]
        hooks += [b.register_forward_hook(post(i)) for i, b in enumerate(layers)]
        decoder = adapter.is_decoder(model)
        was_training = model.module.training
        model.module.eval()
        try:
            with torch.no_grad():
                for bi, batch in enumerate(batches):
                    check(cancel)
                    if decoder:
                        model.module.base_model(**batch, use_cache=False)
                    else:
                        model.module.base_model(**batch)
                    report(progress, bi + 1, len(batches), "block influence")
        finally:
            for h in hooks:
                h.remove()
            model.module.train(was_training)
        return {f"block.{i}": sums[i] / max(1, counts[i]) for i in range(n)}
