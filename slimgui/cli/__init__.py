"""The ``slimgui`` command: every core step, scriptable, with ``--json`` output.

Exit codes: 0 success, 2 a problem the user can fix (one line on stderr), 1 a bug (traceback),
130 cancelled with Ctrl-C.  With ``--json`` the last line of stdout is one JSON object.

The flags of what a family declares (its calibration, training, method, evaluator, previewer, exporter and
benchmark options) are built from the option schemas in its plugin (:mod:`slimgui.core.options`); the
commands call the same core functions as the desktop app.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from slimgui.core.errors import Cancelled, SlimError

from .common import ProgressBar
from .parser import build_parser

__all__ = ["ProgressBar", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    from slimgui.core.plugins import discover

    argv = list(sys.argv[1:] if argv is None else argv)
    registry = discover()
    parser = build_parser(registry)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui"])
    args.registry = registry
    args._argv = argv
    t0 = time.perf_counter()
    try:
        return int(args.func(args) or 0)
    except SlimError as exc:
        sys.stderr.write(f"slimgui: error: {exc.one_line()}\n")
        return 2
    except (Cancelled, KeyboardInterrupt):
        sys.stderr.write(f"slimgui: cancelled after {time.perf_counter() - t0:.1f}s\n")
        return 130
    except BrokenPipeError:
        return 0
