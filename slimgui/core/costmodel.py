"""The roofline cost model: a device's peak compute and memory bandwidth, measured or read from a versioned JSON
device profile, and the attainable throughput of a layer of a given arithmetic intensity.

A :class:`DeviceProfile` says what a machine can do: ``peak_flops`` (FLOP/s) and ``bandwidth`` (bytes/s).  The
roofline bound of a layer that does ``F`` FLOPs while moving ``B`` bytes (its weights, its input and output
activations) is ``min(peak_flops, F / B × bandwidth)``; below the *ridge point* ``peak_flops / bandwidth`` a layer
is memory-bound.  :func:`measure_device` times this machine with a short micro-benchmark (a large float32 matmul
for compute, a large tensor copy for bandwidth) and :func:`device_profile` caches what it measured in the user
cache folder (keyed by CPU, thread count and torch version), so it runs once per machine.  A profile of another
device (an NPU's datasheet figures) is a JSON file::

    {"kind": "device-profile", "schema_version": 1, "name": "Ethos-U65 (512 MAC/cycle, 1 GHz)",
     "peak_flops": 1.024e12, "bandwidth": 3.2e9, "dtype_bytes": 1}

Numbers a device could not have (negative, zero, not finite, a peak below 1 MFLOP/s or above 10 EFLOP/s, a
bandwidth below 100 KB/s or above 100 TB/s) are refused with one message naming the field and its range.  No Qt.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import SlimError

KIND = "device-profile"
SCHEMA_VERSION = 1
CACHE_NAME = f"device-profile-v{SCHEMA_VERSION}.json"

# what a real device can be: outside these a number is a typo (units mixed up) or missing
LIMITS = {
    "peak_flops": (1e6, 1e19, "FLOP/s (e.g. 1.0e12 for 1 TFLOP/s)"),
    "bandwidth": (1e5, 1e14, "bytes/s (e.g. 2.5e10 for 25 GB/s)"),
    "dtype_bytes": (1, 8, "bytes per element (1 int8, 2 float16, 4 float32)"),
}


@dataclass(frozen=True)
class DeviceProfile:
    """What a device can do: ``peak_flops`` (FLOP/s), ``bandwidth`` (bytes/s) and the element size its layers
    move (``dtype_bytes``: 4 for float32 on a CPU, 1 for an int8 NPU).  ``source``: "measured" (this machine's
    micro-benchmark) or the file it was read from; ``details``: how it was measured."""

    name: str
    peak_flops: float
    bandwidth: float
    dtype_bytes: int = 4
    source: str = "measured"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ridge(self) -> float:
        """The arithmetic intensity (FLOP/byte) where the roofline's slope meets its flat top."""
        return self.peak_flops / self.bandwidth

    def bound(self, intensity: float) -> float:
        """Attainable FLOP/s at ``intensity`` FLOP/byte: ``min(peak, intensity × bandwidth)``."""
        return min(self.peak_flops, max(0.0, intensity) * self.bandwidth)

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "schema_version": SCHEMA_VERSION, **asdict(self)}


def _number(doc: dict[str, Any], key: str, where: str) -> float:
    lo, hi, what = LIMITS[key]
    if key not in doc:
        raise SlimError(f"{where}: '{key}' is missing", hint=f"give it in {what}")
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SlimError(f"{where}: '{key}' must be a number in {what}, got {value!r}"[:300])
    if not math.isfinite(value) or not lo <= value <= hi:
        raise SlimError(f"{where}: '{key}' = {value:g} is not a plausible device figure",
                        hint=f"give {lo:g} to {hi:g} {what}")
    return float(value)


