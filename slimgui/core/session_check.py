"""The session file's schema: type checks of a ``.slim`` document before anything trusts it.

:func:`validate_session_doc` checks every field the app and the report read (settings against their
dataclasses in :mod:`.session`, scores as scores, stored results' numbers as numbers) and raises one
:class:`SlimError` naming the first bad field and the file; :func:`check_bench_doc` does the same for a
benchmark result, in a session or on its own (``slimgui bench --json``).  No Qt here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import SlimError
from .fmt import json_preview
from .scores import scores_from_doc

# figures the core itself records; a family's figures are checked through the metrics a result declares
_NUMBER_KEYS = ("seconds", "bytes", "sensitivity", "batch", "params", "threads", "repeats", "step", "val_loss",
                "items_seen", "train_loss")


class _Check:
    """Type checks of a session document; the first failure is one :class:`SlimError` naming field and file."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, field_name: str, what: str, value: Any = None) -> SlimError:
        got = "" if value is None else f", got {json_preview(value)}"
        return SlimError(f"{self.where} is not a valid session file: {field_name} {what}{got}",
                         hint="it may have been edited by hand; open the model instead")

    def obj(self, value: Any, name: str, optional: bool = True) -> dict[str, Any]:
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise self.fail(name, "must be an object", value)
        return value

    def lst(self, value: Any, name: str, optional: bool = True) -> list[Any]:
        if value is None and optional:
            return []
        if not isinstance(value, list):
            raise self.fail(name, "must be a list", value)
        return value

    def text(self, value: Any, name: str, optional: bool = True) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str):
            raise self.fail(name, "must be text" + (" or null" if optional else ""), value)

    def number(self, value: Any, name: str, optional: bool = True) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(name, "must be a number" + (" or null" if optional else ""), value)

    def whole(self, value: Any, name: str, optional: bool = True) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, "must be a whole number" + (" or null" if optional else ""), value)

    def texts(self, value: Any, name: str) -> None:
        for i, x in enumerate(self.lst(value, name)):
            self.text(x, f"{name}[{i}]", optional=False)

    def numbers_in(self, d: dict[str, Any], name: str) -> None:
        for key in _NUMBER_KEYS:
            if key in d:
                self.number(d[key], f"{name}.{key}")
        for i, m in enumerate(self.lst(d.get("metrics"), f"{name}.metrics")):
            entry = self.obj(m, f"{name}.metrics[{i}]", optional=False)
            self.text(entry.get("name"), f"{name}.metrics[{i}].name", optional=False)
            self.number(entry.get("value"), f"{name}.metrics[{i}].value")
            if isinstance(entry.get("name"), str) and entry["name"] in d:
                self.number(d[entry["name"]], f"{name}.{entry['name']}")

    def settings(self, kind: type, raw: Any, name: str, skip: Sequence[str] = ()) -> None:
        doc = self.obj(raw, name)
        for f in kind.__dataclass_fields__.values():
            if f.name not in doc or f.name in skip:
                continue
            v, ann, fname = doc[f.name], str(f.type).replace(" ", ""), f"{name}.{f.name}"
            optional = ann.endswith("|None")
            base = ann.removesuffix("|None")
            if base == "str":
                self.text(v, fname, optional)
            elif base == "int":
                self.whole(v, fname, optional)
            elif base == "float":
                self.number(v, fname, optional)
            elif base == "bool":
                if not isinstance(v, bool):
                    raise self.fail(fname, "must be true or false", v)
            elif base.startswith("dict["):  # options by owner: {owner: {name: value}}
                for owner, values in self.obj(v, fname).items():
                    if values is not None and not isinstance(values, dict):
                        raise self.fail(f"{fname}.{owner}", "must be an object of option values", values)
            elif base in ("list[str]", "list[int]"):
                if v is None and optional:
                    continue
                for i, x in enumerate(self.lst(v, fname, optional)):
                    (self.text if base == "list[str]" else self.whole)(x, f"{fname}[{i}]", False)



