"""Options as data: the typed schemas that healing methods, previewers, evaluators, exporters and
benchmark runners declare, and that the CLI turns into flags and the GUI into forms.

A schema is a plain dataclass whose fields are made with :func:`option`::

    @dataclass
    class LoraOptions:
        lora_r: int = option(8, label="rank", help="LoRA rank", lo=1, hi=4096)
        lora_targets: list[str] | None = option(None, label="targets", help="module names (default: every linear)")
        lora_merge: bool = option(True, label="merge", help="merge the adapter into the weights",
                                  negate="--keep-adapter")

What a field declares (:class:`Opt`): a label and help text, a range (``lo``/``hi``, either bound open),
a GUI step, choices, the CLI flag (default ``--`` + the name with dashes), aliases, a negating flag for
booleans that default to True, "constant" flags that each set a choice (``--int8`` sets ``mode="int8"``),
what ``None`` means (``none_label``: "the model's own"), whether it names a file or a folder, old names the
value was stored under (``legacy``, for session migration) and whether the CLI or the GUI shows it.

Values are checked here, once, for every front end: :func:`coerce` turns what a user typed (CLI text, a
JSON value from a session) into the field's type or raises one :class:`SlimError` naming the flag and its
range.  Sessions and job files store values by field name (:func:`to_dict`, :func:`from_dict`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from functools import cache
from typing import Any

from .errors import SlimError

META_KEY = "slimgui"


class _Unset:
    """The value of ``Opt.gui_default`` when none is declared."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
KINDS = ("int", "float", "bool", "str", "list[str]", "list[int]", "list[float]")


@dataclass(frozen=True)
class Opt:
    """What a field of an options schema says about itself (its ``metadata["slimgui"]``)."""

    label: str
    help: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    step: float | None = None  # GUI spin-box step
    decimals: int | None = None  # GUI decimals for floats (None: from the step)
    log: bool = False  # GUI: a scientific spin box (learning rates)
    choices: tuple[Any, ...] = ()  # allowed values; or ((value, label), ...)
    flag: str | None = None  # CLI flag (default: --name-with-dashes)
    aliases: tuple[str, ...] = ()  # more CLI flags for the same value
    negate: str | None = None  # bool defaulting to True: this flag sets it False (--keep-adapter, --no-decode)
    consts: tuple[tuple[str, Any, str], ...] = ()  # (flag, value, help): flags that each set this field to a value
    none_label: str | None = None  # what None means, e.g. "the model's own"; makes None a choice in the GUI
    path: str | None = None  # "file", "folder" or "path": the value names something on disk
    filter: str = ""  # file dialog filter, e.g. "Text files (*.txt *.jsonl)"
    record: str | None = None  # "audio": the app offers to record the file from a microphone (slimgui record)
    legacy: tuple[str, ...] = ()  # names this value was stored under by older versions
    cli: bool = True
    gui: bool = True
    advanced: bool = False  # GUI: shown under "More"
    sweep: bool = False  # a list of values a benchmark is run for, one row each (the runner gets a one-item list)
    context: bool = False  # a length in the model's items that must fit its context (ModelAdapter.context_limit)
    gui_default: Any = UNSET  # what the app's form starts with when it should differ from the default the CLI
    # and scripts get (e.g. a quicker evaluation in the app than a script's whole-file one); UNSET: the default
    when: tuple[tuple[str, Any], ...] = ()  # GUI: shown only while these fields hold these values, e.g.
    # (("mode", ("mixed",)),); the CLI takes the flag always and the plugin decides what it means elsewhere

    def value_choices(self) -> list[Any]:
        return [c[0] if isinstance(c, tuple) else c for c in self.choices]

    def choice_labels(self) -> list[tuple[Any, str]]:
        return [(c[0], str(c[1])) if isinstance(c, tuple) else (c, str(c)) for c in self.choices]


def option(default: Any = MISSING, *, label: str, default_factory: Any = MISSING, **meta: Any) -> Any:
    """A dataclass field of an options schema (see :class:`Opt` for what ``meta`` may say)."""
    md = {META_KEY: Opt(label=label, **meta)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=md)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=md)
    return dataclasses.field(default=default, metadata=md)


