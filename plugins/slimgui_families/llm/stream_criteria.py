"""The criteria on a streamed model: one block's weights in memory at a time.

Every criterion first runs the model's own forward once per calibration batch with each block replaced by a
*catcher* that records what the model hands that block (the attention mask of its kind, the rotary position
embeddings, ...) and passes the hidden states on untouched: so each block can later be called on its own exactly
as the whole model calls it.  Then the blocks are read one after another; the hidden states of the calibration
batch are carried from block to block (:class:`HiddenStore`: in memory while they fit, else in a temporary folder).

- ``bi``: 1 − cos(h_in, h_out) per block, in one sweep.
- ``ppl``: the perplexity with block *i* removed starts from the full pass's input of block *i* (the prefix is
  reused, as in memory) and runs the later blocks; all removals advance together, so each block is read once.
- ``taylor``: a forward sweep saves every block's input; the loss's gradient at the last hidden state comes from
  the model's head; then block by block backwards: the block's forward is recomputed from its saved input, the
  incoming gradient is propagated through it, |W ⊙ ∂L/∂W| is summed, and the gradient at its input is handed to
  the block before.
- ``magnitude``: the core criterion, through :meth:`TransformersAdapter.unit_module`, which reads the one block asked for.

The numbers equal the in-memory criteria's (same operations, same order, float32).
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .stream import available_memory, load_resident, materialize_block, stream_of


class _Stop(Exception):
    pass


class _Catcher(nn.Module):
    """Stands in for block ``i`` during the capture pass: records its call, passes the hidden states on."""

    def __init__(self, i: int, n: int, calls: list[dict], first: list):
        super().__init__()
        self.i, self.n, self.calls, self.first = i, n, calls, first

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            hidden, rest, key = args[0], args[1:], None
        else:
            hidden, rest, key = kwargs["hidden_states"], (), "hidden_states"
            kwargs = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        self.calls[self.i] = {"args": rest, "kwargs": kwargs, "key": key}
        if self.i == 0:
            self.first.append(hidden.detach())
        if self.i == self.n - 1:
            raise _Stop
        return hidden


class _Pass(nn.Module):
    """An identity block (for running only the model's head on stored final hidden states)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return args[0] if args else kwargs["hidden_states"]


class _Give(nn.Module):
    """The last block of a head-only run: returns the stored hidden states it is given."""

    def __init__(self, holder: dict):
        super().__init__()
        self.holder = holder

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.holder["h"]


def _output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def run_block(block: nn.Module, call: dict, hidden: torch.Tensor) -> torch.Tensor:
    if call["key"]:
        return _output(block(**{call["key"]: hidden}, **call["kwargs"]))
    return _output(block(hidden, *call["args"], **call["kwargs"]))


class HiddenStore:
    """Hidden states keyed by (slot, batch): in memory, or spilled to a temporary folder (safetensors files)."""

    def __init__(self, spill: bool):
        self.spill = spill
        self._mem: dict[Any, torch.Tensor] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="slimgui-hidden-")) if spill else None

    @staticmethod
    def _file(key: Any) -> str:
        parts = key if isinstance(key, tuple) else (key,)
        return "-".join(str(p) for p in parts) + ".safetensors"

    def put(self, key: Any, t: torch.Tensor) -> None:
        if self._dir is None:
            self._mem[key] = t.detach()
            return
        from safetensors.torch import save_file

        save_file({"h": t.detach().contiguous()}, str(self._dir / self._file(key)))

    def get(self, key: Any) -> torch.Tensor:
        if self._dir is None:
            return self._mem[key]
        from safetensors.torch import load_file

        return load_file(str(self._dir / self._file(key)))["h"]

    def drop(self, key: Any) -> None:
        if self._dir is None:
            self._mem.pop(key, None)
        else:
            (self._dir / self._file(key)).unlink(missing_ok=True)

    def close(self) -> None:
        self._mem.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


def _spill(model, per_set: int, sets: int) -> bool:
    """Whether ``sets`` copies of the calibration's hidden states (``per_set`` bytes each) go to disk: when they
    would not fit beside the streamed blocks (or ``SLIMGUI_STREAM_SPILL=1``)."""
    import os

    if os.environ.get("SLIMGUI_STREAM_SPILL") == "1":
        return True
    src = stream_of(model)
    return src.plan.need(per_set * sets) > available_memory()


@contextmanager
def _stack(adapter, model, modules: list[nn.Module]):
    from .criteria import swapped_stack

    with swapped_stack(adapter, model, modules):
        yield


class Capture:
    """Each block's call (recorded once per batch) and the first block's input hidden states."""

    def __init__(self, adapter, model, batches: list[dict]):
        _, layers = adapter.stack(model)
        self.n = len(layers)
        self.calls: list[list[dict]] = []
        self.first: list[torch.Tensor] = []
        decoder = adapter.is_decoder(model)
        for batch in batches:
            calls: list[dict] = [None] * self.n
            first: list = []
            catchers = [_Catcher(i, self.n, calls, first) for i in range(self.n)]
            with _stack(adapter, model, catchers), torch.no_grad():
                try:
                    if decoder:
                        model.module.base_model(**batch, use_cache=False)
                    else:
                        model.module.base_model(**batch)
                except _Stop:
                    pass
            self.calls.append(calls)
            self.first.append(first[0])


def _prepare(model, data, adapter, *, head: bool = True):
    load_resident(model, head=head)
    batches = adapter.calibration_batches(model, data)
    model.module.eval()
    return batches, Capture(adapter, model, batches)


