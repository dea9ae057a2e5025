"""Flags built from the option schemas the plugins declare, and the values a user gave with them.

A command adds the flags of every schema that may apply (every method's, every adapter's training options,
...), because which one applies is known only once the model is probed.  The values given are then read
with the schemas that do apply (:func:`given`, checked by the schema: one SlimError naming the flag), and a
flag given that none of them declares is ignored with a warning (:func:`warn_others`), as earlier versions ignored it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from slimgui.core import options as opts
from slimgui.core.errors import SlimError

Pairs = list[tuple[str, Any]]  # (owner, schema class)


def schema(registry, spec, attr: str = "options") -> type | None:
    """The options schema ``spec`` declares under ``attr``; None when it declares none or cannot load it
    (a broken plugin: `slimgui plugins` reports it, and the other plugins' flags still work)."""
    if spec is None or not getattr(spec, attr, None):
        return None
    try:
        return registry.options(spec, attr)
    except SlimError:
        return None


def adapter_pairs(registry, attr: str) -> Pairs:
    """(adapter name, schema) of every adapter's ``attr`` schema (calibration, training data or bench options)."""
    return [(s.name, sch) for _, s in registry.adapter_specs() if (sch := schema(registry, s, attr)) is not None]


def spec_pairs(specs: Iterable[Any], registry) -> Pairs:
    """(name, options schema) of contributions (methods, evaluators, previewers, exporters), each name once."""
    out: Pairs = []
    for s in specs:
        sch = schema(registry, s)
        if sch is not None and (s.name, sch) not in out:
            out.append((s.name, sch))
    return out


def all_specs(registry, kind: str) -> list[Any]:
    """Every declared contribution of ``kind`` ("methods", "evaluators", ...) of every plugin."""
    return [s for p in registry.plugins for s in getattr(p, kind)]


def dest(f: opts.OptionField) -> str:
    return opts.DEST_PREFIX + f.flag.lstrip("-").replace("-", "_")


def _strings(f: opts.OptionField) -> set[str]:
    return {*f.flags, *([f.opt.negate] if f.opt.negate else []), *(c[0] for c in f.opt.consts)}


def add(parser: argparse.ArgumentParser, pairs: Pairs, *, title: str | None = None) -> None:
    """Add the flags of ``pairs`` (:func:`slimgui.core.options.add_flags`); a flag the command defines itself,
    or one clashing with another schema's, is left out instead of breaking the command."""
    taken = set(parser._option_string_actions)
    first: set[str] = set()
    skip: set[str] = set()
    for _owner, sch in pairs:
        for f in opts.fields_of(sch):
            if not f.opt.cli or f.flag in first or f.flag in skip:
                continue
            if _strings(f) & taken:
                skip.add(f.flag)
                continue
            first.add(f.flag)
            taken |= _strings(f)
    opts.add_flags(parser, pairs, title=title, skip=sorted(skip))
    kinds = {dest(f): f.kind for _owner, sch in pairs for f in opts.fields_of(sch)}
    for action in parser._actions:  # a value's metavar says its kind (INT, FLOAT, TEXT, INTS, ...)
        if action.dest in kinds and action.metavar is None and action.nargs is None and action.const is None:
            kind = kinds[action.dest]
            action.metavar = {"str": "TEXT", "list[str]": "TEXTS"}.get(kind, kind.upper().replace("LIST[", "").replace(
                "]", "S"))
    flags: dict[str, list[str]] = dict(parser.get_default("_option_flags") or {})
    for action in parser._actions:
        if action.dest.startswith(opts.DEST_PREFIX):
            flags.setdefault(action.dest, [])
            flags[action.dest] += [s for s in action.option_strings if s not in flags[action.dest]]
    parser.set_defaults(_option_flags=flags)


def _check_list_text(f: opts.OptionField, raw: Any) -> None:
    """Comma-separated numbers are checked to be numbers first, so the message says what the flag takes."""
    if not isinstance(raw, str) or f.kind not in ("list[int]", "list[float]"):
        return
    whole = f.kind == "list[int]"
    for item in (x.strip().replace("_", "") for x in raw.split(",")):
        if not item:
            continue
        try:
            int(item, 10) if whole else float(item)
        except ValueError:
            raise SlimError(f"{f.flag} must be comma-separated {'whole ' if whole else ''}numbers, "
                            f"got {raw!r}") from None


def given(args: argparse.Namespace, sch: type | None) -> dict[str, Any]:
    """The values given for ``sch``'s fields, by field name, checked by the schema (SlimError naming the flag)."""
    ns = vars(args)
    for f in opts.fields_of(sch):
        if f.opt.cli and dest(f) in ns:
            _check_list_text(f, ns[dest(f)])
    return opts.given(args, sch)


def values(sch: type | None, given_values: dict[str, Any]) -> dict[str, Any]:
    """Every value of ``sch``: the given ones, defaults for the rest."""
    return opts.to_dict(opts.from_dict(sch, given_values)) if sch is not None else {}


def typed(args: argparse.Namespace, name: str) -> str:
    """The flag a user typed for the option stored under ``name`` (its first flag when not found in argv)."""
    strings = (getattr(args, "_option_flags", None) or {}).get(name) or ["--" + name[len(opts.DEST_PREFIX):]]
    argv = getattr(args, "_argv", None) or []
    for s in strings:
        if any(a == s or a.startswith(s + "=") for a in argv):
            return s
    return strings[0]


def warn_others(args: argparse.Namespace, used: Sequence[type | None], what: str) -> list[str]:
    """Flags given that none of the ``used`` schemas declares (e.g. another method's option): they are ignored,
    as the command line of earlier versions ignored them, with one warning line on stderr naming them and what
    does apply.  Returns the warning (empty list when there is none)."""
    allowed = {dest(f) for sch in used for f in opts.fields_of(sch) if f.opt.cli}
    extra = sorted(k for k in vars(args) if k.startswith(opts.DEST_PREFIX) and k not in allowed)
    if not extra:
        return []
    shown = [typed(args, k) for k in extra]
    takes = sorted({typed(args, dest(f)) for sch in used for f in opts.fields_of(sch) if f.opt.cli})
    line = (f"{', '.join(shown)} {'does' if len(shown) == 1 else 'do'} not apply to {what}: ignored"
            + (f" (it takes {', '.join(takes)})" if takes else " (it takes no options of its own)"))
    sys.stderr.write(f"slimgui: warning: {line}\n")
    return [line]
