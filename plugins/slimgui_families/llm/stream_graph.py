"""Structure before weights: a config-only folder opened without importing torch or transformers.

Building a model's structure needs transformers' modelling code (and torch under it), seconds of imports before
anything shows.  The structure depends on the config alone, so the graph built the first time a config is opened
is kept in the user cache (keyed by the config's bytes and the transformers and SlimGUI versions); the next open
of the same config returns a :class:`LazyModel` with that graph at once, and builds the module, the config object
and the tokenizer only when something uses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slimgui.core.model import LoadedModel

CACHE_VERSION = 1
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.h5", "*.msgpack",
                   "*.safetensors.index.json", "*.bin.index.json")  # an index names weights, even when they are missing


def has_weight_files(folder: Path) -> bool:
    return any(True for pat in WEIGHT_PATTERNS for _ in folder.glob(pat))


def structure_key(folder: Path) -> str | None:
    """The cache key of ``folder``'s structure: its config's bytes and the library versions; None without a config."""
    from importlib.metadata import PackageNotFoundError, version

    from slimgui import __version__

    try:
        raw = (folder / "config.json").read_bytes()
        tf = version("transformers")
    except (OSError, PackageNotFoundError):
        return None
    h = hashlib.sha256(raw)
    h.update(f"|{tf}|{__version__}|{CACHE_VERSION}".encode())
    return h.hexdigest()


def _cache_file(key: str) -> Path:
    from slimgui.core.io import cache_dir

    return cache_dir() / "structures" / f"{key}.json"


def cached(key: str) -> dict[str, Any] | None:
    """What :func:`store` kept for ``key``: {"graph": graph JSON, "extra": {kind, stack_path}}, or None."""
    try:
        doc = json.loads(_cache_file(key).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION or not isinstance(doc.get("graph"), dict):
        return None
    return doc


def store(key: str, graph, extra: dict[str, Any]) -> None:
    """Keep ``graph`` for ``key`` (a failure to write the cache is not an error: the next open builds again)."""
    from slimgui.core.io import atomic_write_text

    path = _cache_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"version": CACHE_VERSION, "graph": graph.to_json(), "extra": extra}))
    except OSError:
        pass


class LazyModel(LoadedModel):
    """A config-only model whose structure came from the cache: ``module``, ``config`` and ``tokenizer`` are built
    (by the adapter's full open) the first time they are used."""

    def __init__(self, build: Callable[[], LoadedModel], **fields: Any):
        self._build = build
        self._full: LoadedModel | None = None
        self._given: dict[str, Any] = {}
        super().__init__(module=None, config=None, tokenizer=None, **fields)

    def built(self) -> bool:
        return self._full is not None

    def _get(self, name: str) -> Any:
        if name in self._given:
            return self._given[name]
        if self._full is None:
            from slimgui.core.model import LOADING

            with LOADING:  # one model built at a time (see slimgui.core.model.LOADING)
                if self._full is None:
                    self._full = self._build()
            for k, v in self._full.extra.items():
                self.extra.setdefault(k, v)
        return getattr(self._full, name)

    def _set(self, name: str, value: Any) -> None:
        if value is not None or name in self._given or self._full is not None:
            self._given[name] = value

    module = property(lambda self: self._get("module"), lambda self, v: self._set("module", v))
    config = property(lambda self: self._get("config"), lambda self, v: self._set("config", v))
    tokenizer = property(lambda self: self._get("tokenizer"), lambda self, v: self._set("tokenizer", v))

    def __repr__(self) -> str:
        return f"LazyModel(source={self.source!r}, built={self.built()})"
