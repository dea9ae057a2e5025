"""The `slimgui` argument parser: each command's own flags, plus the flags of the option schemas the
installed plugins declare (built from the registry, so a new family's options are flags with no edit here)."""

from __future__ import annotations

import argparse

from slimgui import __version__

from . import compare, export, models, profile, retrain
from .common import Parser


def build_parser(registry=None) -> argparse.ArgumentParser:
    """The parser for the installed plugins (``registry``: :func:`slimgui.core.plugins.discover` by default)."""
    if registry is None:
        from slimgui.core.plugins import discover

        registry = discover()
    p = Parser(prog="slimgui", description="Make large neural networks small: inspect, score, prune, evaluate.")
    p.add_argument("--version", action="version", version=f"slimgui {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=Parser)

    def common(sp, model=True):
        sp.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        if model:
            sp.add_argument("model", metavar="MODEL", help="model folder or file, a hub id, or demo:NAME")
            sp.add_argument("--adapter", help="open with this adapter instead of the best match")
            sp.add_argument("--trust-remote-code", action="store_true", help="allow code shipped with the model to run")

    models.add_parsers(sub, registry, common)
    compare.add_parsers(sub, registry, common)
    retrain.add_parsers(sub, registry, common)
    export.add_parsers(sub, registry, common)
    profile.add_parsers(sub, registry, common)
    models.add_session_parsers(sub, registry, common)
    return p
