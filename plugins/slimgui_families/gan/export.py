"""The gan family's ONNX exporter (``*.gan.onnx``) and the benchmark runner ``slimgui bench`` times those files with.

The graph takes ``input`` (batch × channels × size × size, the batch dynamic) and gives ``output`` (the translated
image in [-1, 1]).  It is traced into a private folder beside the output, checked with the ONNX checker, run in
onnxruntime and compared with torch on check images (the demo's held-out edge maps for a demo generator, else seeded
random images): the FP32 graph must reach a cosine of at least 0.999 with torch's outputs, or nothing is written.
INT8 is onnxruntime's dynamic quantisation of the convolutions (``ConvInteger``; its ConvTranspose layers stay FP32:
onnxruntime has no dynamic INT8 kernel for them); its cosine, max abs difference and PSNR to torch's output are
reported.  The check report is written beside the file as ``NAME.check.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimgui.core.bench import BenchRun, check_onnx_file, checked_session
from slimgui.core.bench import onnx_session as session
from slimgui.core.errors import SlimError
from slimgui.core.io import atomic_write_text
from slimgui.core.progress import CancelToken, ProgressFn, check, report

OPSET = 17
SUFFIX = ".gan.onnx"
PARITY_MIN_COSINE = 0.999


def check_inputs(model, count: int) -> tuple[torch.Tensor, str]:
    cfg = model.config
    path = model.impl.default_data(model) if model.impl is not None else None
    if path:
        from .data import load_pairs

        x, _ = load_pairs(path, cfg, limit=count)
        return x, "held-out demo inputs"
    return torch.randn(count, cfg.input_nc, cfg.image_size, cfg.image_size,
                       generator=torch.Generator().manual_seed(0)).clamp(-1, 1), "seeded random images"


def compare(got: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    finite = bool(np.isfinite(got).all())
    a, b = got.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)) if finite else float("nan")
    mse = float(((a - b) ** 2).mean()) if finite else float("nan")
    return {"cosine": cos, "max_abs_diff": float(np.abs(a - b).max()) if finite else float("nan"),
            "psnr_to_torch": float(10 * math.log10(4.0 / max(mse, 1e-20))) if finite else float("nan"),
            "finite": finite}


def _run(path: Path, x: torch.Tensor, batch: int = 16) -> np.ndarray:
    sess = session(path)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: xb.numpy()})[0] for xb in x.split(batch)])


def _quantize(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    except Exception as exc:
        raise SlimError(f"INT8 quantisation failed: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}",
                        hint="export FP32 instead") from None
    finally:
        root.setLevel(level)


def export_onnx(model, out: str, *, registry: Any = None, force: bool = False, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None, onnx_mode: str = "fp32", check_images: int = 8,
                **_: Any) -> dict[str, Any]:
    """Export the generator to ``out`` (``*.gan.onnx``), FP32 or INT8, checked against torch (module docstring)."""
    mode = onnx_mode
    if mode not in ("fp32", "int8"):
        raise SlimError(f"unknown precision '{mode}'", hint="choose fp32 or int8")
    if not model.has_weights:
        raise SlimError(f"{model.source} has no weights to export")
    path = Path(str(out or "")).expanduser()
    if not str(out or "").strip() or not str(path).lower().endswith(SUFFIX):
        raise SlimError(f"{out} does not end in {SUFFIX}", hint=f"give the file a name ending in {SUFFIX}")
    if path.exists() and not force:
        raise SlimError(f"{path} already exists", hint="choose another file name or pass --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module.eval()
    x, kind = check_inputs(model, int(check_images))
    t0 = time.perf_counter()
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        fp32 = stage / "fp32.onnx"
        report(progress, 0, 4, "tracing the generator")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x[:1],), str(fp32), input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False, do_constant_folding=True)
        check(cancel)
        report(progress, 1, 4, "ONNX checker")
        check_onnx_file(fp32)
        with torch.no_grad():
            ref = torch.cat([module(xb) for xb in x.split(16)]).numpy()
        report(progress, 2, 4, "comparing with torch")
        fp = compare(_run(fp32, x), ref)
        if not fp["finite"] or not fp["cosine"] >= PARITY_MIN_COSINE:
            raise SlimError(f"the ONNX export does not match torch (cosine {fp['cosine']:.4f}); nothing was written")
        result: dict[str, Any] = {"format": "onnx", "mode": mode, "opset": OPSET, "images": int(len(x)),
                                  "check_data": kind, "fp32_parity": fp, "fp32_bytes": fp32.stat().st_size,
                                  "min_cosine": PARITY_MIN_COSINE, "source": model.source}
        final = fp32
        if mode == "int8":
            report(progress, 3, 4, "INT8 quantisation")
            final = stage / "int8.onnx"
            _quantize(fp32, final)
            check_onnx_file(final)
            q = compare(_run(final, x), ref)
            if not q["finite"]:
                raise SlimError("the INT8 export gives outputs that are not finite; nothing was written")
            result.update(q)
        else:
            result.update(fp)
        os.replace(final, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result.update({"file": str(path), "bytes": path.stat().st_size, "report": str(path) + ".check.json",
                   "seconds": round(time.perf_counter() - t0, 2)})
    result["notes"] = [f"✔ onnxruntime FP32 matches torch on {result['images']} {kind} (cosine "
                       f"{fp['cosine']:.6f}, max abs diff {fp['max_abs_diff']:.3g})"]
    if mode == "int8":
        result["notes"].append(f"INT8 (dynamic, Conv only) vs torch: cosine {result['cosine']:.5f}, PSNR "
                               f"{result['psnr_to_torch']:.1f} dB; {result['bytes'] / max(1, result['fp32_bytes']):.0%}"
                               " of the FP32 file's size")
    safe = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
    atomic_write_text(result["report"], json.dumps(safe, indent=1))
    report(progress, 4, 4, "exported")
    return result


def bench_runner(path: str, batch: int, options: Any, mode: str, *, threads: int | None = None,
                 state: dict[str, Any] | None = None) -> BenchRun | None:
    """One forward pass of an exported ``*.gan.onnx`` on a batch of seeded random images of the file's shape."""
    if mode != "forward":
        return None
    sess = checked_session(path, threads, state)
    inp = sess.get_inputs()[0]
    dims = list(inp.shape[1:])
    if inp.name != "input" or len(dims) != 3 or not all(isinstance(d, int) and d > 0 for d in dims):
        raise SlimError(f"{Path(path).name} is not a generator export (input {inp.name} {inp.shape})",
                        hint="benchmark a file written by `slimgui export --format gan-onnx`")
    x = np.random.default_rng(0).standard_normal((batch, *dims), dtype=np.float32)
    return BenchRun("forward", lambda: sess.run(None, {inp.name: x}), items=batch, label="forward pass")
