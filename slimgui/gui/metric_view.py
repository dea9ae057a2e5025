"""Results as data, on screen: the metrics an evaluator, an exporter or a retraining run reports, formatted
and compared without knowing their names.

A result is a plain dict; the metrics it holds are the ones its producer declares (:class:`~slimgui.core.metrics.
Metric`: title, unit, format, which direction is better).  :func:`metrics_for` finds them — from the
declaration when the producer is installed (its formats and headline), else from what the result carries
(``result["metrics"]``, so a session opens without its plugin) — and :func:`format_value` writes a value the way
the panels show it (sizes in bytes as KB/MB/GB).  Nothing here knows a family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slimgui.core.fmt import human_bytes
from slimgui.core.metrics import Metric, change, metrics_from_json, metrics_of
from slimgui.core.plugins import Registry


def declared(registry: Registry, kind: str, name: str | None, family: str | None) -> tuple[Metric, ...]:
    """The metrics the evaluator (``kind`` "evaluator") or exporter ("exporter") ``name`` declares; () when it is
    not installed (a session from elsewhere) or declares none."""
    if not name:
        return ()
    try:
        spec = registry.evaluator_spec(name, family) if kind == "evaluator" else registry.exporter_spec(name, family)
    except Exception:  # not installed here: the result's own metrics are shown
        return ()
    return tuple(spec.metrics)


def metrics_for(result: Mapping[str, Any] | None, metrics: Sequence[Metric] = ()) -> list[tuple[Metric, Any]]:
    """(metric, value) of ``result``: the declared ``metrics`` present in it, else the metrics it carries."""
    if not isinstance(result, Mapping):
        return []
    if metrics:
        found = metrics_of(result, metrics)
        if found:
            return found
    return metrics_from_json(result)


def headline(found: Sequence[tuple[Metric, Any]]) -> tuple[Metric, Any] | None:
    """The metric a summary shows: the declared headline, else the first."""
    for m, v in found:
        if m.headline:
            return m, v
    return found[0] if found else None


def format_value(metric: Metric, value: Any) -> str:
    """``value`` as the metric's format says; a size in bytes as KB, MB, GB."""
    if metric.unit == "bytes" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return human_bytes(value)
    return metric.format(value)


def summary(found: Sequence[tuple[Metric, Any]], *, limit: int = 3, skip: Metric | None = None) -> str:
    """"Loss 1.23 · Samples 4,096": the first ``limit`` metrics in one line (``skip`` left out)."""
    parts = [f"{m.title} {format_value(m, v)}" for m, v in found if skip is None or m.name != skip.name]
    return " · ".join(parts[:limit])


def change_vs(metric: Metric, before: Any, after: Any, against: str = "original") -> str:
    """"+12.5 % vs original (worse)" — how ``metric`` moved, in words that know its direction; "" when it
    cannot be said."""
    text = change(metric, before, after)
    if not text:
        return ""
    delta, _, verdict = text.partition(" (")
    return f"{delta} vs {against}" + (f" ({verdict}" if verdict else "")


def value_of(found: Sequence[tuple[Metric, Any]], name: str) -> Any:
    return next((v for m, v in found if m.name == name), None)
