"""Calibration and evaluation data: what the user points at, checked before any model work.

Every data file is read through :func:`read_text_file`: a regular file (never a FIFO, a device or a
socket, which could block or never end) of at most :data:`MAX_TEXT_BYTES`, of which no more than that
many bytes plus one are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SlimError
from .io import read_bytes_limited

MAX_TEXT_BYTES = 2**30  # 1 GiB of text: far beyond what calibration or evaluation needs
MAX_SAMPLES = 100_000
MAX_BATCH = 4096


def _whole(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            value = int(value)
        else:
            raise SlimError(f"{name} must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise SlimError(f"{name} must be between {lo:,} and {hi:,}, got {value:,}")
    return value


@dataclass(frozen=True)
class CalibrationData:
    """Calibration data and how to use it: ``samples`` samples of ``path``, ``batch_size`` at a time, and the
    family's own calibration options by name (``options``: the values of its ``AdapterSpec.calibration_options``
    schema, by field name), which the family reads and checks."""

    path: str
    samples: int = 32
    batch_size: int = 8
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    def __post_init__(self) -> None:
        if isinstance(self.samples, (int, float)) and not isinstance(self.samples, bool) and self.samples < 1:
            raise SlimError(f"the number of calibration samples must be at least 1, got {self.samples}")
        if isinstance(self.batch_size, (int, float)) and not isinstance(self.batch_size, bool) and self.batch_size < 1:
            raise SlimError(f"the batch size must be at least 1, got {self.batch_size}")
        object.__setattr__(self, "samples", _whole(self.samples, "the number of calibration samples", 1, MAX_SAMPLES))
        object.__setattr__(self, "batch_size", _whole(self.batch_size, "the batch size", 1, MAX_BATCH))
        if not isinstance(self.options, dict):
            raise SlimError("the calibration options must be given by name")
        if not isinstance(self.path, (str, Path)) or not str(self.path).strip():
            raise SlimError("no calibration file given", hint="pass --data FILE (a UTF-8 text file)")


def read_text_file(path: str | Path, what: str = "data file") -> str:
    """Read a UTF-8 text file, refusing empty, binary, missing, oversized and non-regular files with a clear message."""
    if path is None or not str(path).strip():
        raise SlimError(f"no {what} given", hint="give a UTF-8 text file")
    p = Path(path).expanduser()
    raw = read_bytes_limited(p, what, limit=MAX_TEXT_BYTES)
    if b"\x00" in raw[:65536]:
        raise SlimError(f"{what} {p} is not a text file (it contains binary data)", hint="give a UTF-8 text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SlimError(f"{what} {p} is not UTF-8 text (byte {exc.start} is invalid)",
                        hint="give a UTF-8 text file") from None
    if not text.strip():
        raise SlimError(f"{what} {p} is empty", hint="give a text file with some content")
    return text
