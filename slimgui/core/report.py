"""A self-contained HTML report of a session: model, plan, scores, healing curves, benchmark, export checks.

Charts are inline SVG drawn from the numbers (no plotting library, no network): the file opens in
any browser and can be mailed as one attachment.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import SlimError
from .io import atomic_write_text, read_json_file

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
              width: int = 640) -> str:
    if not values:
        return ""
    finite = [v for v in values.values() if math.isfinite(v)]
    hi, lo = (max(finite), min(min(finite), 0.0)) if finite else (1.0, 0.0)
    row, L = 18, 110
    height = 30 + row * len(values)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart">',
           f'<text x="{width / 2}" y="18" text-anchor="middle" class="t">{_esc(title)}</text>']
    for i, (uid, v) in enumerate(values.items()):
        y = 26 + i * row
        w = 0 if not math.isfinite(v) or hi == lo else (v - lo) / (hi - lo) * (width - L - 90)
        color = "#a0aec0" if uid in locked else "#e53e3e" if uid in removed else "#2b6cb0"
        out.append(f'<text x="{L - 6}" y="{y + 12}" text-anchor="end" class="a">{_esc(uid)}</text>')
        out.append(f'<rect x="{L}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="{color}"/>')
        tag = " (locked)" if uid in locked else " (removed)" if uid in removed else ""
        out.append(f'<text x="{L + w + 4:.1f}" y="{y + 12}" class="a">{_fmt(v)}{tag}</text>')
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


BENCH_HEADERS = {"prefill_median_ms": "prefill ms (median)", "prefill_p90_ms": "prefill ms (p90)",
                 "prefill_tokens_per_s": "prefill tokens/s", "decode_ms_per_token": "decode ms/token",
                 "decode_tokens_per_s": "decode tokens/s", "prefill_speedup": "prefill speedup",
                 "decode_speedup": "decode speedup", "ideal_speedup": "ideal speedup (parameter ratio)",
                 "peak_mem_mib": "peak memory MiB"}


def _cos(v: Any) -> str:
    return f"{v:.6f}" if isinstance(v, (int, float)) else "?"


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;color:#1a202c}
h1{font-size:1.6em}h2{border-bottom:1px solid #e2e8f0;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #e2e8f0;padding:3px 8px;font-size:13px;text-align:right}
th{background:#f7fafc}td:first-child{text-align:left}.chart .t{font-size:14px;font-weight:600}.chart .a{font-size:11px}
.ok{color:#2f855a}.bad{color:#c53030}code{background:#f7fafc;padding:1px 4px}"""


def render(*, title: str, model: dict[str, Any] | None = None, plan: dict[str, Any] | None = None,
           scores: dict[str, dict[str, float]] | None = None, locked: Sequence[str] = (),
           training: list[dict[str, Any]] | None = None, bench: dict[str, Any] | None = None,
           exports: list[dict[str, Any]] | None = None, evaluations: dict[str, Any] | None = None) -> str:
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
    if evaluations:
        parts.append("<h2>Evaluation</h2>" + table([{"model": k, **v} if isinstance(v, dict) else {"model": k, "value": v}
                                                    for k, v in evaluations.items()]))
    for run in training or []:
        name = run.get("name", "retraining")
        series = {"train loss": _points(run.get("history")), "validation loss": _points(run.get("val_history"))}
        parts.append(f"<h2>Healing: {_esc(name)}</h2>")
        parts.append(line_chart(series, title=f"{name}: loss", x_label="step", y_label="loss"))
        parts.append(table([{k: run[k] for k in ("method", "step", "val_ppl", "tokens_seen", "seconds") if k in run}]))
    if bench and bench.get("rows"):
        parts.append("<h2>Benchmark</h2>")
        rows = bench["rows"]
        seqs = bench.get("seqs") or [bench.get("seq")]
        for metric, label in (("decode_ms_per_token", "decode ms / token"), ("prefill_median_ms", "prefill ms")):
            series: dict[str, list[tuple[float, float]]] = {}
            for r in rows:
                if _is_number(r.get(metric)) and _is_number(r.get("batch")):
                    name = Path(str(r["model"])).name + (f" · {r.get('seq')} tokens" if len(seqs) > 1 else "")
                    series.setdefault(name, []).append((r["batch"], r[metric]))
            if series:
                parts.append(line_chart(series, title=f"{label} vs batch size", x_label="batch size", y_label=label,
                                        log_x=True))
        cols = ["model", "runtime", "batch", "seq", "params", "prefill_median_ms", "prefill_p90_ms", "prefill_tokens_per_s",
                "decode_ms_per_token", "decode_tokens_per_s", "prefill_speedup", "decode_speedup", "ideal_speedup",
                "peak_mem_mib"]
        parts.append(table([{**r, "model": Path(str(r["model"])).name} for r in rows], cols, BENCH_HEADERS))
        base = Path(str(rows[0]["model"])).name
        parts.append(f"<p>threads {bench.get('threads')}, sequence {', '.join(map(str, seqs))}, "
                     + (f"{bench.get('new_tokens')} new tokens per decode, " if bench.get("new_tokens") else "")
                     + f"{bench.get('repeats')} runs after warm-up; medians and p90. Speedups are relative to "
                     f"{_esc(base)}; the ideal speedup is its parameter ratio.</p>")
    for ex in exports or []:
        parts.append(_export_section(ex))
    parts.append("</body></html>")
    return "\n".join(parts)


