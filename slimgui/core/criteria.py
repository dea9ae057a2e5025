"""Family-independent importance criteria (registered by the built-in ``core`` plugin).

They need only an adapter's ``unit_module``, ``calibration_batches`` and ``loss``, so any family
that provides those gets them.  Higher score = more important.
"""

from __future__ import annotations

from typing import Any

from .plugins import CriterionSpec, Plugin
from .progress import CancelToken, ProgressFn, check, report


def _adapter(model):
    if model.impl is None:
        from .plugins import discover

        return discover().adapter(model.adapter)
    return model.impl


def _unit_ids(model, adapter) -> list[str]:
    return [u.id for u in adapter.to_graph(model).prunable()]


class WeightMagnitude:
    """Σ|W| over the unit's weight matrices (tensors of rank ≥ 2)."""

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
                out[uid] = float(sum(p.detach().abs().sum().item() for p in mod.parameters() if p.dim() >= 2))
                report(progress, i + 1, len(ids), f"magnitude of {uid}")
        return out


class Taylor:
    """Σ |W ⊙ ∂L/∂W| over the unit's weights, gradients accumulated over all calibration batches first."""

    name = "taylor"

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        import torch

        adapter = _adapter(model)
        ids = _unit_ids(model, adapter)
        batches = adapter.calibration_batches(model, data)
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
                loss = adapter.loss(model, batch)
                loss.backward()
                report(progress, i + 1, len(batches) + 1, "accumulating gradients")
            out = {}
            with torch.no_grad():
                for uid in ids:
                    mod = adapter.unit_module(model, uid)
                    out[uid] = float(sum((p * p.grad).abs().sum().item()
                                         for p in mod.parameters() if p.dim() >= 2 and p.grad is not None))
            report(progress, len(batches) + 1, len(batches) + 1, "taylor scores")
            return out
        finally:
            for p, f in zip(params, flags):
                p.grad = None
                p.requires_grad_(f)
            module.train(was_training)


plugin = Plugin(
    name="core",
    version="1",
    description="Family-independent criteria built into SlimGUI",
    criteria=[
        CriterionSpec("magnitude", "slimgui.core.criteria:WeightMagnitude",
                      "weight magnitude: sum of |W| over the unit's weight matrices"),
        CriterionSpec("taylor", "slimgui.core.criteria:Taylor",
                      "first-order Taylor: sum of |W * dL/dW|, gradients accumulated over the calibration data"),
    ],
)
