"""The diffusion family's evaluator: does a (slimmed, healed, few-step) demo model still draw the digits asked for?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.model import LoadedModel
from slimgui.core.progress import CancelToken, ProgressFn, check, report

from .files import demo_root


def quality_dir(model: LoadedModel, data_path: str | None) -> Path:
    """The folder holding the digit classifier: given, or the demo this model was made from."""
    from .quality import classifier_dir

    candidates = [Path(data_path)] if data_path else []
    root = demo_root(model.source)
    if root is not None:
        candidates.append(root)
    for c in candidates:
        try:
            classifier_dir(c)
            return c
        except SlimError:
            continue
    raise SlimError("the digit-quality evaluator needs the demo's digit classifier",
                    hint="evaluate a model made from `slimgui demo diffusion`, or pass --data DEMO_FOLDER")


def digit_quality(model: LoadedModel, data_path: str | None = None, *, per_digit: int = 10, steps: int | None = None,
                  guidance: float | None = None, seed: int = 0, progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None, **_: Any) -> dict[str, Any]:
    """Classifier accuracy against the requested digit and Fréchet distance to real held-out digits.

    The keywords are :class:`~slimgui_families.diffusion.options.DigitsOptions`' fields.  Returns the declared metrics
    ``accuracy``, ``fid`` and ``n`` (images scored), and the ``steps``, ``guidance``, ``seed``, ``per_digit``,
    ``seconds``, ``seconds_per_image`` and ``scheduler`` they were measured with."""
    from .generate import model_settings
    from .quality import evaluate_pipeline

    pipe = model.extra.get("pipeline")
    if pipe is None:
        raise SlimError("evaluating image quality needs a pipeline folder (U-Net + VAE + text encoder)")
    folder = quality_dir(model, data_path)
    settings = model_settings(model, steps, guidance)
    scheduler = None
    if settings["scheduler"] == "lcm":
        from diffusers import LCMScheduler

        scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    report(progress, 0, 1, f"generating {per_digit * 10} digits")
    check(cancel)
    pipe.unet = model.module
    g = settings["guidance"] if settings["guidance"] is not None else 3.0
    out = evaluate_pipeline(pipe, folder, per_digit=per_digit, steps=settings["steps"], guidance=g, seed=seed,
                            scheduler=scheduler)
    report(progress, 1, 1, "scored")
    return {"kind": "digits", "scheduler": settings["scheduler"] or type(pipe.scheduler).__name__, **out}
