"""Where time goes: each unit's FLOPs, bytes moved, arithmetic intensity and roofline bound, next to its measured
time — for any family, and per node of an ONNX file.

A torch model is run the way the benchmark runs it (its adapter's ``bench_runner``, capability "bench": the family
says what one forward pass is — a batch of images, of token sequences, of latents — so nothing here knows a
family).  For every unit of the family's :class:`~slimgui.core.graph.UnitGraph` whose ``unit_module`` is a
submodule of the model:

- ``flops``: counted by :class:`torch.utils.flop_counter.FlopCounterMode` (per module; 2 FLOPs per MAC), for the
  whole batch;
- ``weight_bytes``: its parameters and buffers as stored; ``act_bytes``: the tensors entering and leaving it (its
  forward's inputs and outputs, caught by hooks) — at the profiled batch, resolution and sequence length; both at
  the element size the model computes in on this machine, at a device profile's ``dtype_bytes`` for another device;
- ``intensity`` = flops / (weight_bytes + act_bytes), ``weight_intensity`` = flops / weight_bytes;
- ``bound_flops`` = min(peak, intensity × bandwidth) of the :class:`~slimgui.core.costmodel.DeviceProfile`,
  ``bound_ms`` = flops / bound_flops (the fastest the roofline allows);
- ``measured_ms``: the median over ``repeats`` passes of the wall time between the module's forward pre-hook and
  its forward hook (all its calls in one pass summed); ``attained_flops`` = flops / measured time;
  ``efficiency`` = attained / bound; ``memory_bound`` = intensity below the device's ridge point.

An ONNX file is profiled with onnxruntime's own profiler (``SessionOptions.enable_profiling``): each node's kernel
time, FLOPs of Conv / ConvTranspose / Gemm / MatMul from ONNX shape inference, bytes from its initializers and
its inferred input and output shapes.  No Qt here.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .costmodel import DeviceProfile, device_profile
from .errors import SlimError
from .progress import check, report

KIND = "profile"
SCHEMA_VERSION = 1


@dataclass
class UnitCost:
    """One unit's (or ONNX node's) row of a profile."""

    unit: str
    label: str
    kind: str
    parent: str | None
    depth: int
    flops: float | None
    weight_bytes: int
    act_bytes: int
    measured_ms: float | None
    calls: int = 0
    prunable: bool = False
    op: str = ""  # ONNX: the operator type
    modules: list[str] | None = None  # torch: the qualified names of the modules the unit is made of
    intensity: float | None = None
    weight_intensity: float | None = None
    bound_flops: float | None = None
    bound_ms: float | None = None
    attained_flops: float | None = None
    efficiency: float | None = None
    memory_bound: bool | None = None

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.act_bytes

    def finish(self, device: DeviceProfile) -> UnitCost:
        """Fill the derived numbers from the device's roofline."""
        moved = self.bytes
        if self.flops and moved:
            self.intensity = self.flops / moved
            self.weight_intensity = self.flops / self.weight_bytes if self.weight_bytes else None
            self.bound_flops = device.bound(self.intensity)
            self.bound_ms = self.flops / self.bound_flops * 1e3 if self.bound_flops else None
            self.memory_bound = self.intensity < device.ridge
            if self.measured_ms:
                self.attained_flops = self.flops / (self.measured_ms / 1e3)
                self.efficiency = self.attained_flops / self.bound_flops if self.bound_flops else None
        return self

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "bytes": self.bytes}


