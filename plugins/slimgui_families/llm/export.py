"""ONNX export of language models, parity checks against torch, INT8 and mixed-precision quantisation.

Every ONNX file is written to a temporary name in the target folder, checked with the ONNX checker,
loaded in onnxruntime and compared with the torch model on the same inputs; only then is it moved
into place, with its check report (``NAME.check.json``) beside it.  Mixed precision follows the
Wav2Lip compression paper: a per-layer sensitivity scan (quantise one layer at a time, measure the
change of the output) marks the sensitive layers, which stay FP32 while the rest become INT8.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimgui.core.bench import check_onnx_file
from slimgui.core.bench import onnx_session as session
from slimgui.core.errors import SlimError
from slimgui.core.io import atomic_write_text
from slimgui.core.io import onnx_data_file as data_file
from slimgui.core.io import onnx_total_bytes as total_bytes
from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .blocks import is_decoder

OPSET = 17
MODES = ("fp32", "int8", "mixed")
SAMPLE_TEXT_CHARS = 200_000  # of the comparison text: far more than the sample inputs take
PARITY_MIN_COSINE = 0.999  # below this an export is refused rather than shipped
# Weights at least this large go to one sidecar file, NAME.onnx.data: protobuf cannot hold 2 GiB, and
# torch's exporter would otherwise leave one loose file per tensor beside the graph.
EXTERNAL_DATA_BYTES = 1 << 30


class _Staged:
    """A private folder beside ``out`` to write into; ``commit`` moves the file (and its .data) into place.

    Nothing appears under the final name until every check has passed, and a failure or a cancel removes
    the folder with whatever it held, loose weight files included."""

    def __init__(self, out: Path):
        import tempfile

        self.out = out
        self.dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        self.path = self.dir / out.name

    def commit(self) -> None:
        data = data_file(self.path)
        if data.is_file():  # the weights first: the graph that names them appears last
            shutil.copymode(self.path, data)  # onnx writes the sidecar owner-only; match the graph file
            os.replace(data, data_file(self.out))
            os.replace(self.path, self.out)
        else:
            os.replace(self.path, self.out)
            data_file(self.out).unlink(missing_ok=True)  # a stale sidecar of an earlier, larger export

    def __enter__(self) -> _Staged:
        return self

    def __exit__(self, *exc) -> bool:
        shutil.rmtree(self.dir, ignore_errors=True)
        return False


def _one_data_file(path: Path, weight_bytes: int | None = None) -> None:
    """Rewrite ``path`` so its weights live in one ``.data`` sidecar when they are large or already loose.

    Large: the bytes actually written (the graph file and any loose weight files), at least
    :data:`EXTERNAL_DATA_BYTES` (``weight_bytes`` is accepted for older callers and not used: parameter bytes
    miss the copies an exporter may write, e.g. a transposed head).  Tensor by tensor: a loose file (or a large
    inline tensor) is appended to the sidecar and the graph points at its offset, so a model of several GiB is
    never held in memory a second time."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo

    data = data_file(path)
    loose = [f for f in path.parent.iterdir() if f not in (path, data)]
    written = path.stat().st_size + sum(f.stat().st_size for f in loose)
    if not loose and (data.is_file() or written < EXTERNAL_DATA_BYTES):
        return
    proto = onnx.load(str(path), load_external_data=False)
    part = data.with_name(data.name + ".partial")
    moved: set[Path] = set()
    with open(part, "wb") as sink:
        for tensor in _all_tensors(proto.graph):
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                info = ExternalDataInfo(tensor)
                moved.add(path.parent / info.location)
                with open(path.parent / info.location, "rb") as src:
                    src.seek(info.offset or 0)
                    payload = src.read(info.length) if info.length else src.read()
            elif tensor.HasField("raw_data") and len(tensor.raw_data) >= 1024:
                payload = tensor.raw_data
                tensor.ClearField("raw_data")
            else:
                continue
            sink.write(b"\0" * (-sink.tell() % 4096))  # page-aligned, so runtimes can map each tensor
            del tensor.external_data[:]
            for key, value in (("location", data.name), ("offset", str(sink.tell())), ("length", str(len(payload)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            tensor.data_location = onnx.TensorProto.EXTERNAL
            sink.write(payload)
    left = [f.name for f in loose if f not in moved]
    if left:  # never ship a graph whose weights stay behind in the staging folder
        raise SlimError(f"the ONNX export wrote files it does not reference: {', '.join(left[:3])}",
                        hint="please report the architecture")
    for f in loose:
        f.unlink()
    os.replace(part, data)
    onnx.save_model(proto, str(path))


def share_tied_embedding(path: Path, module: nn.Module) -> bool:
    """Store tied input/output embeddings once: the exporter writes the embedding matrix E (read by a Gather)
    and, folded, its transpose Eᵀ (the head's MatMul).  The Gather then reads Eᵀ along axis 1 and a Transpose
    puts the rows back in order, so only Eᵀ is stored (the head's MatMul stays as fast as before).  True when the
    graph was rewritten; untied models and graphs of another shape are left as they are."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    emb = module.get_input_embeddings() if hasattr(module, "get_input_embeddings") else None
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    weight = getattr(emb, "weight", None)
    if weight is None or head is None or getattr(head, "weight", None) is None:
        return False
    if head.weight.data_ptr() != weight.data_ptr():
        return False
    vocab, hidden = weight.shape
    proto = onnx.load(str(path), load_external_data=False)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in inits
               and list(inits[n.input[0]].dims) == [vocab, hidden]]
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits
               and list(inits[n.input[1]].dims) == [hidden, vocab]]
    if len({n.input[0] for n in gathers}) != 1 or len({n.input[1] for n in matmuls}) != 1:
        return False
    e_name, t_name = gathers[0].input[0], matmuls[0].input[1]
    ranks = {i.name: len(i.type.tensor_type.shape.dim) for i in graph.input}
    if any(n.input[1] not in ranks or any(a.name == "axis" and a.i != 0 for a in n.attribute) for n in gathers):
        return False
    base = str(path.parent)
    e_arr, t_arr = numpy_helper.to_array(inits[e_name], base), numpy_helper.to_array(inits[t_name], base)
    if not np.array_equal(e_arr, t_arr.T):
        return False
    del e_arr, t_arr
    for node in gathers:
        rank = ranks[node.input[1]]
        out = node.output[0]
        moved = f"{out}__rows_last"
        idx = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(idx, helper.make_node("Transpose", [moved], [out], name=f"{node.name}/tied_transpose",
                                                perm=list(range(1, rank + 1)) + [0]))
        graph.node.insert(idx, helper.make_node("Gather", [t_name, node.input[1]], [moved], name=node.name, axis=1))
    e_tensor = inits[e_name]
    if e_tensor.data_location == onnx.TensorProto.EXTERNAL:
        from onnx.external_data_helper import ExternalDataInfo

        loose = path.parent / ExternalDataInfo(e_tensor).location
        shared = [t for t in graph.initializer if t is not e_tensor and t.data_location == onnx.TensorProto.EXTERNAL
                  and ExternalDataInfo(t).location == ExternalDataInfo(e_tensor).location]
        if not shared:
            loose.unlink(missing_ok=True)
    graph.initializer.remove(e_tensor)
    onnx.save_model(proto, str(path))
    return True


def _all_tensors(graph):
    """Every tensor a graph holds: initializers (sparse ones too) and node attributes, subgraphs included."""
    import onnx

    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t
            elif a.type == onnx.AttributeProto.TENSORS:
                yield from a.tensors
            elif a.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _all_tensors(g)


class _Logits(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


class _LogitsWithPast(nn.Module):
    """(input_ids, attention_mask, past_key_0, past_value_0, ...) -> (logits, present_key_0, ...)."""

    def __init__(self, model: nn.Module, layers: int):
        super().__init__()
        self.model = model
        self.layers = layers

    def forward(self, input_ids, attention_mask, *past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, cache=cache, use_cache=True)
        present = []
        for layer in out.cache.layers[: self.layers]:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


class _eager_attention:
    """Trace with the model's plain (eager) attention: matmul, mask add, softmax, matmul.

    The SDPA path exports extra shape, IsNaN and Where nodes in every layer; the eager graph computes
    the same logits with about a fifth fewer nodes after onnxruntime's own optimisations, which makes
    the exported file faster in onnxruntime (FP32 and INT8 alike).  The model is put back afterwards,
    also when the switch fails half-way."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.before = getattr(module.config, "_attn_implementation", None)
        self.switched = False

    def __enter__(self):
        if self.before not in (None, "eager") and hasattr(self.module, "set_attn_implementation"):
            self.switched = True
            try:
                self.module.set_attn_implementation("eager")
            except Exception:  # an architecture without an eager path keeps its own
                self._restore()
        return self

    def _restore(self) -> None:
        if self.switched:
            self.switched = False
            self.module.set_attn_implementation(self.before)

    def __exit__(self, *exc):
        self._restore()
        return False


def _kv_shape(config) -> tuple[int, int]:
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return kv, head_dim


def sample_inputs(model, batch: int = 2, seq: int = 32, text: str | None = None) -> dict[str, torch.Tensor]:
    """Real token ids (from ``text`` or the tokenizer's own vocabulary order) with a padded row."""
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    if text and model.tokenizer is not None:
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][: batch * seq]
        if len(ids) == batch * seq:
            input_ids = torch.tensor(ids).view(batch, seq)
        else:
            input_ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    else:
        input_ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    if batch > 1:
        # the last row is left-padded: its real tokens come after the padding, so an export that ignored
        # the mask would attend to it and fail the parity check (right padding would go unnoticed in a
        # causal model, whose real positions never look ahead)
        attention_mask[-1, : seq // 4] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def parity(onnx_path: str | Path, model, inputs: dict[str, torch.Tensor], with_past: bool = False) -> dict[str, Any]:
    """Max abs difference and cosine similarity of the logits of torch and onnxruntime on the same inputs."""
    sess = session(onnx_path)
    feed = {k: v.numpy() for k, v in inputs.items()}
    if with_past:
        kv, hd = _kv_shape(model.config)
        b = inputs["input_ids"].shape[0]
        for i in range(model.config.num_hidden_layers):
            for k in ("key", "value"):
                feed[f"past_{k}_{i}"] = np.zeros((b, kv, 0, hd), dtype=np.float32)
    got = sess.run(["logits"], feed)[0]
    with torch.no_grad():
        ref = model.module(**inputs, use_cache=False).logits.numpy()
    valid = inputs["attention_mask"].numpy().astype(bool)  # padded positions carry no meaning
    got, ref = got[valid], ref[valid]
    return {"max_abs_diff": float(np.abs(got - ref).max()), "cosine": _cosine(got, ref),
            "inputs": {k: list(v.shape) for k, v in inputs.items()},
            "padded_positions": int((~valid).sum())}


def export_onnx(model, out: str | Path, *, with_past: bool = False, sample_text: str | None = None,
                progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, Any]:
    """Export ``model`` (a loaded decoder LM) to ``out`` and check it; returns the check report."""
    if not is_decoder(model):
        raise SlimError("ONNX export is implemented for decoder language models", hint="export to --format hf")
    if not model.has_weights:
        raise SlimError(f"{model.source} has no weights to export")
    out = Path(out)
    _writable(out)
    with _Staged(out) as staged:
        result = _export_staged(model, staged, with_past=with_past, sample_text=sample_text, progress=progress,
                                cancel=cancel)
        staged.commit()
    result.update({"file": str(out), "bytes": total_bytes(out), "external_data": data_file(out).is_file()})
    result["notes"] = check_notes(result, "fp32")
    atomic_write_text(str(out) + ".check.json", json.dumps(result, indent=1))
    report(progress, 3, 3, "exported")
    return result


def check_notes(result: dict[str, Any], mode: str) -> list[str]:
    """What an export's check found, in lines the app and the report show."""
    quant = mode in ("int8", "mixed")
    base = result.get("fp32_parity") if quant and isinstance(result.get("fp32_parity"), dict) else result
    cos, diff = base.get("cosine"), base.get("max_abs_diff")
    notes = []
    if isinstance(cos, (int, float)) and isinstance(diff, (int, float)):
        mark = "✔" if cos >= PARITY_MIN_COSINE else "✘"
        notes.append(f"{mark} ONNX checker passed; {'the FP32 graph' if quant else 'onnxruntime'} matches torch "
                     f"(onnxruntime vs torch: max abs diff {diff:.3g}, cosine {cos:.6f})")
    inc = result.get("incremental")
    if isinstance(inc, dict):
        notes.append(f"Past key/values: token-by-token decoding matches torch over {inc.get('tokens')} tokens "
                     f"(cosine {inc.get('cosine', 0):.6f})")
    if quant:
        notes.append(f"{mode.upper()} vs FP32: cosine {result.get('cosine', 0):.6f}, max abs diff "
                     f"{result.get('max_abs_diff', 0):.3g}"
                     + (f" · FP32 layers: {len(result.get('fp32_layers') or [])}" if mode == "mixed" else ""))
    return notes


def _export_staged(model, staged: _Staged, *, with_past: bool, sample_text: str | None,
                   progress: ProgressFn | None, cancel: CancelToken | None) -> dict[str, Any]:
    """Trace into the staging folder, check there; the caller moves the result into place."""
    tmp = staged.path
    module = model.module.eval()
    inputs = sample_inputs(model, text=sample_text)
    layers = model.config.num_hidden_layers
    report(progress, 0, 3, "tracing the model")
    if with_past:
        kv, hd = _kv_shape(model.config)
        b = inputs["input_ids"].shape[0]
        past = [torch.zeros(b, kv, 3, hd) for _ in range(2 * layers)]
        wrapper: nn.Module = _LogitsWithPast(module, layers)
        args = (inputs["input_ids"], torch.ones(b, inputs["input_ids"].shape[1] + 3, dtype=torch.long), *past)
        names = ["input_ids", "attention_mask"] + [f"past_{k}_{i}" for i in range(layers) for k in ("key", "value")]
        outs = ["logits"] + [f"present_{k}_{i}" for i in range(layers) for k in ("key", "value")]
        axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total_seq"},
                "logits": {0: "batch", 1: "seq"}}
        axes.update({n: {0: "batch", 2: "past_seq"} for n in names[2:]})
        axes.update({n: {0: "batch", 2: "total_seq"} for n in outs[1:]})
    else:
        wrapper = _Logits(module)
        args = (inputs["input_ids"], inputs["attention_mask"])
        names, outs = ["input_ids", "attention_mask"], ["logits"]
        axes = {n: {0: "batch", 1: "seq"} for n in names + outs}
    try:
        with warnings.catch_warnings(), torch.no_grad(), _eager_attention(module):
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, args, str(tmp), input_names=names, output_names=outs, dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
    except SlimError:
        raise
    except Exception as exc:
        raise SlimError(f"the model cannot be traced for ONNX: {type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}",
                        hint="export to --format hf instead, or report the architecture") from None
    check(cancel)
    tied = share_tied_embedding(tmp, module)
    _one_data_file(tmp)
    report(progress, 1, 3, "ONNX checker")
    check_onnx_file(tmp)
    report(progress, 2, 3, "comparing with torch")
    try:
        result = parity(tmp, model, inputs, with_past=with_past)
        if with_past:
            result["incremental"] = incremental_parity(tmp, model, inputs["input_ids"][:1])
    except SlimError:
        raise
    except Exception as exc:  # onnxruntime cannot run the traced graph (e.g. sliding-window layers with --past)
        from slimgui.core.io import disk_full

        if disk_full(exc):
            raise SlimError(f"not enough disk space to write the ONNX export of {Path(str(model.source)).name}; "
                            "nothing was written", hint="free some space or choose another --out") from None
        text = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
        raise SlimError(f"the ONNX export of this {model.config.model_type} model"
                        f"{' with past key/values' if with_past else ''} does not run in onnxruntime ({text}); "
                        "nothing was written",
                        hint=("export without --past" if with_past else "export to --format hf instead")
                        + "; please report the architecture") from None
    cosines = [result["cosine"], result.get("incremental", {}).get("cosine", 1.0)]
    if not all(math.isfinite(c) for c in cosines):  # NaN never passes a comparison: say where it comes from
        bad = [n for n, p in model.module.named_parameters() if not torch.isfinite(p).all()]
        where = (f"its weights hold NaN/Inf ({', '.join(bad[:3])}{', …' if len(bad) > 3 else ''})" if bad
                 else "its outputs are not finite (NaN/Inf)")
        raise SlimError(f"the ONNX export of {Path(str(model.source)).name} cannot be checked: {where}; nothing was "
                        "written", hint="repair or re-create the model's weights")
    worst = min(cosines)
    if worst < PARITY_MIN_COSINE:
        raise SlimError(f"the ONNX export of this {model.config.model_type} model does not match torch "
                        f"(cosine {worst:.4f}, max abs diff {result['max_abs_diff']:.3g}); nothing was written",
                        hint="export to --format hf instead; please report the architecture")
    result.update({"opset": OPSET, "with_past": with_past, "inputs_names": names, "source": model.source,
                   "tied_embeddings_shared": tied})
    return result


def incremental_parity(path: str | Path, model, ids: torch.Tensor, prompt: int = 8) -> dict[str, float]:
    """Prompt through the past-KV graph, then one token at a time: logits must match torch's full pass."""
    sess = session(path)
    kv, hd = _kv_shape(model.config)
    layers = model.config.num_hidden_layers
    pasts = {f"past_{k}_{i}": np.zeros((1, kv, 0, hd), dtype=np.float32) for i in range(layers) for k in ("key", "value")}
    got = []
    steps = [ids[:, :prompt]] + [ids[:, t:t + 1] for t in range(prompt, min(ids.shape[1], prompt + 4))]
    seen = 0
    for chunk in steps:
        seen += chunk.shape[1]
        res = sess.run(None, {"input_ids": chunk.numpy(), "attention_mask": np.ones((1, seen), dtype=np.int64), **pasts})
        got.append(res[0])
        pasts = {name: res[j + 1] for j, name in enumerate(pasts)}
    got_all = np.concatenate(got, axis=1)
    with torch.no_grad():
        ref = model.module(input_ids=ids[:, :seen], use_cache=False).logits.numpy()
    return {"max_abs_diff": float(np.abs(got_all - ref).max()), "cosine": _cosine(got_all, ref), "tokens": seen}


# -- quantisation ---------------------------------------------------------------------------------------
def weight_matmuls(path: str | Path) -> list[dict[str, str]]:
    """MatMul/Gemm nodes whose second input is a weight initializer: the layers quantisation acts on."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer if len(i.dims) == 2}
    layers = []
    for node in m.graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
            layers.append({"node": node.name, "layer": layer_name(node.name), "unit": unit_of(node.name)})
    return layers


def layer_name(node: str) -> str:
    """'/model/model/layers.3/self_attn/q_proj/MatMul' -> 'model.layers.3.self_attn.q_proj'."""
    parts = [p for p in node.split("/") if p and p not in ("MatMul", "Gemm")]
    if parts and parts[0] == "model":
        parts = parts[1:]
    return ".".join(parts) or node


def unit_of(node: str) -> str | None:
    m = re.search(r"layers\.(\d+)|/h\.(\d+)/|layer\.(\d+)", node)
    if not m:
        return "head" if "lm_head" in node else None
    idx = next(g for g in m.groups() if g is not None)
    kind = "attn" if re.search(r"attn|attention", node) else "mlp"
    return f"block.{idx}.{kind}"


def quantize(src: str | Path, dst: str | Path, *, nodes: list[str] | None = None, exclude: list[str] | None = None) -> None:
    """Dynamic INT8 (weights int8, activations quantised on the fly) of the weight MatMuls."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    _writable(dst)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's quantiser logs advice through the root logger
    try:
        with _Staged(dst) as staged:
            # a source whose weights are in a sidecar is large: its INT8 copy may pass 2 GiB too
            quantize_dynamic(str(src), str(staged.path), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"], nodes_to_quantize=nodes or None,
                             nodes_to_exclude=exclude or None, use_external_data_format=data_file(src).is_file(),
                             extra_options={"MatMulConstBOnly": True})
            _one_data_file(staged.path)
            staged.commit()
    except SlimError:
        raise
    except Exception as exc:
        raise SlimError(f"quantisation of {Path(src).name} failed: {str(exc).strip().splitlines()[0][:200]}") from None
    finally:
        root.setLevel(level)


def output_error(path: str | Path, feed: dict[str, np.ndarray], reference: np.ndarray) -> float:
    """Relative squared error of the logits against the FP32 reference, over the real (unpadded) positions."""
    return _relative_error(session(path).run(["logits"], feed)[0], reference, feed)


def _real(logits: np.ndarray, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The logits at real positions: padded ones carry no meaning (and differ between attention kernels)."""
    mask = feed.get("attention_mask")
    return logits if mask is None or mask.shape != logits.shape[:2] else logits[mask.astype(bool)]


def _relative_error(got: np.ndarray, reference: np.ndarray, feed: dict[str, np.ndarray]) -> float:
    got, reference = _real(got, feed), _real(reference, feed)
    return float(((got - reference) ** 2).mean() / ((reference ** 2).mean() + 1e-30))


def sensitivity_scan(fp32: str | Path, work: Path, feed: dict[str, np.ndarray], *, model=None,
                     progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> list[dict[str, Any]]:
    """Quantise one layer at a time and measure how much the output changes.

    With the torch ``model`` at hand, a layer that is an ``nn.Linear`` of it is quantised the way this
    machine's onnxruntime computes dynamic INT8 (same scales, zero points and rounding, and the 16-bit
    pair saturation of AVX2 kernels where the probe in :mod:`slimgui.core.int8` finds it), in torch, for
    one forward pass with the eager attention the graph was traced with: on the demo this agrees with
    quantising the ONNX file to 0.2 % per layer, same ranking, at a fifteenth of the time, and for a model
    of a few GiB it takes minutes where writing and loading one quantised copy per layer would take hours.
    Any other layer — and every layer when this machine's INT8 arithmetic matches neither model — is
    quantised in a copy of the ONNX file and run in onnxruntime.  Each layer records which way it was
    measured (``scan``) and, when emulated, with which arithmetic (``arithmetic``)."""
    from slimgui.core import int8

    layers = weight_matmuls(fp32)
    kernel = int8.kernel()
    linears = {}
    if model is not None and model.module is not None and kernel.emulable:
        modules = dict(model.module.named_modules())
        for layer in layers:
            name = layer["layer"]
            mod = modules.get(name) or modules.get(f"model.{name}") or modules.get(name.removeprefix("model."))
            if isinstance(mod, nn.Linear):
                linears[layer["node"]] = mod
    inputs = {k: torch.from_numpy(v) for k, v in feed.items()}

    def forward() -> np.ndarray:
        # the attention the ONNX graph was traced with: a padded row's hidden states, and so the
        # per-tensor activation ranges INT8 quantises with, are the graph's own
        with torch.no_grad(), _eager_attention(model.module):
            return model.module(**inputs, use_cache=False).logits.numpy()

    torch_ref = forward() if linears else None
    ort_ref = session(fp32).run(["logits"], feed)[0] if len(linears) < len(layers) else None
    for i, layer in enumerate(layers):
        check(cancel)
        mod = linears.get(layer["node"])
        if mod is not None:
            hook = mod.register_forward_hook(lambda m, args, out: int8.int8_linear(
                args[0], m.weight, m.bias, arithmetic=kernel.arithmetic))
            try:
                got = forward()
            finally:
                hook.remove()
            layer["sensitivity"], layer["scan"] = _relative_error(got, torch_ref, feed), "torch-emulated"
            layer["arithmetic"] = kernel.arithmetic
        else:
            probe = work / f"probe-{i}.onnx"
            quantize(fp32, probe, nodes=[layer["node"]])
            layer["sensitivity"], layer["scan"] = output_error(probe, feed, ort_ref), "onnxruntime"
            probe.unlink()
            data_file(probe).unlink(missing_ok=True)
        report(progress, i + 1, len(layers), f"sensitivity of {layer['layer']}")
    return layers


def _writable(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SlimError(f"cannot create {path.parent}: {exc.strerror or exc}", hint="choose a writable --out") from None
    if not os.access(path.parent, os.W_OK):
        raise SlimError(f"cannot write into {path.parent}", hint="choose a writable --out")
    if path.is_dir():
        raise SlimError(f"{path} is a folder", hint="give a file name ending in .onnx")


def calibration_feed(model, batch: int = 2, seq: int = 64, text: str | None = None) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in sample_inputs(model, batch=batch, seq=seq, text=text).items()}


def export_quantized(model, out: str | Path, *, mode: str = "int8", fp32_fraction: float = 0.1,
                     keep_fp32: list[str] | None = None, sensitivity: dict[str, float] | None = None,
                     sample_text: str | None = None,
                     progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, Any]:
    """FP32 export + check, then INT8 (all weight MatMuls) or mixed (sensitive layers stay FP32).

    ``sensitivity`` ({layer: value} from an earlier scan of the same model) skips the scan when it
    covers every layer; ``keep_fp32`` names the layers to keep FP32 instead of the scan's choice."""
    import tempfile

    out = Path(out)
    _writable(out)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".slimgui-export-") as work_dir:
        work = Path(work_dir)
        fp32 = work / "fp32.onnx"
        base = export_onnx(model, fp32, sample_text=sample_text, cancel=cancel)
        feed = calibration_feed(model, text=sample_text)
        reference = session(fp32).run(["logits"], feed)[0]
        layers = weight_matmuls(fp32)
        exclude: list[str] = []
        result: dict[str, Any] = {"mode": mode, "fp32_parity": {k: base[k] for k in ("max_abs_diff", "cosine")}}
        if mode == "mixed":
            if sensitivity and all(x["layer"] in sensitivity for x in layers):
                for x in layers:  # a re-export with the user's choices: the earlier scan still holds
                    x["sensitivity"] = float(sensitivity[x["layer"]])
            else:
                layers = sensitivity_scan(fp32, work, feed, model=model, progress=progress, cancel=cancel)
            ranked = sorted(layers, key=lambda x: -x["sensitivity"])
            n_keep = max(1, round(fp32_fraction * len(layers))) if keep_fp32 is None else 0
            keep = {x["node"] for x in ranked[:n_keep]}
            for name in keep_fp32 or []:
                match = [x["node"] for x in layers if name in (x["node"], x["layer"])]
                if not match:
                    raise SlimError(f"no quantisable layer named '{name}'",
                                    hint="see the sensitivity report for the layer names")
                keep.update(match)
            exclude = sorted(keep)
            for x in layers:
                x["precision"] = "fp32" if x["node"] in keep else "int8"
        from slimgui.core import int8

        kernel = int8.kernel()
        result["int8_kernel"] = kernel.to_json()
        warning = int8.speed_warning()
        if warning:
            result.setdefault("warnings", []).append(warning)
        quantize(fp32, out, exclude=exclude)
        err = output_error(out, feed, reference)
        got, ref = _real(session(out).run(["logits"], feed)[0], feed), _real(reference, feed)
        result.update({"file": str(out), "bytes": total_bytes(out), "fp32_bytes": total_bytes(fp32),
                       "size_ratio": total_bytes(out) / total_bytes(fp32), "output_rel_error": err,
                       "external_data": data_file(out).is_file(),
                       "cosine": _cosine(got, ref), "max_abs_diff": float(np.abs(got - ref).max()),
                       "layers": layers, "fp32_layers": [x["layer"] for x in layers if x["node"] in exclude],
                       "seconds": round(time.perf_counter() - t0, 2)})
    result["notes"] = check_notes(result, mode)
    atomic_write_text(str(out) + ".check.json", json.dumps(result, indent=1))
    return result
