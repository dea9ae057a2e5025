"""A loaded model and opening a path with the best-matching adapter."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SlimError
from .io import staging_name
from .plugins import AdapterSpec, Plugin, Registry, discover
from .progress import CancelToken, ProgressFn
from .safety import PICKLE_SUFFIXES, check_pickle_checkpoint, check_safetensors, is_pickle_checkpoint

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedModel:
    """What an adapter returns: the module plus what the family needs to run it.

    ``extra`` is the family's; keys the core reads: ``bytes_per_param`` (what a parameter takes when the model is
    saved, e.g. 2 for a float16 checkpoint computed in float32: the size estimates use it; else the loaded
    element size), ``notes`` (lines about how the model was opened: the CLI prints them, the app shows them),
    ``streamed_scorers`` (``{"taylor": fn(model, data, *, select, progress, cancel) -> scores}`` of a model whose
    weights are not in memory: it computes the same sums block by block)."""

    family: str
    adapter: str
    source: str
    module: Any  # a torch.nn.Module
    config: Any = None
    tokenizer: Any = None
    has_weights: bool = True
    impl: Any = field(default=None, repr=False)  # the adapter instance that loaded it
    extra: dict[str, Any] = field(default_factory=dict)


Chooser = Callable[[str, list[tuple[float, Plugin, AdapterSpec]]], AdapterSpec]


def _first(_: str, candidates: list[tuple[float, Plugin, AdapterSpec]]) -> AdapterSpec:
    return candidates[0][2]


ORIGIN_LINKS = ("slimgui_plan.json", "slimgui_healed_from.json")


def made_from(folder: str | Path) -> Path | None:
    """The model a SlimGUI output folder was made from (its plan or healing record names it), if it exists."""
    folder = Path(folder)
    link = next((folder / n for n in ORIGIN_LINKS if (folder / n).is_file()), None)
    if link is None:
        return None
    try:
        src = json.loads(link.read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(src) if src and Path(src).exists() else None


def origin_with(folder: str | Path, marker: str, max_hops: int = 8) -> Path | None:
    """Follow ``made_from`` links from ``folder`` to the first folder holding ``marker`` (e.g. a demo's)."""
    current: Path | None = Path(folder)
    for _ in range(max_hops):
        if current is None:
            return None
        if (current / marker).is_file():
            return current
        current = made_from(current)
    return None


def original_of(model: LoadedModel, max_hops: int = 8) -> LoadedModel | None:
    """The model ``model`` was slimmed from — the first of its chain of SlimGUI outputs (a healed model's pruned
    model's original) — loaded with ``model``'s adapter; None when there is none or it no longer opens."""
    src = made_from(model.source) if Path(model.source).is_dir() else None
    for _ in range(max_hops):
        nxt = made_from(src) if src is not None else None
        if nxt is None:
            break
        src = nxt
    if src is None or model.impl is None:
        return None
    try:
        with LOADING:
            return model.impl.load(str(src))
    except SlimError:
        return None


def describe_path(path: Path) -> str:
    if path.is_dir():
        return "a folder"
    suffix = path.suffix.lower() or "no extension"
    return f"a {suffix} file"


def refuse_staging(p: Path) -> None:
    """A staging folder of an interrupted save (``.NAME.partial-PID``, ``.NAME.old-PID``) is never opened: it may
    look complete and is not."""
    staging = staging_name(p)
    if staging is not None:
        raise SlimError(f"{p} is an unfinished SlimGUI output (a staging folder of "
                        f"{staging.group('name')} left by an interrupted save)",
                        hint=f"open {p.parent / staging.group('name')}, or delete the staging folder")


def probe(path: str, registry: Registry) -> list[tuple[float, Plugin, AdapterSpec]]:
    """Adapters that can open ``path``, best first. Pickle checkpoints are vetted first."""
    p = Path(path).expanduser()
    refuse_staging(p)
    if not p.exists():
        if not HUB_ID.match(path):
            raise SlimError(f"{path} does not exist", hint="give a model folder or file")
    elif is_pickle_checkpoint(p):
        check_pickle_checkpoint(p)
    elif p.is_file() and p.suffix.lower() == ".safetensors":
        check_safetensors(p)
    return registry.match(str(p) if p.exists() else path)


# One model is built at a time in this process.  Model libraries patch globals while they build one (transformers'
# from_pretrained replaces PreTrainedModel.tie_weights and torch's init functions for its duration and puts back what
# it found): two builds at once in two threads can put back the other's patch and leave weight tying off for good
# (seen: every tied model loaded afterwards "missing lm_head.weight").  The app opens models on several worker lanes,
# so every load goes through this lock; a family that builds a model later (a lazily built one) takes it too.
LOADING = threading.RLock()


def open_model(path: str, *, registry: Registry | None = None, adapter: str | None = None,
               choose: Chooser | None = None, progress: ProgressFn | None = None,
               cancel: CancelToken | None = None, candidate: Any = None, **options: Any) -> LoadedModel:
    """Open ``path`` with the named adapter, or the best match; ``choose`` settles ties.  ``candidate``: a
    :class:`~slimgui.core.plugins.Candidate` of an earlier :func:`probe` of ``path`` (no second probe; what
    its match found is handed to the adapter's ``load``)."""
    registry = registry or discover()
    refuse_staging(Path(path).expanduser())
    if candidate is not None:
        adapter = candidate[2].name
        if getattr(candidate, "info", None) is not None:
            options = {**options, "match": candidate.info}
    if adapter is None:
        candidates = probe(path, registry)
        if not candidates:
            p = Path(path)
            kind = describe_path(p) if p.exists() else "a name"
            families = sorted({s.family for _, s in registry.adapter_specs()})
            if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES | {".safetensors"}:
                hint = ("a bare weights file says nothing about the architecture: put it in a folder with the "
                        "model's config.json and open the folder")
            else:
                hint = f"SlimGUI opens {', '.join(families) or 'no'} models; `slimgui plugins` lists them"
            raise SlimError(f"no installed plugin can open {path} ({kind})", hint=hint)
        best = candidates[0][0]
        tied = [c for c in candidates if abs(c[0] - best) < 1e-9]
        spec = (choose or _first)(path, tied) if len(tied) > 1 else tied[0][2]
        adapter = spec.name
        chosen = next((c for c in tied if c[2] is spec), None)
        if getattr(chosen, "info", None) is not None:
            options = {**options, "match": chosen.info}
    impl = registry.adapter(adapter)
    p = Path(path).expanduser()
    with LOADING:
        return impl.load(str(p) if p.exists() else path, progress=progress, cancel=cancel, **options)