def _tensor_bytes(obj: Any, dtype_bytes: int | None = None) -> int:
    """Bytes of the tensors in ``obj`` (nested lists, tuples, dicts, model outputs); ``dtype_bytes`` per element
    when the device stores another type than the model computes in, e.g. an int8 NPU."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * (dtype_bytes or obj.element_size())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(o, dtype_bytes) for o in obj)
    if isinstance(obj, dict):
        return sum(_tensor_bytes(o, dtype_bytes) for o in obj.values())
    if hasattr(obj, "to_tuple"):  # transformers' ModelOutput
        try:
            return sum(_tensor_bytes(o, dtype_bytes) for o in obj.to_tuple())
        except Exception:
            return 0
    return 0


def _own_bytes(module: Any, dtype_bytes: int | None) -> int:
    """Bytes of a module's parameters and buffers (``dtype_bytes`` per element when the device stores another
    type than the model computes in, e.g. an int8 NPU)."""
    seen: dict[int, int] = {}
    for t in [*module.parameters(), *module.buffers()]:
        seen[id(t)] = t.numel() * (dtype_bytes or t.element_size())
    return sum(seen.values())


def _forward_run(model: Any, registry: Any, batch: int, options: dict[str, Any] | None) -> Callable[[], Any]:
    from . import options as opts
    from .bench import _as_run

    spec = registry.spec_of(model)
    if not spec.can("bench"):
        raise SlimError(f"the {model.family} family declares no benchmark run, so its layers cannot be timed",
                        hint="its plugin needs the 'bench' capability (bench_runner)")
    schema = registry.options(spec, "bench_options")
    values = dict(options or {})
    if schema is not None:  # a swept option (a list of lengths) is profiled at its first value
        inst = opts.from_dict(schema, values)
        for f in opts.fields_of(schema):
            v = getattr(inst, f.name)
            if f.opt.sweep and isinstance(v, list):
                setattr(inst, f.name, v[0] if v else None)
    else:
        inst = None
    adapter = model.impl if model.impl is not None else registry.adapter(model.adapter)
    run = _as_run(adapter.bench_runner(model, batch, inst, "forward"), "forward", batch)
    if run is None:
        raise SlimError(f"the {model.family} family has no forward run to profile")
    return run.fn


def _unit_modules(model: Any, graph: Any, registry: Any) -> dict[str, list[tuple[Any, str]]]:
    """unit id -> its modules that are part of the model, with their qualified names: the unit's module itself,
    or — a container the family builds for the unit (a ModuleList of a layer's conv and norm) — its direct
    children that are.  A unit whose module holds copies (a group of filters) has none: it is not timed alone."""
    adapter = model.impl if model.impl is not None else registry.adapter(model.adapter)
    names = {id(m): n for n, m in model.module.named_modules()}
    found: dict[str, list[tuple[Any, str]]] = {}
    for unit in graph.units:
        try:
            mod = adapter.unit_module(model, unit.id)
        except Exception:
            continue
        if mod is None:
            continue
        if id(mod) in names:
            found[unit.id] = [(mod, names[id(mod)])]
        else:
            members = [(c, names[id(c)]) for c in mod.children() if id(c) in names]
            if members:
                found[unit.id] = members
    return found


def _flops_by_module(fn: Callable[[], Any], modules: dict[int, Any]) -> tuple[dict[int, float], float]:
    """FLOPs of each module (by key) in one call of ``fn`` — its forward's calls summed, children included — and
    the total: hooks read the counter's running total before and after each call, so the count does not depend on
    which module the family's run calls first (a speech model's runner calls its encoder and decoder apart)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)

    def running() -> float:
        return float(sum(counter.flop_counts["Global"].values()))

    starts: dict[int, list[float]] = {k: [] for k in modules}
    got: dict[int, float] = dict.fromkeys(modules, 0.0)
    handles = []
    for key, mod in modules.items():
        handles.append(mod.register_forward_pre_hook(lambda _m, _a, key=key: starts[key].append(running())))

        def post(_m, _a, _o, key=key):
            if starts[key]:
                got[key] += running() - starts[key].pop()
        handles.append(mod.register_forward_hook(post))
    try:
        with counter:
            fn()
    finally:
        for h in handles:
            h.remove()
    return got, running()


