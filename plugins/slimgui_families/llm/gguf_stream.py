"""A GGUF file too big to dequantise in memory, streamed: converted tensor by tensor into a sharded float32
safetensors folder in the user cache, which then opens streamed like any other big checkpoint (issue 17).

transformers' GGUF loader dequantises every tensor of the file at once (a 7 B Q4 file, 4 GB on disk, becomes 28 GB
of float32), so a machine with less memory cannot open it that way.  Here the same pieces transformers uses are
applied one tensor at a time: its config and tokenizer readers (``gguf_file=``), its name map from GGUF to the
model's parameter names (``get_gguf_hf_weights_map`` on a meta-device model), its per-architecture tensor
processors (the reverse permutation of LLaMA's q/k rows, ...) and gguf-py's ``dequantize``.  The header of every
shard is written first (the shapes come from the meta model), then each tensor is dequantised and appended, so
memory stays at about one tensor; float32 keeps every dequantised value exact.  The folder is written to a staging
folder and moved into place, keyed by the file's path, size and modification time, so opening the same file again
reuses it; a disk without room for it is said before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.fmt import human_bytes
from slimgui.core.progress import CancelToken, ProgressFn, check, report

SHARD_BYTES = 2 * 10**9
FORMAT_VERSION = 1


def dequantised_bytes(path: Path) -> int:
    """What the file's tensors take as float32 (from its header: nothing decoded)."""
    from gguf import GGUFReader

    return sum(int(t.n_elements) * 4 for t in GGUFReader(str(path)).tensors)


def converted_folder(path: Path) -> Path:
    """Where the conversion of ``path`` is kept (the same file → the same folder)."""
    from slimgui.core.io import cache_dir

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{FORMAT_VERSION}".encode()).hexdigest()[:24]
    return cache_dir() / "gguf" / f"{path.stem}-{key}"


def convert(path: Path, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Path:
    """The sharded float32 safetensors folder of the GGUF file ``path`` (converted once, then reused)."""
    out = converted_folder(path)
    if (out / "model.safetensors.index.json").is_file() and (out / "config.json").is_file():
        return out
    import numpy as np
    import torch
    from accelerate import init_empty_weights
    from gguf import GGUFReader, dequantize
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
    )

    folder, name = str(path.parent), path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    parsed = load_gguf_checkpoint(str(path), return_tensors=False)
    reader = GGUFReader(str(path))
    file_arch = bytes(reader.fields["general.architecture"].parts[reader.fields["general.architecture"].data[0]]
                      ).decode("utf-8")
    processor = TENSOR_PROCESSORS.get(file_arch, TensorProcessor)(config=parsed["config"])
    with init_empty_weights():
        meta = AutoModelForCausalLM.from_config(config)
    mapping = get_gguf_hf_weights_map(meta, processor)
    shapes = {n: tuple(p.shape) for n, p in meta.state_dict().items()}
    plan: list[tuple[Any, str, tuple[int, ...]]] = []
    for t in reader.tensors:
        target = mapping.get(t.name)
        if target is None or target not in shapes:
            continue  # e.g. rope frequencies llama.cpp stores and the model computes
        plan.append((t, target, shapes[target]))
    if not plan:
        raise SlimError(f"no tensor of {name} maps to a {type(meta).__name__} parameter",
                        hint="transformers' GGUF loader does not know this file's tensor names")
    total = sum(4 * int(np.prod(shape)) for _, _, shape in plan)
    free = shutil.disk_usage(out.parent if out.parent.exists() else _existing(out.parent)).free
    if total * 1.02 + (64 << 20) > free:
        raise SlimError(f"streaming {name} needs {human_bytes(total)} of disk for its float32 tensors, and the cache "
                        f"folder has {human_bytes(free)} free",
                        hint="free disk space, or set SLIMGUI_CACHE_DIR to a folder on a larger disk")
    shards: list[list[tuple[Any, str, tuple[int, ...]]]] = [[]]
    size = 0
    for item in plan:
        n = 4 * int(np.prod(item[2]))
        if shards[-1] and size + n > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += n
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        weight_map: dict[str, str] = {}
        done = 0
        for k, group in enumerate(shards):
            fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
            header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
            pos = 0
            for _, target, shape in group:
                n = 4 * int(np.prod(shape))
                header[target] = {"dtype": "F32", "shape": list(shape), "data_offsets": [pos, pos + n]}
                pos += n
                weight_map[target] = fname
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)
            with open(staging / fname, "wb") as fh:
                fh.write(len(raw).to_bytes(8, "little") + raw)
                for t, target, shape in group:
                    check(cancel)
                    weights = dequantize(t.data, t.tensor_type)
                    weights = processor.process(weights=weights, name=t.name, tensor_key_mapping=mapping,
                                                parsed_parameters={"tensors": {}, "config": parsed["config"]}).weights
                    arr = np.ascontiguousarray(np.asarray(weights, dtype=np.float32))
                    if tuple(arr.shape) != shape:
                        if arr.size != int(np.prod(shape)):
                            raise SlimError(f"{name}: tensor {t.name} has {arr.size} values, {target} needs "
                                            f"{tuple(shape)}", hint="the file's metadata and tensors disagree")
                        arr = arr.reshape(shape)
                    fh.write(memoryview(arr).cast("B"))
                    done += 1
                    del arr, weights
                    report(progress, done, len(plan), f"dequantising {name} to float32: {target}")
                fh.flush()
                os.fsync(fh.fileno())
        (staging / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1), encoding="utf-8")
        config.dtype = torch.float32
        config.save_pretrained(staging)
        try:
            AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(staging)
        except Exception:  # noqa: BLE001 - a model without a usable tokenizer still opens
            pass
        (staging / "slimgui_gguf.json").write_text(json.dumps(
            {"gguf": str(path.resolve()), "architecture": file_arch, "tensors": len(plan), "float32_bytes": total,
             "format_version": FORMAT_VERSION}, indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p
