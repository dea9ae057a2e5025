"""Refusing untrusted pickles before anything else touches them.

PyTorch's ``weights_only=True`` unpickler allows only tensors and plain containers: a pickle that
names any other global (``os.system``, ``builtins.exec``...) is refused *before* that global is
imported or called.  We run it on every pickle-based checkpoint before an adapter sees the file.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from .errors import SlimError

PICKLE_SUFFIXES = {".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle"}


def is_pickle_checkpoint(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES


def check_pickle_checkpoint(path: str | Path) -> None:
    """Raise :class:`SlimError` unless ``path`` loads with ``torch.load(weights_only=True)``."""
    import torch

    path = Path(path)
    try:
        torch.load(path, map_location="meta", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else "")
        raise SlimError(f"refused to load {path.name}: it holds pickled code, not only tensors ({detail.strip()[:160]})",
                        hint="only load checkpoints you trust; convert them to .safetensors") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError, AttributeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SlimError(f"{path.name} is not a readable PyTorch checkpoint ({msg[:160]})",
                        hint="the file may be truncated or of another kind") from None


def check_safetensors(path: str | Path) -> list[str]:
    """Validate a ``.safetensors`` header and size without reading the tensors; return its tensor names."""
    from safetensors import safe_open

    path = Path(path)
    try:
        # safe_open checks the header and that the file covers every tensor it declares
        with safe_open(str(path), framework="pt") as fh:
            names = list(fh.keys())
    except Exception as exc:  # safetensors raises its own error types
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SlimError(f"{path.name} is not a valid safetensors file ({msg[:160]})",
                        hint="the file may be truncated or corrupt; re-download or re-export it") from None
    return names