def profile_from_json(doc: Any, where: str = "device profile") -> DeviceProfile:
    """A :class:`DeviceProfile` from a parsed JSON document; anything missing or absurd is one SlimError."""
    if not isinstance(doc, dict):
        raise SlimError(f"{where} is not a JSON object", hint='expected {"kind": "device-profile", ...}')
    if doc.get("kind", KIND) != KIND:
        raise SlimError(f"{where} is not a device profile (kind '{doc.get('kind')}')",
                        hint=f'expected "kind": "{KIND}"')
    version = doc.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SlimError(f"{where}: schema_version must be a whole number")
    if version > SCHEMA_VERSION:
        raise SlimError(f"{where} was written by a newer SlimGUI (schema {version} > {SCHEMA_VERSION})",
                        hint="upgrade SlimGUI to read it")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SlimError(f"{where}: 'name' is missing", hint="name the device, e.g. \"my NPU\"")
    dtype = _number({"dtype_bytes": doc.get("dtype_bytes", 4)}, "dtype_bytes", where)
    if dtype != int(dtype):
        raise SlimError(f"{where}: 'dtype_bytes' must be a whole number of bytes")
    details = doc.get("details") if isinstance(doc.get("details"), dict) else {}
    return DeviceProfile(name=name.strip()[:120], peak_flops=_number(doc, "peak_flops", where),
                         bandwidth=_number(doc, "bandwidth", where), dtype_bytes=int(dtype),
                         source=str(doc.get("source") or where), details=details)


def load_profile(path: str | os.PathLike) -> DeviceProfile:
    """Read a device profile JSON file (see the module docstring); bad files are one SlimError."""
    from .io import read_json_file

    p = Path(path)
    doc = read_json_file(p, "device profile", limit=1 << 20, invalid="is not a valid JSON device profile")
    prof = profile_from_json(doc, str(p))
    return DeviceProfile(prof.name, prof.peak_flops, prof.bandwidth, prof.dtype_bytes, str(p), prof.details)


