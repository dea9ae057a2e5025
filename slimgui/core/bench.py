"""Honest latency measurement: warm-up, repeated runs, median and p90, peak memory, fixed thread count.

Peak memory (``peak_mem_mib``) is each model's own: the bytes its weights hold (a model's parameters and
buffers, an exported file's weights) plus the most the process's resident memory grows during one run,
measured from a clean start (freed memory handed back to the system first, the high-water mark reset), so a
model benchmarked after another does not inherit its allocations and one already warmed up is not read as 0.

Family-independent: a family supplies what one run is — its adapter's ``bench_runner(model, batch, options,
mode)`` (capability "bench"), and for exported files the runner of the exporter that wrote them — as a
:class:`BenchRun` (or a bare callable, counted as one item per sample).  The rows' keys come from the runs'
names and the family's ``items`` word: ``{run}_median_ms``, ``{run}_p90_ms``, ``{run}_{items}_per_s``,
``{run}_ms_per_{per}``, ``{run}_speedup``, and ``{items}_per_s`` for the first run.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SlimError
from .io import onnx_total_bytes


def _vm_hwm_kib() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
        return True
    except OSError:
        return False


def _vm_rss_kib() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim() -> None:
    """Hand freed heap memory back to the system (glibc), so the next run's growth shows in the RSS."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_peak_mib(fn: Callable[[], Any]) -> float | None:
    """The most the process's resident memory grows during one call of ``fn``, in MiB (None where it cannot be
    read): freed memory is handed back first and the high-water mark reset, so earlier runs do not hide it."""
    import gc
    import threading

    if threading.current_thread() is threading.main_thread():  # never on a worker: see the app's garbage collector
        gc.collect()
    _trim()
    base = _vm_rss_kib()
    if not _reset_peak() or base is None:
        fn()
        return None
    fn()
    peak = _vm_hwm_kib()
    return round(max(0, peak - base) / 1024, 1) if peak else None


def measure(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 7, min_seconds: float = 0.0,
            resident_bytes: int | None = None) -> dict[str, Any]:
    """Median/p90/min latency of ``fn`` and its peak memory: ``run_mem_mib``, what one run adds (measured on the
    first warm-up call, see :func:`run_peak_mib`), and ``peak_mem_mib``, that plus ``resident_bytes`` (the
    model's own weights; None: the run's share alone)."""
    run_mib = run_peak_mib(fn) if warmup > 0 else None
    for _ in range(warmup - 1):
        fn()
    times: list[float] = []
    t_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - t_all < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    times.sort()
    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    peak = None
    if run_mib is not None:
        peak = round(run_mib + (resident_bytes or 0) / 2**20, 1)
    return {"median_s": statistics.median(times), "p90_s": p90, "min_s": times[0], "runs": len(times),
            "run_mem_mib": run_mib, "peak_mem_mib": peak}


def resident_bytes(item: Any) -> int | None:
    """The bytes a benchmarked model's weights hold: a loaded model's parameters and buffers (shared storage
    once), an exported file's size (its weights, sidecar included)."""
    if isinstance(item, (str, Path)):
        try:
            return onnx_total_bytes(item) if str(item).lower().endswith(".onnx") else Path(item).stat().st_size
        except OSError:
            return None
    module = getattr(item, "module", None)
    if module is None:
        return None
    seen: dict[int, int] = {}
    for t in [*module.parameters(), *module.buffers()]:
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):  # meta tensors hold nothing
            continue
    return sum(seen.values())


