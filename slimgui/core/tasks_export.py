"""The Export and Benchmark tabs' tasks: write a model out (checked), and time models side by side.

:func:`export_task` writes a transformers folder or an ONNX file (FP32, INT8 or mixed precision) checked
against torch; :func:`bench_task` runs :func:`slimgui.core.bench.benchmark` over loaded models, model folders
and ``.onnx`` files, with an optional width-pruned variant of equal size.  No Qt here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SlimError
from .progress import CancelToken, ProgressFn, check, report
from .tasks_open import _model_at

if TYPE_CHECKING:
    from .model import LoadedModel
    from .plugins import Registry


def folder_bytes(path: str | Path) -> int:
    root = Path(path)
    if root.is_file():
        return root.stat().st_size
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def export_task(model: LoadedModel | str, out: str, *, registry: Registry, fmt: str, options: dict[str, Any] | None = None,
                adapter: str | None = None, force: bool = False, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None, **context: Any) -> tuple[dict[str, Any], LoadedModel]:
    """Export ``model`` (loaded, or a folder opened here) with the exporter ``fmt`` the model's family declares
    (or the core's native folder, ``"hf"``) and that exporter's ``options`` by name (checked against its schema).
    ``context``: what the caller knows beyond the options (e.g. ``sensitivity`` of an earlier scan of the same
    model), passed to the exporter.  Returns ``(result, model)``: the exporter's result (what
    ``slimgui export --json`` prints) and the model that was exported.  Nothing is written when a check fails."""
    from .ops import export, exporter_spec

    if not out or not str(out).strip():
        raise SlimError("choose where to write the export")
    family = model.family if not isinstance(model, (str, Path)) else None
    if family is not None:
        exporter_spec(model, registry, fmt)  # an unknown format is refused before anything is opened
    model = _model_at(model, registry=registry, adapter=adapter, cancel=cancel)
    check(cancel)
    result = export(model, fmt, str(out), registry=registry, options=options, force=force, progress=progress,
                    cancel=cancel, **context)
    return result, model


def bench_task(entries: Sequence[tuple[str, Any]], *, registry: Registry, batches: Sequence[int],
               options: dict[str, Any] | None = None, threads: int | None = 2, repeats: int = 5,
               width: tuple[str, Any, Any] | None = None, adapter: str | None = None,
               progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, Any]:
    """:func:`slimgui.core.bench.benchmark` of ``entries`` (``(label, model)``: a loaded model, a model folder
    opened here, or an exported file such as an ``.onnx``) side by side; speedups are relative to the first entry.
    ``options``: the family's benchmark options by name (``AdapterSpec.bench_options``: a language model's
    sequence lengths, new tokens and decode switch).

    ``width=(label, base, match)`` adds the width-pruned variant of the model ``base`` (loaded or a folder) with
    the parameter count of the model ``match`` (or that many parameters, an int): depth versus width pruning
    at equal size (the family's "width" capability).  The result is the benchmark's, with ``"models"``:
    ``[{"label", "source", "params", "runtime"}]`` in order.  The caller's torch thread count is restored."""
    import torch

    from .bench import benchmark, exported_file_spec

    batches = [int(b) for b in batches]
    if not entries and width is None:
        raise SlimError("choose at least one model to measure")
    if not batches or min(batches) < 1:
        raise SlimError("give batch sizes of at least 1")
    labels = [label for label, _ in entries] + ([width[0]] if width is not None else [])
    if len(set(labels)) != len(labels):
        raise SlimError("two models to measure have the same name")
    resolved: list[tuple[str, Any]] = []
    n_open = sum(1 for _, item in entries if exported_file_spec(item, registry) is None
                 and isinstance(item, (str, Path)))
    opened = 0
    for label, item in entries:
        check(cancel)
        if exported_file_spec(item, registry) is not None:
            if not Path(item).is_file():
                raise SlimError(f"{item} does not exist", hint="export it again or untick it")
            resolved.append((label, str(item)))
            continue
        if isinstance(item, (str, Path)):
            report(progress, opened, n_open + 1, f"opening {label}")
            opened += 1
        model = _model_at(item, registry=registry, adapter=adapter, cancel=cancel)
        if not model.has_weights:
            raise SlimError(f"{model.source} has no weights to benchmark")
        resolved.append((label, model))
    if width is not None:
        label, base, match = width
        check(cancel)
        report(progress, 0, 1, "building the width-pruned variant")
        original = _model_at(base, registry=registry, adapter=adapter, cancel=cancel)
        if not registry.spec_of(original).can("width"):
            raise SlimError(f"the {original.family} family has no width pruning to compare with")
        if isinstance(match, int):
            target = match
        else:
            other = _model_at(match, registry=registry, adapter=adapter, cancel=cancel)
            target = sum(p.numel() for p in other.module.parameters())
        impl = original.impl if original.impl is not None else registry.adapter(original.adapter)
        resolved.append((label, impl.width_variant(original, target)))
    before = torch.get_num_threads()
    try:
        result = benchmark(resolved, batches=batches, registry=registry, options=options, threads=threads,
                           repeats=repeats, progress=progress, cancel=cancel)
    finally:
        torch.set_num_threads(before)
    result["models"] = [{"label": label, "runtime": "torch" if not isinstance(item, str) else "onnxruntime"
                         if item.lower().endswith(".onnx") else Path(item).suffix.lstrip("."),
                         "source": item if isinstance(item, str) else item.source,
                         "params": None if isinstance(item, str) else sum(p.numel() for p in item.module.parameters())}
                        for label, item in resolved]
    result["batches"] = batches
    result["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return result