def _mib(n: Any) -> str:
    return f"{n / 2**20:.2f} MiB" if isinstance(n, (int, float)) else "?"


def _export_section(ex: dict[str, Any]) -> str:
    """One export: what was written and how it compares (ONNX: with torch; INT8/mixed: with FP32)."""
    name = Path(str(ex.get("file", "?"))).name
    mode = str(ex.get("mode") or "fp32")
    if ex.get("format") == "hf":
        return (f"<h2>Export: {_esc(name)} (transformers folder)</h2><p>{_esc(ex.get('file'))} · {_mib(ex.get('bytes'))}"
                f" · from {_esc(ex.get('source', '?'))}; loads back with <code>from_pretrained</code>.</p>")
    out = [f"<h2>Export: {_esc(name)} (ONNX {_esc(mode.upper())})</h2>"]
    quant = mode in ("int8", "mixed")
    base = ex.get("fp32_parity") if quant and isinstance(ex.get("fp32_parity"), dict) else ex
    cos = base.get("cosine")
    ok = isinstance(cos, (int, float)) and cos >= 0.999
    what = "FP32 graph" if base is not ex else "onnxruntime"
    out.append(f"<p class='{'ok' if ok or (quant and base is ex) else 'bad'}'>ONNX checker passed; {what} vs torch: "
               f"cosine {_cos(cos)}, max abs diff {_fmt(base.get('max_abs_diff'))}</p>")
    inc = ex.get("incremental")
    if isinstance(inc, dict):
        out.append(f"<p>With past key/values: token-by-token decoding vs torch over {_fmt(inc.get('tokens'))} tokens: "
                   f"cosine {_cos(inc.get('cosine'))}, max abs diff {_fmt(inc.get('max_abs_diff'))}</p>")
    row: dict[str, Any] = {"file": _esc(ex.get("file", "?")), "size": _mib(ex.get("bytes"))}
    if quant:
        if base is not ex:
            row.update({f"{mode} vs FP32 cosine": _cos(ex.get("cosine")), "max abs diff": ex.get("max_abs_diff")})
        row.update({"size ratio": ex.get("size_ratio"), "relative output error": ex.get("output_rel_error"),
                    "FP32 layers": len(ex["fp32_layers"]) if isinstance(ex.get("fp32_layers"), list) else None})
    out.append(table([{k: v for k, v in row.items() if v is not None}]))
    layers = [x for x in (ex.get("layers") or []) if isinstance(x, dict) and isinstance(x.get("layer"), str)]
    scanned = {x["layer"]: float(x["sensitivity"]) for x in layers if _is_number(x.get("sensitivity"))}
    if scanned:  # a plain INT8 export lists its layers without a sensitivity scan
        out.append(bar_chart(scanned, title="per-layer INT8 sensitivity (red: kept FP32)",
                             removed=[x["layer"] for x in layers if x.get("precision") == "fp32"]))
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
    """Write the HTML report of a ``.slim`` session (plus optional bench JSON and ONNX check reports).

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
    """An export check report (``NAME.onnx.check.json``): its figures numbers, its layers objects."""
    def bad(name: str, what: str, v: Any) -> SlimError:
        return SlimError(f"the check report of {where} is not valid: {name} {what}, got {repr(v)[:40]}",
                         hint="export again with `slimgui export`")

    for k in ("cosine", "max_abs_diff", "bytes", "size_ratio", "output_rel_error"):
        if doc.get(k) is not None and not _is_number(doc[k]):
            raise bad(k, "must be a number", doc[k])
    for k in ("file", "mode", "format"):
        if doc.get(k) is not None and not isinstance(doc[k], str):
            raise bad(k, "must be text", doc[k])
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
    evaluations: dict[str, Any] = {}
    ppl = results.get("perplexity")
    healing = results.get("retrain") if isinstance(results.get("retrain"), dict) else {}
    for source, suffix in ((ppl, ""), (healing, " (after healing)" if ppl else "")):
        file = Path(str(source.get("file"))).name if isinstance(source, dict) and source.get("file") else None
        for k, v in (source or {}).items():
            if isinstance(v, dict) and "perplexity" in v:
                evaluations[f"{k}{suffix}"] = {"perplexity": v.get("perplexity"), "tokens": v.get("tokens", ""),
                                               "file": file or ""}
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
                  locked=locked, training=training, bench=bench_doc, exports=checks, evaluations=evaluations or None)
    return atomic_write_text(out, page)
