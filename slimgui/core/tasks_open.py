"""Opening models for the app's tasks: a dropped path, with ties between adapters left to the caller.

:func:`open_task` opens a path or a ``demo:NAME`` and returns :class:`NeedsChoice` when several adapters
match equally well (unless a remembered choice for that kind of file, :func:`file_kind`, settles it);
:func:`open_models` opens the folders among a list of models (a healed model not loaded yet).
No Qt here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .progress import CancelToken, ProgressFn, check

if TYPE_CHECKING:
    from .model import LoadedModel
    from .plugins import AdapterSpec, Plugin, Registry


@dataclass
class NeedsChoice:
    """``open_task`` found several adapters with the same confidence: the caller asks the user."""

    path: str
    candidates: list[tuple[float, Plugin, AdapterSpec]]


def file_kind(path: str) -> str:
    """What kind of thing ``path`` is, for remembering adapter choices: "folder" or the suffix."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    return p.suffix.lower() or "file"


def open_task(path: str, *, registry: Registry, adapter: str | None = None,
              remembered: dict[str, str] | None = None, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None, **options: Any) -> LoadedModel | NeedsChoice:
    """Open ``path``; on a tie between adapters return :class:`NeedsChoice` unless a remembered
    choice for this kind of file settles it.  ``demo:NAME`` opens (and if needed builds) a demo."""
    from .model import open_model, probe

    if path.startswith("demo:"):
        path = registry.demo(path[5:])(progress=progress, cancel=cancel)["model"]
    check(cancel)
    chosen = None  # the probe's candidate, handed on so the model is not probed again
    if adapter is None:
        candidates = probe(path, registry)
        if candidates:
            best = candidates[0][0]
            tied = [c for c in candidates if abs(c[0] - best) < 1e-9]
            chosen = tied[0]
            if len(tied) > 1:
                want = (remembered or {}).get(file_kind(path))
                chosen = next((c for c in tied if c[2].name == want), None)
                if chosen is None:
                    return NeedsChoice(path=path, candidates=tied)
    return open_model(path, registry=registry, adapter=adapter, candidate=chosen, progress=progress, cancel=cancel,
                      **options)


def open_models(items: Sequence[LoadedModel | str], *, registry: Registry, adapter: str | None = None,
                cancel: CancelToken | None = None) -> list[LoadedModel]:
    """Each item itself, or the model in the folder it names opened here (with its graph), in order."""
    out = []
    for item in items:
        check(cancel)
        out.append(_model_at(item, registry=registry, adapter=adapter, cancel=cancel))
    return out


def _model_at(item: LoadedModel | str, *, registry: Registry, adapter: str | None, cancel: CancelToken | None,
              progress: ProgressFn | None = None) -> LoadedModel:
    """``item`` itself, or the model in the folder ``item`` opened (with its graph)."""
    from .model import LoadedModel as _Loaded
    from .model import open_model
    from .ops import graph_of

    if isinstance(item, _Loaded):
        return item
    model = open_model(str(item), registry=registry, adapter=adapter, progress=progress, cancel=cancel)
    graph_of(model, registry)
    return model
