"""The wav2lip family's ONNX exporter (``*.w2l.onnx``) and the benchmark runner that times those files.

The graph takes ``mel`` (batch × 1 × 80 × 16) and ``face`` (batch × 6 × 96 × 96, the masked frame and the reference in
[0, 1]) and gives ``frame`` (batch × 3 × 96 × 96); the batch is dynamic.  It is traced into a private folder beside
the output, checked with the ONNX checker, run in onnxruntime and compared with torch on check frames (the demo's
held-out frames for a demo generator, else seeded random inputs): FP32 must match (max abs diff ≤ 1e-3) or nothing
is written.  Precisions:

- ``int8``: onnxruntime's dynamic INT8 quantisation of every ``Conv`` (ConvTranspose stays FP32: onnxruntime has no
  dynamic INT8 kernel for it);
- ``mixed`` (the unified compression's selective quantisation): each Conv quantised *alone* and the output's mean
  |error| to FP32 measured on the check frames (one onnxruntime run per layer) — the per-layer INT8 sensitivity; the
  ``keep_float`` most sensitive convs stay in float (FP32 here: onnxruntime's CPU provider has no FP16 convs; the
  paper keeps them FP16 on GPUs), the rest INT8.  ``keep_layers`` names the float convs by hand instead (the layer
  table's flips).  The report (``NAME.check.json``) lists every conv's sensitivity and precision.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
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
SUFFIX = ".w2l.onnx"
PARITY_MAX_ABS = 1e-3


def check_inputs(model, count: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    from .preview import is_demo

    if is_demo(model):
        from .data import DEMO, clips_for, frame_batches

        b = frame_batches(clips_for(DEMO, split="test"), samples=count, batch=count)[0]
        return b["mel"], b["face"], "held-out demo frames"
    g = torch.Generator().manual_seed(0)
    s = model.config.image_size
    face = torch.rand(count, 6, s, s, generator=g)
    face[:, :3, s // 2:] = 0
    return torch.randn(count, 1, 80, 16, generator=g).clamp(-4, 4), face, "seeded random inputs"


def compare(got: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    finite = bool(np.isfinite(got).all())
    a, b = got.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    mse = float(((a - b) ** 2).mean()) if finite else float("nan")
    return {"max_abs_diff": float(np.abs(a - b).max()) if finite else float("nan"),
            "mean_abs_diff": float(np.abs(a - b).mean()) if finite else float("nan"),
            "psnr_to_torch": float(10 * math.log10(1.0 / max(mse, 1e-20))) if finite else float("nan"),
            "finite": finite}


def _run(path: Path, mel: torch.Tensor, face: torch.Tensor, batch: int = 16) -> np.ndarray:
    sess = session(path)
    return np.concatenate([sess.run(None, {"mel": m.numpy(), "face": f.numpy()})[0]
                           for m, f in zip(mel.split(batch), face.split(batch))])


def conv_nodes(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "Conv"]


def quantize(src: Path, dst: Path, *, include: list[str] | None = None, exclude: list[str] | None = None) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                         nodes_to_quantize=include or None, nodes_to_exclude=exclude or None)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SlimError(f"INT8 quantisation failed: {msg}", hint="export FP32 instead") from None
    finally:
        root.setLevel(level)


def layer_name(node: str) -> str:
    """The state-dict prefix of an exported conv node (``face_decoder_blocks.3.0``, ``output_block.1``)."""
    parts = [p for p in node.strip("/").split("/") if p]
    blocks = [p for p in parts if re.match(r"^(face_encoder_blocks|face_decoder_blocks)\.\d+\.\d+$|"
                                           r"^(audio_encoder|output_block)\.\d+$", p)]
    return blocks[-1] if blocks else node


def unit_of(node: str) -> str | None:
    """The graph unit of an exported conv node (``dec.3.0``, ``audio.4``, ``out.1``)."""
    name = layer_name(node)
    m = re.match(r"^face_(encoder|decoder)_blocks\.(\d+)\.(\d+)$", name)
    if m:
        return f"{'face' if m.group(1) == 'encoder' else 'dec'}.{m.group(2)}.{m.group(3)}"
    m = re.match(r"^(audio_encoder|output_block)\.(\d+)$", name)
    if m:
        return f"{'audio' if m.group(1) == 'audio_encoder' else 'out'}.{m.group(2)}"
    return None


def scan_sensitivity(fp32: Path, mel, face, ref: np.ndarray, stage: Path, *, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> dict[str, float]:
    """{conv node: mean |output error| with only that conv INT8} (module docstring)."""
    out = {}
    nodes = conv_nodes(fp32)
    for i, name in enumerate(nodes):
        check(cancel)
        q = stage / f"scan-{i}.onnx"
        quantize(fp32, q, include=[name])
        out[name] = compare(_run(q, mel, face), ref)["mean_abs_diff"]
        q.unlink(missing_ok=True)
        report(progress, i + 1, len(nodes), f"INT8 sensitivity of {name}")
    return out


def export_onnx(model, out: str, *, registry: Any = None, force: bool = False, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None, w2l_mode: str = "fp32", keep_float: int = 4,
                keep_layers: list[str] | str | None = None, check_frames: int = 16,
                sensitivity: dict[str, float] | None = None, **_: Any) -> dict[str, Any]:
    """Export the generator to ``out`` (module docstring); ``sensitivity``: an earlier scan of the same export (the
    app's *Export again* with the layers ticked), reused instead of scanning again."""
    mode = w2l_mode
    if mode not in ("fp32", "int8", "mixed"):
        raise SlimError(f"unknown precision '{mode}'", hint="choose fp32, int8 or mixed")
    if not model.has_weights:
        raise SlimError(f"{model.source} has no weights to export")
    path = Path(str(out or "")).expanduser()
    if not str(out or "").strip() or not str(path).lower().endswith(SUFFIX):
        raise SlimError(f"{out} does not end in {SUFFIX}", hint=f"give the file a name ending in {SUFFIX}")
    if path.exists() and not force:
        raise SlimError(f"{path} already exists", hint="choose another file name or pass --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module.eval()
    mel, face, kind = check_inputs(model, int(check_frames))
    t0 = time.perf_counter()
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        fp32 = stage / "fp32.onnx"
        report(progress, 0, 4, "tracing the generator")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (mel[:1], face[:1]), str(fp32), input_names=["mel", "face"],
                              output_names=["frame"], dynamic_axes={"mel": {0: "batch"}, "face": {0: "batch"},
                                                                    "frame": {0: "batch"}},
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
        check(cancel)
        check_onnx_file(fp32)
        with torch.no_grad():
            ref = torch.cat([module(m, f) for m, f in zip(mel.split(16), face.split(16))]).numpy()
        fp = compare(_run(fp32, mel, face), ref)
        if not fp["finite"] or not fp["max_abs_diff"] <= PARITY_MAX_ABS:
            raise SlimError(f"the ONNX export does not match torch (max abs diff {fp['max_abs_diff']:.3g}); nothing "
                            "was written")
        result: dict[str, Any] = {"format": "onnx", "mode": mode, "opset": OPSET, "frames": int(len(mel)),
                                  "check_data": kind, "fp32_parity": fp, "fp32_bytes": fp32.stat().st_size,
                                  "source": model.source, "int8_layers": 0}
        final = fp32
        convs = conv_nodes(fp32)
        if mode in ("int8", "mixed"):
            keep: list[str] = []
            sens = None
            if mode == "mixed":
                names = {layer_name(n): n for n in convs}
                if sensitivity:
                    sens = {names[k]: float(v) for k, v in sensitivity.items() if k in names}
                if keep_layers is not None:
                    given = keep_layers if isinstance(keep_layers, list) else str(keep_layers).split(",")
                    wanted = [s.strip() for s in given if s.strip()]
                    unknown = [k for k in wanted if k not in names and k not in convs]
                    if unknown:
                        raise SlimError(f"--keep-layers names {unknown[0]}, which is not a conv of this export",
                                        hint=f"convs: {', '.join(list(names)[:6])} …")
                    keep = [names.get(k, k) for k in wanted]
                else:
                    if sens is None:
                        report(progress, 2, 4, "per-layer INT8 sensitivity")
                        sens = scan_sensitivity(fp32, mel, face, ref, stage, progress=progress, cancel=cancel)
                    keep = sorted(sens, key=sens.get, reverse=True)[:int(keep_float)]
            report(progress, 3, 4, "INT8 quantisation")
            final = stage / "q.onnx"
            quantize(fp32, final, exclude=keep)
            check_onnx_file(final)
            q = compare(_run(final, mel, face), ref)
            if not q["finite"]:
                raise SlimError("the INT8 export gives outputs that are not finite; nothing was written")
            result.update(q)
            result["float_layers"] = [layer_name(n) for n in keep]
            result["int8_layers"] = len(convs) - len(keep)
            rows = []
            for n in convs:
                row = {"layer": layer_name(n), "node": n, "unit": unit_of(n), "precision": "fp32" if n in keep else "int8"}
                if sens is not None and n in sens:
                    row["sensitivity"] = sens[n]
                rows.append(row)
            result["layers"] = rows
        else:
            result.update(fp)
        os.replace(final, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result.update({"file": str(path), "bytes": path.stat().st_size, "report": str(path) + ".check.json",
                   "seconds": round(time.perf_counter() - t0, 2), "convs": len(convs)})
    result["notes"] = [f"onnxruntime FP32 matches torch on {result['frames']} {kind} (max abs diff "
                       f"{fp['max_abs_diff']:.3g})"]
    if mode != "fp32":
        result["notes"].append(f"{mode}: {result['int8_layers']} of {len(convs)} convs INT8, PSNR to torch "
                               f"{result['psnr_to_torch']:.1f} dB; float convs kept FP32 (this CPU provider has no "
                               "FP16 convs)")
    safe = json.loads(json.dumps(result, default=str).replace("NaN", "null"))
    atomic_write_text(result["report"], json.dumps(safe, indent=1))
    report(progress, 4, 4, "exported")
    return result


def bench_runner(path: str, batch: int, options: Any, mode: str, *, threads: int | None = None,
                 state: dict[str, Any] | None = None) -> BenchRun | None:
    """One forward pass of an exported ``*.w2l.onnx`` on seeded random frames."""
    if mode != "forward":
        return None
    sess = checked_session(path, threads, state)
    names = [i.name for i in sess.get_inputs()]
    if names != ["mel", "face"]:
        raise SlimError(f"{Path(path).name} is not a Wav2Lip generator export (inputs {names})",
                        hint="benchmark a file written by `slimgui export --format wav2lip-onnx`")
    size = sess.get_inputs()[1].shape[-1]
    size = size if isinstance(size, int) else 96
    rng = np.random.default_rng(0)
    feed = {"mel": rng.standard_normal((batch, 1, 80, 16), dtype=np.float32),
            "face": rng.random((batch, 6, size, size), dtype=np.float32)}
    return BenchRun("forward", lambda: sess.run(None, feed), items=batch, label="frames")
