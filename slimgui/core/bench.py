"""Honest latency measurement: warm-up, repeated runs, median and p90, peak memory, fixed thread count.

Family-independent; a family supplies what one run is (a forward pass, a generation).  ONNX files are
run here directly with onnxruntime.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
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


def measure(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 7, min_seconds: float = 0.0) -> dict[str, Any]:
    """Median/p90/min latency of ``fn`` and the peak memory it added (process RSS high-water mark)."""
    for _ in range(warmup):
        fn()
    base = _vm_rss_kib()
    can_reset = _reset_peak()
    times: list[float] = []
    t_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - t_all < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    peak = _vm_hwm_kib()
    times.sort()
    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    return {"median_s": statistics.median(times), "p90_s": p90, "min_s": times[0], "runs": len(times),
            "peak_mem_mib": round((peak - base) / 1024, 1) if can_reset and peak and base else None}


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


def onnx_forward_runner(path: str | Path, batch: int, seq: int, threads: int | None = None,
                        vocab: int = 100, sess: Any = None) -> Callable[[], Any]:
    """A callable running one forward pass of an exported LM (input_ids/attention_mask) at batch×seq.

    ``sess``: an onnxruntime session of ``path`` already checked and opened, reused across shapes."""
    import numpy as np

    if sess is None:
        check_onnx_file(path)
        sess = onnx_session(path, threads)
    names = [i.name for i in sess.get_inputs()]
    if "input_ids" not in names:
        raise SlimError(f"{Path(path).name} has no input_ids input", hint="bench expects a language-model ONNX export")
    rng = np.random.default_rng(0)
    feed: dict[str, Any] = {"input_ids": rng.integers(0, vocab, (batch, seq), dtype=np.int64)}
    if "attention_mask" in names:
        feed["attention_mask"] = np.ones((batch, seq), dtype=np.int64)
    extra = [n for n in names if n not in feed]
    if extra:
        # past key/values: start from an empty cache
        for inp in sess.get_inputs():
            if inp.name in extra:
                shape = [batch if i == 0 else (0 if i == 2 else d) for i, d in enumerate(inp.shape)]
                if any(not isinstance(d, int) for d in shape):
                    raise SlimError(f"cannot make an input for {inp.name} of shape {inp.shape}")
                feed[inp.name] = np.zeros(shape, dtype=np.float32)
    return lambda: sess.run(None, feed)


def benchmark(entries: list[tuple[str, Any]], *, batches: list[int], seq: int | list[int] = 128, new_tokens: int = 16,
              threads: int | None = 2, repeats: int = 5, decode: bool = True, progress=None,
              cancel=None) -> dict[str, Any]:
    """Latency/throughput of each ``(label, model or .onnx path)`` at each batch size and length, side by side.

    Torch models need an adapter with ``bench_runner(model, batch, seq, mode, new_tokens)``; ``.onnx``
    files are run with onnxruntime (forward pass only).  Speedups are relative to the first entry,
    with the ideal speedup being its parameter ratio.
    """
    from .progress import check, report

    used = torch_threads(threads)
    seqs = [seq] if isinstance(seq, int) else list(seq)
    rows: list[dict[str, Any]] = []
    total = len(entries) * len(batches) * len(seqs)
    done = 0
    for label, item in entries:
        is_onnx = isinstance(item, (str, Path)) and str(item).endswith(".onnx")
        params, sess = None, None
        if is_onnx:  # checked and opened once; a multi-GiB file is not re-read for every shape
            check_onnx_file(item)
            sess = onnx_session(item, threads)
        else:
            params = sum(p.numel() for p in item.module.parameters())
            if not hasattr(item.impl, "bench_runner"):
                raise SlimError(f"the {item.family} family cannot be benchmarked yet")
        for length, b in [(n, bb) for n in seqs for bb in batches]:
            check(cancel)
            row: dict[str, Any] = {"model": label, "runtime": "onnxruntime" if is_onnx else "torch", "batch": b,
                                   "seq": length, "params": params}
            if is_onnx:
                row["file_mib"] = round(onnx_total_bytes(item) / 2**20, 2)  # the weight sidecar too
                fwd = measure(onnx_forward_runner(item, b, length, threads, sess=sess), repeats=repeats)
            else:
                fwd = measure(item.impl.bench_runner(item, b, length, "prefill", new_tokens), repeats=repeats)
            items = "tokens" if is_onnx else getattr(item.impl, "bench_items", "tokens")
            row.update(prefill_median_ms=fwd["median_s"] * 1e3, prefill_p90_ms=fwd["p90_s"] * 1e3,
                       peak_mem_mib=fwd["peak_mem_mib"], items=items)
            if items == "tokens":
                row["prefill_tokens_per_s"] = b * length / fwd["median_s"]
            else:  # one forward pass of a diffusion U-Net over a batch of latents
                row[f"{items}_per_s"] = b / fwd["median_s"]
            if decode and not is_onnx and getattr(item.impl, "can_decode", lambda m: True)(item):
                dec = measure(item.impl.bench_runner(item, b, length, "decode", new_tokens), repeats=max(3, repeats // 2))
                row.update(decode_ms_per_token=dec["median_s"] * 1e3 / new_tokens,
                           decode_p90_ms_per_token=dec["p90_s"] * 1e3 / new_tokens,
                           decode_tokens_per_s=b * new_tokens / dec["median_s"])
            rows.append(row)
            done += 1
            report(progress, done, total, f"{label} batch {b}" + (f", {length} tokens" if len(seqs) > 1 else ""))
    base = {(r["batch"], r["seq"]): r for r in rows if r["model"] == entries[0][0]}
    for r in rows:
        ref = base.get((r["batch"], r["seq"]))
        if ref is None or r is ref:
            continue
        r["prefill_speedup"] = ref["prefill_median_ms"] / r["prefill_median_ms"]
        if "decode_ms_per_token" in r and "decode_ms_per_token" in ref:
            r["decode_speedup"] = ref["decode_ms_per_token"] / r["decode_ms_per_token"]
        if r["params"] and ref["params"]:
            r["ideal_speedup"] = ref["params"] / r["params"]
            key = "decode_speedup" if "decode_speedup" in r else "prefill_speedup"
            r["speedup_over_ideal"] = r[key] / r["ideal_speedup"]
    return {"threads": used, "seq": seqs[0], "seqs": seqs, "new_tokens": new_tokens, "repeats": repeats, "rows": rows}
