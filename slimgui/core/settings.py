"""The settings a session keeps for each panel, family-independent.

What is common to every family is a field (the retraining's steps, batch size and learning rate, the
benchmark's batch sizes...).  What a family, a healing method, a previewer, an evaluator or an exporter
declares as its own options is kept *by name* in ``options``: a dict per owner (``{"lora": {"lora_r": 8},
...}``), so a session stores whatever a plugin declares and a plugin installed later finds its values.

:func:`values_for` turns what is stored into an instance of the owner's schema (defaults filled in, every
value checked), :func:`put` stores one back.  Sessions written before options were declared kept every
knob as a flat field; their values sit under :data:`LEGACY` (``"*"``) and are found by the fields' names and
their declared ``legacy`` names (see :mod:`slimgui.core.session_migrate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import options as opts

if TYPE_CHECKING:
    from .train import TrainConfig

LEGACY = "*"  # the owner of values stored by a session of schema 1


def values_for(store: dict[str, Any] | None, owner: str | None, schema: type | None, *, where: str = "") -> Any:
    """An instance of ``schema`` from ``store[owner]`` (and the legacy values); None without a schema.

    A stored value that no longer passes the schema's checks (a range tightened by a newer plugin) is
    replaced by the default rather than failing the whole session.  A value never stored takes the field's
    form default (``Opt.gui_default`` where declared): these are the values the app shows and runs with."""
    if schema is None:
        return None
    store = store if isinstance(store, dict) else {}
    raw: dict[str, Any] = {}
    legacy = store.get(LEGACY) if isinstance(store.get(LEGACY), dict) else {}
    for f in opts.fields_of(schema):
        for key in (*f.opt.legacy, f.name):  # a legacy name is the more specific one in a flat schema-1 record
            if key in legacy:
                raw[f.name] = legacy[key]
                break
    own = store.get(owner) if owner and isinstance(store.get(owner), dict) else {}
    raw.update({k: v for k, v in own.items()})
    values: dict[str, Any] = {}
    for f in opts.fields_of(schema):
        values[f.name] = f.form_default
        if f.name in raw:
            try:
                values[f.name] = opts.coerce(f, raw[f.name], what=f"{where}{f.name}")
            except Exception:
                continue  # keep the default
    return schema(**values)


def owner_key(family: str | None, name: str) -> str:
    """Where a family's contribution keeps its values in a settings store: ``"FAMILY:NAME"`` (two families may
    both have a previewer called "generate", with different options), or ``NAME`` without a family."""
    return f"{family}:{name}" if family else name


def put(store: dict[str, Any], owner: str, values: Any) -> None:
    """Store a schema instance (or a dict by name) as ``store[owner]``."""
    store[owner] = dict(values) if isinstance(values, dict) else opts.to_dict(values)


@dataclass
class AnalysisSettings:
    """How the last analysis was run: criterion, calibration data (``data`` None = the family's default),
    samples and batch size, and the family's calibration options by family (``options[family]``)."""

    criterion: str | None = None
    data: str | None = None
    samples: int = 32
    batch_size: int = 8
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreviewSettings:
    """What the compare panel asks for: the previewer and its options (per previewer), the evaluator, its data
    and its options (per evaluator).  None: the family's first."""

    previewer: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    evaluator: str | None = None
    eval_file: str | None = None
    eval_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RetrainSettings:
    """The Retrain panel's settings and its run folder (``out``; None until a run is started).

    ``data`` empty means the family's default data (the demo's own); ``lr`` None means the method's default
    learning rate; ``options[method]`` the method's options, ``options["data:" + family]`` the family's
    training-data options."""

    method: str | None = None
    data: list[str] = field(default_factory=list)
    eval_file: str | None = None
    out: str | None = None
    steps: int = 100
    batch_size: int = 8
    lr: float | None = None
    warmup: int = 10
    save_every: int = 50
    eval_every: int = 50
    options: dict[str, Any] = field(default_factory=dict)

    def to_config(self, *, model: str, teacher: str | None, data: Sequence[str], out: str, method: str,
                  method_values: Any = None, data_values: Any = None, adapter: str | None = None) -> TrainConfig:
        """The training job for ``model`` (the student; ``teacher`` is passed when the method learns from one)."""
        from .train import TrainConfig

        flat = {**opts.to_dict(data_values), **opts.to_dict(method_values)}
        return TrainConfig(
            model=str(model), data=[str(d) for d in data], out=str(out), method=method, adapter=adapter,
            teacher=str(teacher) if teacher else None, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
            warmup=min(self.warmup, self.steps), save_every=self.save_every, eval_every=self.eval_every,
            options=flat)

    def take(self, cfg: TrainConfig) -> None:
        """Show a run's own configuration (when resuming it)."""
        for name in ("method", "steps", "batch_size", "lr", "warmup", "save_every", "eval_every"):
            setattr(self, name, getattr(cfg, name))
        self.options[cfg.method] = {**(self.options.get(cfg.method) or {}), **dict(cfg.options)}
        self.data = list(cfg.data)
        self.out = cfg.out


@dataclass
class ExportSettings:
    """The Export tab's settings: which model (``original``/``slimmed``/``healed``), the format (an exporter's
    name; None: the family's first), its options (per format) and where the output goes (None: proposed)."""

    target: str = "original"
    format: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    out: str | None = None


@dataclass
class BenchSettings:
    """The Benchmark tab's settings.  ``models``: ``original``, ``slimmed``, ``healed``, ``width`` (a width-pruned
    variant of the original with the slimmed model's size) and paths of exported files; ``options[family]``:
    the family's benchmark options."""

    batches: list[int] = field(default_factory=lambda: [1, 8, 32])
    threads: int = 2
    repeats: int = 5
    models: list[str] = field(default_factory=lambda: ["original", "slimmed", "width"])
    options: dict[str, Any] = field(default_factory=dict)
