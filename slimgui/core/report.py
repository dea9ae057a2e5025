"""A self-contained HTML report of a session: model, plan, scores, evaluations, healing curves, benchmark, exports.

Charts are inline SVG drawn from the numbers (no plotting library, no network): the file opens in
any browser and can be mailed as one attachment.

Nothing here knows a family: evaluations show the metrics their results carry (with units and which
direction is better, :mod:`slimgui.core.metrics`), the benchmark the runs its rows name, an export the notes,
metrics and per-layer precisions its exporter reported.  Documents from before those were declared still
render: their plain numbers are shown as they are.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import SlimError
from .io import atomic_write_text, read_json_file
from .metrics import Metric, change, metrics_from_json

PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096"]


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "NaN" if math.isnan(v) else "∞" if v > 0 else "−∞"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v:,}"
    return _esc(v)


def line_chart(series: dict[str, Sequence[tuple[float, float]]], *, title: str, x_label: str, y_label: str,
               width: int = 640, height: int = 300, log_x: bool = False) -> str:
    """An SVG line chart of named (x, y) series."""
    pts = [(x, y) for s in series.values() for x, y in s if y is not None and math.isfinite(y)]
    if not pts:
        return f"<p><em>{_esc(title)}: no data</em></p>"
    fx = (lambda v: math.log2(max(v, 1e-12))) if log_x else (lambda v: v)
    xs, ys = [fx(x) for x, _ in pts], [y for _, y in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    L, R, T, B = 60, 20, 30, 40
    W, H = width - L - R, height - T - B

    def px(x: float) -> float:
        return L + (fx(x) - x0) / (x1 - x0) * W

    def py(y: float) -> float:
        return T + (1 - (y - y0) / (y1 - y0)) * H

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart">',
           f'<text x="{width / 2}" y="18" text-anchor="middle" class="t">{_esc(title)}</text>',
           f'<rect x="{L}" y="{T}" width="{W}" height="{H}" fill="none" stroke="#ccc"/>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{L - 6}" y="{py(yv) + 4:.1f}" text-anchor="end" class="a">{yv:.3g}</text>')
        out.append(f'<line x1="{L}" x2="{L + W}" y1="{py(yv):.1f}" y2="{py(yv):.1f}" stroke="#eee"/>')
    xticks = sorted({x for x, _ in pts})
    if len(xticks) > 8:
        xticks = [xticks[round(i * (len(xticks) - 1) / 6)] for i in range(7)]
    for xv in xticks:
        out.append(f'<text x="{px(xv):.1f}" y="{T + H + 16}" text-anchor="middle" class="a">{xv:g}</text>')
    out.append(f'<text x="{L + W / 2}" y="{height - 4}" text-anchor="middle" class="a">{_esc(x_label)}</text>')
    out.append(f'<text x="14" y="{T + H / 2}" text-anchor="middle" class="a" '
               f'transform="rotate(-90 14 {T + H / 2})">{_esc(y_label)}</text>')
    for i, (name, s) in enumerate(series.items()):
        good = [(x, y) for x, y in s if y is not None and math.isfinite(y)]
        if not good:
            continue
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in good)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        if len(good) <= 40:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>' for x, y in good]
        out.append(f'<text x="{L + 8}" y="{T + 16 + 14 * i}" fill="{color}" class="a">{_esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(values: dict[str, float], *, title: str, locked: Sequence[str] = (), removed: Sequence[str] = (),
              marked: Sequence[str] = (), mark: str = "", scale: str = "auto", width: int = 640) -> str:
    """Horizontal bars of ``values``, their lengths on ``scale`` ("auto": the app's choice for these values,
    :func:`slimgui.core.colors.color_scale` — log for scores over orders of magnitude, rank when one outlier would
    flatten the rest), the scale named in the title.  ``locked`` / ``removed`` units are tagged and coloured so;
    ``marked`` ones are tagged with ``mark`` (e.g. "kept FP32")."""
    from .colors import color_scale, normalized

    if not values:
        return ""
    if scale == "auto":
        scale = color_scale(values)
    norm = normalized(values, scale)
    title = title + {"log": " — bar length on a log scale", "rank": " — bar length by rank"}.get(scale, "")
    row, L = 18, 110
    span = width - L - 120
    height = 30 + row * len(values)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart">',
           f'<text x="{width / 2}" y="18" text-anchor="middle" class="t">{_esc(title)}</text>']
    for i, (uid, v) in enumerate(values.items()):
        y = 26 + i * row
        n = norm.get(uid, math.nan)
        w = 0.0 if not math.isfinite(n) else 2.0 + n * (span - 2.0)  # the least important still shows a sliver
        color = ("#a0aec0" if uid in locked else "#e53e3e" if uid in removed else "#dd6b20" if uid in marked
                 else "#2b6cb0")
        out.append(f'<text x="{L - 6}" y="{y + 12}" text-anchor="end" class="a">{_esc(uid)}</text>')
        out.append(f'<rect x="{L}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="{color}"/>')
        tag = (" (locked)" if uid in locked else " (removed)" if uid in removed
               else f" ({mark})" if uid in marked and mark else "")
        out.append(f'<text x="{L + w + 4:.1f}" y="{y + 12}" class="a">{_fmt(v)}{_esc(tag)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None,
          headers: dict[str, str] | None = None) -> str:
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{_esc((headers or {}).get(c, c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;color:#1a202c}
h1{font-size:1.6em}h2{border-bottom:1px solid #e2e8f0;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #e2e8f0;padding:3px 8px;font-size:13px;text-align:right}
th{background:#f7fafc}td:first-child{text-align:left}.chart .t{font-size:14px;font-weight:600}.chart .a{font-size:11px}
.ok{color:#2f855a}.bad{color:#c53030}code{background:#f7fafc;padding:1px 4px}"""


