"""Commands that measure or show what models do: eval (a family's evaluator, with a short text sample where
the family previews text) and generate (a family's previewer on several models side by side, saved by media)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError

from . import flags
from .common import ProgressBar, check_out, emit, open_target, resolve

# what `generate` writes for each kind of media a previewer returns
SUFFIXES = {"image": ".png", "audio": ".wav", "video": ".mp4", "text": ".txt", "table": ".tsv"}
SAMPLE_MEDIA = "text"  # what `eval` shows beside its numbers (a sample that fits in a terminal)


def _first(specs: list[Any], what: str, family: str | None) -> Any:
    if not specs:
        raise SlimError(f"no {what} applies to {family} models", hint="`slimgui plugins` lists what is installed")
    return specs[0]


def format_metrics(result: dict[str, Any], declared=()) -> list[str]:
    """``Label value unit`` of each metric a result carries (``result["metrics"]``), formatted as declared."""
    from slimgui.core.metrics import Metric

    fmt = {m.name: m for m in declared}
    out = []
    for m in result.get("metrics") or []:
        metric = fmt.get(m.get("name")) or Metric(str(m.get("name")), str(m.get("label") or ""), str(m.get("unit") or ""))
        out.append(f"{m.get('label') or metric.title} {metric.format(m.get('value'))}")
    return out


# -- eval ----------------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    from slimgui.core import ops

    reg = args.registry
    bar = ProgressBar(not args.quiet)
    sample = None
    try:
        target = resolve(args.model, reg, adapter=args.adapter, progress=bar)
        family = target.family
        spec = (reg.evaluator_spec(args.evaluator, family) if args.evaluator
                else _first(reg.evaluator_specs(family), "evaluator", family))
        pspec = next((s for s in reg.previewer_specs(family) if s.media == SAMPLE_MEDIA), None)
        ev_schema = flags.schema(reg, spec)
        pv_schema = flags.schema(reg, pspec)
        flags.warn_others(args, [ev_schema, pv_schema], f"evaluating {family} models with {spec.name}")
        ev_given = flags.given(args, ev_schema)
        pv_given = flags.given(args, pv_schema)
        run_sample = pspec is not None and not args.no_generate
        model = open_target(target, args, reg, bar)
        if run_sample:  # a sample's lengths are checked before the evaluation's minutes of work
            ops.check_context_options(model, reg, pspec, pv_given)
        data = args.data
        if data is None and spec.data is not None and spec.data.required:
            from slimgui.core.session import default_eval_data

            data = default_eval_data(model, reg)  # held-out data the model comes with (a demo's eval text)
        result = ops.evaluate(model, data, registry=reg, evaluator=spec.name, options=ev_given, progress=bar)
        if data is not None and args.data is None:
            result.setdefault("data", data)  # the figure names what it was measured on
        if run_sample:
            try:
                sample = ops.preview(model, registry=reg, previewer=pspec.name, options=pv_given, progress=bar)
                result["generation"] = {**flags.values(pv_schema, pv_given), "text": sample.text, **sample.meta}
            except SlimError as exc:
                if pv_given:  # a sample asked for with options of its own that cannot be made: the user's to fix
                    raise
                result["generation"] = {"skipped": exc.one_line()}  # e.g. a model that cannot generate
    finally:
        bar.close()
    shown = format_metrics(result, spec.metrics)
    if shown:
        measured_on = result.get("data")  # named when SlimGUI chose it (held-out data the model comes with)
        human = f"{spec.name}: " + " · ".join(shown) + (
            f" (on {Path(str(measured_on)).name})" if isinstance(measured_on, str) and measured_on else "")
    else:
        human = "\n".join(f"{k}: {v}" for k, v in result.items() if k != "metrics")
    if sample is not None:
        human += f"\n--- {pspec.label or pspec.name}{': ' + sample.title if sample.title else ''} ---\n{sample.text}"
    emit(args, {"model": model.source, "evaluator": spec.name, **result}, human)
    return 0


# -- generate ------------------------------------------------------------------------------------------
def _label(path: str) -> str:
    p = Path(path)
    return path if path.startswith("demo:") else (f"{p.parent.name}/{p.name}" if p.name == "model" else p.name)


def _outputs(out: Path, n: int, several: bool) -> list[Path]:
    """One file, or (media written one file per model) OUT, OUT-2, OUT-3, ... ."""
    if not several or n == 1:
        return [out]
    return [out] + [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(2, n + 1)]


def _models_meta(medias: list[Any], labels: list[str], models: list[Any]) -> list[Any]:
    """What each row's media says about its model (its ``meta["models"]``), else its label and source."""
    rows = [getattr(m, "meta", {}).get("models") for m in medias]
    if all(isinstance(r, list) for r in rows):
        return [x for r in rows for x in r]
    return [{"label": label, "model": m.source} for label, m in zip(labels, models)]