def _head_run(adapter, model, n: int, hidden: torch.Tensor, fn):
    """``fn()`` (a run of the whole model) with the blocks replaced so the final norm and head see ``hidden``."""
    holder = {"h": hidden}
    model.extra["stream_head_only"] = True
    try:
        with _stack(adapter, model, [_Pass() for _ in range(n - 1)] + [_Give(holder)]):
            return fn()
    finally:
        model.extra.pop("stream_head_only", None)


def block_influence(adapter, model, data: Any = None, *, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> dict[str, float]:
    batches, cap = _prepare(model, data, adapter, head=False)  # the blocks only: an untied head stays unread
    n = cap.n
    store = HiddenStore(_spill(model, sum(h.numel() * 4 for h in cap.first), 2))
    try:
        for b, h in enumerate(cap.first):
            store.put(b, h)
        scores = {}
        with torch.no_grad():
            for j in range(n):
                check(cancel)
                block = materialize_block(model, j)
                total, count = 0.0, 0
                for b in range(len(batches)):
                    h_in = store.get(b)
                    h_out = run_block(block, cap.calls[b][j], h_in)
                    cos = nn.functional.cosine_similarity(h_in, h_out, dim=-1)
                    total += (1 - cos).sum().item()
                    count += cos.numel()
                    store.put(b, h_out)
                del block
                scores[f"block.{j}"] = total / max(1, count)
                report(progress, j + 1, n, f"block influence: block {j} of {n} read")
        return scores
    finally:
        store.close()


def perplexity_drop(adapter, model, data: Any = None, *, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """(scores, info) as :class:`~slimgui_families.llm.criteria.PerplexityDrop` gives them."""
    from .criteria import _Objective

    batches, cap = _prepare(model, data, adapter)
    n, nb = cap.n, len(batches)
    per_set = sum(h.numel() * 4 for h in cap.first)
    store = HiddenStore(_spill(model, per_set, n + 1))
    objective = _Objective(adapter, model)
    try:
        for b, h in enumerate(cap.first):
            store.put(("full", b), h)
        with torch.no_grad():
            for j in range(n):
                check(cancel)
                block = materialize_block(model, j)
                for b in range(nb):
                    call = cap.calls[b][j]
                    for i in range(j - 1):  # the model without block i (i < j - 1) runs block j
                        store.put((i, b), run_block(block, call, store.get((i, b))))
                    if j >= 1:  # the model without block j - 1 starts from the full pass's input of block j - 1
                        store.put((j - 1, b), run_block(block, call, store.get(("prev", b))))
                    h_in = store.get(("full", b))
                    store.put(("prev", b), h_in)
                    store.put(("full", b), run_block(block, call, h_in))
                del block
                report(progress, j + 1, 2 * n + 1, f"perplexity: block {j} of {n} read")
            for b in range(nb):  # without the last block: the full pass's input of the last block
                store.put((n - 1, b), store.get(("prev", b)))
                store.drop(("prev", b))

            def outs(key):
                result = []
                for b, batch in enumerate(batches):
                    result.append(_head_run(adapter, model, n, store.get((key, b)), lambda batch=batch: objective.run(batch)))
                return result

            baseline = objective.baseline(outs("full"))
            report(progress, n + 1, 2 * n + 1, "full model")
            scores = {}
            for i in range(n):
                check(cancel)
                scores[f"block.{i}"] = objective.score(outs(i))
                report(progress, n + 2 + i, 2 * n + 1, f"block {i} removed")
        return scores, ({"baseline_ppl": baseline, "baseline": baseline, "baseline_label": "perplexity"}
                        if objective.decoder else {})
    finally:
        store.close()


def taylor(adapter, model, data: Any = None, *, select, progress: ProgressFn | None = None,
           cancel: CancelToken | None = None) -> dict[str, float]:
    """Σ |W ⊙ ∂L/∂W| over ``select(block)``, L the mean calibration loss (as :class:`slimgui.core.criteria.Taylor`)."""
    from slimgui.core.criteria import _rows

    batches, cap = _prepare(model, data, adapter)
    n, nb = cap.n, len(batches)
    total_rows = sum(_rows(b) for b in batches) or 1
    per_set = sum(h.numel() * 4 for h in cap.first)
    store = HiddenStore(_spill(model, per_set, n + 2))
    steps = 2 * n + 1
    try:
        for b, h in enumerate(cap.first):
            store.put((0, b), h)
        with torch.no_grad():
            for j in range(n):
                check(cancel)
                block = materialize_block(model, j)
                for b in range(nb):
                    store.put((j + 1, b), run_block(block, cap.calls[b][j], store.get((j, b))))
                del block
                report(progress, j + 1, steps, f"taylor: forward, block {j} of {n} read")
        for b, batch in enumerate(batches):  # ∂L/∂h at the last block's output, through the model's own head
            check(cancel)
            h = store.get((n, b)).clone().requires_grad_(True)
            loss = _head_run(adapter, model, n, h, lambda batch=batch: adapter.loss(model, batch)) * (
                _rows(batch) / total_rows)
            loss.backward()
            store.put(("grad", b), h.grad)
            store.drop((n, b))
        report(progress, n + 1, steps, "taylor: gradient of the loss")
        scores = {}
        for j in reversed(range(n)):
            check(cancel)
            block = materialize_block(model, j, requires_grad=True)
            for b in range(nb):
                x = store.get((j, b)).clone().requires_grad_(True)
                y = run_block(block, cap.calls[b][j], x)
                y.backward(store.get(("grad", b)))
                store.put(("grad", b), x.grad)
                store.drop((j, b))
            with torch.no_grad():
                scores[f"block.{j}"] = float(sum((p.float() * p.grad.float()).abs().sum().item()
                                                 for _, p in select(block) if p.grad is not None))
            del block
            report(progress, steps - j, steps, f"taylor: backward, block {j}")
        return {f"block.{j}": scores[f"block.{j}"] for j in range(n)}
    finally:
        store.close()