def render(*, title: str, model: dict[str, Any] | None = None, plan: dict[str, Any] | None = None,
           scores: dict[str, dict[str, float]] | None = None, locked: Sequence[str] = (),
           training: list[dict[str, Any]] | None = None, bench: dict[str, Any] | None = None,
           exports: list[dict[str, Any]] | None = None, evaluations: dict[str, Any] | None = None,
           healing: dict[str, Any] | None = None) -> str:
    """The page.  ``evaluations``: {side: result} (each result with its ``metrics``, see
    :func:`slimgui.core.metrics.with_metrics`); ``healing``: the same for the healing run's evaluation, with
    its ``method`` and ``file``."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>",
             f"<p>Written by SlimGUI on {time.strftime('%Y-%m-%d %H:%M')}.</p>"]
    if model:
        parts.append("<h2>Model</h2>" + table([{"": k, "value": v} for k, v in model.items()], ["", "value"]))
    if plan:
        removed = plan.get("remove", [])
        parts.append("<h2>Plan</h2>" + table([{"": k, "value": (", ".join(v) if isinstance(v, list) else v)}
                                               for k, v in plan.items() if v not in (None, [], {})], ["", "value"]))
    else:
        removed = []
    for criterion, values in (scores or {}).items():
        parts.append(f"<h2>Scores: {_esc(criterion)}</h2>")
        parts.append(bar_chart(values, title=f"{criterion} (higher = more important)", locked=locked, removed=removed))
    evaluated = evaluation_table(evaluations)
    healed = evaluation_table(healing)
    if evaluated or healed:
        parts.append("<h2>Evaluation</h2>" + evaluated)
        if healed:
            how = [f"method {_esc(healing['method'])}" if healing and healing.get("method") else "",
                   f"on {_esc(Path(str(healing['file'])).name)}" if healing and healing.get("file") else ""]
            how = [h for h in how if h]
            parts.append(f"<h3>After healing{' (' + ', '.join(how) + ')' if how else ''}</h3>" + healed)
    for run in training or []:
        parts.append(_training_section(run))
    if bench and bench.get("rows"):
        parts.append(_bench_section(bench))
    for ex in exports or []:
        parts.append(_export_section(ex))
    parts.append("</body></html>")
    return "\n".join(parts)


# -- evaluations ---------------------------------------------------------------------------
def _heading(m: Metric) -> str:
    return f"{m.title} ({m.unit})" if m.unit else m.title


def evaluation_table(results: dict[str, Any] | None) -> str:
    """A table model × metric of ``{side: result}``; for every side after the first, how each metric moved
    from the first side (in words that know which direction is better).  Entries that are not results (a
    file name, a method) are skipped."""
    sides = {str(k): v for k, v in (results or {}).items() if isinstance(v, dict)}
    if not sides:
        return ""
    found = {side: metrics_from_json(r) for side, r in sides.items()}
    metrics: dict[str, Metric] = {}
    for pairs in found.values():
        for m, _ in pairs:
            metrics.setdefault(m.name, m)
    if not metrics:
        return ""
    first = next(iter(sides))
    base = dict((m.name, v) for m, v in found[first])
    compare = len(sides) > 1
    evaluators = any(isinstance(r.get("evaluator"), str) for r in sides.values())
    head = ["model"] + (["evaluator"] if evaluators else [])
    for m in metrics.values():
        head.append(_heading(m))
        if compare:
            head.append(f"vs {first}")
    out = ["<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"]
    for side, r in sides.items():
        values = dict((m.name, v) for m, v in found[side])
        cells = [_esc(side)] + ([_esc(r.get("evaluator") or "")] if evaluators else [])
        for name, m in metrics.items():
            cells.append(_esc(m.format(values.get(name)).removesuffix(f" {m.unit}") if m.unit else
                              m.format(values.get(name))) if name in values else "")
            if compare:
                moved = change(m, base.get(name), values.get(name)) if side != first else ""
                cls = " class='ok'" if moved.endswith("(better)") else " class='bad'" if moved.endswith("(worse)") else ""
                cells.append(f"<span{cls}>{_esc(moved)}</span>" if moved else "")
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


# -- training runs -------------------------------------------------------------------------
def _items_word(run: dict[str, Any]) -> str:
    """What the run counted (the family's word): its ``items``, else the prefix of a ``*_seen`` count."""
    if isinstance(run.get("items"), str) and run["items"]:
        return run["items"]
    for k, v in run.items():
        if k.endswith("_seen") and k != "items_seen" and _is_number(v):
            return k[: -len("_seen")]
    return "items"


def _training_section(run: dict[str, Any]) -> str:
    name = run.get("name", "retraining")
    series = {"train loss": _points(run.get("history")), "validation loss": _points(run.get("val_history"))}
    items = _items_word(run)
    seen = run.get("items_seen", run.get(f"{items}_seen"))
    row: dict[str, Any] = {k: run[k] for k in ("method", "step", "train_loss") if k in run}
    row.update({k: v for k, v in run.items() if k.startswith("val_") and (_is_number(v) or v is None)})
    headers = {k: k.replace("_", " ") for k in row}
    if _is_number(seen):
        row["items_seen"], headers["items_seen"] = seen, f"{items} seen"
    if "seconds" in run:
        row["seconds"], headers["seconds"] = run["seconds"], "seconds"
    return "\n".join([f"<h2>Healing: {_esc(name)}</h2>",
                      line_chart(series, title=f"{name}: loss", x_label="step", y_label="loss"),
                      table([row], list(row), headers)])


# -- benchmark -----------------------------------------------------------------------------
_BENCH_FIXED = {"model", "runtime", "batch", "params", "file_mib", "items", "runs", "ideal_speedup",
                "speedup_over_ideal", "peak_mem_mib"}
_BENCH_HEADERS = {"file_mib": "file MiB", "ideal_speedup": "ideal speedup (parameter ratio)",
                  "speedup_over_ideal": "speedup / ideal", "peak_mem_mib": "peak memory MiB"}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def bench_runs(rows: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The runs (name, label, per) a benchmark's rows hold, in order: each row's ``runs``, or for a row from
    before runs were named, the ones its keys show (``{run}_median_ms``, ``{run}_ms_per_{per}``)."""
    runs: dict[str, dict[str, str]] = {}
    for r in rows:
        if isinstance(r.get("runs"), list):
            for x in r["runs"]:
                if isinstance(x, dict) and isinstance(x.get("name"), str):
                    got = runs.setdefault(x["name"], {"name": x["name"], "label": str(x.get("label") or x["name"]),
                                                      "per": str(x.get("per") or "")})
                    got["per"] = got["per"] or str(x.get("per") or "")
            continue
        for k in r:
            m = re.fullmatch(r"(.+?)_(?:median_ms|ms_per_(.+))", k)
            if not m or m.group(1).endswith("_p90"):
                continue
            got = runs.setdefault(m.group(1), {"name": m.group(1), "label": m.group(1), "per": ""})
            got["per"] = got["per"] or (m.group(2) or "")
    return list(runs.values())


def _run_items(rows: Sequence[dict[str, Any]], runs: Sequence[dict[str, str]]) -> list[str]:
    """The items words of the rows (``items``, or read off ``{run}_{items}_per_s`` keys of older rows)."""
    words: list[str] = []
    for r in rows:
        word = r.get("items") if isinstance(r.get("items"), str) else None
        if word is None:
            for k in r:
                for run in runs:
                    m = re.fullmatch(re.escape(run["name"]) + r"_(.+)_per_s", k)
                    if m and "ms" not in m.group(1).split("_"):
                        word = m.group(1)
        if word and word not in words:
            words.append(word)
    return words or ["items"]


def _bench_section(bench: dict[str, Any]) -> str:
    rows = [r for r in bench["rows"] if isinstance(r, dict)]
    runs = bench_runs(rows)
    words = _run_items(rows, runs)
    run_keys: list[tuple[str, str]] = []  # (key, header), per run
    for run in runs:
        n, label, per = run["name"], _cap(run["label"]), run["per"]
        run_keys += [(f"{n}_median_ms", f"{label} ms (median)"), (f"{n}_p90_ms", f"{label} ms (p90)")]
        if per:
            run_keys += [(f"{n}_ms_per_{per}", f"{label} ms/{per}"), (f"{n}_p90_ms_per_{per}", f"{label} ms/{per} (p90)")]
        run_keys += [(f"{n}_{w}_per_s", f"{label} {w}/s") for w in words]
        run_keys.append((f"{n}_speedup", f"{label} speedup"))
    taken = {k for k, _ in run_keys} | _BENCH_FIXED | {f"{w}_per_s" for w in words}
    prefixes = tuple(f"{run['name']}_" for run in runs)
    options: list[str] = []  # swept option values and anything else a row carries
    for r in rows:
        options += [k for k, v in r.items() if k not in taken and k not in options and not k.startswith(prefixes)
                    and (isinstance(v, (str, int, float, bool)) or v is None)]
    swept = [k for k in options if len({json.dumps(r.get(k), default=str) for r in rows}) > 1]
    parts = ["<h2>Benchmark</h2>"]
    for run in runs:
        n, label, per = run["name"], _cap(run["label"]), run["per"]
        key, what = (f"{n}_ms_per_{per}", f"{label} ms / {per}") if per else (f"{n}_median_ms", f"{label} ms (median)")
        series: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            if _is_number(r.get(key)) and _is_number(r.get("batch")):
                name = Path(str(r["model"])).name + "".join(f" · {k.replace('_', ' ')} {r.get(k)}" for k in swept)
                series.setdefault(name, []).append((r["batch"], r[key]))
        if series:
            parts.append(line_chart(series, title=f"{what} vs batch size", x_label="batch size", y_label=what,
                                    log_x=True))
    headers = dict(_BENCH_HEADERS, **{k: k.replace("_", " ") for k in options}, **dict(run_keys))
    cols = ["model", "runtime", "batch", *options, "params", "file_mib", *(k for k, _ in run_keys),
            "ideal_speedup", "speedup_over_ideal", "peak_mem_mib"]
    cols = [c for c in cols if c in ("model", "runtime", "batch") or any(r.get(c) is not None for r in rows)]
    parts.append(table([{**r, "model": Path(str(r.get("model"))).name,
                         # a runtime whose memory is not measured reports none: say so rather than "0"
                         **({"peak_mem_mib": "not measured"} if "peak_mem_mib" in r
                            and not (_is_number(r["peak_mem_mib"]) and r["peak_mem_mib"] > 0) else {})}
                        for r in rows], cols, headers))
    settings = []
    for k, v in bench.items():
        if k in ("threads", "repeats", "rows", "options") or (k.endswith("s") and isinstance(v, list) and k[:-1] in bench):
            continue
        listed = bench.get(k + "s")
        if isinstance(listed, list) and listed:
            settings.append(f"{k.replace('_', ' ')} {', '.join(map(str, listed))}")
        elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
            settings.append(f"{k.replace('_', ' ')} {v}")
    base = Path(str(rows[0].get("model"))).name if rows else "?"
    parts.append(f"<p>threads {_esc(bench.get('threads'))}, " + "".join(f"{_esc(s)}, " for s in settings)
                 + f"{_esc(bench.get('repeats'))} runs after warm-up; medians and p90. Speedups are relative to "
                 f"{_esc(base)}; the ideal speedup is its parameter ratio.</p>")
    return "\n".join(parts)


# -- exports -------------------------------------------------------------------------------
def _mib(n: Any) -> str:
    return f"{n / 2**20:.2f} MiB" if isinstance(n, (int, float)) else "?"


def _figure(v: Any) -> str:
    """A check figure, with the precision a check needs (0.9999993 is not "1")."""
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:.6g}"
    return _fmt(v)


# what an export record says about itself rather than a figure it measured
_EXPORT_OWN = {"format", "file", "bytes", "mode", "metrics", "notes", "layers", "native", "source", "report"}


def _export_figures(ex: dict[str, Any]) -> list[tuple[str, Any]]:
    """(heading, value) of an export's figures: its declared metrics, or (a check report from before exporters
    declared them) its numbers, those of nested objects named after them and the length of its lists."""
    if isinstance(ex.get("metrics"), list):
        return [(_heading(m), v) for m, v in metrics_from_json(ex)]
    out: list[tuple[str, Any]] = []
    for k, v in ex.items():
        if k in _EXPORT_OWN or k.startswith("_"):
            continue
        name = k.replace("_", " ")
        if _is_number(v):
            out.append((name, v))
        elif isinstance(v, dict):
            out += [(f"{name}: {kk.replace('_', ' ')}", vv) for kk, vv in v.items() if _is_number(vv)]
        elif isinstance(v, list) and all(isinstance(x, (str, int, float)) for x in v):
            out.append((f"{name} (count)", len(v)))
    return out


def _bits(precision: str) -> int:
    m = re.search(r"(\d+)$", precision)
    return int(m.group(1)) if m else -1


def _export_section(ex: dict[str, Any]) -> str:
    """One export: what was written, the notes and figures its exporter reported, its per-layer precision."""
    name = Path(str(ex.get("file", "?"))).name
    what = " ".join(str(x).upper() for x in (ex.get("format"), ex.get("mode")) if x)
    kind = str(ex["native"]) if isinstance(ex.get("native"), str) and ex["native"] else what
    out = [f"<h2>Export: {_esc(name)}{f' ({_esc(kind)})' if kind else ''}</h2>"]
    line = [_esc(ex.get("file", "?")), _mib(ex.get("bytes"))]
    if ex.get("source"):
        line.append(f"from {_esc(ex['source'])}")
    out.append(f"<p>{' · '.join(line)}</p>")
    notes = ex.get("notes")
    for note in notes if isinstance(notes, list) else [notes] if isinstance(notes, str) else []:
        out.append(f"<p>{_esc(note)}</p>")
    figures = _export_figures(ex)
    if figures:
        out.append("<table>" + "".join(f"<tr><td>{_esc(k)}</td><td>{_figure(v)}</td></tr>" for k, v in figures)
                   + "</table>")
    layers = [x for x in (ex.get("layers") or []) if isinstance(x, dict) and isinstance(x.get("layer"), str)]
    scanned = {x["layer"]: float(x["sensitivity"]) for x in layers if _is_number(x.get("sensitivity"))}
    if scanned:  # an export at one precision lists its layers without a sensitivity scan
        kinds = sorted({str(x["precision"]) for x in layers if x.get("precision")}, key=_bits)
        higher = kinds[-1] if len(kinds) > 1 else None
        out.append(bar_chart(scanned, title="per-layer sensitivity" + (f" (orange: kept {higher.upper()})" if higher else ""),
                             marked=[x["layer"] for x in layers if higher and str(x.get("precision")) == higher],
                             mark=f"kept {higher.upper()}" if higher else ""))
    return "\n".join(out)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _points(raw: Any) -> list[tuple[float, float]]:
    """(x, y) pairs of numbers from a stored history; anything else in it is skipped."""
    out = []
    for p in raw if isinstance(raw, list) else []:
        if isinstance(p, (list, tuple)) and len(p) >= 2 and _is_number(p[0]) and (_is_number(p[1]) or p[1] is None):
            out.append((float(p[0]), None if p[1] is None else float(p[1])))
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file the session points at (a check report, a training summary), or None when it is
    missing or not one (read with a size limit; never a FIFO or a device)."""
    try:
        doc = read_json_file(path, "file")
    except SlimError:
        return None
    return doc if isinstance(doc, dict) else None


def session_report(session_path: str | Path, out: str | Path, *, bench: str | Path | None = None,
                   exports: Sequence[str | Path] = ()) -> Path:
    """Write the HTML report of a ``.slim`` session (plus optional bench JSON and export check reports).

    The benchmark and the exports stored in the session are included too; ``bench`` replaces the
    session's benchmark, ``exports`` come after the session's own."""
    from .session import Session

    return write_session_report(Session.load(session_path), out, bench=bench, exports=exports)


def _session_exports(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The session's exports, the last one per file, each from its check report when it is still there."""
    runs = ((results.get("export") or {}).get("runs") or []) if isinstance(results.get("export"), dict) else []
    latest: dict[str, dict[str, Any]] = {}
    for rec in runs:
        if isinstance(rec, dict) and rec.get("file"):
            latest.pop(str(rec["file"]), None)
            latest[str(rec["file"])] = rec
    out = []
    for rec in latest.values():
        check = _read_json(Path(rec["report"])) if rec.get("report") else None
        out.append({**rec, **check} if check else rec)
    return out


def _check_export_doc(doc: dict[str, Any], where: str) -> None:
    """An export check report (``FILE.check.json`` beside the exported file): its figures numbers, its layers objects."""
    def bad(name: str, what: str, v: Any) -> SlimError:
        return SlimError(f"the check report of {where} is not valid: {name} {what}, got {repr(v)[:40]}",
                         hint="export again with `slimgui export`")

    if doc.get("bytes") is not None and not _is_number(doc["bytes"]):
        raise bad("bytes", "must be a number", doc["bytes"])
    for k in ("file", "mode", "format", "native"):
        if doc.get(k) is not None and not isinstance(doc[k], str):
            raise bad(k, "must be text", doc[k])
    notes = doc.get("notes")
    if notes is not None and not (isinstance(notes, list) and all(isinstance(x, str) for x in notes)):
        raise bad("notes", "must be a list of lines", notes)
    metrics = doc.get("metrics")
    if metrics is not None and not isinstance(metrics, list):
        raise bad("metrics", "must be a list", metrics)
    for i, m in enumerate(metrics or []):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            raise bad(f"metrics[{i}]", "must be an object naming its metric", m)
        if m.get("value") is not None and not _is_number(m["value"]):
            raise bad(f"metrics[{i}].value", "must be a number", m["value"])
    layers = doc.get("layers")
    if layers is not None and not isinstance(layers, list):
        raise bad("layers", "must be a list", layers)
    for i, x in enumerate(layers or []):
        if not isinstance(x, dict) or not isinstance(x.get("layer"), str):
            raise bad(f"layers[{i}]", "must be an object naming its layer", x)
        if x.get("sensitivity") is not None and not _is_number(x["sensitivity"]):
            raise bad(f"layers[{i}].sensitivity", "must be a number", x["sensitivity"])


def write_session_report(sess: Any, out: str | Path, *, bench: str | Path | dict[str, Any] | None = None,
                         exports: Sequence[str | Path] = ()) -> Path:
    """Write the HTML report of a :class:`~slimgui.core.session.Session` (the app's File → Export report):
    model, plan, scores, evaluations, healing curves, benchmark and export checks."""
    scores = {name: sc.values for name, sc in sess.scores.items()}
    locked = sorted({u for sc in sess.scores.values() for u in sc.locked})
    model = {"path": sess.model_path, "adapter": sess.adapter, "slimmed model": sess.slimmed_path,
             "active criterion": sess.active_criterion}
    plan = {"remove": list(sess.slimmed_remove or sess.remove), "keep-set": sess.keep}
    results = sess.results if isinstance(sess.results, dict) else {}
    training = []
    if sess.retrain.out:
        summary = _read_json(Path(sess.retrain.out) / "slimgui_train.json")
        if summary:
            training.append({"name": Path(sess.retrain.out).name, **summary})
    evaluations = results.get("evaluation") if isinstance(results.get("evaluation"), dict) else None
    healing = results.get("retrain") if isinstance(results.get("retrain"), dict) else None
    from .session import check_bench_doc

    if isinstance(bench, dict):
        bench_doc: dict[str, Any] | None = bench
    elif bench:
        doc = read_json_file(Path(bench), "benchmark file", invalid="is not a benchmark JSON file")
        bench_doc = check_bench_doc(doc, where=str(bench))
    else:
        bench_doc = results.get("bench") if isinstance(results.get("bench"), dict) else None
    checks = _session_exports(results)
    for e in exports:
        c = _read_json(Path(str(e) + ".check.json")) or (_read_json(Path(e)) if str(e).endswith(".json") else None)
        if c is None:
            raise SlimError(f"no export check report for {e}", hint="export with `slimgui export` first")
        _check_export_doc(c, str(e))
        checks = [x for x in checks if str(x.get("file")) != str(c.get("file"))] + [c]
    page = render(title=f"SlimGUI report: {Path(str(model['path'])).name}", model=model, plan=plan, scores=scores,
                  locked=locked, training=training, bench=bench_doc, exports=checks, evaluations=evaluations,
                  healing=healing)
    return atomic_write_text(out, page)