@dataclass(frozen=True)
class OptionField:
    """One field of a schema, resolved: its name, value kind, whether None is allowed, default and :class:`Opt`."""

    name: str
    kind: str  # one of KINDS
    optional: bool
    default: Any
    opt: Opt

    @property
    def flag(self) -> str:
        return self.opt.flag or "--" + self.name.replace("_", "-")

    @property
    def form_default(self) -> Any:
        """What a form starts with: ``Opt.gui_default`` when declared, else the default."""
        return self.default if self.opt.gui_default is UNSET else self.opt.gui_default

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, *self.opt.aliases)

    @property
    def label(self) -> str:
        return self.opt.label

    def range_text(self) -> str:
        """The allowed values in words, e.g. "1-4096", "above 0 and at most 10", "one of fp32, int8"."""
        o = self.opt
        if o.choices:
            return "one of " + ", ".join(str(v) for v in o.value_choices())
        if o.lo is None and o.hi is None:
            return ""
        fmt = (lambda v: f"{int(v):,}") if self.kind in ("int", "list[int]") else (lambda v: f"{v:g}")
        if o.lo is not None and o.hi is not None and not (o.lo_open or o.hi_open):
            return f"{fmt(o.lo)}-{fmt(o.hi)}"
        parts = []
        if o.lo is not None:
            parts.append(f"{'above' if o.lo_open else 'at least'} {fmt(o.lo)}")
        if o.hi is not None:
            parts.append(f"{'below' if o.hi_open else 'at most'} {fmt(o.hi)}")
        return " and ".join(parts)

    def range_words(self) -> str:
        """The range in a sentence: "from 1 to 4,096", "above 0 and at most 10"."""
        o = self.opt
        text = self.range_text()
        if o.lo is not None and o.hi is not None and not (o.lo_open or o.hi_open):
            fmt = (lambda v: f"{int(v):,}") if self.kind in ("int", "list[int]") else (lambda v: f"{v:g}")
            return f"from {fmt(o.lo)} to {fmt(o.hi)}"
        return text

    def default_text(self) -> str:
        d = self.default
        if d is None:
            return self.opt.none_label or "none"
        if isinstance(d, bool):
            return "on" if d else "off"
        if isinstance(d, (list, tuple)):
            return ",".join(str(x) for x in d) or "none"
        return f"{d:g}" if isinstance(d, float) else str(d)

    def help_text(self) -> str:
        """Help as the CLI shows it: the field's help, its range and its default."""
        bits = [b for b in (self.range_text(), f"default {self.default_text()}") if b]
        return f"{self.opt.help or self.label} ({'; '.join(bits)})"