def profile_model(model: Any, registry: Any = None, *, batch: int = 1, device: DeviceProfile | None = None,
                  options: dict[str, Any] | None = None, repeats: int = 5, threads: int | None = None,
                  progress=None, cancel=None) -> dict[str, Any]:
    """The per-unit profile of a loaded model (see the module docstring) as a JSON-ready dict: ``device``,
    ``batch``, ``total_ms`` (a pass without hooks, median), ``total_flops`` and ``units`` (rows of
    :class:`UnitCost`, graph order)."""
    import torch

    from .bench import measure, torch_threads
    from .plugins import discover

    registry = registry or discover()
    used = torch_threads(threads)
    device = device or device_profile(threads=used)
    fn = _forward_run(model, registry, batch, options)
    adapter = model.impl if model.impl is not None else registry.adapter(model.adapter)
    graph = adapter.to_graph(model)
    report(progress, 0, repeats + 3, "counting FLOPs")
    mods = _unit_modules(model, graph, registry)
    modules = {id(m): m for members in mods.values() for m, _ in members}
    flops_of, total_flops = _flops_by_module(fn, modules)
    check(cancel)
    report(progress, 1, repeats + 3, "timing the whole pass")
    whole = measure(fn, warmup=1, repeats=max(repeats, 9))  # the whole pass: at least 9 runs, its median
    check(cancel)
    # hooks on each module a unit is made of: its time per pass (calls summed) and the bytes entering and leaving it
    starts: dict[int, list[float]] = {k: [] for k in modules}
    spent: dict[int, float] = dict.fromkeys(modules, 0.0)
    calls: dict[int, int] = dict.fromkeys(modules, 0)
    acts: dict[int, int] = {}
    outs: dict[int, int] = {}
    handles = []

    element = device.dtype_bytes if device.source != "measured" else None  # a device file's type, else as computed

    def pre(key):
        def hook(_m, args, kwargs):
            if key not in acts:
                acts[key] = _tensor_bytes(args, element) + _tensor_bytes(kwargs, element)
            starts[key].append(time.perf_counter())
        return hook

    def post(key):
        def hook(_m, _args, _kwargs, output):
            if starts[key]:
                spent[key] += time.perf_counter() - starts[key].pop()
                calls[key] += 1
            if key not in outs:
                outs[key] = _tensor_bytes(output, element)
        return hook

    for key, mod in modules.items():
        handles.append(mod.register_forward_pre_hook(pre(key), with_kwargs=True))
        handles.append(mod.register_forward_hook(post(key), with_kwargs=True))
    per_pass: dict[int, list[float]] = {k: [] for k in modules}
    n_calls: dict[int, int] = {}
    try:
        with torch.no_grad():
            fn()  # warm-up, with hooks
            for i in range(repeats):
                check(cancel)
                for k in modules:
                    spent[k], calls[k] = 0.0, 0
                fn()
                for k in modules:
                    per_pass[k].append(spent[k])
                    n_calls[k] = calls[k]
                report(progress, 2 + i, repeats + 3, f"timing units, pass {i + 1} of {repeats}")
    finally:
        for h in handles:
            h.remove()
    rows: list[dict[str, Any]] = []
    depth_of = {u.id: len(graph.ancestors(u.id)) for u in graph.units}
    for unit in graph.units:
        members = mods.get(unit.id)
        if not members:
            continue
        keys = [id(m) for m, _ in members]
        ran = sum(n_calls.get(k, 0) for k in keys)
        flops = sum(flops_of.get(k, 0.0) for k in keys)
        weight = sum(_own_bytes(m, device.dtype_bytes if device.source != "measured" else None) for m, _ in members)
        times = [sum(per_pass[k][i] for k in keys) for i in range(repeats)]
        cost = UnitCost(unit=unit.id, label=unit.label, kind=unit.kind, parent=unit.parent,
                        depth=depth_of[unit.id], flops=flops if ran else None, weight_bytes=weight,
                        act_bytes=sum(acts.get(k, 0) + outs.get(k, 0) for k in keys),
                        measured_ms=statistics.median(times) * 1e3 if ran else None,
                        calls=max(n_calls.get(k, 0) for k in keys), prunable=unit.prunable,
                        modules=[name for _m, name in members])
        rows.append(cost.finish(device).to_json())
    report(progress, repeats + 3, repeats + 3, "profiled")
    return {"kind": KIND, "schema_version": SCHEMA_VERSION, "model": str(model.source), "family": model.family,
            "runtime": "torch", "batch": batch, "threads": used, "repeats": repeats,
            "device": device.to_json() | {"ridge": device.ridge},
            "total_ms": whole["median_s"] * 1e3, "total_flops": total_flops,
            "timed_units": len(rows), "units": rows}


# -- ONNX --------------------------------------------------------------------------------------------------
_NP = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
       "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
       "tensor(bool)": "bool"}


def _feed(sess: Any, batch: int, length: int = 16) -> dict[str, Any]:
    """Inputs for each of the session's inputs: a symbolic first axis is ``batch``, other symbolic axes ``length``;
    floats random in [0, 1), integers zeros (token id 0 exists in every vocabulary)."""
    import numpy as np

    rng = np.random.default_rng(0)
    feed = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else length) for i, d in enumerate(inp.shape)]
        dtype = _NP.get(inp.type)
        if dtype is None:
            raise SlimError(f"the ONNX input '{inp.name}' has type {inp.type}, which profiling cannot fill",
                            hint="profile the torch model instead")
        feed[inp.name] = rng.random(shape).astype(dtype) if dtype.startswith("float") else np.zeros(shape, dtype)
    return feed


