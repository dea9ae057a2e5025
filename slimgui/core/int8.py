"""onnxruntime's dynamic INT8 arithmetic, reproduced in torch, and what this machine's kernel does.

``quantize_dynamic`` (QInt8 weights, the default SlimGUI uses) turns ``y = x @ W.T`` into:

* activations: ``DynamicQuantizeLinear`` — uint8, one scale and zero point per tensor, computed from
  the tensor's own range (widened to include 0), round half to even;
* weights: int8, symmetric in [-127, 127], one scale per tensor, zero point 0;
* ``MatMulInteger`` over the raw uint8 × int8 values, the activation zero point subtracted exactly
  afterwards (``zp · Σ_k w``), then the product of the two scales.

How the integer products are summed depends on the CPU.  With VNNI (AVX-512 VNNI, AVX-VNNI) or AMX
each u8×s8 product is added straight into 32 bits: the sum is exact.  Without VNNI (AVX2, AVX-512
without VNNI) onnxruntime's MLAS kernels use ``vpmaddubsw``, which adds each pair of neighbouring
products (k = 2j, 2j+1) into a *signed 16-bit* lane with saturation before widening: a pair sum outside
[-32768, 32767] is clipped.  This was verified against onnxruntime 1.32 run under QEMU as a Haswell CPU
(AVX2, no VNNI) on crafted inputs, including an odd K (padded with a zero) and a non-zero activation
zero point; ``tests/test_int8.py`` keeps checking it.  onnxruntime's ``reduce_range`` option (7-bit
weights, which avoids the clipping) is off by default and SlimGUI does not turn it on.

:func:`kernel` finds out which of the two this machine's onnxruntime does, by running a crafted
quantised MatMul whose pair sums overflow 16 bits; a result that matches neither is ``"unknown"``, and
then callers measure in onnxruntime itself instead of emulating.
"""

from __future__ import annotations

import functools
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

EXACT = "exact"
SATURATING = "u8s8-pair-saturation"
UNKNOWN = "unknown"

_PAIR_MIN, _PAIR_MAX = -32768, 32767
# elements of one (rows × outputs × pairs) block when pair sums are formed explicitly
_CHUNK_ELEMENTS = 1 << 24


# -- the arithmetic ---------------------------------------------------------------------------------
def quantize_activation(x):
    """DynamicQuantizeLinear: (uint8 values as float64, scale, zero point), as onnxruntime computes them."""
    import torch

    x32 = x.detach().to(torch.float32)
    lo = torch.clamp(x32.amin(), max=0.0)
    hi = torch.clamp(x32.amax(), min=0.0)
    scale = (hi - lo) / 255.0
    if float(scale) == 0.0:
        return None, 0.0, 0.0
    zero = torch.clamp(torch.round(-lo / scale), 0, 255)
    q = torch.clamp(torch.round(x32 / scale) + zero, 0, 255)
    return q.to(torch.float64), float(scale), float(zero)


def quantize_weight(w):
    """QInt8 symmetric weights: (int8 values as float64, scale); one scale per tensor."""
    import torch

    w32 = w.detach().to(torch.float32)
    scale = w32.abs().amax() / 127.0
    if float(scale) == 0.0:
        return torch.zeros_like(w32, dtype=torch.float64), 0.0
    q = torch.clamp(torch.round(w32 / scale), -127, 127)
    return q.to(torch.float64), float(scale)


