"""What every command shares: the one-line parser, checked numbers, the progress bar, output and opening models."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

from slimgui.core.errors import SlimError


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        sys.stderr.write(f"slimgui: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


# -- numeric flags of the commands themselves: each has a stated range, checked by argparse --------------
INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1
BATCH_MAX = 4096


def int_range(lo: int, hi: int):
    """An argparse ``type`` for a whole number in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(str(text).strip().replace("_", ""), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number from {lo:,} to {hi:,}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be from {lo:,} to {hi:,}, got {value:,}")
        return value

    parse.__name__ = "int"
    return parse


def float_range(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False):
    """An argparse ``type`` for a finite number in [lo, hi] (``lo_open``/``hi_open``: the bound itself excluded)."""
    if lo_open or hi_open:
        span = f"{'above' if lo_open else 'at least'} {lo:g} and {'below' if hi_open else 'at most'} {hi:g}"
    else:
        span = f"from {lo:g} to {hi:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text!r}") from None
        if not math.isfinite(value) or value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text}")
        return value

    parse.__name__ = "float"
    return parse


def int_list(text: str, flag: str, lo: int, hi: int) -> list[int]:
    try:
        values = [int(x, 10) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SlimError(f"{flag} must be comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise SlimError(f"{flag} needs at least one value from {lo:,} to {hi:,}")
    bad = [v for v in values if not lo <= v <= hi]
    if bad:
        raise SlimError(f"{flag} values must be from {lo:,} to {hi:,}, got {bad[0]:,}")
    return values


# -- output --------------------------------------------------------------------------------------------
def sources(*paths) -> list[str]:
    """The model paths a command reads (outputs may not be, lie inside or contain them); demo: names excluded."""
    return [str(p) for p in paths if p and not str(p).startswith("demo:")]


def check_out(path, kind: str, *, force: bool = False, sources=(), what: str = "--out"):
    from slimgui.core.io import check_output_path

    return check_output_path(path, kind, force=force, sources=sources, what=what)


def warn(payload: dict[str, Any], warnings) -> list[str]:
    """Print each warning as one ``slimgui: warning: TEXT`` line on stderr and list them in ``payload["warnings"]``."""
    lines = [" ".join(str(w).split()) for w in (warnings or []) if str(w).strip()]
    for line in lines:
        sys.stderr.write(f"slimgui: warning: {line}\n")
    payload["warnings"] = lines
    return lines


def finite_or_none(obj: Any) -> Any:
    """The payload with NaN/Inf numbers as null, so that --json output is always valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def emit(args, payload: dict[str, Any], human: str) -> None:
    if args.json:
        print(json.dumps(finite_or_none(payload), default=str, allow_nan=False))
    else:
        print(human)


def fmt_params(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


PROGRESS_LINE_SECONDS = 5.0  # stderr not a terminal: one progress line at most this often


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class ProgressBar:
    """Progress on stderr, fed by core progress callbacks.

    A terminal (or ``SLIMGUI_PROGRESS=1``, or an explicit ``stream``) gets a progress bar with ETA (tqdm).
    Otherwise (a log file, a pipe, a CI job) a plain line ``slimgui: progress: MESSAGE 45% (9/20), 0:12 elapsed,
    ~0:15 left`` is written every few seconds (``SLIMGUI_PROGRESS_INTERVAL``, default
    :data:`PROGRESS_LINE_SECONDS`; the first after that long, so quick commands stay silent); ``-q`` (``enabled``
    False) or ``SLIMGUI_PROGRESS=0`` turns both off.
    """

    def __init__(self, enabled: bool = True, stream=None, mininterval: float = 0.25,
                 line_interval: float | None = None):
        import time

        self.stream = stream or sys.stderr
        self.mininterval = mininterval
        setting = os.environ.get("SLIMGUI_PROGRESS")
        enabled = enabled and setting != "0"
        isatty = getattr(self.stream, "isatty", None)
        tty = bool(isatty()) if callable(isatty) else False
        self.enabled = enabled and (setting == "1" or stream is not None or tty)
        self.lines = enabled and not self.enabled  # not a terminal: plain lines every few seconds
        if line_interval is None:
            try:
                line_interval = float(os.environ.get("SLIMGUI_PROGRESS_INTERVAL", PROGRESS_LINE_SECONDS))
            except ValueError:
                line_interval = PROGRESS_LINE_SECONDS
        self.line_interval = max(0.0, line_interval)
        self._clock = time.monotonic
        self._start = self._clock()
        self._last_line = self._start
        self._task: tuple[int, int] | None = None  # (total, done) of the last call
        self._task_start = self._start
        self.bar = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self.lines:
            self._line(done, total, message)
            return
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None or self.bar.total != total or done < self.bar.n:
            self.close()
            self.bar = tqdm(total=total, file=self.stream, leave=False, dynamic_ncols=True, mininterval=self.mininterval,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
        self.bar.set_description_str(message[:48], refresh=False)
        self.bar.update(done - self.bar.n)

    def _line(self, done: int, total: int, message: str) -> None:
        now = self._clock()
        if self._task is None:
            self._task_start = self._start
        elif total != self._task[0] or done < self._task[1]:
            self._task_start = now  # a new stage (another total, or counting again): its own ETA
        self._task = (total, done)
        if now - self._last_line < self.line_interval:
            return
        self._last_line = now
        elapsed = now - self._task_start
        pct = f" {100 * done / total:.0f}% ({done:,}/{total:,})" if total else ""
        left = f", ~{_duration(elapsed * (total - done) / done)} left" if total and 0 < done < total else ""
        text = " ".join(str(message).split())[:80]
        try:
            self.stream.write(f"slimgui: progress: {text}{pct}, {_duration(now - self._start)} elapsed{left}\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe: progress is not worth failing the command for
            self.lines = False

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def quiet_library_warnings() -> None:
    """Hide the FutureWarnings that libraries (transformers, torch, peft, ...) raise about their own coming
    changes: they are for developers, not for someone running a command.  ``SLIMGUI_WARNINGS=1`` or Python's
    own ``-W`` / ``PYTHONWARNINGS`` shows them again."""
    import warnings

    if sys.warnoptions or os.environ.get("SLIMGUI_WARNINGS") == "1":
        return
    warnings.filterwarnings("ignore", category=FutureWarning)


quiet_library_warnings()


# -- models ----------------------------------------------------------------------------------------------
@dataclass
class Target:
    """A model a command will open: its path (a demo built), the adapter spec that opens it (known from a
    cheap probe, before anything is loaded) and the probe's candidate (so the model is not probed again)."""

    path: str
    spec: Any = None
    candidate: Any = None

    @property
    def family(self) -> str | None:
        return self.spec.family if self.spec is not None else None


def resolve(path: str, registry, *, adapter: str | None = None, progress=None) -> Target:
    """Where ``path`` is and which adapter opens it: a ``demo:NAME`` is built (or found) first, ``adapter``
    names the adapter, else the best match of a probe (a path nothing opens gets the open's own error)."""
    from slimgui.core.model import open_model, probe

    if path.startswith("demo:"):
        path = str(registry.demo(path[5:])(progress=progress)["model"])
    if adapter:
        return Target(path, registry.adapter_spec(adapter))
    candidates = probe(path, registry)
    if not candidates:
        open_model(path, registry=registry)  # raises the error that says what the path is and what opens
        raise SlimError(f"no installed plugin can open {path}")
    return Target(path, candidates[0][2], candidates[0])


def open_target(target: Target, args, registry, progress=None):
    """Open the target; ``--stream`` (where the command has it) asks the adapter to read the weights block by
    block.  The notes the adapter gives about how it opened the model (``extra["notes"]``: streamed, and the memory
    that needs) are printed on stderr before any work starts."""
    from slimgui.core.model import open_model

    extra = {"stream": True} if getattr(args, "stream", None) else {}
    model = open_model(target.path, registry=registry,
                       adapter=None if target.candidate is not None else target.spec.name,
                       candidate=target.candidate, progress=progress,
                       trust_remote_code=getattr(args, "trust_remote_code", False), **extra)
    notes = (getattr(model, "extra", None) or {}).get("notes") or []
    if notes and not getattr(args, "quiet", False):
        if progress is not None and hasattr(progress, "clear"):
            progress.clear()
        for line in notes:
            sys.stderr.write(f"slimgui: note: {line}\n")
    return model


def open_path(path: str, args, registry, progress=None, *, first: bool = True):
    """Open one model: MODEL (``first``: with ``--adapter`` when given) or a ``--vs`` model (the best match)."""
    adapter = getattr(args, "adapter", None) if first else None
    return open_target(resolve(path, registry, adapter=adapter, progress=progress), args, registry, progress)


def same_family(models: list[tuple[str, Any]]) -> str:
    families = sorted({m.family for _, m in models})
    if len(families) > 1:
        raise SlimError(f"the models to compare are of different families ({', '.join(families)})",
                        hint="compare models of one family side by side")
    return families[0] if families else ""
