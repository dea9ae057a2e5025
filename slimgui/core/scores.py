"""Importance scores keyed by unit id (higher = more important), saved as versioned JSON."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import SlimError
from .io import read_versioned_json, write_versioned_json

SCHEMA_VERSION = 1


@dataclass
class Scores:
    criterion: str
    values: dict[str, float]
    model: str = ""
    locked: list[str] = field(default_factory=list)
    keep: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def ranking(self) -> list[str]:
        """Unit ids from least to most important (ties broken by id order in ``values``)."""
        order = list(self.values)
        return sorted(order, key=lambda uid: (self.values[uid], order.index(uid)))

    def save(self, path: str | os.PathLike) -> None:
        values = {k: (None if not math.isfinite(v) else float(v)) for k, v in self.values.items()}
        write_versioned_json(path, "scores", SCHEMA_VERSION, {
            "criterion": self.criterion, "model": self.model, "values": values,
            "ranking": self.ranking(), "locked": self.locked, "keep": self.keep, "meta": self.meta,
        })

    @classmethod
    def load(cls, path: str | os.PathLike) -> Scores:
        doc = read_versioned_json(path, "scores", SCHEMA_VERSION)
        try:
            values = {str(k): (math.inf if v is None else float(v)) for k, v in doc["values"].items()}
            return cls(criterion=str(doc["criterion"]), values=values, model=str(doc.get("model", "")),
                       locked=list(doc.get("locked", [])), keep=doc.get("keep"), meta=dict(doc.get("meta", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SlimError(f"{path} is not a valid scores file: {exc}") from exc
