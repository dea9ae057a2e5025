"""GGUF files (the format most local models are shared in), opened through transformers' GGUF loader.

``from_pretrained(folder, gguf_file=name)`` reads the file's metadata as the config and dequantises its tensors
(F16, BF16, Q8_0, Q4_K, ...) to float32, the dtype SlimGUI computes in; the model then scores, prunes and saves
as a transformers folder (float32 safetensors) like any other.  What the file stored and what it became is said
in the model's notes.  The file's header is read here only to say that (``gguf.GGUFReader``: memory-mapped,
no tensor decoded).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.fmt import human_bytes

MAGIC = b"GGUF"


def is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == MAGIC
    except OSError:
        return False


def match(path: Path) -> float | tuple[float, Any]:
    """A ``.gguf`` file: 0.8 when it starts with the GGUF magic (0.3 when it does not: load explains)."""
    if not path.is_file() or path.suffix.lower() != ".gguf":
        return 0.0
    return (0.8, {"gguf": str(path)}) if is_gguf(path) else 0.3


def _stored(path: Path) -> tuple[str, Counter, int]:
    """(architecture, {stored tensor type: count}, tensor bytes) from the file's header."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise SlimError("opening GGUF files needs the gguf package", hint="pip install gguf") from None
    try:
        reader = GGUFReader(str(path))
        field = reader.fields.get("general.architecture")
        arch = bytes(field.parts[field.data[0]]).decode("utf-8") if field is not None else "?"
        types = Counter(t.tensor_type.name for t in reader.tensors)
        size = sum(int(t.n_bytes) for t in reader.tensors)
    except SlimError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file: one line
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise SlimError(f"{path.name} is not a readable GGUF file ({first})",
                        hint="the file may be truncated or damaged: download it again") from None
    return arch, types, size


def load_gguf(adapter, path: str, *, progress=None, trust_remote_code: bool = False, stream: bool | None = None,
              cancel=None):
    """Open a ``.gguf`` file as a :class:`~slimgui.core.model.LoadedModel` of the llm family (dequantised).

    ``stream``: True converts it to a float32 safetensors folder in the cache one tensor at a time and opens that
    streamed (:mod:`.gguf_stream`); None (default) does so when its float32 tensors would not fit in memory."""
    import torch

    from slimgui.core.model import LoadedModel
    from slimgui.core.progress import report

    from .adapter import FAMILY, _first_line, _quiet_transformers

    p = Path(path)
    if not is_gguf(p):
        raise SlimError(f"{p.name} is not a GGUF file (it does not start with 'GGUF')",
                        hint="the file may be damaged, or another format renamed")
    report(progress, 0, 3, "reading the GGUF header")
    arch, types, size = _stored(p)
    if stream is not False:
        from .gguf_stream import dequantised_bytes
        from .stream import MARGIN, RESERVE, available_memory

        need = dequantised_bytes(p)
        if stream or need * MARGIN + RESERVE > available_memory():
            return _load_streamed(adapter, p, arch, types, need, bool(stream), progress, cancel)
    _quiet_transformers()
    from transformers import AutoConfig, AutoTokenizer

    folder, name = str(p.parent), p.name
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
    except Exception as exc:  # noqa: BLE001
        raise SlimError(f"transformers cannot read {name} (architecture '{arch}'): {_first_line(exc)}",
                        hint="transformers' GGUF loader knows LLaMA, Mistral, Qwen2/3, Gemma, Phi-3 ... files") from None
    cls, kind = adapter._model_class(config)
    report(progress, 1, 3, f"dequantising {human_bytes(size)} of GGUF tensors to float32")
    try:
        module = cls.from_pretrained(folder, gguf_file=name, config=config, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001
        raise SlimError(f"could not load the tensors of {name}: {_first_line(exc)}",
                        hint="the file may be damaged, or of a quantisation transformers cannot dequantise") from None
    module.eval()
    # the tensors are plain float32 now: what transformers keeps of the file's quantisation would only make
    # save_pretrained refuse ("quantized with gguf and is not serializable")
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(module, attr):
            setattr(module, attr, None)
    if hasattr(module, "is_quantized"):
        module.is_quantized = False
    if hasattr(module.config, "quantization_config"):
        del module.config.quantization_config
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
    except Exception:  # noqa: BLE001 - a model without a usable tokenizer still opens (criteria say what they need)
        tokenizer = None
    stored = ", ".join(f"{n} × {t}" for t, n in types.most_common())
    notes = [f"GGUF {name} ({arch}): {sum(types.values())} tensors stored as {stored}; dequantised to float32 "
             f"({human_bytes(sum(p.numel() for p in module.parameters()) * 4)} in memory), saved as a "
             "transformers folder in float32"]
    report(progress, 3, 3, "loaded")
    model = LoadedModel(family=FAMILY, adapter="transformers", source=str(p), module=module, config=module.config,
                        tokenizer=tokenizer, has_weights=True, impl=adapter,
                        extra={"kind": kind, "weight_files": [str(p)], "notes": notes,
                               "gguf": {"file": str(p), "architecture": arch, "stored": dict(types),
                                        "dtype": "float32"}})
    adapter.stack(model)  # fail early when there is no block stack
    return model


def _load_streamed(adapter, p: Path, arch: str, types: Counter, need: int, forced: bool, progress, cancel):
    """The file converted tensor by tensor to float32 safetensors (:func:`.gguf_stream.convert`), opened streamed."""
    from .adapter import _first_line
    from .gguf_stream import convert, converted_folder

    reused = (converted_folder(p) / "model.safetensors.index.json").is_file()
    try:
        folder = convert(p, progress=progress, cancel=cancel)
    except SlimError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise SlimError(f"could not convert {p.name} for streaming: {_first_line(exc)}",
                        hint="the file may be damaged, or of an architecture transformers' GGUF loader does not know"
                        ) from None
    model = adapter.load(str(folder), progress=progress, stream=True)
    stored = ", ".join(f"{n} × {t}" for t, n in types.most_common())
    why = "as asked (--stream)" if forced else "its float32 tensors do not fit in memory"
    model.extra["notes"] = [f"GGUF {p.name} ({arch}): {sum(types.values())} tensors stored as {stored}; dequantised "
                            f"to float32 one tensor at a time into {folder} ({human_bytes(need)} on disk"
                            f"{', converted earlier' if reused else ''}) and streamed, {why}",
                            *model.extra.get("notes", [])]
    model.extra["gguf"] = {"file": str(p), "architecture": arch, "stored": dict(types), "dtype": "float32",
                           "converted": str(folder)}
    return model