def _pair_sums(xq, wq):
    """Σ_j clip16(x[2j]·w[2j] + x[2j+1]·w[2j+1]) for rows of ``xq`` (M, K) and rows of ``wq`` (N, K).

    The exact product plus a correction for the pairs that leave 16 bits.  A pair (output n, pair j) can
    only do so when ``max_m x[m,2j]·|w[n,2j]| + max_m x[m,2j+1]·|w[n,2j+1]|`` exceeds 32767: with
    per-tensor weight scales that takes two large weights side by side, so the candidates are few and
    only they are formed, for every row."""
    import torch

    m, k = xq.shape
    if k % 2:  # MLAS pads K with zeros
        xq = torch.nn.functional.pad(xq, (0, 1))
        wq = torch.nn.functional.pad(wq, (0, 1))
    exact = xq @ wq.T
    xi, wi = xq.to(torch.int32), wq.to(torch.int32)
    xe, xo, we, wo = xi[:, 0::2], xi[:, 1::2], wi[:, 0::2], wi[:, 1::2]
    bound = xe.amax(0) * we.abs() + xo.amax(0) * wo.abs()  # (N, pairs)
    outs, pairs = torch.nonzero(bound > _PAIR_MAX, as_tuple=True)
    if outs.numel() == 0:
        return exact
    correction = torch.zeros(m, wq.shape[0], dtype=torch.float64)
    step = max(1, _CHUNK_ELEMENTS // max(1, m))
    for start in range(0, outs.numel(), step):
        n, j = outs[start:start + step], pairs[start:start + step]
        s = xe[:, j] * we[n, j] + xo[:, j] * wo[n, j]  # (M, candidates)
        correction.index_add_(1, n, (s.clamp(_PAIR_MIN, _PAIR_MAX) - s).to(torch.float64))
    return exact + correction


def int8_linear(x, weight, bias=None, *, arithmetic: str = EXACT):
    """``nn.functional.linear`` as onnxruntime's dynamic INT8 MatMul computes it (float32 result).

    ``arithmetic``: :data:`EXACT` (VNNI/AMX kernels) or :data:`SATURATING` (AVX2 ``vpmaddubsw``)."""
    import torch

    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    xq, sx, zx = quantize_activation(x2)
    wq, sw = quantize_weight(weight)
    if xq is None or sw == 0.0:
        acc = torch.zeros(x2.shape[0], weight.shape[0], dtype=torch.float64)
        out = acc
    else:
        acc = _pair_sums(xq, wq) if arithmetic == SATURATING else xq @ wq.T
        out = (acc - zx * wq.sum(1)) * (sx * sw)
    out = out.to(torch.float32)
    if bias is not None:
        out = out + bias.detach().to(torch.float32)
    return out.reshape(*shape[:-1], weight.shape[0]).to(x.dtype)


# -- what this machine does -------------------------------------------------------------------------
def cpu_flags() -> set[str]:
    """The CPU's feature flags as the OS lists them (Linux ``/proc/cpuinfo``); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return set(value.split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def instruction_set(flags: set[str] | None = None, machine: str | None = None) -> str:
    """The widest INT8 dot-product instructions the CPU lists: the name figures are reported with."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64"):
        if "i8mm" in flags:
            return "NEON I8MM"
        return "NEON dot" if "asimddp" in flags else "NEON"
    if "amx_int8" in flags:
        return "AMX"
    if "avx512_vnni" in flags:
        return "AVX-512 VNNI"
    if "avx_vnni" in flags:
        return "AVX-VNNI"
    if "avx512bw" in flags:
        return "AVX-512 (no VNNI)"
    if "avx2" in flags:
        return "AVX2"
    return "unknown" if not flags else "SSE"


@dataclass(frozen=True)
class Int8Kernel:
    """How this machine's onnxruntime computes dynamic-INT8 MatMuls, found out by running one."""

    instruction_set: str  # as the CPU lists it: "AVX-512 VNNI", "AVX2", ...
    arithmetic: str  # EXACT, SATURATING or UNKNOWN: what the probe measured
    cpu: str
    onnxruntime: str
    probe_error: dict[str, float]  # max relative difference of onnxruntime's result to each model

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def emulable(self) -> bool:
        return self.arithmetic in (EXACT, SATURATING)


def _probe_model(k: int, n: int, weight):
    """A float MatMul ``X[?, k] @ W[k, n]`` as an ONNX model."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])], "int8_probe",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _quantized_pair(k: int, n: int, weight, work: Path) -> tuple[Path, Path]:
    """(fp32 path, int8 path) of the probe MatMul, quantised exactly as SlimGUI's export quantises."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32, int8 = work / "probe.onnx", work / "probe.int8.onnx"
    onnx.save(_probe_model(k, n, weight), str(fp32))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)
    return fp32, int8


