"""Calibration and evaluation data: what the user points at, checked before any model work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import SlimError


@dataclass(frozen=True)
class CalibrationData:
    """A text file and how to cut it: ``samples`` segments of ``seq_len`` tokens, in batches."""

    path: str
    seq_len: int = 128
    samples: int = 32
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise SlimError(f"sequence length must be at least 2, got {self.seq_len}")
        if self.samples < 1:
            raise SlimError(f"the number of calibration samples must be at least 1, got {self.samples}")
        if self.batch_size < 1:
            raise SlimError(f"the batch size must be at least 1, got {self.batch_size}")


def read_text_file(path: str | Path, what: str = "data file") -> str:
    """Read a UTF-8 text file, refusing empty, binary and missing files with a clear message."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SlimError(f"{what} {p} does not exist")
    if p.is_dir():
        raise SlimError(f"{what} {p} is a folder", hint="give a text file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SlimError(f"cannot read {what} {p}: {exc.strerror or exc}") from exc
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