def labelled(grid: Any) -> Any:
    """The stacked image with each row's name (its tiles' ``row``) in a white strip on its left."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from slimgui.core import media as core_media

    spans: dict[str, tuple[int, int]] = {}
    for tile in grid.tiles:
        name, box = str(tile.get("row") or tile.get("label") or "")[:48], tile.get("box")
        if name and isinstance(box, (list, tuple)) and len(box) == 4:
            top, bottom = int(box[1]), int(box[1]) + int(box[3])
            old = spans.get(name, (top, bottom))
            spans[name] = (min(old[0], top), max(old[1], bottom))
    if not spans:
        return grid
    font = ImageFont.load_default()
    strip = int(max(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(n, font=font) for n in spans)) + 12
    img = Image.fromarray(core_media.image_array(grid)).convert("RGB")
    out = Image.new("RGB", (img.width + strip, img.height), "white")
    out.paste(img, (strip, 0))
    draw = ImageDraw.Draw(out)
    for name, (top, bottom) in spans.items():
        draw.text((6, (top + bottom) // 2), name, fill="black", font=font, anchor="lm")
    return core_media.ImageMedia(np.asarray(out), title=grid.title, meta=dict(grid.meta))


def _save(media_kind: str, medias: list[Any], labels: list[str], outs: list[Path]) -> tuple[list[Path], dict[str, Any]]:
    from slimgui.core import media as core_media
    from slimgui.core.io import atomic_write_text

    if media_kind == "image":
        grid = core_media.stack_images(medias)
        arr = core_media.image_array(grid)
        return [core_media.save_png(labelled(grid), outs[0])], {"size": [int(arr.shape[1]), int(arr.shape[0])],
                                                       "rows": grid.meta.get("rows")}
    if media_kind == "audio":
        return [core_media.save_wav(m, o) for m, o in zip(medias, outs)], {}
    if media_kind == "video":
        return [core_media.save_video(m, o) for m, o in zip(medias, outs)], {}
    parts = []
    for label, m in zip(labels, medias):
        if isinstance(m, core_media.TableMedia):  # tab-separated
            body = "\n".join("\t".join(str(c) for c in row) for row in [m.columns, *m.rows])
        else:
            body = str(getattr(m, "text", m))
        parts.append(f"## {label}\n{body}\n")
    atomic_write_text(outs[0], "\n".join(parts))
    return [outs[0]], {}


def cmd_generate(args) -> int:
    from slimgui.core.tasks_preview import preview_task

    reg = args.registry
    bar = ProgressBar(not args.quiet)
    paths = [args.model, *(args.vs or [])]
    try:
        targets = [resolve(p, reg, adapter=args.adapter if i == 0 else None, progress=bar) for i, p in enumerate(paths)]
        families = sorted({t.family for t in targets})
        if len(families) > 1:
            raise SlimError(f"the models to compare are of different families ({', '.join(families)})")
        family = targets[0].family
        spec = (reg.previewer_spec(args.previewer, family) if args.previewer
                else _first(reg.previewer_specs(family), "previewer", family))
        sch = flags.schema(reg, spec)
        flags.warn_others(args, [sch], f"the {spec.name} previewer of {family} models")
        given = flags.given(args, sch)
        suffix = SUFFIXES.get(spec.media)
        if suffix is None:
            raise SlimError(f"cannot save {spec.media} media", hint="choose another --previewer")
        out = Path(args.out)
        if out.suffix.lower() != suffix:
            raise SlimError(f"--out must be a {suffix} file, got {out.name or repr(args.out)}",
                            hint=f"the {spec.name} previewer of {family} models makes {spec.media}")
        outs = _outputs(out, len(paths), spec.media in ("audio", "video"))
        outs = [check_out(o, "file", force=args.force) for o in outs]
        labels = [_label(p) for p in paths]
        models = [open_target(t, args, reg, bar) for t in targets]
        medias = preview_task(models, spec.name, registry=reg, options=given, labels=labels, progress=bar)
        written, extra = _save(spec.media, medias, labels, outs)
    finally:
        bar.close()
    metas = [getattr(m, "meta", None) or {} for m in medias]
    shared = {k: v for k, v in metas[0].items() if k not in ("models", "rows") and all(x.get(k) == v for x in metas)}
    payload = {"out": str(written[0]), **shared, "models": _models_meta(medias, labels, models), **extra,
               "files": [str(p) for p in written], "previewer": spec.name, "media": spec.media}
    emit(args, payload, f"{spec.label or spec.name} of {len(models)} model(s) written to "
                        + ", ".join(str(p) for p in written))
    return 0


# -- parsers ---------------------------------------------------------------------------------------------
def add_parsers(sub, registry, common) -> None:
    evaluators = flags.all_specs(registry, "evaluators")
    previewers = flags.all_specs(registry, "previewers")
    samples = [s for s in previewers if s.media == SAMPLE_MEDIA]

    sp = sub.add_parser("eval", help="evaluate a model with its family's evaluator ("
                                     + ", ".join(sorted({s.name for s in evaluators})) + ")")
    common(sp)
    data = sorted({s.data.label for s in evaluators if s.data is not None and s.data.label})
    sp.add_argument("--data", help=f"what to evaluate on ({', '.join(data) or 'a file or folder'})")
    sp.add_argument("--evaluator", help="evaluator name (default: the family's first; `slimgui plugins` lists them)")
    sp.add_argument("--no-generate", action="store_true",
                    help=f"skip the {SAMPLE_MEDIA} sample shown beside the numbers (families that preview {SAMPLE_MEDIA})")
    flags.add(sp, flags.spec_pairs(evaluators, registry) + flags.spec_pairs(samples, registry),
              title="options of the evaluators and of the sample")
    sp.set_defaults(func=cmd_eval)

    media = ", ".join(f"{k} → {v}" for k, v in SUFFIXES.items())
    sp = sub.add_parser("generate", help="the same preview from each model, side by side (e.g. an image grid)")
    common(sp)
    sp.add_argument("--vs", nargs="+", help="more models, one row each (slimmed, healed, few-step)")
    sp.add_argument("--previewer", help="previewer name (default: the family's first; `slimgui plugins` lists them)")
    sp.add_argument("--out", required=True, help=f"the file to write, by the previewer's media ({media}; audio and "
                                                 "video: one file per model, OUT-2, OUT-3, ...)")
    sp.add_argument("--force", action="store_true", help="replace an existing --out")
    flags.add(sp, flags.spec_pairs(previewers, registry), title="options of the previewers")
    sp.set_defaults(func=cmd_generate)
