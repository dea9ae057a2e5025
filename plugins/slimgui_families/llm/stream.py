"""Models bigger than memory: a safetensors checkpoint read block by block.

A streamed model is opened on the meta device (the structure, with exact parameter counts and bytes per block
taken from the shards' headers, never from the weights).  The criteria (:mod:`.stream_criteria`) then load one
block at a time from its shard, run it over the calibration batch's hidden states and drop it; pruning
(:mod:`.stream_prune`) copies the kept tensors' bytes from shard to shard without decoding them.

The safetensors header (8 bytes of little-endian length, then JSON: each tensor's dtype, shape and byte range)
is read here directly, because the ``safetensors`` library gives no byte offsets, and the prune copies bytes
by offset (``os.copy_file_range``: nothing passes through Python's memory).  Tensors themselves are read with
``safetensors.safe_open``.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.fmt import human_bytes as fmt_bytes

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
HEADER_LIMIT = 100 << 20  # safetensors itself refuses headers over 100 MB
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}
MARGIN = 1.25  # memory taken by a model in memory over its weights' float32 size (activations, allocator)
RESERVE = 1 << 30  # left to the system and the app


@dataclass
class TensorEntry:
    name: str
    shard: Path
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute byte offsets in the shard file
    end: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """(header JSON, offset of the data) of a safetensors file; a damaged or truncated file is a SlimError."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise SlimError(f"{path.name} is truncated ({size} bytes: not even a safetensors header)",
                                hint="copy the shard again (a download may have stopped)")
            (n,) = struct.unpack("<Q", head)
            if n > HEADER_LIMIT or 8 + n > size:
                raise SlimError(f"{path.name} is truncated or not a safetensors file (its header says {n:,} "
                                f"bytes, the file has {size:,})", hint="copy the shard again (a download may have stopped)")
            raw = fh.read(n)
    except OSError as exc:
        raise SlimError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SlimError(f"{path.name} has a damaged safetensors header",
                        hint="copy the shard again, or re-save the checkpoint") from None
    if not isinstance(doc, dict):
        raise SlimError(f"{path.name} has a damaged safetensors header", hint="copy the shard again")
    start = 8 + n
    ends = [int(v["data_offsets"][1]) for k, v in doc.items()
            if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("data_offsets"), list)]
    if ends and start + max(ends) > size:
        raise SlimError(f"{path.name} is truncated: its header describes {start + max(ends):,} bytes, the file has "
                        f"{size:,}", hint="copy the shard again (a download or a copy may have stopped)")
    return doc, start


