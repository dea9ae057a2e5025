"""Family-independent importance criteria (registered by the built-in ``core`` plugin).

They need only an adapter's ``unit_module``, ``calibration_batches`` and ``loss``, so any family
that provides those gets them.  Higher score = more important.

What each one sums, exactly:

- ``magnitude``: Σ|W| over the unit's weight *matrices* only (parameters of rank ≥ 2: linear/conv
  kernels); norm weights and biases are left out.  No data.
- ``taylor`` (Shortened LLaMA's ``anal_block_sensitivity_taylor.py``): Σ over the unit's weights of
  Σ_elements |W ⊙ G|, where G is ∂L/∂W of the mean calibration loss (see below).  "Weights" are every
  parameter of the unit except biases (:func:`is_bias`), so norm weights (a LLaMA block's
  ``input_layernorm.weight`` and ``post_attention_layernorm.weight``) count, biases do not — on every
  transformers block this is the paper's selection ("weight" in the parameter's name).
- ``taylor-matrices``: the same gradients, summed over the weight matrices (rank ≥ 2) only — SlimGUI's
  earlier ``taylor``; it leaves out the norm weights and scores 6–10 % lower on LLaMA blocks.

The loss: G is the gradient of the mean of the adapter's per-batch loss over all calibration samples,
i.e. each batch's mean loss weighted by its share of the samples (``rows_b / rows_total``) and the
gradients accumulated over the batches.  With equal-length segments that is the gradient of the mean
loss over every target of the calibration set, whatever the batch size: the paper's script run with
its defaults (``--num_calib_data 10 --batch_size 10``, one batch, ``model(ids, labels=ids).loss``);
the paper's script with k equal batches gives the same scores multiplied by k (same ranking).
"""

from __future__ import annotations

from typing import Any

from .plugins import CriterionSpec, ExporterSpec, Plugin
from .progress import CancelToken, ProgressFn, check, report


def _adapter(model):
    if model.impl is None:
        from .plugins import discover

        return discover().adapter(model.adapter)
    return model.impl


def _unit_ids(model, adapter) -> list[str]:
    return [u.id for u in adapter.to_graph(model).prunable()]


def is_bias(name: str) -> bool:
    """A bias parameter: its own name (after the last dot) is ``bias`` or ends in ``_bias``
    (``nn.MultiheadAttention``'s ``in_proj_bias``)."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "bias" or leaf.endswith("_bias")


def taylor_weights(module) -> list[tuple[str, Any]]:
    """The parameters ``taylor`` sums for a unit: all of the unit's parameters except biases."""
    return [(n, p) for n, p in module.named_parameters() if not is_bias(n)]


def weight_matrices(module) -> list[tuple[str, Any]]:
    """The parameters ``magnitude`` and ``taylor-matrices`` sum: those of rank ≥ 2."""
    return [(n, p) for n, p in module.named_parameters() if p.dim() >= 2]


def _rows(batch: Any) -> int:
    """Samples in a calibration batch: the leading size of its first tensor (1 when it holds none)."""
    import torch

    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else [batch]
    for v in values:
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return int(v.shape[0])
    return 1


class WeightMagnitude:
    """Σ|W| over the unit's weight matrices (parameters of rank ≥ 2); norm weights and biases are not counted."""

    name = "magnitude"

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        import torch

        adapter = _adapter(model)
        ids = _unit_ids(model, adapter)
        out = {}
        with torch.no_grad():
            for i, uid in enumerate(ids):
                check(cancel)
                mod = adapter.unit_module(model, uid)
                out[uid] = float(sum(p.detach().abs().sum().item() for _, p in weight_matrices(mod)))
                report(progress, i + 1, len(ids), f"magnitude of {uid}")
        return out


class Taylor:
    """Shortened LLaMA's Taylor criterion: Σ |W ⊙ ∂L/∂W| over the unit's weights (every parameter but biases,
    norm weights included), L the mean calibration loss over all samples (see the module's docstring)."""

    name = "taylor"

    @staticmethod
    def select(module) -> list[tuple[str, Any]]:
        return taylor_weights(module)

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        import torch

        adapter = _adapter(model)
        scorer = (getattr(model, "extra", None) or {}).get("streamed_scorers", {}).get("taylor")
        if scorer is not None:  # a model kept out of memory (read block by block) gives the same sums itself
            return scorer(model, data, select=self.select, progress=progress, cancel=cancel)
        ids = _unit_ids(model, adapter)
        batches = adapter.calibration_batches(model, data)
        total_rows = sum(_rows(b) for b in batches) or 1
        module = model.module
        was_training = module.training
        module.eval()
        params = [p for p in module.parameters()]
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        try:
            for i, batch in enumerate(batches):
                check(cancel)
                loss = adapter.loss(model, batch) * (_rows(batch) / total_rows)
                loss.backward()
                report(progress, i + 1, len(batches) + 1, "accumulating gradients")
            out = {}
            with torch.no_grad():
                for uid in ids:
                    mod = adapter.unit_module(model, uid)
                    out[uid] = float(sum((p.float() * p.grad.float()).abs().sum().item()
                                         for _, p in self.select(mod) if p.grad is not None))
            report(progress, len(batches) + 1, len(batches) + 1, f"{self.name} scores")
            return out
        finally:
            for p, f in zip(params, flags):
                p.grad = None
                p.requires_grad_(f)
            module.train(was_training)


class TaylorMatrices(Taylor):
    """``taylor`` restricted to the unit's weight matrices (rank ≥ 2): norm weights and biases are not counted."""

    name = "taylor-matrices"

    @staticmethod
    def select(module) -> list[tuple[str, Any]]:
        return weight_matrices(module)


plugin = Plugin(
    name="core",
    version="1",
    description="Family-independent criteria and the native-folder export, built into SlimGUI",
    exporters=[
        ExporterSpec("hf", "slimgui.core.ops:export_native", label="Native folder",
                     description="the model in its family's own folder format (loads back with its library)",
                     output="folder"),
    ],
    criteria=[
        CriterionSpec("magnitude", "slimgui.core.criteria:WeightMagnitude",
                      "weight magnitude: sum of |W| over the unit's weight matrices (rank >= 2; "
                      "norm weights and biases not counted); needs no data"),
        CriterionSpec("taylor", "slimgui.core.criteria:Taylor", needs_data=True, needs=("calibration",),
                      description=
                      "first-order Taylor (Shortened LLaMA): sum of |W * dL/dW| over all of the unit's weights "
                      "(norm weights included, biases not), L the mean calibration loss over all samples"),
        CriterionSpec("taylor-matrices", "slimgui.core.criteria:TaylorMatrices", needs_data=True,
                      needs=("calibration",), description=
                      "first-order Taylor over the weight matrices only (rank >= 2; norm weights and biases "
                      "not counted): sum of |W * dL/dW|, L the mean calibration loss over all samples"),
    ],
)
