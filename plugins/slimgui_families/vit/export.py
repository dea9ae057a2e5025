"""The ViT family's ONNX exporter (the manifest's ``ExporterSpec("onnx")``, files ``*.vit.onnx``) and the benchmark
runner ``slimgui bench`` times those files with.

The graph takes ``pixel_values`` (batch × channels × height × width, the batch dynamic) and gives ``logits`` (a
backbone without classifier: ``last_hidden_state``).  It is traced into a private folder beside the output, checked
with the ONNX checker, run in onnxruntime and compared with torch on check images (the demo's held-out digits for a
digit classifier, else seeded random images): the FP32 graph must reach a cosine of at least 0.999 with torch's
outputs (a NaN or Inf anywhere never passes), or the export is refused and nothing is written.  INT8 is onnxruntime's
dynamic quantisation of every weight MatMul/Gemm (weights INT8 per tensor, activations quantised on the fly) of the
checked FP32 graph; its cosine, max abs difference and top-1 agreement with torch are reported (refused only when its
outputs are not finite).  Only then is the file moved into place, with its check report ``NAME.check.json``.
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
from torch import nn

from slimgui.core.bench import BenchRun, check_onnx_file, checked_session
from slimgui.core.bench import onnx_session as session
from slimgui.core.errors import SlimError
from slimgui.core.io import atomic_write_text, onnx_data_file
from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .data import digits_are_labels, digits_for, preprocess_of
from .modeling import _pair

OPSET = 17
MODES = ("fp32", "int8")
SUFFIX = ".vit.onnx"
PARITY_MIN_COSINE = 0.999  # below this (or NaN) the FP32 export is refused
EXTERNAL_DATA_BYTES = 1 << 30  # weights at least this large go to one sidecar, NAME.onnx.data


class _Output(nn.Module):
    """pixel_values -> logits (or last_hidden_state for a backbone)."""

    def __init__(self, model: nn.Module, key: str):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, pixel_values):
        return getattr(self.model(pixel_values=pixel_values), self.key)


def comparison_images(model, count: int) -> tuple[torch.Tensor, str]:
    """(images, what they are) an export is compared on: the demo's held-out digits for a digit classifier (as
    many as there are), else seeded random images in the model's input shape."""
    pre = preprocess_of(model)
    if digits_are_labels(model.config):
        x, _ = digits_for(pre, "test")
        return x[:count].contiguous(), "held-out digits"
    h, w = _pair(model.config.image_size)
    x = torch.randn(count, model.config.num_channels, h, w, generator=torch.Generator().manual_seed(0))
    return x, "seeded random images"


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def compare(got: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Cosine, max abs difference, relative squared error and (logits) top-1 agreement of two outputs."""
    finite = bool(np.isfinite(got).all())
    out = {"cosine": _cosine(got, ref), "max_abs_diff": float(np.abs(got - ref).max()) if finite else float("nan"),
           "output_rel_error": float(((got - ref) ** 2).mean() / ((ref ** 2).mean() + 1e-30)) if finite else float("nan"),
           "finite": finite}
    if got.ndim == 2:
        out["agreement"] = float((got.argmax(-1) == ref.argmax(-1)).mean())
    return out


def _run(path: Path, x: torch.Tensor, batch: int = 32) -> np.ndarray:
    sess = session(path)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: xb.numpy()})[0] for xb in x.split(batch)])


def _writable(out: Path, force: bool) -> None:
    if not str(out).lower().endswith(SUFFIX):
        raise SlimError(f"{out} does not end in {SUFFIX}", hint=f"give the file a name ending in {SUFFIX}")
    if out.is_dir():
        raise SlimError(f"{out} is a folder", hint=f"give a file name ending in {SUFFIX}")
    for existing in (out, onnx_data_file(out)):
        if existing.exists() and not force:
            raise SlimError(f"{existing} already exists", hint="choose another file name or pass --force")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SlimError(f"cannot create {out.parent}: {exc.strerror or exc}", hint="choose a writable --out") from None
    if not os.access(out.parent, os.W_OK):
        raise SlimError(f"cannot write into {out.parent}", hint="choose a writable --out")


def _one_data_file(path: Path) -> None:
    """A graph whose weights torch wrote as loose files (a model over 2 GiB) gets them in one NAME.onnx.data."""
    loose = [f for f in path.parent.iterdir() if f != path]
    if not loose:
        return
    import onnx

    proto = onnx.load(str(path), load_external_data=True)
    for f in loose:
        f.unlink()
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=onnx_data_file(path).name, size_threshold=1024)


def _quantize(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's quantiser logs advice through the root logger
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         use_external_data_format=onnx_data_file(src).is_file(),
                         extra_options={"MatMulConstBOnly": True})
    except Exception as exc:
        raise SlimError(f"INT8 quantisation failed: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}",
                        hint="export FP32 instead") from None
    finally:
        root.setLevel(level)


def _bytes(path: Path) -> int:
    data = onnx_data_file(path)
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def notes_of(result: dict[str, Any]) -> list[str]:
    """What the check found, in lines the app and the report show."""
    fp = result["fp32_parity"]
    lines = [f"{'✔' if fp['cosine'] >= PARITY_MIN_COSINE else '✘'} ONNX checker passed; onnxruntime FP32 matches torch "
             f"on {result['images']} {result['check_data']} (cosine {fp['cosine']:.6f}, max abs diff "
             f"{fp['max_abs_diff']:.3g}" + (f", top-1 agreement {fp['agreement']:.1%}" if "agreement" in fp else "") + ")"]
    if result["mode"] == "int8":
        lines.append(f"INT8 (dynamic) vs torch: cosine {result['cosine']:.6f}, max abs diff {result['max_abs_diff']:.3g}"
                     + (f", top-1 agreement {result['agreement']:.1%}" if "agreement" in result else "")
                     + f"; {result['bytes'] / max(1, result['fp32_bytes']):.0%} of the FP32 file's size")
    return lines


def export_onnx(model, out: str, *, registry: Any = None, force: bool = False, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None, mode: str = "fp32", check_images: int = 32,
                **_: Any) -> dict[str, Any]:
    """Export ``model`` to the ONNX file ``out`` (``*.vit.onnx``) in ``mode`` "fp32" or "int8", checked against torch
    on ``check_images`` images (module docstring); returns the check report (also written to ``out.check.json``)
    with ``notes``.  Nothing is written when a check fails."""
    if mode not in MODES:
        raise SlimError(f"unknown precision '{mode}'", hint="choose fp32 or int8")
    if not model.has_weights:
        raise SlimError(f"{model.source} has no weights to export", hint="open a folder with weights")
    if not out or not str(out).strip():
        raise SlimError("choose where to write the export")
    path = Path(out).expanduser()
    _writable(path, force)
    module = model.module.eval()
    key = "logits" if module.classifier is not None else "last_hidden_state"
    x, data_kind = comparison_images(model, int(check_images))
    t0 = time.perf_counter()
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        fp32 = stage / "fp32" / path.name
        fp32.parent.mkdir()
        report(progress, 0, 4, "tracing the model")
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(_Output(module, key), (x[:2],), str(fp32), input_names=["pixel_values"],
                                  output_names=[key], dynamic_axes={"pixel_values": {0: "batch"}, key: {0: "batch"}},
                                  opset_version=OPSET, dynamo=False, do_constant_folding=True)
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise SlimError(f"the model cannot be traced for ONNX: {type(exc).__name__}: {msg}",
                            hint="export the native folder instead (--format hf)") from None
        _one_data_file(fp32)
        check(cancel)
        report(progress, 1, 4, "ONNX checker")
        check_onnx_file(fp32)
        report(progress, 2, 4, "comparing with torch")
        with torch.no_grad():
            ref = torch.cat([getattr(module(pixel_values=xb), key) for xb in x.split(32)]).numpy()
        fp = compare(_run(fp32, x), ref)
        if not fp["finite"] or not np.isfinite(ref).all() or not fp["cosine"] >= PARITY_MIN_COSINE:
            raise SlimError(f"the ONNX export does not match torch (cosine {fp['cosine']:.4f}, max abs diff "
                            f"{fp['max_abs_diff']:.3g}{'; the outputs are not finite' if not fp['finite'] else ''}); "
                            "nothing was written", hint="export the native folder instead (--format hf)")
        result: dict[str, Any] = {"format": "onnx", "mode": mode, "opset": OPSET, "output": key,
                                  "images": int(x.shape[0]), "check_data": data_kind, "fp32_parity": fp,
                                  "min_cosine": PARITY_MIN_COSINE, "fp32_bytes": _bytes(fp32), "source": model.source}
        final = fp32
        if mode == "int8":
            check(cancel)
            report(progress, 3, 4, "INT8 quantisation")
            final = stage / path.name
            _quantize(fp32, final)
            check_onnx_file(final)
            q = compare(_run(final, x), ref)
            if not q["finite"]:
                raise SlimError("the INT8 export gives outputs that are not finite; nothing was written",
                                hint="export FP32 instead")
            result.update(q)
        else:
            result.update(fp)
        check(cancel)
        data = onnx_data_file(final)
        if data.is_file():
            os.replace(data, onnx_data_file(path))
        os.replace(final, path)
        if not data.is_file():
            onnx_data_file(path).unlink(missing_ok=True)  # a stale sidecar of an earlier, larger export
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result.update({"file": str(path), "bytes": _bytes(path), "external_data": onnx_data_file(path).is_file(),
                   "report": str(path) + ".check.json", "seconds": round(time.perf_counter() - t0, 2)})
    result["notes"] = notes_of(result)
    safe = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
    atomic_write_text(result["report"], json.dumps(safe, indent=1))
    report(progress, 4, 4, "exported")
    return result


def bench_runner(path: str, batch: int, options: Any, mode: str, *, threads: int | None = None,
                 state: dict[str, Any] | None = None) -> BenchRun | None:
    """One forward pass of an exported ``*.vit.onnx`` file in onnxruntime on a batch of seeded random images (the
    file's own channels and size); no decode (None).  The session is opened once per file, kept in ``state``."""
    if mode != "forward":
        return None
    sess = checked_session(path, threads, state)
    inp = sess.get_inputs()[0]
    dims = list(inp.shape[1:])
    if inp.name != "pixel_values" or len(dims) != 3 or not all(isinstance(d, int) and d > 0 for d in dims):
        raise SlimError(f"{Path(path).name} is not a ViT export (input {inp.name} {inp.shape})",
                        hint="benchmark a file written by `slimgui export --format onnx` of a ViT")
    x = np.random.default_rng(0).standard_normal((batch, *dims), dtype=np.float32)
    return BenchRun("forward", lambda: sess.run(None, {inp.name: x}), items=batch, label="forward pass")