def validate_session_doc(doc: Mapping[str, Any], where: str) -> None:
    """Check a session document against its schema before anything trusts it.

    Every field the app and the report read is type-checked (settings against their dataclasses, scores as
    scores, the stored results' numbers as numbers, rows and layers as lists of objects); unknown fields
    are kept.  The first problem is one :class:`SlimError` naming the field and the file."""
    from .session import AnalysisSettings, BenchSettings, ExportSettings, PreviewSettings, RetrainSettings

    c = _Check(where)
    model = c.obj(doc.get("model"), "model")
    for key in ("path", "relative", "adapter"):
        c.text(model.get(key), f"model.{key}")
    for i, s in enumerate(c.lst(doc.get("scores"), "scores")):
        scores_from_doc(s, where, f"scores[{i}].", kind="session")
    c.text(doc.get("active_criterion"), "active_criterion")
    c.text(doc.get("keep"), "keep")
    c.texts(doc.get("remove"), "remove")
    slimmed = c.obj(doc.get("slimmed"), "slimmed")
    for key in ("path", "relative"):
        c.text(slimmed.get(key), f"slimmed.{key}")
    c.texts(slimmed.get("remove"), "slimmed.remove")
    c.settings(AnalysisSettings, doc.get("analysis"), "analysis")
    c.settings(PreviewSettings, doc.get("preview"), "preview")
    retrain = c.obj(doc.get("retrain"), "retrain")
    c.settings(RetrainSettings, retrain, "retrain", skip=("out",))
    out = retrain.get("out")
    if out is not None and not isinstance(out, (str, dict)):
        raise c.fail("retrain.out", "must be a run folder or null", out)
    if isinstance(out, dict):
        c.text(out.get("path"), "retrain.out.path")
        c.text(out.get("relative"), "retrain.out.relative")
    c.settings(ExportSettings, doc.get("export"), "export")
    c.settings(BenchSettings, doc.get("bench"), "bench")
    c.obj(doc.get("view"), "view")
    results = c.obj(doc.get("results"), "results")
    for key, value in results.items():
        if key == "generation":
            for name, media in c.obj(value, "results.generation").items():
                if media is not None:
                    m = c.obj(media, f"results.generation.{name}")
                    c.text(m.get("type"), f"results.generation.{name}.type")
                    if m.get("type") == "text":
                        c.text(m.get("text"), f"results.generation.{name}.text")
                    if m.get("type") == "table":
                        c.lst(m.get("columns"), f"results.generation.{name}.columns")
                        c.lst(m.get("rows"), f"results.generation.{name}.rows")
        elif key in ("retrain", "evaluation"):
            section = c.obj(value, f"results.{key}")
            for name, entry in section.items():
                if isinstance(entry, dict):
                    c.numbers_in(entry, f"results.{key}.{name}")
                elif key != "retrain" and entry is not None and not isinstance(entry, (str, int, float, list)):
                    raise c.fail(f"results.{key}.{name}", "must be an object", entry)
        elif key == "export":
            export = c.obj(value, "results.export")
            for i, run in enumerate(c.lst(export.get("runs"), "results.export.runs")):
                r = c.obj(run, f"results.export.runs[{i}]", optional=False)
                for k in ("file", "report", "mode", "format"):
                    c.text(r.get(k), f"results.export.runs[{i}].{k}")
                c.numbers_in(r, f"results.export.runs[{i}]")
                _check_layers(c, r.get("layers"), f"results.export.runs[{i}].layers")
            _check_layers(c, export.get("layers"), "results.export.layers")
            c.obj(export.get("flips"), "results.export.flips")
        elif key == "bench":
            check_bench_doc(value, c)


def _check_layers(c: _Check, layers: Any, name: str) -> None:
    for j, layer in enumerate(c.lst(layers, name)):
        x = c.obj(layer, f"{name}[{j}]", optional=False)
        c.text(x.get("layer"), f"{name}[{j}].layer", optional=False)
        c.number(x.get("sensitivity"), f"{name}[{j}].sensitivity")
        c.text(x.get("precision"), f"{name}[{j}].precision")


def check_bench_doc(doc: Any, c: Any = None, where: str = "") -> dict[str, Any]:
    """Check a benchmark result (``slimgui bench --json``, or a session's): rows are objects whose figures are
    numbers.  ``c`` reports as a session; without it the message names ``where`` as a benchmark file."""
    if c is None:
        class _Bench(_Check):
            def fail(self, field_name: str, what: str, value: Any = None) -> SlimError:
                got = "" if value is None else f", got {json_preview(value)}"
                return SlimError(f"{where} is not a valid benchmark file: {field_name} {what}{got}",
                                 hint="write one with `slimgui bench ... --json`")
        c, prefix = _Bench(where), ""
    else:
        prefix = "results.bench."
    bench = c.obj(doc, prefix.rstrip(".") or "the document", optional=False)
    for key in ("threads", "repeats"):
        c.number(bench.get(key), f"{prefix}{key}")
    for i, row in enumerate(c.lst(bench.get("rows"), f"{prefix}rows")):
        r = c.obj(row, f"{prefix}rows[{i}]", optional=False)
        if not isinstance(r.get("model"), str):
            raise c.fail(f"{prefix}rows[{i}].model", "must be a model name", r.get("model"))
        c.text(r.get("runtime"), f"{prefix}rows[{i}].runtime")
        for k, v in r.items():
            if k in ("model", "runtime", "items", "int8_kernel", "note", "label", "kind", "mode", "error"):
                continue
            if k.endswith(("_ms", "_per_s", "_speedup", "_mib", "_token")) or k in _NUMBER_KEYS or k == "speedup":
                c.number(v, f"{prefix}rows[{i}].{k}")
        c.number(r.get("batch"), f"{prefix}rows[{i}].batch", optional=False)
    return bench