def save_profile(profile: DeviceProfile, path: str | os.PathLike) -> Path:
    from .io import write_versioned_json

    payload = {k: v for k, v in profile.to_json().items() if k not in ("kind", "schema_version")}
    return write_versioned_json(path, KIND, SCHEMA_VERSION, payload)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_key(threads: int) -> dict[str, Any]:
    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__}


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_device(threads: int | None = None, *, matmul_n: int = 1024, copy_mib: int = 64,
                   repeats: int = 5) -> DeviceProfile:
    """This machine's peak float32 FLOP/s (an ``n × n`` matmul, ``2n³`` FLOPs) and memory bandwidth (copying a
    ``copy_mib`` MiB tensor: read + write, ``2 × size`` bytes), best of ``repeats`` runs each; under a second."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    used = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    a = torch.rand(matmul_n, matmul_n, generator=g)
    b = torch.rand(matmul_n, matmul_n, generator=g)
    out = torch.empty(matmul_n, matmul_n)
    t_mm = _best(lambda: torch.mm(a, b, out=out), repeats)
    n = copy_mib * 2**20 // 4
    src = torch.rand(n, generator=g)
    dst = torch.empty_like(src)
    t_cp = _best(lambda: dst.copy_(src), repeats)
    peak = 2.0 * matmul_n ** 3 / t_mm
    bw = 2.0 * n * 4 / t_cp
    return DeviceProfile(name=f"{cpu_name()} ({used} thread{'s' if used != 1 else ''})", peak_flops=peak,
                         bandwidth=bw, dtype_bytes=4, source="measured",
                         details={**machine_key(used), "matmul_n": matmul_n, "matmul_s": t_mm,
                                  "copy_bytes": 2 * n * 4, "copy_s": t_cp, "measured_at": time.time()})


def cache_file() -> Path:
    from .io import cache_dir

    return cache_dir() / CACHE_NAME


def device_profile(path: str | os.PathLike | None = None, *, threads: int | None = None,
                   refresh: bool = False) -> DeviceProfile:
    """The profile to model with: the file ``path`` when given, else this machine's, measured once per CPU,
    thread count and torch version and cached (``refresh``: measure again)."""
    if path is not None:
        return load_profile(path)
    import torch

    if threads:
        torch.set_num_threads(threads)
    key = machine_key(torch.get_num_threads())
    cached = cache_file()
    if cached.is_file() and not refresh:
        try:
            prof = load_profile(cached)
            if all(prof.details.get(k) == v for k, v in key.items()):
                return DeviceProfile(prof.name, prof.peak_flops, prof.bandwidth, prof.dtype_bytes, "measured",
                                     {**prof.details, "cached": str(cached)})
        except SlimError:
            pass  # a damaged cache is measured again
    prof = measure_device(threads)
    try:
        save_profile(prof, cached)
    except OSError:
        pass  # a read-only cache folder: measured each time
    return prof


def fmt_flops(value: float | None) -> str:
    """``1.2 GFLOP/s``-style text (the unit added by the caller: "FLOP/s" or "FLOP")."""
    if value is None or not math.isfinite(value):
        return "–"
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= div:
            return f"{value / div:.3g} {unit}"
    return f"{value:.3g} "


# -- latency steps when channel counts change ----------------------------------------------------------------------
def latency_steps(layer: Any, input_shape: tuple[int, ...], widths: list[int], *, repeats: int = 7,
                  threads: int | None = None) -> list[tuple[int, float]]:
    """(width, median ms) of a copy of ``layer`` (an ``nn.Conv2d``, ``nn.ConvTranspose2d`` or ``nn.Linear``) with its output channels cut to
    each of ``widths``, on a random input of ``input_shape`` — the staircase an accelerator shows as channels go
    (Nota's Ethos-U65 talk: latency falls in steps, not in proportion)."""
    import copy
    import statistics

    import torch
    import torch.nn as nn

    if threads:
        torch.set_num_threads(threads)
    if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        raise SlimError(f"latency steps are measured on a convolution or a linear layer, not a {type(layer).__name__}")
    full = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    x = torch.rand(*input_shape, generator=torch.Generator().manual_seed(0))
    out = []
    for w in widths:
        if not 1 <= w <= full:
            raise SlimError(f"width {w} is outside 1..{full}")
        m = copy.deepcopy(layer)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.groups != 1:
            raise SlimError("latency steps of a grouped convolution are not measured (its groups fix its widths)")
        if isinstance(m, nn.ConvTranspose2d):  # weights [in, out, kh, kw]: the output channels are the 2nd axis
            m.weight = nn.Parameter(m.weight.data[:, :w].clone())
            m.bias = nn.Parameter(m.bias.data[:w].clone()) if m.bias is not None else None
            m.out_channels = w
        elif isinstance(m, nn.Conv2d):
            m.weight = nn.Parameter(m.weight.data[:w].clone())
            m.bias = nn.Parameter(m.bias.data[:w].clone()) if m.bias is not None else None
            m.out_channels = w
        else:
            m.weight = nn.Parameter(m.weight.data[:w].clone())
            m.bias = nn.Parameter(m.bias.data[:w].clone()) if m.bias is not None else None
            m.out_features = w
        with torch.no_grad():
            times = []
            for _ in range(3):  # warm-up: the first calls of a new shape build its kernels
                m(x)
            for _ in range(repeats):
                t0 = time.perf_counter()
                m(x)
                times.append(time.perf_counter() - t0)
        out.append((w, statistics.median(times) * 1e3))
    return out


def step_edges(steps: list[tuple[int, float]], *, rise: float = 0.15) -> list[int]:
    """The widths where latency steps up: walking ``steps`` by width, a width whose time is more than ``rise``
    (15 %) above the time of the step it starts from begins a new step, and the width before it is the edge of
    the step below.  The largest width is always an edge."""
    pts = sorted(steps)
    if not pts:
        return []
    edges: list[int] = []
    base = pts[0][1]
    for (w0, _), (_, t1) in zip(pts, pts[1:]):
        if t1 > base * (1 + rise):
            edges.append(w0)
            base = t1
    edges.append(pts[-1][0])
    return edges
