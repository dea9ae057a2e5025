"""What the Benchmark tab's table shows, as plain functions of the benchmark's rows (no widgets).

A row says which runs it timed (``row["runs"]``: name, label, and ``per`` — what a time per item is counted in)
and what its throughput counts (``row["items"]``); the columns come from those (:func:`columns_for`), so no
column is written for a family.
"""

from __future__ import annotations

import math
import re
from typing import Any

from slimgui.core.session import human_count

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#4b5563")
WIDTH_LABEL = "width-pruned"
HEAD = (("model", "Model", ""), ("runtime", "Runtime", ""), ("batch", "Batch", ""),
        ("params", "Params", "parameters (torch models)"))
TAIL = (("peak_mem_mib", "Peak MiB", "peak memory of this model: its weights plus the most one run adds"),
        ("speedup", "Speedup", "measured speedup over the first model (its last run: per item when it says so)"),
        ("ideal_speedup", "Ideal", "the parameter ratio: what removing parameters promises"),
        ("speedup_over_ideal", "Of ideal", "measured speedup / ideal speedup"))


def runs_of(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The runs the rows timed (``row["runs"]``: name, label, per), in order, once each."""
    out: dict[str, dict[str, str]] = {}
    for r in rows:
        for run in r.get("runs") or []:
            if isinstance(run, dict) and isinstance(run.get("name"), str):
                got = out.setdefault(run["name"], {"name": run["name"], "label": str(run.get("label") or run["name"]),
                                                   "per": str(run.get("per") or "")})
                got["per"] = got["per"] or str(run.get("per") or "")
    return list(out.values())


def row_items(row: dict[str, Any]) -> str:
    """What a benchmark row's throughput counts (the family's ``AdapterSpec.items``)."""
    return str(row.get("items") or "items")


def _title(text: str) -> str:
    return text[:1].upper() + text[1:]


def columns_for(rows: list[dict[str, Any]], swept: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str, str, Any]]:
    """The table's columns for these rows: ``(key, title, tooltip, value getter)``.  After the model, runtime,
    batch and parameters come the options a row was swept over (``swept``: (name, label)), then per run the
    rows timed (``row["runs"]``): its latency, the first run's p90, its time per item when it reports one and its
    throughput in the family's items; then memory and speedups."""
    kinds = {row_items(r) for r in rows}
    items = next(iter(kinds)) if len(kinds) == 1 else "items"
    out = [(k, t, tip, (lambda r, k=k: r.get(k))) for k, t, tip in HEAD]
    out += [(name, label, f"the benchmark's {label}", (lambda r, k=name: r.get(k))) for name, label in swept]
    for i, run in enumerate(runs_of(rows)):
        name, label, per = run["name"], run["label"], run["per"]
        out.append((f"{name}_median_ms", f"{_title(label)} ms", f"median latency of one {label} over the batch",
                    lambda r, k=f"{name}_median_ms": r.get(k)))
        if i == 0:
            out.append((f"{name}_p90_ms", "p90 ms", f"90th percentile of the {label} latency",
                        lambda r, k=f"{name}_p90_ms": r.get(k)))
        if per:
            out.append((f"{name}_ms_per_{per}", f"{_title(label)} ms/{per}", f"median time per {per} ({label})",
                        lambda r, k=f"{name}_ms_per_{per}": r.get(k)))
        if i == 0:
            out.append(("throughput", f"{items}/s", f"{items} processed per second ({label}: batch / latency)",
                        lambda r: r.get(f"{row_items(r)}_per_s")))
        else:
            out.append((f"{name}_throughput", f"{_title(label)} {items}/s", f"{items} per second ({label})",
                        lambda r, n=name: r.get(f"{n}_{row_items(r)}_per_s")))
    out += [(k, t, tip, (lambda r, k=k: speedup(r) if k == "speedup" else r.get(k))) for k, t, tip in TAIL]
    return out


def speedup(row: dict[str, Any]) -> float | None:
    """The row's measured speedup: its last run's that has one."""
    for run in reversed(row.get("runs") or []):
        v = row.get(f"{run.get('name')}_speedup")
        if isinstance(v, (int, float)):
            return v
    return None


def parse_batches(text: str) -> list[int]:
    """``"1, 8,32"`` -> ``[1, 8, 32]`` (sorted, unique); raises ValueError when something is not a size ≥ 1."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    sizes = sorted({int(p) for p in parts})
    if not sizes or sizes[0] < 1:
        raise ValueError(text)
    return sizes


def _fmt(key: str, v: Any) -> str:
    if v is None or v == "":
        return "—"
    if key == "params":
        return human_count(v)
    if key in ("speedup", "ideal_speedup", "speedup_over_ideal"):
        return f"×{v:.2f}" if key != "speedup_over_ideal" else f"{100 * v:.0f}%"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(v)