def _shapes(model: Any, feed: dict[str, Any]) -> dict[str, list[int]]:
    """Every value's shape from ONNX shape inference, symbolic axes resolved from the fed inputs."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    sym: dict[str, int] = {}
    for inp in inferred.graph.input:
        if inp.name in feed:
            for d, n in zip(inp.type.tensor_type.shape.dim, feed[inp.name].shape):
                if d.dim_param:
                    sym[d.dim_param] = int(n)
    out: dict[str, list[int]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = []
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.dim_param in sym:
                dims.append(sym[d.dim_param])
            else:
                dims = []
                break
        if dims or not vi.type.tensor_type.shape.dim:
            out[vi.name] = dims
    for init in inferred.graph.initializer:
        out[init.name] = list(init.dims)
    return out


def _node_flops(node: Any, shapes: dict[str, list[int]]) -> float | None:
    def size(name: str) -> int | None:
        s = shapes.get(name)
        return math.prod(s) if s is not None else None

    if node.op_type in ("Conv", "ConvTranspose") and len(node.input) >= 2:
        w, out = shapes.get(node.input[1]), size(node.output[0])
        x = size(node.input[0])
        if not w or out is None:
            return None
        if node.op_type == "Conv":
            return 2.0 * out * math.prod(w[1:])  # each output: C_in/groups × kh × kw MACs
        return 2.0 * (x or 0) * math.prod(w[1:])  # transposed: each input spreads C_out/groups × kh × kw
    if node.op_type in ("Gemm", "MatMul") and len(node.input) >= 2:
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        out = size(node.output[0])
        if not a or not b or out is None:
            return None
        k = a[-1] if node.op_type == "MatMul" else (a[0] if any(at.name == "transA" and at.i for at in node.attribute)
                                                    else a[-1])
        return 2.0 * out * k
    return None


def profile_onnx(path: str | Path, *, batch: int = 1, device: DeviceProfile | None = None, repeats: int = 5,
                 threads: int | None = None, progress=None, cancel=None) -> dict[str, Any]:
    """Per-node profile of an ONNX file with onnxruntime's profiler (see the module docstring)."""
    import json
    import tempfile

    import onnx
    import onnxruntime as ort

    from .bench import check_onnx_file, measure

    path = Path(path)
    check_onnx_file(path)
    device = device or device_profile(threads=threads)
    proto = onnx.load(str(path), load_external_data=False)
    init_bytes: dict[str, int] = {}
    for init in proto.graph.initializer:
        el = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        init_bytes[init.name] = math.prod(init.dims) * (device.dtype_bytes if device.source != "measured" else el)
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        plain = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = _feed(plain, batch)
        whole = measure(lambda: plain.run(None, feed), warmup=1, repeats=repeats)
        check(cancel)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        # basic optimisations only, so profiled nodes keep the names (and shapes) of the file's nodes
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        sess.run(None, feed)  # warm-up, dropped below
        for i in range(repeats):
            check(cancel)
            sess.run(None, feed)
            report(progress, i + 1, repeats, f"onnxruntime pass {i + 1} of {repeats}")
        trace = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first_timed = sorted(e["ts"] for e in runs)[1] if len(runs) > 1 else 0
    times: dict[str, float] = {}
    ops: dict[str, str] = {}
    for e in trace:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time") or e["ts"] < first_timed:
            continue
        name = e["name"][: -len("_kernel_time")]
        times[name] = times.get(name, 0.0) + float(e["dur"])
        ops[name] = (e.get("args") or {}).get("op_name", "")
    shapes = _shapes(proto, feed)
    rows = []
    for i, node in enumerate(proto.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        if name not in times:
            continue
        w = sum(init_bytes.get(n, 0) for n in node.input)
        el = device.dtype_bytes if device.source != "measured" else 4
        act = sum(math.prod(shapes[n]) * el for n in [*node.input, *node.output] if n in shapes and n not in init_bytes)
        cost = UnitCost(unit=name, label=name, kind="node", parent=None, depth=0, flops=_node_flops(node, shapes),
                        weight_bytes=w, act_bytes=act, measured_ms=times[name] / repeats / 1e3, calls=1,
                        op=node.op_type or ops.get(name, ""))
        rows.append(cost.finish(device).to_json())
    total_flops = sum(r["flops"] or 0 for r in rows)
    return {"kind": KIND, "schema_version": SCHEMA_VERSION, "model": str(path), "family": None,
            "runtime": "onnxruntime", "batch": batch, "threads": threads, "repeats": repeats,
            "device": device.to_json() | {"ridge": device.ridge}, "total_ms": whole["median_s"] * 1e3,
            "total_flops": total_flops, "timed_units": len(rows), "units": rows}


def leaf_rows(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows no other timed row is nested in the time of — a unit none of whose timed descendants is listed
    (what a roofline plot shows without counting a block and its layers twice)."""
    rows = profile["units"]
    parents = {r["parent"] for r in rows if r.get("parent")}
    timed = {r["unit"] for r in rows}
    return [r for r in rows if r["unit"] not in parents or not any(
        x["parent"] == r["unit"] and x["unit"] in timed for x in rows)]


def profile_task(model: Any, *, registry: Any, batch: int = 1, device_file: str | None = None, repeats: int = 5,
                 threads: int | None = None, with_abconv: bool = False, progress=None, cancel=None) -> dict[str, Any]:
    """What the app's Roofline view runs: :func:`profile_model` on the device of ``device_file`` (None: this machine,
    measured once and cached) and, with ``with_abconv``, the same profile of an in-memory copy whose eligible
    convolutions are ABConv (:mod:`slimgui.core.abconv`; timed, not retrained — its intensity and time, not its
    accuracy): ``result["abconv"]`` holds ``replaced`` ({layer: fold}) and that copy's rows of those layers, or
    ``error`` (one line) when ABConv does not apply."""
    import copy

    from .abconv import apply_abconv
    from .bench import _as_run
    from .model import LoadedModel

    device = device_profile(device_file, threads=threads)
    result = profile_model(model, registry, batch=batch, device=device, repeats=repeats, threads=threads,
                           progress=progress, cancel=cancel)
    if with_abconv:
        try:
            twin = LoadedModel(model.family, model.adapter, model.source, copy.deepcopy(model.module).eval(),
                               copy.deepcopy(model.config), model.tokenizer, model.has_weights, model.impl,
                               {k: v for k, v in model.extra.items() if k != "graph"})
            adapter = model.impl if model.impl is not None else registry.adapter(model.adapter)
            run = _as_run(adapter.bench_runner(twin, 1, None, "forward"), "forward", 1)
            done, _ = apply_abconv(twin.module, run.fn)
            after = profile_model(twin, registry, batch=batch, device=device, repeats=repeats, threads=threads,
                                  cancel=cancel)
            def balanced(r: dict[str, Any]) -> bool:  # a unit made of a replaced layer (with its norm, say)
                return any(n in done for n in r.get("modules") or [])

            result["abconv"] = {"replaced": done, "total_ms": after["total_ms"],
                                "units": [r for r in after["units"] if balanced(r)]}
        except SlimError as exc:
            result["abconv"] = {"error": exc.one_line()}
        except Exception as exc:  # a family whose graph does not follow a changed module: said, not raised
            result["abconv"] = {"error": f"ABConv could not be profiled on this model ({type(exc).__name__}: {exc})"[:300]}
    return result


def timed_layer(module: Any) -> Any:
    """The layer whose width :func:`width_steps` times: ``module`` itself when it is an ``nn.Conv2d``,
    ``nn.ConvTranspose2d`` or ``nn.Linear``, else the only such layer inside it (a unit's conv with its norm); None
    when it is neither."""
    import torch.nn as nn

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    if isinstance(module, kinds):
        return module
    found = [m for m in module.modules() if isinstance(m, kinds)] if isinstance(module, nn.Module) else []
    return found[0] if len(found) == 1 else None


def width_steps(model: Any, registry: Any, unit_id: str, *, batch: int = 1, points: int = 16, repeats: int = 7,
                threads: int | None = None, options: dict[str, Any] | None = None,
                run: Callable[[], Any] | None = None) -> dict[str, Any]:
    """The latency staircase of one convolution / transposed convolution / linear unit (a unit whose module is, or
    holds exactly one, such a layer: :func:`timed_layer`): its time at ``points`` widths (output channels) on the
    input it gets in the family's benchmark pass, and the step edges (:func:`~slimgui.core.costmodel.step_edges`)
    a plan's width should snap to (:func:`~slimgui.core.selection.snap_width`).  ``run``: the pass, when the caller
    has it already."""
    import torch.nn as nn

    from .costmodel import latency_steps, step_edges

    adapter = model.impl if model.impl is not None else registry.adapter(model.adapter)
    graph = adapter.to_graph(model)
    graph.get(unit_id)  # an unknown id is the graph's own message
    unit_mod = adapter.unit_module(model, unit_id)
    mod = timed_layer(unit_mod)
    if mod is None:
        raise SlimError(f"unit '{unit_id}' is a {type(unit_mod).__name__}, not a convolution or linear layer",
                        hint="width steps are measured on one conv or linear layer")
    seen: list[tuple[int, ...]] = []
    handle = mod.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)) if not seen else None)
    try:
        (run or _forward_run(model, registry, batch, options))()
    finally:
        handle.remove()
    if not seen:
        raise SlimError(f"unit '{unit_id}' does not run in the family's forward pass")
    full = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
    step = max(1, full // points)
    widths = sorted({*range(step, full + 1, step), full})
    steps = latency_steps(mod, seen[0], widths, repeats=repeats, threads=threads)
    return {"unit": unit_id, "input_shape": list(seen[0]), "widths": [[w, round(t, 5)] for w, t in steps],
            "edges": step_edges(steps)}


def width_edges(model: Any, registry: Any, layers: list[str], *, batch: int = 1, points: int = 16,
                repeats: int = 7, threads: int | None = None, cache: dict[str, dict[str, Any]] | None = None,
                progress=None, cancel=None) -> dict[str, dict[str, Any]]:
    """:func:`width_steps` of each of ``layers`` (layer unit ids), the family's pass run once for all; ``cache``
    (layer -> result, e.g. kept by the caller for one model) is read first and filled."""
    cache = {} if cache is None else cache
    todo = [lay for lay in layers if lay not in cache]
    run = _forward_run(model, registry, batch, None) if todo else None
    for i, lay in enumerate(todo):
        check(cancel)
        report(progress, i, len(todo), f"timing {lay} at {points} widths")
        cache[lay] = width_steps(model, registry, lay, batch=batch, points=points, repeats=repeats, threads=threads,
                                 run=run)
    report(progress, len(todo), len(todo), "widths timed")
    return {lay: cache[lay] for lay in layers}


def snap_widths(model: Any, registry: Any, remove: list[str], *, direction: str = "up", batch: int = 1,
                points: int = 16, repeats: int = 7, threads: int | None = None, edges: dict[str, Any] | None = None,
                cache: dict[str, dict[str, Any]] | None = None, progress=None, cancel=None) -> dict[str, Any]:
    """A removal list with every layer it narrows snapped to that layer's latency step edges — the CLI's
    ``--snap-widths`` and the Plan panel's control: the layers the family declares as cut in width slices
    (:func:`~slimgui.core.selection.width_layers`) that ``remove`` narrows are timed at ``points`` widths
    (:func:`width_edges`, cached in ``cache``; ``edges``: {layer: edges} given instead of measured, for tests) and
    :func:`~slimgui.core.selection.snap_removal` snaps them.  Returns ``remove`` (snapped), ``direction`` and ``layers``
    (per layer: full width, kept width before / after, edges, moved, and the measured staircase)."""
    from .selection import snap_removal, touched_widths, width_layers

    adapter = model.impl if model.impl is not None else registry.adapter(model.adapter)
    graph = adapter.to_graph(model)
    layers = width_layers(graph)
    if not layers:
        raise SlimError(f"the {model.family} family's units declare no width slices: there are no widths to snap",
                        hint="width snapping applies to families that prune a layer's filters in slices")
    touched = list(touched_widths(graph, remove, layers))
    staircase: dict[str, Any] = {}
    if edges is None:
        staircase = width_edges(model, registry, touched, batch=batch, points=points, repeats=repeats,
                                threads=threads, cache=cache, progress=progress, cancel=cancel)
        edges = {lay: r["edges"] for lay, r in staircase.items()}
    snapped, rows = snap_removal(graph, remove, edges, direction=direction)
    for r in rows:
        if r["layer"] in staircase:
            r["widths"] = staircase[r["layer"]]["widths"]
    return {"direction": direction, "remove": snapped, "before": list(remove), "layers": rows,
            "moved": sum(1 for r in rows if r["moved"])}
