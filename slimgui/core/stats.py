"""Rank statistics: how far two criteria agree on which units matter least.

Spearman's ρ (:func:`spearman`) and Kendall's τ-b (:func:`kendall`) of two score sequences, with ties
averaged and non-finite scores ranked above every finite one, and the pairwise :class:`Agreement` of every
criterion of a model (:func:`agreement`) that the Scores tab shows.  No Qt here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .scores import Scores


def _ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks with ties given their average rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(a: Sequence[float], b: Sequence[float]) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if va == 0 or vb == 0:
        return math.nan
    return cov / math.sqrt(va * vb)


def _clean(a: Sequence[float], b: Sequence[float]) -> tuple[list[float], list[float]]:
    if len(a) != len(b):
        raise ValueError("rank correlation needs two sequences of the same length")
    big = 1e300  # non-finite scores rank above every finite one

    def fix(v: float) -> float:
        return v if math.isfinite(v) else (big if v > 0 or math.isnan(v) else -big)

    return [fix(float(x)) for x in a], [fix(float(y)) for y in b]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation ρ (ties averaged); NaN when fewer than 2 items or a constant side."""
    a, b = _clean(a, b)
    if len(a) < 2:
        return math.nan
    return _pearson(_ranks(a), _ranks(b))


def kendall(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b (handles ties); NaN when fewer than 2 items or a constant side."""
    a, b = _clean(a, b)
    n = len(a)
    if n < 2:
        return math.nan
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da = (a[i] > a[j]) - (a[i] < a[j])
            db = (b[i] > b[j]) - (b[i] < b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denom if denom else math.nan


@dataclass(frozen=True)
class Agreement:
    criteria: list[str]
    spearman: list[list[float]]
    kendall: list[list[float]]


def agreement(scores: Mapping[str, Scores], unit_ids: Sequence[str]) -> Agreement:
    """Pairwise rank agreement of criteria over ``unit_ids`` (units a criterion did not score are skipped)."""
    names = list(scores)
    rho = [[math.nan] * len(names) for _ in names]
    tau = [[math.nan] * len(names) for _ in names]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            ids = [u for u in unit_ids if u in scores[a].values and u in scores[b].values]
            xa = [scores[a].values[u] for u in ids]
            xb = [scores[b].values[u] for u in ids]
            rho[i][j] = 1.0 if i == j and ids else spearman(xa, xb)
            tau[i][j] = 1.0 if i == j and ids else kendall(xa, xb)
    return Agreement(criteria=names, spearman=rho, kendall=tau)