@dataclass
class Checkpoint:
    """The tensors of a safetensors checkpoint (an index and its shards, or one ``model.safetensors``): where each
    is, its dtype, shape and bytes, from the headers only."""

    folder: Path
    index: Path | None
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    shards: list[Path] = field(default_factory=list)  # in the index's order
    metadata: dict[str, Any] = field(default_factory=dict)  # the index's own metadata

    @classmethod
    def open(cls, folder: Path) -> Checkpoint | None:
        """The checkpoint in ``folder``, or None when it has no safetensors weights (pickles, config only)."""
        folder = Path(folder)
        index = folder / INDEX_NAME
        if index.is_file():
            return cls._from_index(folder, index)
        single = folder / SINGLE_NAME
        if single.is_file():
            ck = cls(folder, None, shards=[single])
            ck._add_shard(single)
            return ck
        return None

    @classmethod
    def _from_index(cls, folder: Path, index: Path) -> Checkpoint:
        from slimgui.core.io import read_json_file

        doc = read_json_file(index, "the weights' index", limit=64 << 20)
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise SlimError(f"{index.name} has no weight_map", hint="repair or replace the index")
        names = []
        for v in weight_map.values():
            if not isinstance(v, str) or Path(v).name != v:
                raise SlimError(f"{index.name} names a shard '{v}' outside its folder", hint="repair or replace the index")
            if v not in names:
                names.append(v)
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise SlimError(f"{index.name} names {len(names)} weight shard(s) and {len(missing)} are missing: "
                            f"{', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}",
                            hint="copy every shard beside the index (a download may have stopped)")
        ck = cls(folder, index, shards=[folder / n for n in names],
                 metadata=dict(doc.get("metadata") or {}) if isinstance(doc.get("metadata"), dict) else {})
        for shard in ck.shards:
            ck._add_shard(shard)
        for name, shard in weight_map.items():
            entry = ck.tensors.get(name)
            if entry is None or entry.shard.name != shard:
                raise SlimError(f"{index.name} says {name} is in {shard}, and {shard} does not hold it",
                                hint="the index does not belong to these shards: repair or replace it")
        return ck

    def _add_shard(self, shard: Path) -> None:
        doc, start = read_header(shard)
        for name, v in doc.items():
            if name == "__metadata__":
                continue
            try:
                b, e = (int(x) for x in v["data_offsets"])
                entry = TensorEntry(name, shard, str(v["dtype"]), tuple(int(s) for s in v["shape"]), start + b, start + e)
            except (KeyError, TypeError, ValueError):
                raise SlimError(f"{shard.name} has a damaged header entry for {name}",
                                hint="copy the shard again, or re-save the checkpoint") from None
            if entry.dtype in DTYPE_BYTES and entry.nbytes != entry.numel * DTYPE_BYTES[entry.dtype]:
                raise SlimError(f"{shard.name}: {name} takes {entry.nbytes:,} bytes for {entry.numel:,} {entry.dtype} "
                                "values", hint="the shard is damaged; copy it again")
            self.tensors.setdefault(name, entry)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def total_params(self) -> int:
        return sum(t.numel for t in self.tensors.values())


class StackNames:
    """Maps the checkpoint's tensor names to blocks: ``model.layers.7.mlp.up_proj.weight`` → (7, suffix), whether
    the checkpoint names them with the module's full path or without its base-model prefix (``layers.7...``)."""

    def __init__(self, stack_path: str, names: list[str]):
        forms = [stack_path]
        parts = stack_path.split(".")
        forms += [".".join(parts[k:]) for k in range(1, len(parts))]
        self.prefix = stack_path
        for form in forms:
            pat = re.compile(rf"^{re.escape(form)}\.(\d+)\.(.+)$")
            if any(pat.match(n) for n in names):
                self.prefix = form
                break
        self._pat = re.compile(rf"^{re.escape(self.prefix)}\.(\d+)\.(.+)$")
        self.module_prefix = stack_path[: len(stack_path) - len(self.prefix)]  # what the checkpoint leaves out

    def block_of(self, name: str) -> tuple[int, str] | None:
        m = self._pat.match(name)
        return (int(m.group(1)), m.group(2)) if m else None

    def renamed(self, name: str, new_index: int) -> str:
        _, suffix = self.block_of(name)
        return f"{self.prefix}.{new_index}.{suffix}"


def available_memory() -> int:
    """Bytes of memory this process may still take: what the system has available, or
    ``SLIMGUI_MEMORY_BUDGET`` (bytes, or with a K/M/G suffix) when set — to test or to cap the choice."""
    env = os.environ.get("SLIMGUI_MEMORY_BUDGET", "").strip()
    if env:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?", env)
        if m:
            return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))
    import psutil

    return int(psutil.virtual_memory().available)


def in_memory_bytes(ck: Checkpoint) -> int:
    """What opening the checkpoint in memory takes: its floating tensors as float32 (how SlimGUI computes)."""
    return sum(t.numel * 4 if t.dtype in ("BF16", "F16", "F32") else t.nbytes for t in ck.tensors.values())


@dataclass
class StreamPlan:
    """Why a model is streamed and what streaming will take."""

    forced: bool
    weights_bytes: int  # in memory, as float32
    available: int
    block_bytes: int  # the largest block, as float32
    resident_bytes: int  # what stays in memory: embeddings, head, final norm (float32)
    notes: list[str] = field(default_factory=list)

    def need(self, hidden_bytes: int = 0) -> int:
        """Memory the streamed criteria need: the resident parts, two copies of a block (weights and, for
        ``taylor``, their gradients) and the calibration's hidden states held in memory."""
        return self.resident_bytes + 3 * self.block_bytes + hidden_bytes + (256 << 20)


