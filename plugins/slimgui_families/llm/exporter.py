"""The language-model family's ONNX exporter as the contract sees it: :func:`export_task` (the manifest's
``ExporterSpec("onnx")``: FP32, INT8 or mixed precision, checked against torch) and :func:`bench_runner` (timing an
exported ``.onnx`` file in ``slimgui bench``), with the language-model feed :func:`onnx_forward_runner` builds.
The export itself is :mod:`slimgui_families.llm.export`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slimgui.core.bench import BenchRun, check_onnx_file, checked_session
from slimgui.core.bench import onnx_session as session
from slimgui.core.errors import SlimError
from slimgui.core.io import onnx_data_file as data_file
from slimgui.core.progress import CancelToken, ProgressFn, check

from .blocks import bench_seq
from .export import MODES, SAMPLE_TEXT_CHARS, export_onnx, export_quantized


# -- the exporter and its benchmark runner (the manifest's ExporterSpec "onnx") --------------------------
def export_task(model, out: str, *, registry: Any = None, force: bool = False, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None, mode: str = "fp32", with_past: bool = False,
                fp32_fraction: float = 0.1, keep_fp32: list[str] | None = None, sample_text: str | None = None,
                sensitivity: dict[str, float] | None = None, **_: Any) -> dict[str, Any]:
    """The ONNX exporter: ``model`` to the file ``out``, checked against torch (the options are
    :class:`~slimgui_families.llm.options.OnnxOptions`; ``sample_text``: a text file the comparison inputs are drawn
    from; ``sensitivity``: ``{layer: value}`` of an earlier scan of the same model, reused by a mixed export).

    Returns the check report (what ``slimgui export --json`` prints) with ``format``, ``mode``, ``out``,
    ``report`` (where the report was written) and, for a mixed export, ``sensitivity`` ({layer: value}) added.
    Nothing is written when a check fails."""
    from .stream import refuse_streamed

    refuse_streamed(model, "ONNX export")
    if mode not in MODES:
        raise SlimError(f"unknown precision '{mode}'", hint="choose fp32, int8 or mixed")
    if mode != "fp32" and with_past:
        raise SlimError("past key/values are available for the FP32 export only",
                        hint="export FP32 with past key/values, or INT8/mixed without")
    if not out or not str(out).strip():
        raise SlimError("choose where to write the export")
    if not str(out).lower().endswith(".onnx"):
        raise SlimError(f"{out} does not end in .onnx", hint="give the ONNX file a name ending in .onnx")
    if keep_fp32 and mode != "mixed":
        raise SlimError("--keep-fp32 chooses layers of a mixed-precision export", hint="add --mixed, or leave it out")
    if keep_fp32 and mode == "mixed":  # checked before minutes of export and scan
        # the layers a MatMul/Gemm comes from: modules with a 2-D weight (nn.Linear, GPT-2's Conv1D)
        linear = {n for n, m in model.module.named_modules()
                  if getattr(getattr(m, "weight", None), "ndim", 0) == 2 and type(m).__name__ != "Embedding"}
        unknown = [str(x).strip() for x in keep_fp32 if str(x).strip() and str(x).strip() not in linear
                   and not str(x).strip().startswith("/")]  # "/…/MatMul": an ONNX node name of an earlier report
        if unknown:
            example = next(iter(sorted(linear)), "")
            raise SlimError(f"--keep-fp32: the model has no linear layer named {', '.join(unknown[:3])}",
                            hint=f"layer names are module names such as {example}" if example else
                            "see the sensitivity report for the layer names")
    path = Path(out)
    for existing in (path, data_file(path)):  # a large export keeps its weights in NAME.onnx.data
        if existing.exists() and not force:
            raise SlimError(f"{existing} already exists", hint="choose another file name or pass --force")
    text = None
    if sample_text:
        from slimgui.core.data import read_text_file

        text = read_text_file(sample_text, "sample text file")[:SAMPLE_TEXT_CHARS]
    check(cancel)
    if mode == "fp32":
        result = dict(export_onnx(model, str(out), with_past=with_past, sample_text=text, progress=progress,
                                  cancel=cancel))
    else:
        options: dict[str, Any] = {}
        if mode == "mixed":
            options["fp32_fraction"] = float(fp32_fraction)
            if keep_fp32 is not None:
                options["keep_fp32"] = [str(x).strip() for x in keep_fp32 if str(x).strip()]
            if sensitivity:
                options["sensitivity"] = dict(sensitivity)  # reuse an earlier scan of the same model
        result = dict(export_quantized(model, str(out), mode=mode, sample_text=text, progress=progress,
                                       cancel=cancel, **options))
    result.update({"format": "onnx", "mode": mode, "out": str(out), "report": str(out) + ".check.json",
                   "source": model.source})
    if mode == "mixed":
        result["sensitivity"] = {x["layer"]: x.get("sensitivity") for x in result.get("layers", [])}
    return result


def bench_runner(path: str, batch: int, options: Any, mode: str, *, threads: int | None = None,
                 state: dict[str, Any] | None = None) -> BenchRun | None:
    """One forward pass of an exported ``.onnx`` file in onnxruntime over batch × ``options.seq`` tokens
    (:class:`~slimgui_families.llm.options.BenchOptions`); no decode (None).  The file is checked and its session opened
    once per path, kept in ``state`` across rows."""
    from .options import BenchOptions

    if mode != "forward":
        return None
    seq = bench_seq(options if options is not None else BenchOptions())
    sess = checked_session(path, threads, state)
    fn = onnx_forward_runner(path, batch, seq, threads, sess=sess)
    return BenchRun("prefill", fn, items=batch * seq, label="prefill")


def onnx_forward_runner(path: str | Path, batch: int, seq: int, threads: int | None = None,
                        vocab: int = 100, sess: Any = None) -> Callable[[], Any]:
    """A callable running one forward pass of an exported LM (input_ids/attention_mask) at batch×seq.

    ``sess``: an onnxruntime session of ``path`` already checked and opened, reused across shapes."""

    if sess is None:
        check_onnx_file(path)
        sess = session(path, threads)
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


def int8_advice(options: dict[str, Any]) -> str | None:
    """The exporter's advice before an INT8 or mixed export (``ExporterSpec.advice``): which INT8 kernel this CPU
    runs and whether INT8 is faster than FP32 here, measured on a 1024×1024 MatMul on one thread."""
    from slimgui.core import int8

    kernel = int8.kernel()
    warning = int8.speed_warning()
    if warning:
        return f"⚠ {warning}"
    speed = int8.matmul_speedup()
    sums = {"exact": "exact 32-bit sums", "u8s8-pair-saturation": "16-bit pair sums that can saturate"}.get(
        kernel.arithmetic, "arithmetic not recognised: sensitivities measured in onnxruntime")
    return (f"INT8 here: {kernel.instruction_set} ({sums}); a 1024×1024 MatMul runs {speed['speedup']:.1f}× "
            f"faster in INT8 than in FP32 on one thread")
