"""Saving a streamed model: the kept tensors copied shard by shard, never decoded.

Each source shard gives one output shard holding its kept tensors, renamed to their new block
(``model.layers.{old}.`` → the new index), with a safetensors header written here (``{"format": "pt"}`` metadata,
so transformers loads it) and the bytes copied by offset with ``os.copy_file_range`` (the kernel copies; peak
memory stays at one header).  The dtype is the stored one (a bf16 model stays bf16).  The index is rewritten with
the new ``total_size``; the config's ``num_hidden_layers`` and per-layer lists were sliced by ``apply_plan``.  The
caller (:func:`slimgui.core.ops.save`) writes into a staging folder and moves it into place, so a failure
(a full disk) leaves nothing half-written and the source untouched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from slimgui.core.errors import SlimError
from slimgui.core.fmt import human_bytes

from .stream import INDEX_NAME, SINGLE_NAME, TensorEntry, stream_of

CHUNK = 64 << 20


def copy_range(src_fd: int, dst_fd: int, offset: int, count: int) -> None:
    """Append ``count`` bytes of ``src_fd`` from ``offset`` to ``dst_fd`` (in the kernel where it can)."""
    done = 0
    fast = hasattr(os, "copy_file_range")
    while done < count:
        want = min(CHUNK, count - done)
        if fast:
            try:
                n = os.copy_file_range(src_fd, dst_fd, want, offset + done)
            except OSError as exc:
                import errno

                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                fast = False
                continue
        else:
            data = os.pread(src_fd, want, offset + done)
            n = os.write(dst_fd, data) if data else 0
        if n <= 0:
            raise SlimError("a shard ended early while it was being copied", hint="the source shard may be damaged")
        done += n


def _header(entries: list[tuple[str, TensorEntry]]) -> bytes:
    doc: dict = {"__metadata__": {"format": "pt"}}
    pos = 0
    for name, e in entries:
        doc[name] = {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [pos, pos + e.nbytes]}
        pos += e.nbytes
    raw = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return len(raw).to_bytes(8, "little") + raw


def write_shard(path: Path, entries: list[tuple[str, TensorEntry]]) -> int:
    """Write one safetensors file of ``entries`` ((new name, source entry)); returns the tensor bytes."""
    fds: dict[Path, int] = {}
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(out, _header(entries))
        for _, e in entries:
            if e.shard not in fds:
                fds[e.shard] = os.open(e.shard, os.O_RDONLY)
            copy_range(fds[e.shard], out, e.begin, e.nbytes)
        os.fsync(out)
    finally:
        os.close(out)
        for fd in fds.values():
            os.close(fd)
    return sum(e.nbytes for _, e in entries)


def plan_tensors(model) -> list[list[tuple[str, TensorEntry]]]:
    """The kept tensors, renamed, grouped by the source shard they come from (empty groups left out)."""
    src = stream_of(model)
    new_of = {old: new for new, old in enumerate(src.kept if src.kept is not None else
                                                   range(len(src.block_bytes())))}
    groups: list[list[tuple[str, TensorEntry]]] = []
    for shard in src.checkpoint.shards:
        items = sorted((e for e in src.checkpoint.tensors.values() if e.shard == shard), key=lambda e: e.begin)
        kept = []
        for e in items:
            b = src.names.block_of(e.name)
            if b is None:
                kept.append((e.name, e))
            elif b[0] in new_of:
                kept.append((src.names.renamed(e.name, new_of[b[0]]), e))
        if kept:
            groups.append(kept)
    return groups


def save_streamed(model, out_dir: str) -> str:
    """Write the streamed (and pruned) model as a transformers folder in ``out_dir`` (a staging folder)."""
    src = stream_of(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = plan_tensors(model)
    need = sum(e.nbytes for g in groups for _, e in g)
    free = shutil.disk_usage(out).free
    if need + (16 << 20) > free:
        raise SlimError(f"not enough disk space to save the model into {out.parent}: it needs {human_bytes(need)}, "
                        f"{human_bytes(free)} is free; nothing was written", hint="free some space or choose another --out")
    single = src.checkpoint.index is None and len(groups) == 1
    names = [SINGLE_NAME] if single else [f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
                                          for k in range(len(groups))]
    weight_map: dict[str, str] = {}
    total = 0
    for name, group in zip(names, groups):
        total += write_shard(out / name, group)
        for tname, _ in group:
            weight_map[tname] = name
    if not single:
        index = {"metadata": {**{k: v for k, v in src.checkpoint.metadata.items() if k != "total_size"},
                              "total_size": total},
                 "weight_map": dict(sorted(weight_map.items()))}
        (out / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    module = model.module
    module.config.save_pretrained(out)
    dtypes = model.extra.get("stored_dtypes")
    cfg_path = out / "config.json"
    doc = json.loads(cfg_path.read_text(encoding="utf-8"))
    doc["dtype"] = dtypes["default"] if dtypes else "float32"
    cfg_path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    gen = getattr(module, "generation_config", None)
    if gen is not None and getattr(module, "can_generate", lambda: False)():
        gen.save_pretrained(out)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(out)
    source = Path(str(model.source))
    if source.is_dir():
        from .blocks import copy_sentence_transformers

        copy_sentence_transformers(source, out, getattr(model.config, "hidden_size", None))
    return str(out)