def fits_in_memory(ck: Checkpoint) -> bool:
    """Whether the checkpoint's weights, as float32, fit in the memory available with a margin."""
    return in_memory_bytes(ck) * MARGIN + RESERVE <= available_memory()


def make_plan(ck: Checkpoint, names: StackNames, forced: bool) -> StreamPlan:
    """The :class:`StreamPlan` of streaming ``ck`` (``forced``: asked for with --stream, else chosen because the
    weights do not fit)."""
    weights, avail = in_memory_bytes(ck), available_memory()
    per_block: dict[int, int] = {}
    resident = 0
    for t in ck.tensors.values():
        b = names.block_of(t.name)
        size = t.numel * 4 if t.dtype in ("BF16", "F16", "F32") else t.nbytes
        if b is None:
            resident += size
        else:
            per_block[b[0]] = per_block.get(b[0], 0) + size
    plan = StreamPlan(forced=forced, weights_bytes=weights, available=avail,
                      block_bytes=max(per_block.values(), default=0), resident_bytes=resident)
    why = ("--stream given" if forced else
           f"its weights take {fmt_bytes(weights)} as float32, more than the {fmt_bytes(avail)} of memory available "
           f"with a margin")
    plan.notes.append(f"streaming the weights block by block ({why}): about {fmt_bytes(plan.need())} of memory "
                      f"needed (one block {fmt_bytes(plan.block_bytes)} as float32, embeddings/head/norm "
                      f"{fmt_bytes(resident)}, plus the calibration's hidden states)")
    return plan