def torch_threads(threads: int | None) -> int:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def check_onnx_file(path: str | Path) -> None:
    """The ONNX checker (full check, with shape inference); a failure is a user-facing error."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise SlimError(f"{path} does not exist")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SlimError(f"{path.name} fails the ONNX checker: {msg}", hint="re-export the model") from None


def onnx_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise SlimError(f"onnxruntime cannot load {Path(path).name}: {str(exc).strip().splitlines()[0][:200]}") from None


def checked_session(path: str | Path, threads: int | None = None, state: dict[str, Any] | None = None):
    """An onnxruntime session of ``path``, the file checked first (:func:`check_onnx_file`); kept in ``state``
    (a family's ``bench_runner`` state, one per file across rows) so the check and the load happen once."""
    state = state if state is not None else {}
    sess = state.get("session")
    if sess is None:
        check_onnx_file(path)
        sess = onnx_session(path, threads)
        state["session"] = sess
    return sess


@dataclass
class BenchRun:
    """One thing a benchmark times: ``fn`` processes ``items`` items per call (a batch of sequences:
    batch × length tokens; a batch of latents: batch images).  ``per``/``per_count``: also report the time per
    ``per`` ("token": a decode of ``per_count`` new tokens).  ``repeats``: share of the benchmark's repeats."""

    name: str
    fn: Callable[[], Any]
    items: int
    label: str = ""
    per: str = ""
    per_count: int = 1
    repeats: float = 1.0


def _accepted(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    from .ops import _accepted as accepted

    return accepted(fn, kwargs)


def _as_run(run: Any, mode: str, batch: int) -> BenchRun | None:
    if run is None or isinstance(run, BenchRun):
        return run
    if callable(run):
        return BenchRun(mode, run, batch)
    raise SlimError(f"a bench runner returned {type(run).__name__}, not a BenchRun or a callable")


def exported_file_spec(item: Any, registry: Any) -> Any:
    """The exporter whose files ``item`` is — a path ending in the suffix of an exporter that declares a benchmark
    runner, the longest such suffix winning (``.cnn.onnx`` before ``.onnx``) — or None: a model to open."""
    if not isinstance(item, (str, Path)):
        return None
    name = str(item).lower()
    found = [s for s in registry.exporter_specs(None) if s.runner and s.suffix and name.endswith(s.suffix.lower())]
    return max(found, key=lambda s: len(s.suffix)) if found else None


def _sweeps(schema: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the swept options' values (fields with Opt(sweep=True) holding a list)."""
    from .options import fields_of

    combos: list[dict[str, Any]] = [dict(values)]
    for f in fields_of(schema):
        if f.opt.sweep and isinstance(values.get(f.name), list):
            combos = [{**c, f.name: v} for c in combos for v in values[f.name]]
    return combos


def _load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):  # not on every platform
        return None


def machine_load(threads: int, *, before: float | None = None, now: float | None = None,
                 cores: int | None = None) -> dict[str, Any]:
    """How busy the machine was around a measurement: the 1-minute load average before and after, the cores, and
    ``busy`` when other work competed with it — a load (less the benchmark's own threads) above half the cores
    that are left — with a ``warning`` saying the figures are marked.  On a shared machine timings vary; ratios
    measured side by side in one run hold up better than absolute numbers."""
    cores = cores or os.cpu_count() or 1
    now = _load_average() if now is None else now
    loads = [x for x in (before, now) if x is not None]
    out: dict[str, Any] = {"cores": cores, "load_before": before, "load_after": now, "busy": False}
    if not loads:
        return out
    others = max(loads) - min(threads, cores)
    if others > max(0.5, 0.5 * (cores - min(threads, cores))):
        out["busy"] = True
        out["warning"] = (f"the machine was busy while measuring (load average {max(loads):.1f} on {cores} cores, "
                          f"{threads} used by the benchmark): the timings are marked as measured on a busy machine; "
                          "compare ratios from this run, not absolute times")
    return out


def benchmark(entries: list[tuple[str, Any]], *, batches: list[int], registry: Any = None,
              options: dict[str, Any] | None = None, threads: int | None = 2, repeats: int = 5, progress=None,
              cancel=None) -> dict[str, Any]:
    """Latency/throughput of each ``(label, model or exported file)`` at each batch size (and each value of a
    swept option), side by side.  Speedups are relative to the first entry, the ideal speedup being its
    parameter ratio.  ``options``: the bench options by name (the family's ``bench_options`` schema)."""
    from . import options as opts
    from .plugins import discover
    from .progress import check, report

    registry = registry or discover()
    used = torch_threads(threads)
    load_before = _load_average()
    prepared = []
    for label, item in entries:
        if isinstance(item, (str, Path)):
            spec = exported_file_spec(item, registry)
            if spec is None:
                raise SlimError(f"no installed exporter can benchmark {Path(str(item)).name}")
            family = next((f for f in spec.families if f != "*"), None)
            fam = registry.family_spec(family) if family else None
            schema = registry.options(fam, "bench_options") if fam else None
            runner = registry.target(spec, spec.runner, "runner")
            state = {"path": str(item), "threads": threads}
            more = _accepted(runner, {"threads": threads, "state": state})
            prepared.append((label, item, None, fam, schema, lambda b, o, m, state=state, runner=runner, more=more:
                             runner(state["path"], b, o, m, **more)))
        else:
            fam = registry.spec_of(item)
            if not fam.can("bench"):
                raise SlimError(f"the {item.family} family does not declare a benchmark",
                                hint="its plugin has no bench_runner")
            schema = registry.options(fam, "bench_options")
            params = sum(p.numel() for p in item.module.parameters())
            adapter = item.impl if item.impl is not None else registry.adapter(item.adapter)
            prepared.append((label, item, params, fam, schema,
                             lambda b, o, m, item=item, adapter=adapter: adapter.bench_runner(item, b, o, m)))
    values = dict(options or {})
    first_schema = next((p[4] for p in prepared if p[4] is not None), None)
    combos = _sweeps(first_schema, opts.to_dict(opts.from_dict(first_schema, values)) if first_schema else values)
    rows: list[dict[str, Any]] = []
    total = len(prepared) * len(batches) * len(combos)
    done = 0
    for label, item, params, fam, schema, run_of in prepared:
        unit = fam.items if fam is not None else "samples"
        weights = resident_bytes(item)
        is_file = isinstance(item, (str, Path))
        modes = ["forward"] + (["decode"] if fam is not None and fam.can("decode") and (
            is_file or (item.impl or registry.adapter(item.adapter)).can_decode(item)) else [])
        for combo in combos:
            inst = opts.from_dict(schema, combo) if schema is not None else None
            for b in batches:
                check(cancel)
                row: dict[str, Any] = {"model": label, "runtime": "onnxruntime" if is_file else "torch", "batch": b,
                                       **{k: v for k, v in combo.items() if not isinstance(v, list)},
                                       "params": params, "items": unit, "runs": []}
                if is_file:
                    row["file_mib"] = round(onnx_total_bytes(item) / 2**20, 2) \
                        if str(item).lower().endswith(".onnx") else round(Path(item).stat().st_size / 2**20, 2)
                for mode in modes:
                    run = _as_run(run_of(b, inst, mode), mode, b)
                    if run is None:
                        continue
                    m = measure(run.fn, repeats=max(3, round(repeats * run.repeats)) if run.repeats < 1 else repeats,
                                resident_bytes=weights)
                    first = not row["runs"]
                    row["runs"].append({"name": run.name, "label": run.label or run.name, "per": run.per})
                    row[f"{run.name}_median_ms"] = m["median_s"] * 1e3
                    row[f"{run.name}_p90_ms"] = m["p90_s"] * 1e3
                    row[f"{run.name}_{unit}_per_s"] = run.items / m["median_s"]
                    if run.per:
                        row[f"{run.name}_ms_per_{run.per}"] = m["median_s"] * 1e3 / run.per_count
                        row[f"{run.name}_p90_ms_per_{run.per}"] = m["p90_s"] * 1e3 / run.per_count
                    row[f"{run.name}_peak_mem_mib"] = m["peak_mem_mib"]
                    if first:
                        row[f"{unit}_per_s"] = run.items / m["median_s"]
                        row["weights_mib"] = round(weights / 2**20, 2) if weights is not None else None
                    peaks = [v for v in (row.get("peak_mem_mib"), m["peak_mem_mib"]) if v is not None]
                    row["peak_mem_mib"] = max(peaks) if peaks else None  # the most any of its runs needs
                rows.append(row)
                done += 1
                report(progress, done, total, f"{label} batch {b}")
    key_fields = [k for k in (combos[0] if combos else {}) if not isinstance(combos[0][k], list)]

    def key(r: dict[str, Any]) -> tuple:
        return (r["batch"], *[r.get(k) for k in key_fields])

    base = {key(r): r for r in rows if r["model"] == prepared[0][0]} if prepared else {}
    for r in rows:
        ref = base.get(key(r))
        if ref is None or r is ref:
            continue
        last = None
        for run in r["runs"]:
            name = run["name"]
            timed = f"{name}_ms_per_{run['per']}" if run["per"] else f"{name}_median_ms"
            if timed in ref and r.get(timed):
                r[f"{name}_speedup"] = ref[timed] / r[timed]
                last = f"{name}_speedup"
        if r["params"] and ref["params"] and last:
            r["ideal_speedup"] = ref["params"] / r["params"]
            r["speedup_over_ideal"] = r[last] / r["ideal_speedup"]
    out: dict[str, Any] = {"threads": used, "repeats": repeats, "rows": rows, "options": values}
    load = machine_load(used, before=load_before)
    out["machine_load"] = load
    if load.get("busy"):
        out.setdefault("warnings", []).append(load["warning"])
    for k, v in (opts.to_dict(opts.from_dict(first_schema, values)) if first_schema else values).items():
        out[k] = v[0] if isinstance(v, list) and v else v
        if isinstance(v, list):
            out[k + "s"] = v
    return out
