"""Scores as colours: which scale shows them best and where each value falls on it.

The model view, the export tab's layer table and the scores heatmap all colour values through these, so a
unit has the same colour everywhere: :func:`color_scale` picks linear, log or rank for a set of values,
:func:`normalized` maps them to [0, 1] on that scale (0 = least important), and :func:`score_matrix` is the
criteria × units heatmap, each row normalised.  Turning [0, 1] into an RGB colour is the GUI's
(``slimgui.gui.colors``).  No Qt here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .scores import Scores
from .stats import _ranks


def color_scale(values: Mapping[str, float]) -> str:
    """The scale that shows differences best: log for positive scores over orders of magnitude, linear
    otherwise — and rank when, even so, one outlier (say the first block, whose removal is catastrophic)
    would leave every other unit within the bottom 10% of the colour range."""
    finite = sorted(float(v) for v in values.values() if math.isfinite(v))
    if len(finite) < 2 or finite[-1] == finite[0]:
        return "linear"
    lo, hi = finite[0], finite[-1]
    scale = "log" if lo > 0 and hi / lo > 100 else "linear"
    f = math.log if scale == "log" else (lambda v: v)
    if len(finite) > 2 and (f(finite[-2]) - f(lo)) < 0.1 * (f(hi) - f(lo)):
        return "rank"
    return scale


def normalized(values: Mapping[str, float], scale: str = "auto") -> dict[str, float]:
    """Scores mapped to [0, 1] for colouring (0 = least important).

    ``scale``: "linear", "log" (for positive scores spanning orders of magnitude, e.g. perplexity
    after removing the first block), "rank", or "auto" (see :func:`color_scale`).
    Infinite scores map to 1 (they mark units the model cannot do without); a NaN score maps to NaN (it says
    nothing about the unit: drawn as unscored, never as the most important).
    """
    finite = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    if not finite:
        return {k: (math.nan if math.isnan(v) else 1.0) for k, v in values.items()}
    if scale == "auto":
        scale = color_scale(finite)
    if scale == "rank":
        ranks = _ranks(list(finite.values()))
        top = max(1.0, len(finite) - 1.0)
        mapped = {k: (r - 1) / top for k, r in zip(finite, ranks)}
    else:
        vals = {k: (math.log(v) if scale == "log" and v > 0 else v) for k, v in finite.items()}
        lo, hi = min(vals.values()), max(vals.values())
        span = hi - lo
        mapped = {k: ((v - lo) / span if span > 0 else 0.5) for k, v in vals.items()}
    return {k: mapped.get(k, math.nan if math.isnan(values[k]) else 1.0) for k in values}


def score_matrix(scores: Mapping[str, Scores], unit_ids: Sequence[str]) -> list[list[float]]:
    """criteria × units, each row normalised to [0, 1] (NaN where a criterion has no score)."""
    rows = []
    for s in scores.values():
        norm = normalized({u: s.values[u] for u in unit_ids if u in s.values})
        rows.append([norm.get(u, math.nan) for u in unit_ids])
    return rows