@dataclass
class StreamSource:
    """What a streamed :class:`~slimgui.core.model.LoadedModel` carries in ``extra["stream"]``."""

    checkpoint: Checkpoint
    names: StackNames
    plan: StreamPlan
    stack_path: str
    kept: list[int] | None = None  # after a prune: the source blocks kept, in order
    resident_loaded: bool = False

    def source_index(self, position: int) -> int:
        """The checkpoint's block index of the block now at ``position``."""
        return self.kept[position] if self.kept is not None else position

    def block_entries(self, source_index: int) -> dict[str, TensorEntry]:
        """{name inside the block: entry} of one block of the checkpoint."""
        out = {}
        for t in self.checkpoint.tensors.values():
            b = self.names.block_of(t.name)
            if b is not None and b[0] == source_index:
                out[b[1]] = t
        return out

    def block_bytes(self) -> dict[int, int]:
        """Stored bytes of each block of the checkpoint (from the headers)."""
        out: dict[int, int] = {}
        for t in self.checkpoint.tensors.values():
            b = self.names.block_of(t.name)
            if b is not None:
                out[b[0]] = out.get(b[0], 0) + t.nbytes
        return out

    def block_params(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for t in self.checkpoint.tensors.values():
            b = self.names.block_of(t.name)
            if b is not None:
                out[b[0]] = out.get(b[0], 0) + t.numel
        return out


def stream_of(model) -> StreamSource | None:
    """The model's :class:`StreamSource` when it was opened streamed, else None."""
    extra = getattr(model, "extra", None) or {}
    src = extra.get("stream")
    return src if isinstance(src, StreamSource) else None


def read_tensors(entries: dict[str, TensorEntry], dtype=None) -> dict[str, Any]:
    """{key: tensor} of ``entries`` read with ``safetensors.safe_open`` (each shard opened once, closed after),
    converted to ``dtype`` when given."""
    from safetensors import safe_open

    by_shard: dict[Path, list[tuple[str, TensorEntry]]] = {}
    for key, e in entries.items():
        by_shard.setdefault(e.shard, []).append((key, e))
    out = {}
    for shard, items in by_shard.items():
        try:
            with safe_open(str(shard), framework="pt") as fh:
                for key, e in items:
                    t = fh.get_tensor(e.name)
                    out[key] = t.to(dtype) if dtype is not None and t.is_floating_point() else t.clone()
        except SlimError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged shard found while reading
            raise SlimError(f"cannot read {shard.name}: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}",
                            hint="the shard may be damaged: copy it again") from None
    return out


def materialize_block(model, position: int, *, requires_grad: bool = False):
    """A real copy of the block now at ``position`` with its weights read from the checkpoint (float32), the
    meta block untouched: ~one block of memory, freed when the copy is dropped."""
    import copy

    import torch
    from accelerate.utils import set_module_tensor_to_device

    src = stream_of(model)
    from .blocks import find_stack

    _, layers = find_stack(model)
    block = copy.deepcopy(layers[position])
    entries = src.block_entries(src.source_index(position))
    values = read_tensors(entries, torch.float32)
    names = [n for n, _ in block.named_parameters()] + [n for n, b in block.named_buffers() if b.device.type == "meta"]
    missing = [n for n in names if n not in values]
    if missing:
        raise SlimError(f"the checkpoint in {src.checkpoint.folder} has no {src.names.prefix}."
                        f"{src.source_index(position)}.{missing[0]}",
                        hint="the weights do not match the config: repair or replace the checkpoint")
    for name in names:
        set_module_tensor_to_device(block, name, "cpu", value=values[name])
    for p in block.parameters():
        p.requires_grad_(requires_grad)
    block.eval()
    return block


def load_resident(model, *, head: bool = True) -> None:
    """Read everything outside the block stack (embeddings, final norm, head) into the meta model, once.

    ``head=False`` leaves an untied output head on the meta device (``bi`` runs the blocks only, and the head of a
    large vocabulary is a block's worth of memory); a later call with ``head=True`` reads what is still missing."""
    import torch
    from accelerate.utils import set_module_tensor_to_device

    src = stream_of(model)
    if src is None or src.resident_loaded:
        return
    module = model.module
    pre = src.names.module_prefix
    own = dict(module.named_parameters(remove_duplicate=False))
    own.update(dict(module.named_buffers(remove_duplicate=False)))
    config = module.config.get_text_config() if hasattr(module.config, "get_text_config") else module.config
    tied = bool(getattr(module.config, "tie_word_embeddings", False) or getattr(config, "tie_word_embeddings", False))
    out = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    head_ids = {id(p) for p in out.parameters()} if (out is not None and not tied) else set()
    skipped = {n for n, p in own.items() if id(p) in head_ids} if not head else set()
    wanted: dict[str, tuple[str, Any]] = {}
    for t in src.checkpoint.tensors.values():
        if src.names.block_of(t.name) is not None:
            continue
        target = t.name if t.name in own else pre + t.name if pre + t.name in own else None
        if target is None or target in skipped or (isinstance(own[target], torch.nn.Parameter)
                                                    and own[target].device.type != "meta"):
            continue  # a rotary inv_freq the module computes itself, a head left out, or a parameter read already
        wanted[t.name] = (target, t)
    values = read_tensors({name: t for name, (_, t) in wanted.items()}, torch.float32)
    for name, value in values.items():
        set_module_tensor_to_device(module, wanted[name][0], "cpu", value=value)
    if tied:
        module.tie_weights()
    stack_prefix = src.stack_path + "."
    left = [n for n, p in module.named_parameters() if p.device.type == "meta" and not n.startswith(stack_prefix)
            and n not in skipped]
    if left:
        raise SlimError(f"the checkpoint in {src.checkpoint.folder} has no {left[0]}",
                        hint="the weights do not match the config: repair or replace the checkpoint")
    for p in module.parameters():
        if p.device.type != "meta":
            p.requires_grad_(False)
    src.resident_loaded = not skipped


def refuse_streamed(model, what: str) -> None:
    """A SlimError when ``model`` is streamed: ``what`` (generation, evaluation, export, retraining, ...) runs the
    whole model at once and needs its weights in memory."""
    src = stream_of(model)
    if src is None:
        return
    raise SlimError(f"{what} needs the whole model in memory, and {Path(str(model.source)).name} is read block by "
                    f"block (its weights take {fmt_bytes(src.plan.weights_bytes)} as float32, "
                    f"{fmt_bytes(available_memory())} of memory is available)",
                    hint="prune it first (scoring and pruning stream), or use a machine with more memory")
