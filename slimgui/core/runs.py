"""Retraining run folders: where new ones go and what an existing one holds.

:func:`runs_dir` is the per-user folder under the cache, :func:`new_run_dir` a fresh name in it for a model
and method, and :func:`run_state` reads back a run folder (steps done, loss curves, checkpoints, the final
result) so a reopened session can show its curves and offer to resume.  No Qt here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .io import cache_dir


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


def run_state(out: str | Path) -> dict[str, Any]:
    """What a run folder holds, for showing it again (curves after reopening, Resume):
    ``{"step", "steps", "history": [[step, loss]], "val_history": [[step, loss]], "finished", "checkpoints",
    "result"}``.  An empty folder gives step 0 and empty histories."""
    import json

    from .train import checkpoints

    root = Path(out)
    ckpts = checkpoints(root)
    state: dict[str, Any] = {"step": 0, "steps": None, "history": [], "val_history": [], "finished": False,
                             "checkpoints": [str(c) for c in ckpts], "result": None}
    try:
        job = json.loads((root / "job.json").read_text(encoding="utf-8"))
        state["steps"] = int(job["config"]["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    doc = None
    if ckpts:
        try:
            doc = json.loads((ckpts[-1] / "trainer_state.json").read_text(encoding="utf-8"))
            state["step"] = int(doc.get("global_step", 0))
        except (OSError, ValueError):
            doc = None
    try:
        final = json.loads((root / "slimgui_train.json").read_text(encoding="utf-8"))
        if int(final.get("step", 0)) >= state["step"]:
            doc, state["finished"], state["step"] = final, True, int(final.get("step", 0))
            state["result"] = {k: v for k, v in final.items() if k not in ("history", "val_history")}
    except (OSError, ValueError, TypeError):
        pass
    if doc is not None:
        state["history"] = [list(p) for p in doc.get("history", []) if int(p[0]) <= state["step"]]
        state["val_history"] = [list(p) for p in doc.get("val_history", []) if int(p[0]) <= state["step"]]
    return state
