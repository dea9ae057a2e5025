"""Sessions (``.slim`` files) and the small pure functions the desktop app shows.

A session is versioned JSON (``"kind": "session"``, ``schema_version``), never pickle: which model
is open (path and adapter), every criterion's scores, the keep-set and the units selected for
removal, where the slimmed model was written, the preview/evaluation settings and results that
were on screen, the retraining settings with the run folder (so a reopened session offers to
resume the run), the export and benchmark settings, and the export check reports (with the per-layer
sensitivity and the user's INT8/FP32 choices) and benchmark results.  Reopening a session restores all of it.

The module also holds the arithmetic behind the app's panels, so that it is tested without a
screen: the estimate of a plan (:func:`estimate`), selection by budget (:func:`select_by_budget`),
score normalisation for colours (:func:`normalized`) and rank agreement between criteria
(:func:`spearman`, :func:`kendall`, :func:`agreement`), values on the graph (:func:`aggregate_up`) and
which unit of the original a slimmed model's unit is (:func:`unit_correspondence`).

No Qt here (enforced by import-linter).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SlimError
from .graph import UnitGraph
from .io import cache_dir, read_versioned_json, write_versioned_json
from .media import TableMedia, TextMedia
from .plan import parse_keep, plan_from_scores
from .scores import Scores, _jsonable, scores_from_doc

if TYPE_CHECKING:
    from .model import LoadedModel
    from .plugins import Registry
    from .train import TrainConfig

SCHEMA_VERSION = 1
SUFFIX = ".slim"


# -- settings kept in a session ---------------------------------------------------------------
@dataclass
class AnalysisSettings:
    """How the last analysis was run: criterion and calibration data (``data`` None = family default)."""

    criterion: str | None = None
    data: str | None = None
    seq_len: int = 128
    samples: int = 32
    batch_size: int = 8


@dataclass
class PreviewSettings:
    """What the compare panel asks for: one previewer's options and the evaluation file.

    Text previews use ``prompt`` and ``max_new_tokens``; image previews ``image_prompt``, ``seed`` (the
    first of ``images`` consecutive seeds), ``steps`` (None: each model's own, e.g. 4 for a few-step model)
    and ``guidance`` (None: the pipeline's default)."""

    previewer: str = "generate"
    prompt: str = "def "
    max_new_tokens: int = 40
    eval_file: str | None = None
    eval_seq_len: int = 128
    eval_max_tokens: int | None = 4096
    image_prompt: str = ""
    seed: int = 0
    images: int = 4
    steps: int | None = 25
    guidance: float | None = None

    def options(self, media: str) -> dict[str, Any]:
        """The previewer's keyword options for a previewer of ``media`` ("text", "image", ...)."""
        if media == "image":
            return {"prompt": self.image_prompt, "seed": int(self.seed), "n": int(self.images),
                    "steps": self.steps, "guidance": self.guidance}
        return {"prompt": self.prompt, "max_new_tokens": int(self.max_new_tokens)}


@dataclass
class RetrainSettings:
    """The Retrain panel's settings and its run folder (``out``; None until a run is started).

    ``data`` empty means the family's default text (the demo's own); ``lr`` None means the method's
    default learning rate; ``lora_targets`` None means every linear layer in the blocks.
    """

    method: str = "lora"
    data: list[str] = field(default_factory=list)
    eval_file: str | None = None
    out: str | None = None
    steps: int = 100
    batch_size: int = 8
    seq_len: int = 128
    lr: float | None = None
    warmup: int = 10
    save_every: int = 50
    eval_every: int = 50
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] | None = None
    lora_merge: bool = True
    kd_ce: float = 1.0
    kd_kl: float = 1.0
    kd_hidden: float = 1.0
    lcm_ddim_steps: int = 50
    lcm_guidance: float = 3.0

    def to_config(self, *, model: str, teacher: str | None, data: Sequence[str], out: str) -> TrainConfig:
        """The training job for ``model`` (the student; ``teacher`` is used by distillation only)."""
        from .train import TrainConfig

        return TrainConfig(
            model=str(model), data=[str(d) for d in data], out=str(out), method=self.method,
            teacher=str(teacher) if (teacher and self.method == "kd") else None, steps=self.steps,
            batch_size=self.batch_size, seq_len=self.seq_len, lr=self.lr, warmup=min(self.warmup, self.steps),
            save_every=self.save_every, eval_every=self.eval_every, lora_r=self.lora_r, lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout, lora_targets=list(self.lora_targets) if self.lora_targets else None,
            lora_merge=self.lora_merge, kd_ce=self.kd_ce, kd_kl=self.kd_kl, kd_hidden=self.kd_hidden,
            lcm_ddim_steps=self.lcm_ddim_steps, lcm_guidance=self.lcm_guidance)

    def take(self, cfg: TrainConfig) -> None:
        """Show a run's own configuration (when resuming it)."""
        for name in ("method", "steps", "batch_size", "seq_len", "lr", "warmup", "save_every", "eval_every", "lora_r",
                     "lora_alpha", "lora_dropout", "lora_merge", "kd_ce", "kd_kl", "kd_hidden", "lcm_ddim_steps",
                     "lcm_guidance"):
            if hasattr(cfg, name):
                setattr(self, name, getattr(cfg, name))
        self.lora_targets = list(cfg.lora_targets) if cfg.lora_targets else None
        self.data = list(cfg.data)
        self.out = cfg.out


@dataclass
class ExportSettings:
    """The Export tab's settings: which model (``original``/``slimmed``/``healed``), the format (``onnx`` or
    ``hf``), the precision (``fp32``/``int8``/``mixed``) and where the file goes (None: proposed)."""

    target: str = "original"
    format: str = "onnx"
    mode: str = "fp32"
    with_past: bool = False
    fp32_fraction: float = 0.1
    sample_text: str | None = None
    out: str | None = None


@dataclass
class BenchSettings:
    """The Benchmark tab's settings.  ``models``: ``original``, ``slimmed``, ``healed``, ``width`` (the
    width-pruned variant of the original with the slimmed model's size) and paths of ``.onnx`` files."""

    batches: list[int] = field(default_factory=lambda: [1, 8, 32])
    seq: int = 128
    new_tokens: int = 16
    threads: int = 2
    repeats: int = 5
    decode: bool = True
    models: list[str] = field(default_factory=lambda: ["original", "slimmed", "width"])


def runs_dir() -> Path:
    """Where the app puts retraining runs (per user, under the cache)."""
    path = cache_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_dir(model_name: str, method: str) -> Path:
    """A fresh, not yet existing run folder under :func:`runs_dir` (created by the run itself)."""
    stem = f"{model_name or 'model'}-{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = runs_dir()
    path, n = root / stem, 1
    while path.exists():
        n += 1
        path = root / f"{stem}-{n}"
    return path


# -- media <-> JSON ----------------------------------------------------------------------------
def media_to_json(media: Any) -> dict[str, Any] | None:
    """A previewer's result as JSON (text and tables; other media are not stored in sessions)."""
    if isinstance(media, TextMedia):
        return {"type": "text", "text": media.text, "title": media.title, "meta": _jsonable(media.meta)}
    if isinstance(media, TableMedia):
        return {"type": "table", "columns": list(media.columns), "rows": _jsonable(media.rows), "title": media.title}
    return None


def media_from_json(doc: Mapping[str, Any] | None) -> Any:
    if not isinstance(doc, Mapping):
        return None
    kind = doc.get("type")
    if kind == "text":
        return TextMedia(text=str(doc.get("text", "")), title=str(doc.get("title", "")), meta=dict(doc.get("meta") or {}))
    if kind == "table":
        return TableMedia(columns=list(doc.get("columns") or []), rows=list(doc.get("rows") or []),
                          title=str(doc.get("title", "")))
    return None


def _scores_to_json(scores: Scores) -> dict[str, Any]:
    return {
        "criterion": scores.criterion, "model": scores.model,
        "values": {k: (float(v) if math.isfinite(v) else None) for k, v in scores.values.items()},
        "locked": list(scores.locked), "keep": scores.keep, "meta": _jsonable(scores.meta),
    }


def _scores_from_json(doc: Mapping[str, Any]) -> Scores:
    values = {str(k): (math.inf if v is None else float(v)) for k, v in dict(doc["values"]).items()}
    return Scores(criterion=str(doc["criterion"]), values=values, model=str(doc.get("model", "")),
                  locked=[str(x) for x in doc.get("locked", [])], keep=doc.get("keep"), meta=dict(doc.get("meta") or {}))


# -- the session -------------------------------------------------------------------------------
@dataclass
class Session:
    """Everything the app restores when a ``.slim`` file is reopened."""

    model_path: str | None = None
    adapter: str | None = None
    scores: dict[str, Scores] = field(default_factory=dict)
    active_criterion: str | None = None
    keep: str | None = None
    remove: list[str] = field(default_factory=list)
    slimmed_path: str | None = None
    slimmed_remove: list[str] = field(default_factory=list)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    preview: PreviewSettings = field(default_factory=PreviewSettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    bench: BenchSettings = field(default_factory=BenchSettings)
    # what the compare panel showed: {"generation": {"original": media, "slimmed": media},
    #                                 "perplexity": {"original": {...}, "slimmed": {...}},
    #  "retrain": {...}, "export": {"runs": [record, ...], "layers": [...], "flips": {...}}, "bench": {...}}
    results: dict[str, Any] = field(default_factory=dict)
    view: dict[str, Any] = field(default_factory=dict)  # expanded units, open tab, ...

    # -- files --------------------------------------------------------------------------------
    def to_json(self, where: str | os.PathLike | None = None) -> dict[str, Any]:
        base = Path(where).resolve().parent if where is not None else None

        def place(path: str | None) -> dict[str, Any] | None:
            if not path:
                return None
            out: dict[str, Any] = {"path": path}
            p = Path(path)
            if base is not None and p.is_absolute():
                try:
                    out["relative"] = os.path.relpath(p, base)
                except ValueError:  # another drive on Windows
                    pass
            return out

        results = dict(self.results)
        gen = results.get("generation")
        if isinstance(gen, dict):
            results["generation"] = {k: (v if isinstance(v, dict) else media_to_json(v)) for k, v in gen.items()}
        return {
            "model": {**(place(self.model_path) or {"path": None}), "adapter": self.adapter},
            "scores": [_scores_to_json(s) for s in self.scores.values()],
            "active_criterion": self.active_criterion,
            "keep": self.keep,
            "remove": list(self.remove),
            "slimmed": ({**(place(self.slimmed_path) or {"path": None}), "remove": list(self.slimmed_remove)}
                        if (self.slimmed_path or self.slimmed_remove) else None),
            "analysis": asdict(self.analysis),
            "preview": asdict(self.preview),
            "retrain": {**asdict(self.retrain), "out": place(self.retrain.out)},
            "export": asdict(self.export),
            "bench": asdict(self.bench),
            "results": _jsonable(results),
            "view": _jsonable(self.view),
        }

    def save(self, path: str | os.PathLike) -> Path:
        return write_versioned_json(path, "session", SCHEMA_VERSION, self.to_json(path))

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str | os.PathLike | None = None) -> Session:
        base = Path(where).resolve().parent if where is not None else None

        def locate(entry: Any) -> str | None:
            if not isinstance(entry, Mapping) or not entry.get("path"):
                return None
            path = str(entry["path"])
            rel = entry.get("relative")
            if not Path(path).exists() and base is not None and rel and (base / rel).exists():
                return str((base / rel).resolve())  # the session moved together with its models
            return path

        model = doc.get("model") or {}
        slimmed = doc.get("slimmed") or None
        scores = [_scores_from_json(s) for s in doc.get("scores", [])]

        def settings(kind, raw):
            known = {f for f in kind.__dataclass_fields__}
            return kind(**{k: v for k, v in dict(raw or {}).items() if k in known})

        retrain = dict(doc.get("retrain") or {})
        retrain["out"] = locate(retrain.get("out"))
        retrain["data"] = [str(d) for d in (retrain.get("data") or [])]
        results = dict(doc.get("results") or {})
        gen = results.get("generation")
        if isinstance(gen, dict):
            results["generation"] = {k: media_from_json(v) for k, v in gen.items()}
        return cls(
            model_path=locate(model), adapter=model.get("adapter") if isinstance(model, Mapping) else None,
            scores={s.criterion: s for s in scores}, active_criterion=doc.get("active_criterion"),
            keep=doc.get("keep"), remove=[str(x) for x in doc.get("remove", [])],
            slimmed_path=locate(slimmed), slimmed_remove=[str(x) for x in (slimmed or {}).get("remove", [])],
            analysis=settings(AnalysisSettings, doc.get("analysis")),
            preview=settings(PreviewSettings, doc.get("preview")),
            retrain=settings(RetrainSettings, retrain),
            export=settings(ExportSettings, doc.get("export")),
            bench=settings(BenchSettings, doc.get("bench")),
            results=results, view=dict(doc.get("view") or {}),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Session:
        doc = read_versioned_json(path, "session", SCHEMA_VERSION)
        validate_session_doc(doc, str(path))
        try:
            return cls.from_json(doc, path)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SlimError(f"{path} is not a valid session file: {type(exc).__name__}: {exc}",
                            hint="it may have been edited by hand; open the model instead") from None


# -- the session file's schema ------------------------------------------------------------------
_NUMBER_KEYS = ("perplexity", "tokens", "seconds", "bytes", "cosine", "max_abs_diff", "size_ratio", "output_rel_error",
                "sensitivity", "batch", "seq", "params", "threads", "repeats", "new_tokens", "step", "val_ppl",
                "val_loss", "tokens_seen")


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
            elif base in ("list[str]", "list[int]"):
                if v is None and optional:
                    continue
                for i, x in enumerate(self.lst(v, fname, optional)):
                    (self.text if base == "list[str]" else self.whole)(x, f"{fname}[{i}]", False)


def json_preview(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def validate_session_doc(doc: Mapping[str, Any], where: str) -> None:
    """Check a session document against its schema before anything trusts it.

    Every field the app and the report read is type-checked (settings against their dataclasses, scores as
    scores, the stored results' numbers as numbers, rows and layers as lists of objects); unknown fields
    are kept.  The first problem is one :class:`SlimError` naming the field and the file."""
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
        elif key in ("perplexity", "retrain", "evaluation"):
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
    for key in ("threads", "repeats", "new_tokens", "seq"):
        c.number(bench.get(key), f"{prefix}{key}")
    for i, n in enumerate(c.lst(bench.get("seqs"), f"{prefix}seqs")):
        c.number(n, f"{prefix}seqs[{i}]", optional=False)
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


# -- the estimate panel ------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    params_before: int
    params_after: int
    units_before: int
    units_removed: int
    bytes_per_param: int

    @property
    def size_before(self) -> int:
        return self.params_before * self.bytes_per_param

    @property
    def size_after(self) -> int:
        return self.params_after * self.bytes_per_param

    @property
    def params_removed_fraction(self) -> float:
        return 1.0 - self.params_after / self.params_before if self.params_before else 0.0

    @property
    def speedup(self) -> float:
        """Expected speedup: the parameter ratio (a first-order estimate; the benchmark measures it)."""
        return self.params_before / self.params_after if self.params_after else math.inf


def bytes_per_param(model: LoadedModel) -> int:
    """Bytes per parameter of ``model`` as loaded (4 for float32); 4 when it has no parameters."""
    module = getattr(model, "module", None)
    try:
        first = next(iter(module.parameters())) if module is not None else None
    except StopIteration:
        first = None
    return int(first.element_size()) if first is not None else 4


def removal_closure(graph: UnitGraph, unit_ids: Sequence[str]) -> list[str]:
    """Every unit that goes when ``unit_ids`` are removed, in graph order: the units themselves, the partners
    they name in ``attrs["removes_with"]`` (a U-Net's down-stage layer takes its mirrored up-stage layer along),
    and units whose ``attrs["removed_with"]`` names a unit that goes.  A unit inside one that goes goes too
    (it is not listed unless named), and its partners go with it."""
    gone = {u for u in unit_ids if u in graph}

    def inside(uid: str) -> bool:
        return uid in gone or any(a in gone for a in graph.ancestors(uid))

    changed = True
    while changed:
        changed = False
        for unit in graph.units:
            if inside(unit.id):
                for partner in unit.attrs.get("removes_with") or ():
                    if partner in graph and not inside(partner):
                        gone.add(partner)
                        changed = True
            else:
                named = unit.attrs.get("removed_with")
                named = [named] if isinstance(named, str) else list(named or ())
                if any(n in graph and inside(n) for n in named):
                    gone.add(unit.id)
                    changed = True
    return [u.id for u in graph.units if u.id in gone]


def removed_params(graph: UnitGraph, unit_ids: Sequence[str]) -> int:
    """Parameters that go with ``unit_ids``: their partners included (:func:`removal_closure`), and each counted
    once even when one unit contains another."""
    return graph.removed_params(removal_closure(graph, unit_ids))


def unit_title(graph: UnitGraph, unit_id: str) -> str:
    """A unit's short name for lists: its label with its parent's short name when it is nested ("Down 1 · ResNet +
    attention 1"); a top-level unit's label up to its first " · " ("Mid block")."""
    unit = graph.get(unit_id)
    if unit.parent is None or unit.parent not in graph:
        return unit.label.split(" · ")[0]  # "Mid block", without its width and resolution
    return f"{graph.get(unit.parent).label.split(' · ')[0]} · {unit.label}"


def estimate(graph: UnitGraph, remove: Sequence[str], bytes_per_param: int = 4) -> Estimate:
    gone = removed_params(graph, list(dict.fromkeys(remove)))
    total = graph.total_params
    return Estimate(params_before=total, params_after=total - gone, units_before=len(graph.prunable()),
                    units_removed=len(set(remove)), bytes_per_param=bytes_per_param)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_count(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


# -- selection by budget -----------------------------------------------------------------------
def select_by_budget(graph: UnitGraph, scores: Scores, *, blocks: int | None = None,
                     params_fraction: float | None = None, keep: str | None = None) -> list[str]:
    """Least important units (by ``scores``) not locked by ``keep``, in graph order.

    ``blocks``: remove exactly that many units.  ``params_fraction``: walk the ranking from the least
    important unit and take each unit while the removed parameters stay within that fraction of the
    model's parameters (at least one unit; the most important unit always stays).
    """
    if (blocks is None) == (params_fraction is None):
        raise SlimError("give either a number of blocks or a fraction of the parameters")
    if blocks is not None:
        if blocks < 1:
            raise SlimError("choose at least one block to remove")
        return plan_from_scores(graph, scores, count=blocks, keep=keep).remove
    assert params_fraction is not None
    if not 0 < params_fraction < 1:
        raise SlimError(f"the parameter budget must be between 0 and 100%, got {params_fraction * 100:g}%")
    locked = set(parse_keep(keep, graph)) if keep is not None else set(scores.locked)
    prunable = [u.id for u in graph.prunable()]
    missing = set(prunable) - set(scores.values)
    if missing:
        raise SlimError(f"the scores do not cover unit(s) {', '.join(sorted(missing))}",
                        hint="re-run the analysis on this model")
    candidates = [uid for uid in scores.ranking() if uid in set(prunable) and uid not in locked]
    budget = params_fraction * graph.total_params
    chosen: list[str] = []
    spent = 0
    for uid in candidates:
        if len(chosen) >= len(prunable) - 1:
            break
        size = removed_params(graph, [*chosen, uid]) - removed_params(graph, chosen)
        if spent + size > budget:
            break
        chosen.append(uid)
        spent += size
    if not chosen:
        if not candidates:
            raise SlimError("every prunable unit is locked by the keep-set", hint="loosen the keep-set")
        smallest = graph.get(candidates[0]).params / max(1, graph.total_params)
        raise SlimError(f"{params_fraction * 100:g}% of the parameters is less than one block "
                        f"({smallest * 100:.1f}%)", hint="raise the budget or select by blocks")
    return sorted(chosen, key=prunable.index)


# -- values on the graph ----------------------------------------------------------------------
def aggregate_up(graph: UnitGraph, values: Mapping[str, float], how: str = "max") -> dict[str, float]:
    """``values`` for every unit that has one of its own or below it: a unit without a value of its own
    gets the ``max``/``sum``/``mean`` of its children's (after they got theirs).  Ids not in the graph go."""
    combine = {"max": max, "sum": sum, "mean": lambda xs: sum(xs) / len(xs)}.get(how)
    if combine is None:
        raise SlimError(f"unknown aggregation '{how}'", hint="use max, sum or mean")
    out = {k: float(v) for k, v in values.items() if k in graph}
    kids: dict[str | None, list[str]] = {}
    for u in graph.units:
        kids.setdefault(u.parent, []).append(u.id)

    def fill(uid: str) -> float | None:
        below = [v for v in (fill(c) for c in kids.get(uid, [])) if v is not None]
        if uid not in out and below:
            out[uid] = float(combine(below))
        return out.get(uid)

    for top in kids.get(None, []):
        fill(top)
    return out


def unit_correspondence(original: UnitGraph, derived: UnitGraph, removed: Sequence[str] = ()) -> dict[str, str]:
    """For a model ``derived`` from ``original`` by removing the units ``removed`` (a slimmed or healed model):
    which unit of ``original`` each unit of ``derived`` is.  Prunable units pair up in order, their children by
    position and label, and the fixed units (embeddings, head, ...) by id.  Units without a partner are left out
    (the mapping is empty where the two graphs do not fit together)."""
    gone = set(removed)
    kept = [u for u in original.prunable() if u.id not in gone]
    mine = derived.prunable()
    out: dict[str, str] = {}

    def pair(d: str, o: str) -> None:
        out[d] = o
        for dc, oc in zip(derived.children(d), original.children(o)):
            if dc.label == oc.label and dc.kind == oc.kind:
                pair(dc.id, oc.id)

    if len(kept) == len(mine):
        for d, o in zip(mine, kept):
            pair(d.id, o.id)
    for u in derived.units:
        if u.parent is None and not u.prunable and u.id in original and not original.get(u.id).prunable:
            pair(u.id, u.id)
    return out


# -- colours and agreement ---------------------------------------------------------------------
def color_scale(values: Mapping[str, float]) -> str:
    """The scale that shows differences best: log for positive scores over orders of magnitude, linear
    otherwise — and rank when, even so, one outlier (say the first block, whose removal is catastrophic)
    would leave every other unit within the bottom 10% of the colour range."""
    finite = sorted(float(v) for v in values.values() if math.isfinite(v))
    if len(finite) < 2 or finite[-1] == finite[0]:
        return "linear"
    lo, hi = finite[0], finite[-1]
    scale = "log" if lo > 0 and hi / lo > 100 else "linear"
    f = math.log if scale == "log" else (lambda v: v)
    if len(finite) > 2 and (f(finite[-2]) - f(lo)) < 0.1 * (f(hi) - f(lo)):
        return "rank"
    return scale


def normalized(values: Mapping[str, float], scale: str = "auto") -> dict[str, float]:
    """Scores mapped to [0, 1] for colouring (0 = least important).

    ``scale``: "linear", "log" (for positive scores spanning orders of magnitude, e.g. perplexity
    after removing the first block), "rank", or "auto" (see :func:`color_scale`).
    Non-finite scores map to 1 (they mark units the model cannot do without).
    """
    finite = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    if not finite:
        return {k: 1.0 for k in values}
    if scale == "auto":
        scale = color_scale(finite)
    if scale == "rank":
        ranks = _ranks(list(finite.values()))
        top = max(1.0, len(finite) - 1.0)
        mapped = {k: (r - 1) / top for k, r in zip(finite, ranks)}
    else:
        vals = {k: (math.log(v) if scale == "log" and v > 0 else v) for k, v in finite.items()}
        lo, hi = min(vals.values()), max(vals.values())
        span = hi - lo
        mapped = {k: ((v - lo) / span if span > 0 else 0.5) for k, v in vals.items()}
    return {k: mapped.get(k, 1.0) for k in values}


def _ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks with ties given their average rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(a: Sequence[float], b: Sequence[float]) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if va == 0 or vb == 0:
        return math.nan
    return cov / math.sqrt(va * vb)


def _clean(a: Sequence[float], b: Sequence[float]) -> tuple[list[float], list[float]]:
    if len(a) != len(b):
        raise ValueError("rank correlation needs two sequences of the same length")
    big = 1e300  # non-finite scores rank above every finite one

    def fix(v: float) -> float:
        return v if math.isfinite(v) else (big if v > 0 or math.isnan(v) else -big)

    return [fix(float(x)) for x in a], [fix(float(y)) for y in b]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation ρ (ties averaged); NaN when fewer than 2 items or a constant side."""
    a, b = _clean(a, b)
    if len(a) < 2:
        return math.nan
    return _pearson(_ranks(a), _ranks(b))


def kendall(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b (handles ties); NaN when fewer than 2 items or a constant side."""
    a, b = _clean(a, b)
    n = len(a)
    if n < 2:
        return math.nan
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da = (a[i] > a[j]) - (a[i] < a[j])
            db = (b[i] > b[j]) - (b[i] < b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denom if denom else math.nan


@dataclass(frozen=True)
class Agreement:
    criteria: list[str]
    spearman: list[list[float]]
    kendall: list[list[float]]


def agreement(scores: Mapping[str, Scores], unit_ids: Sequence[str]) -> Agreement:
    """Pairwise rank agreement of criteria over ``unit_ids`` (units a criterion did not score are skipped)."""
    names = list(scores)
    rho = [[math.nan] * len(names) for _ in names]
    tau = [[math.nan] * len(names) for _ in names]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            ids = [u for u in unit_ids if u in scores[a].values and u in scores[b].values]
            xa = [scores[a].values[u] for u in ids]
            xb = [scores[b].values[u] for u in ids]
            rho[i][j] = 1.0 if i == j and ids else spearman(xa, xb)
            tau[i][j] = 1.0 if i == j and ids else kendall(xa, xb)
    return Agreement(criteria=names, spearman=rho, kendall=tau)


def score_matrix(scores: Mapping[str, Scores], unit_ids: Sequence[str]) -> list[list[float]]:
    """criteria × units, each row normalised to [0, 1] (NaN where a criterion has no score)."""
    rows = []
    for s in scores.values():
        norm = normalized({u: s.values[u] for u in unit_ids if u in s.values})
        rows.append([norm.get(u, math.nan) for u in unit_ids])
    return rows


# -- defaults ----------------------------------------------------------------------------------
def criteria_for(registry: Registry, family: str) -> list[tuple[str, str]]:
    """(name, description) of the criteria that apply to ``family``, family-specific ones first."""
    specs = registry.criterion_specs(family)
    own = [(s.name, s.description) for _, s in specs if "*" not in s.families]
    shared = [(s.name, s.description) for _, s in specs if "*" in s.families]
    seen: dict[str, str] = {}
    for name, desc in own + shared:
        seen.setdefault(name, desc)
    return list(seen.items())


def default_data(model: LoadedModel) -> str | None:
    """The family's default calibration text for ``model`` (the demo's own text), if any."""
    fn = getattr(model.impl, "default_data", None)
    if fn is None:
        return None
    try:
        return fn(model)
    except SlimError:
        return None


# criteria measured on calibration text: without text (given or the family's default) they cannot run
TEXT_CRITERIA = ("ppl", "bi", "taylor")


def default_criterion(registry: Registry, model: LoadedModel, data: str | None = None) -> str | None:
    """The analysis ``slimgui gui MODEL`` runs: the family's own first criterion (``ppl`` for language models,
    ``ldpruner`` for diffusion U-Nets); a criterion measured on calibration text only when the model has a
    tokenizer and there is text (given or the family's default), else "magnitude".  None without weights."""
    if not model.has_weights:
        return None
    specs = registry.criterion_specs(model.family)
    own = [s.name for _, s in specs if "*" not in s.families]
    names = [n for n, _ in criteria_for(registry, model.family)]
    has_text = model.tokenizer is not None and bool(data or default_data(model))
    for name in own:
        if name not in TEXT_CRITERIA or has_text:
            return name
        break  # the family's first choice needs text: the weights-only fallback beats its second choice
    return "magnitude" if "magnitude" in names else (names[0] if names else None)


def preset_choices(model: LoadedModel, registry: Registry) -> list[tuple[str, bool, str]]:
    """``(name, fits, note)`` of the family's named pruning presets (BK-SDM's bk-base/small/tiny): ``note`` says
    what the preset removes when it fits, or why it does not fit this model."""
    from .ops import graph_of, preset_plan, presets

    graph = graph_of(model, registry)
    out = []
    for name, fits in presets(model, registry).items():
        try:
            plan = preset_plan(model, name, registry=registry)
        except SlimError as exc:
            out.append((name, False, exc.one_line()))
            continue
        if not fits:
            out.append((name, False, f"{name} does not fit this model"))
            continue
        share = removed_params(graph, plan.remove) / max(1, graph.total_params)
        out.append((name, True, f"removes {len(plan.remove)} units ({100 * share:.1f}% of the parameters): "
                                + ", ".join(unit_title(graph, u) for u in plan.remove)))
    return out


def previewers_for(registry: Registry, family: str) -> list[tuple[str, str, str]]:
    """(name, media type, description) of the previewers that apply to ``family``."""
    out = []
    for plugin in registry.plugins:
        for spec in plugin.previewers:
            if "*" in spec.families or family in spec.families:
                out.append((spec.name, spec.media, spec.description))
    return out