def _kind_of(tp: Any) -> tuple[str, bool]:
    """(kind, optional) of a field's type annotation."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            raise TypeError(f"an option must have one type (or None), not {tp}")
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence):
        (inner, *_) = typing.get_args(tp) or (str,)
        name = {str: "list[str]", int: "list[int]", float: "list[float]"}.get(inner)
        if name is None:
            raise TypeError(f"an option list must hold str, int or float, not {inner}")
        return name, optional
    name = {int: "int", float: "float", bool: "bool", str: "str"}.get(tp)
    if name is None:
        raise TypeError(f"an option must be int, float, bool, str or a list of those, not {tp}")
    return name, optional


@cache
def _fields(schema: type) -> tuple[OptionField, ...]:
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{schema!r} is not a dataclass")
    hints = typing.get_type_hints(schema)
    out = []
    for f in dataclasses.fields(schema):
        opt = f.metadata.get(META_KEY) or Opt(label=f.name.replace("_", " "))
        kind, optional = _kind_of(hints[f.name])
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"option {schema.__name__}.{f.name} has no default")
        out.append(OptionField(f.name, kind, optional or default is None, default, opt))
    return tuple(out)


def fields_of(schema: type | None) -> tuple[OptionField, ...]:
    """The fields of an options schema (none for ``None``), in declaration order."""
    return () if schema is None else _fields(schema)


def field_named(schema: type, name: str) -> OptionField:
    for f in fields_of(schema):
        if f.name == name:
            return f
    raise KeyError(name)


# -- values ---------------------------------------------------------------------------------------
def _number(f: OptionField, raw: Any, what: str) -> float | int:
    o = f.opt
    integer = f.kind in ("int", "list[int]")
    if isinstance(raw, bool):
        raise SlimError(f"{what} must be a {'whole ' if integer else ''}number, got {raw}")
    try:
        if isinstance(raw, str):
            text = raw.strip().replace("_", "")
            value: float | int = int(text, 10) if integer else float(text)
        elif integer:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value = int(raw)
        else:
            value = float(raw)
    except (TypeError, ValueError):
        span = f.range_text()
        raise SlimError(f"{what} must be a {'whole ' if integer else ''}number{' ' + span if span else ''}, "
                        f"got {raw!r}") from None
    if not integer and not math.isfinite(value):
        raise SlimError(f"{what} must be a finite number, got {raw}")
    bad = ((o.lo is not None and (value < o.lo or (o.lo_open and value == o.lo)))
           or (o.hi is not None and (value > o.hi or (o.hi_open and value == o.hi))))
    if bad:
        shown = f"{value:,}" if integer else f"{value:g}"
        raise SlimError(f"{what} must be {f.range_words()}, got {shown}")
    return value


def coerce(f: OptionField, raw: Any, *, what: str | None = None) -> Any:
    """``raw`` (CLI text, a JSON value, a widget's value) as the field's type, checked; raises SlimError."""
    what = what or f.flag
    if raw is None or (isinstance(raw, str) and raw.strip() == "" and f.kind not in ("str",)):
        if f.optional:
            return None
        if raw is None:
            raise SlimError(f"{what} needs a value")
    if f.kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SlimError(f"{what} must be true or false, got {raw!r}")
    if f.kind.startswith("list["):
        if isinstance(raw, str):
            items = [x.strip() for x in raw.split(",")]
        elif isinstance(raw, (list, tuple)):
            items = list(raw)
        else:  # one value where a list is expected (a setting stored before it became a list)
            items = [raw]
        items = [x for x in items if not (isinstance(x, str) and x == "")]
        if f.kind == "list[str]":
            value: Any = [str(x) for x in items]
        else:
            value = [_number(f, x, what) for x in items]
        if not value:
            if f.optional:
                return None
            raise SlimError(f"{what} needs at least one value")
        return value
    if f.kind in ("int", "float"):
        value = _number(f, raw, what)
    else:
        if not isinstance(raw, str):
            raise SlimError(f"{what} must be text, got {type(raw).__name__}")
        value = raw
    choices = f.opt.value_choices()
    if choices and value not in choices:
        raise SlimError(f"{what} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def defaults(schema: type) -> Any:
    """An instance of ``schema`` with every default."""
    return schema()


def to_dict(values: Any) -> dict[str, Any]:
    """A schema instance as JSON-ready ``{name: value}``."""
    if values is None:
        return {}
    return {f.name: (list(v) if isinstance(v := getattr(values, f.name), tuple) else v)
            for f in fields_of(type(values))}


def from_dict(schema: type, raw: Mapping[str, Any] | None, *, where: str = "", strict: bool = False) -> Any:
    """An instance of ``schema`` from stored values, by name (a field's ``legacy`` names are read too).
    Values missing take the default.  Unknown names are ignored, or refused when ``strict``; a bad value is
    a SlimError naming ``where`` and the field."""
    raw = dict(raw or {})
    kwargs: dict[str, Any] = {}
    used: set[str] = set()
    for f in fields_of(schema):
        for key in (f.name, *f.opt.legacy):
            if key in raw:
                used.add(key)
                kwargs[f.name] = coerce(f, raw[key], what=f"{where}{':' if where else ''}{f.name}")
                break
    unknown = sorted(set(raw) - used)
    if strict and unknown:
        raise SlimError(f"{where or schema.__name__}: unknown settings {', '.join(unknown)}",
                        hint="known: " + ", ".join(f.name for f in fields_of(schema)))
    return schema(**kwargs)


def validate(values: Any) -> Any:
    """Check every field of a schema instance (after a GUI or a script set them); returns ``values``."""
    for f in fields_of(type(values)):
        setattr(values, f.name, coerce(f, getattr(values, f.name), what=f.flag))
    return values


def describe(schema: type | None) -> list[dict[str, Any]]:
    """The schema as JSON (``slimgui plugins --json``, the README)."""
    out = []
    for f in fields_of(schema):
        o = f.opt
        out.append({"name": f.name, "type": f.kind + (" | None" if f.optional else ""), "default": f.default,
                    "label": o.label, "help": o.help, "flag": f.flag, "aliases": list(o.aliases),
                    "range": f.range_text() or None, "choices": o.value_choices() or None})
    return out


# -- the CLI ----------------------------------------------------------------------------------------
DEST_PREFIX = "opt__"


def _dest(f: OptionField) -> str:
    return DEST_PREFIX + f.flag.lstrip("-").replace("-", "_")


def add_flags(parser: argparse.ArgumentParser | Any, schemas: Iterable[tuple[str, type | None]],
              *, title: str | None = None, skip: Sequence[str] = ()) -> None:
    """Add a flag for every field of ``schemas`` (``(owner, schema)`` pairs, e.g. ``("lora", LoraOptions)``).

    Several owners may declare the same flag (``--steps`` of two evaluators, ``--kd-ce`` of two families'
    distillation): it is added once, its help says whose it is, and its value is checked by the schema
    that is used (:func:`given`), so one flag may have a different range per owner.  A flag never given
    leaves every field at its schema's default.  ``skip``: flags the command defines itself."""
    seen: dict[str, list[tuple[str, OptionField]]] = {}
    order: list[str] = []
    for owner, schema in schemas:
        for f in fields_of(schema):
            if not f.opt.cli or f.flag in skip:
                continue
            if f.flag not in seen:
                order.append(f.flag)
            seen.setdefault(f.flag, []).append((owner, f))
    target = parser.add_argument_group(title) if title else parser
    for flag in order:
        entries = seen[flag]
        owner, f = entries[0]
        owners = list(dict.fromkeys(o for o, _ in entries))
        helps = list(dict.fromkeys(e.help_text() for _, e in entries))
        prefix = f"{', '.join(owners)}: " if owners and owners[0] else ""
        help_text = prefix + " | ".join(helps)
        dest = _dest(f)
        if f.kind == "bool" and not f.opt.consts:
            if f.default is True and f.opt.negate:
                target.add_argument(f.opt.negate, dest=dest, action="store_const", const=False,
                                    default=argparse.SUPPRESS, help=prefix + (f.opt.help or f.label))
                continue
            target.add_argument(*f.flags, dest=dest, action="store_const", const=True, default=argparse.SUPPRESS,
                                help=help_text)
            continue
        if f.opt.consts:
            # every owner's constant flags (two families' --int8 / --mixed), each once: the order of the plugins
            # must not decide which exist
            consts = list({c[0]: c for _, e in entries for c in e.opt.consts}.values())
            group = target.add_mutually_exclusive_group()
            for cflag, value, chelp in consts:
                group.add_argument(cflag, dest=dest, action="store_const", const=value, default=argparse.SUPPRESS,
                                   help=prefix + chelp)
            continue
        target.add_argument(*f.flags, dest=dest, default=argparse.SUPPRESS, metavar=f.kind.upper().replace(
            "LIST[", "").replace("]", "S") if f.kind.startswith("list") else None,
            choices=None, help=help_text)


def given(namespace: argparse.Namespace | Mapping[str, Any], schema: type | None) -> dict[str, Any]:
    """The values the user gave on the command line for ``schema``'s fields, checked by that schema."""
    ns = vars(namespace) if isinstance(namespace, argparse.Namespace) else dict(namespace)
    out: dict[str, Any] = {}
    for f in fields_of(schema):
        dest = _dest(f)
        if f.opt.cli and dest in ns:
            out[f.name] = coerce(f, ns[dest])
    return out


def from_args(namespace: argparse.Namespace | Mapping[str, Any], schema: type | None,
              base: Mapping[str, Any] | None = None) -> Any:
    """An instance of ``schema``: ``base`` values (by name), overridden by the flags the user gave."""
    if schema is None:
        return None
    values = dict(base or {})
    values.update(given(namespace, schema))
    return from_dict(schema, values)


def merge(*schemas: type | None) -> list[OptionField]:
    """Fields of several schemas, the first declaration of a name winning (for forms of several parts)."""
    out: dict[str, OptionField] = {}
    for schema in schemas:
        for f in fields_of(schema):
            out.setdefault(f.name, f)
    return list(out.values())
