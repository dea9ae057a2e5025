"""Results as data: the metrics an evaluator (or a retraining run) reports, with their units and which
direction is better, so that the panels, the report and the CLI show any family's results without
knowing their names.

An evaluator declares its metrics in its :class:`~slimgui.core.plugins.EvaluatorSpec`
(``metrics=(Metric("perplexity", "Perplexity", better="lower", headline=True), ...)``) and returns a plain
dict holding those keys (and any others it wants to keep).  :func:`metrics_of` picks the declared ones out
of a result, in order; :func:`headline` is the one a summary shows; :func:`change` says how a value moved
between two models, in words that know the direction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    """A named number a family reports.

    ``better``: "lower", "higher" or "" (neither, e.g. a count); ``fmt``: a format spec for the value
    ("{:.3f}", "{:.1%}" for fractions shown as percent, "{:,}" for counts); ``headline``: the metric a
    one-line summary shows (the first declared one when none says so)."""

    name: str
    label: str = ""
    unit: str = ""
    better: str = ""
    fmt: str = "{:.4g}"
    headline: bool = False
    help: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ")

    def format(self, value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, float) and not math.isfinite(value):
            return "∞" if value > 0 else ("−∞" if value < 0 else "NaN")
        try:
            text = self.fmt.format(value) if safe_format(self.fmt) else f"{value:.4g}"
        except Exception:  # a format that does not fit the value (a count given "{:.1%}", text, ...)
            text = str(value)
        return f"{text} {self.unit}" if self.unit and not self.fmt.endswith("%}") else text

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.title, "unit": self.unit, "better": self.better, "fmt": self.fmt}


_SAFE_FORMAT = re.compile(r"^[^{}]*\{:[^{}]{0,20}\}[^{}]*$")


def safe_format(fmt: str) -> bool:
    """Whether ``fmt`` is one plain ``{:spec}`` field (what a metric's format may be): a format read from a file
    may not name attributes or positions (``{0.__class__}``, ``{x}``)."""
    return isinstance(fmt, str) and bool(_SAFE_FORMAT.match(fmt))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metrics_of(result: Mapping[str, Any] | None, declared: Sequence[Metric] = ()) -> list[tuple[Metric, Any]]:
    """(metric, value) for every declared metric present in ``result``, in declaration order.  A result
    with nothing declared shows its plain numbers (keys in order, direction unknown)."""
    if not isinstance(result, Mapping):
        return []
    found = [(m, result[m.name]) for m in declared if m.name in result and (_number(result[m.name])
                                                                            or result[m.name] is None)]
    if found or declared:
        return found
    return [(Metric(k), v) for k, v in result.items() if _number(v) and not k.startswith("_")]


def headline(result: Mapping[str, Any] | None, declared: Sequence[Metric] = ()) -> tuple[Metric, Any] | None:
    """The metric a summary line shows: the declared headline, else the first one present."""
    found = metrics_of(result, declared)
    for m, v in found:
        if m.headline:
            return m, v
    return found[0] if found else None


def summary(result: Mapping[str, Any] | None, declared: Sequence[Metric] = (), *, limit: int = 4) -> str:
    """"Perplexity 12.34 · tokens 4,096" — the first ``limit`` metrics of a result in one line."""
    return " · ".join(f"{m.title} {m.format(v)}" for m, v in metrics_of(result, declared)[:limit])


def change(metric: Metric, before: Any, after: Any) -> str:
    """How ``metric`` moved from ``before`` to ``after``: "+12.5 % (worse)", "−3.0 % (better)"."""
    if not (_number(before) and _number(after)) or not math.isfinite(before) or not math.isfinite(after):
        return ""
    if before == 0:
        delta = after - before
        text = f"{delta:+.4g}"
    else:
        text = f"{(after - before) / abs(before):+.1%}".replace("%", " %")
    if after == before or not metric.better:
        return text
    good = (after < before) if metric.better == "lower" else (after > before)
    return f"{text} ({'better' if good else 'worse'})"


def declared_json(declared: Iterable[Metric]) -> list[dict[str, Any]]:
    return [m.to_json() for m in declared]


def with_metrics(result: dict[str, Any], declared: Sequence[Metric]) -> dict[str, Any]:
    """``result`` with ``result["metrics"]``: the declared metrics present, as JSON (name, label, unit,
    better, value) — what ``--json`` output and sessions carry so that readers need no plugin."""
    out = dict(result)
    out["metrics"] = [{**m.to_json(), "value": v} for m, v in metrics_of(result, declared)]
    return out


def metrics_from_json(result: Mapping[str, Any] | None) -> list[tuple[Metric, Any]]:
    """The metrics a stored result carries (``result["metrics"]``, see :func:`with_metrics`); a result from
    before metrics were declared shows its plain numbers."""
    if not isinstance(result, Mapping):
        return []
    stored = result.get("metrics")
    if isinstance(stored, list):
        out = []
        for m in stored:
            if isinstance(m, Mapping) and isinstance(m.get("name"), str):
                fmt = m.get("fmt") if isinstance(m.get("fmt"), str) and safe_format(m["fmt"]) else "{:.4g}"
                out.append((Metric(m["name"], str(m.get("label") or ""), str(m.get("unit") or ""),
                                   str(m.get("better") or ""), fmt), m.get("value")))
        return out
    return metrics_of(result)
