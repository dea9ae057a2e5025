"""The demo corpus: the Python standard library's own source, read from the running interpreter.

Every machine that runs SlimGUI has it, so the demo language model and its held-out text can be
rebuilt anywhere.  Files are split into train / eval by a hash of their path inside the stdlib, so
the same modules are held out on every machine and every Python version.
"""

from __future__ import annotations

import sysconfig
import zlib
from collections.abc import Iterator
from pathlib import Path

EVAL_EVERY = 20  # one file in 20 (by path hash) is held out
MAX_FILE_BYTES = 200_000  # skips generated data modules such as pydoc_data/topics.py
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> Iterator[tuple[str, Path]]:
    """(relative posix path, absolute path) of every stdlib source file used, in a stable order."""
    root = root or stdlib_root()
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if any(part in _SKIP_DIRS for part in rel.split("/")[:-1]):
            continue
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
        except OSError:
            continue
        found.append((rel, path))
    # order by path hash: a well-mixed but reproducible order
    found.sort(key=lambda item: (zlib.crc32(item[0].encode()), item[0]))
    yield from found


def is_eval(rel: str) -> bool:
    return zlib.crc32(rel.encode()) % EVAL_EVERY == 0


def build_corpus(root: Path | None = None) -> tuple[str, str]:
    """Return (train_text, eval_text)."""
    train, held = [], []
    for rel, path in stdlib_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        chunk = f"# ---- {rel} ----\n{text.strip()}\n\n"
        (held if is_eval(rel) else train).append(chunk)
    return "".join(train), "".join(held)