def probe_inputs():
    """Crafted (x, w) whose neighbouring u8×s8 products overflow 16 bits: odd K, non-zero zero point."""
    import numpy as np

    rng = np.random.default_rng(7)
    k, n, m = 67, 12, 6
    w = np.clip(rng.normal(size=(k, n)) * 0.3, -0.95, 0.95).astype(np.float32)
    w[:, : n // 2] = np.sign(w[:, : n // 2]) * 0.9  # pairs of large weights of one sign...
    w[0, 0] = 1.0
    x = rng.uniform(-0.25, 1.0, (m, k)).astype(np.float32)
    x[0] = 1.0  # ...met by large activations
    return x, w


def classify(got, x, w) -> tuple[str, dict[str, float]]:
    """Which arithmetic reproduces onnxruntime's output ``got`` for the probe inputs ``x @ w``."""
    import numpy as np
    import torch

    xt, wt = torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(w.T))
    errors = {}
    for name in (EXACT, SATURATING):
        ref = int8_linear(xt, wt, arithmetic=name).numpy()
        errors[name] = float(np.abs(got - ref).max() / (np.abs(ref).max() + 1e-30))
    best = min(errors, key=errors.get)
    # one quantisation step of a 67-long dot product is ~1e-4 of the output's range: 1e-3 leaves room for
    # float rounding but not for a different kernel (the two models differ by > 5e-2 on these inputs)
    return (best if errors[best] < 1e-3 else UNKNOWN), errors


@functools.lru_cache(maxsize=1)
def kernel() -> Int8Kernel:
    """Run the crafted probe in this machine's onnxruntime once per process and say what it computes."""
    import onnxruntime as ort

    x, w = probe_inputs()
    try:
        with tempfile.TemporaryDirectory(prefix="slimgui-int8-probe-") as tmp:
            _, int8 = _quantized_pair(x.shape[1], w.shape[1], w, Path(tmp))
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(int8), opts, providers=["CPUExecutionProvider"])
            got = sess.run(None, {"X": x})[0]
        arithmetic, errors = classify(got, x, w)
    except Exception:  # a broken onnxruntime is reported where it is used; here: measure, don't emulate
        arithmetic, errors = UNKNOWN, {}
    return Int8Kernel(instruction_set(), arithmetic, cpu_name(), ort.__version__, errors)


@functools.lru_cache(maxsize=1)
def matmul_speedup(rounds: int = 7) -> dict[str, float]:
    """INT8 / FP32 speed of one 1024×1024 MatMul over 64 rows in onnxruntime, one thread, interleaved.

    A cheap, honest hint (about a quarter of a second) for whether INT8 pays off on this CPU before a
    user exports for speed; ``make bench`` measures the real model."""
    import numpy as np
    import onnxruntime as ort

    k = n = 1024
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(k, n)) * 0.05).astype(np.float32)
    x = rng.normal(size=(64, k)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="slimgui-int8-speed-") as tmp:
        fp32, int8 = _quantized_pair(k, n, w, Path(tmp))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        sessions = [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in (fp32, int8)]
    times: list[list[float]] = [[], []]
    for s in sessions:
        s.run(None, {"X": x})
    for _ in range(rounds):
        for i, s in enumerate(sessions):
            t0 = time.perf_counter()
            for _ in range(3):
                s.run(None, {"X": x})
            times[i].append(time.perf_counter() - t0)
    fp32_s, int8_s = (sorted(t)[len(t) // 2] / 3 for t in times)
    return {"fp32_ms": fp32_s * 1e3, "int8_ms": int8_s * 1e3, "speedup": fp32_s / int8_s}


def speed_warning(threshold: float = 1.0) -> str | None:
    """A sentence for the user when INT8 is measured slower than FP32 here; None when it is faster."""
    try:
        speed = matmul_speedup()
    except Exception:
        return None
    if speed["speedup"] >= threshold:
        return None
    return (f"INT8 is slower than FP32 on this CPU ({kernel().instruction_set}): a 1024×1024 MatMul took "
            f"{speed['int8_ms']:.2f} ms in INT8 vs {speed['fp32_ms']:.2f} ms in FP32 "
            f"({speed['speedup']:.2f}×); export INT8 for size, not for speed, or benchmark the model first")
