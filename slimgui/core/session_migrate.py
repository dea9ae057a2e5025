"""Reading sessions written by older SlimGUI versions: one function per schema step.

Schema 1 (SlimGUI before the family contract) kept every knob of every family as a flat field of the
panel's settings (``lora_r``, ``image_prompt``, ``with_past``, ...).  Schema 2 keeps only what is common
to every family as fields and a plugin's options by name under ``options[owner]``.  The step from 1 to 2
moves each section's other fields, unchanged, under ``options["*"]`` (:data:`slimgui.core.settings.LEGACY`),
where the plugins' schemas find them by field name or declared ``legacy`` name.  Schema 1 kept a family's
evaluations under a results section named after its evaluator; schema 2 keeps every family's under
``results["evaluation"]``, each result naming its evaluator.  The step needs no plugin: it only knows the
sections schema 1's core wrote itself.
"""

from __future__ import annotations

from typing import Any

from .settings import LEGACY

# schema 2's generic fields of each section (everything else of a schema-1 section was a plugin's option)
GENERIC = {
    "analysis": ("criterion", "data", "samples", "batch_size"),
    "preview": ("previewer", "eval_file"),
    "retrain": ("method", "data", "eval_file", "out", "steps", "batch_size", "lr", "warmup", "save_every",
                "eval_every"),
    "export": ("target", "format", "out"),
    "bench": ("batches", "threads", "repeats", "models"),
}
# schema-1 preview fields that were the evaluation's options, not the previewer's
_V1_EVAL_FIELDS = ("eval_seq_len", "eval_max_tokens")
# the results sections schema 1's core wrote; any other section held one evaluator's results, by model
_V1_CORE_RESULTS = ("generation", "retrain", "export", "bench", "evaluation")


def _section(raw: Any, name: str) -> dict[str, Any]:
    sec = dict(raw) if isinstance(raw, dict) else {}
    keep = {k: v for k, v in sec.items() if k in GENERIC[name]}
    rest = {k: v for k, v in sec.items() if k not in GENERIC[name]}
    if name == "preview":
        keep["eval_options"] = {LEGACY: {k: rest.pop(k) for k in _V1_EVAL_FIELDS if k in rest}}
    keep["options"] = {LEGACY: rest} if rest else {}
    return keep


def v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 session document as schema 2."""
    out = dict(doc)
    for name in GENERIC:
        if name in doc:
            out[name] = _section(doc.get(name), name)
    results = dict(doc.get("results") or {}) if isinstance(doc.get("results"), dict) else {}
    for evaluator in [k for k, v in results.items() if k not in _V1_CORE_RESULTS and isinstance(v, dict)]:
        old = results.pop(evaluator)
        merged = dict(results.get("evaluation") or {}) if isinstance(results.get("evaluation"), dict) else {}
        for side, value in old.items():
            if isinstance(value, dict):
                merged.setdefault(side, {"evaluator": evaluator, **value})
        results["evaluation"] = merged
    out["results"] = results
    out["schema_version"] = 2
    return out


MIGRATIONS = {1: v1_to_v2}
