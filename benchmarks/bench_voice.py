"""`make bench`, voice-conversion part: the demo SpeechT5 converter, measured side by side in one run.

- ``vc_speedup_over_param_ratio``: the real-time factor (seconds of conversion per second of audio: encoder and a
  fixed number of autoregressive decoder steps for 2 s of audio, one thread, interleaved rounds, medians) of the
  original over that of the depth-pruned converter (50 % of the blocks removed by ``mel-change``), divided by the
  parameter ratio (original / pruned).  1.0: time falls exactly as parameters do.
- ``multitask_vs_vc_only_content``: the demo recogniser's character error rate on held-out converted speech after
  healing the 50 %-pruned converter with the multitask recipe (VC + TTS, ``tts_weight`` 1) and with VC only
  (``finetune``), the same steps, batch, data, seed and learning rate.  The paper claims multitask keeps more
  content; ``holds`` says whether it did here.
- ``mcd``: MCD (dB) to the target voice on held-out utterances of the original, and of the 25 % and 50 % pruned
  converters before and after the same distillation (``kd``) healing.

Calibration: the demo's training sentences (8); every measure is on its held-out sentences, which neither the
criterion nor the healing sees.  Prints progress on stderr and, as the last line of stdout, one JSON object (also
written to --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def log(msg: str) -> None:
    print(f"[bench-voice] {msg}", file=sys.stderr, flush=True)


def measure(model, corpus, idx, rec) -> dict:
    import numpy as np
    from slimgui_families.voice import data as vdata
    from slimgui_families.voice.audio import mcd
    from slimgui_families.voice.speech import cer, convert, recognise
    from slimgui_families.voice.training import target_mels

    mels = target_mels(corpus, model.extra["mel"])
    conv = [convert(model.module, corpus.wave[vdata.SOURCE][i], normalize=model.extra.get("normalize", True), seed=i)
            for i in idx]
    ok = [(c, i) for c, i in zip(conv, idx) if len(c) >= 2]
    hyps = recognise(rec, [c for c, _ in ok])
    errs = [cer(h, corpus.texts[i]) for h, (_, i) in zip(hyps, ok)] + [1.0] * (len(idx) - len(ok))
    return {"mcd": round(float(np.mean([mcd(c, mels[i]) for c, i in ok])), 3) if ok else None,
            "cer": round(float(np.mean(errs)), 4), "silent": len(idx) - len(ok)}


def plan_for(adapter, model, scores: dict[str, float], fraction: float):
    """The lowest-scoring blocks, ``fraction`` of all, keeping at least one encoder and one decoder block."""
    from slimgui.core.plan import PruningPlan

    n = round(fraction * len(scores))
    chosen: list[str] = []
    left = {"encoder": sum(1 for u in scores if u.startswith("encoder")),
            "decoder": sum(1 for u in scores if u.startswith("decoder"))}
    for uid in sorted(scores, key=scores.get):
        side = uid.split(".")[0]
        if len(chosen) < n and left[side] > 1:
            chosen.append(uid)
            left[side] -= 1
    return PruningPlan(remove=chosen, model=model.source)


def heal(adapter, folder: Path, method: str, out: Path, steps: int, batch: int, lr: float, options: dict) -> Path:
    from slimgui.core.plugins import discover
    from slimgui.core.train import TrainConfig, run_training

    cfg = TrainConfig(model=str(folder), data=[], out=str(out), method=method, steps=steps, batch_size=batch, lr=lr,
                      warmup=5, save_every=steps, eval_every=steps, seed=0, options=options)
    run_training(cfg, registry=discover())
    return out / "model"


def rtf(models: dict, rounds: int, seconds: float = 2.0) -> dict[str, float]:
    from slimgui_families.voice.adapter import fixed_steps

    x = torch.randn(1, int(seconds * 16000), generator=torch.Generator().manual_seed(0)) * 0.1
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for name, m in models.items():
            steps = int(seconds * 16000 / 256 / m.config.reduction_factor)
            t0 = time.perf_counter()
            fixed_steps(m.module.eval(), x, steps)
            times[name].append((time.perf_counter() - t0) / seconds)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The voice family's bench figures on the demo converter.")
    ap.add_argument("--out", type=Path, default=Path("bench-voice.json"))
    ap.add_argument("--steps", type=int, default=100, help="healing steps of every healed model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--utterances", type=int, default=10, help="held-out utterances measured")
    ap.add_argument("--rounds", type=int, default=7, help="timing rounds")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from slimgui_families.voice.adapter import VoiceAdapter
    from slimgui_families.voice.criteria import MelChange
    from slimgui_families.voice.demo import ensure_demo, load_recogniser
    from slimgui_families.voice.training import corpus, spread

    from slimgui.core.data import CalibrationData

    t_start = time.time()
    demo = ensure_demo()
    adapter = VoiceAdapter()
    original = adapter.load(demo["model"])
    rec = load_recogniser()
    c = corpus(demo["clips"])
    held = [c.held[i] for i in spread(len(c.held), args.utterances)]
    log("scoring blocks (mel-change, 8 training utterances)")
    scores = MelChange().score(original, CalibrationData(demo["clips"], samples=8, batch_size=4))
    result: dict = {"model": demo["model"], "scores": {k: round(v, 5) for k, v in scores.items()},
                    "heal": {"method": "kd", "steps": args.steps, "batch": args.batch}}
    base = measure(original, c, held, rec)
    result["mcd"] = {"original": base["mcd"]}
    result["cer_original"] = base["cer"]
    params = {"original": sum(p.numel() for p in original.module.parameters())}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pruned = {}
        for frac in (0.25, 0.5):
            key = f"{int(frac * 100)}%"
            plan = plan_for(adapter, original, scores, frac)
            slim = adapter.apply_plan(original, plan)
            folder = tmp / f"slim{key[:-1]}"
            adapter.save(slim, str(folder))
            plan.save(folder / "slimgui_plan.json")
            pruned[key] = (slim, folder, plan)
            params[key] = sum(p.numel() for p in slim.module.parameters())
            before = measure(slim, c, held, rec)
            log(f"{key}: removed {plan.remove}; healing with kd for {args.steps} steps")
            healed_dir = heal(adapter, folder, "kd", tmp / f"kd{key[:-1]}", args.steps, args.batch, 5e-4, {})
            after = measure(adapter.load(str(healed_dir)), c, held, rec)
            result["mcd"][key] = {"removed": plan.remove, "before": before["mcd"], "after": after["mcd"],
                                  "cer_before": before["cer"], "cer_after": after["cer"]}
        log("timing the original and the 50 % converter")
        times = rtf({"original": original, "50%": pruned["50%"][0]}, args.rounds)
        speedup = times["original"] / times["50%"]
        ratio = params["original"] / params["50%"]
        result["vc_speedup_over_param_ratio"] = {
            "rtf_original": round(times["original"], 4), "rtf_pruned": round(times["50%"], 4),
            "speedup": round(speedup, 3), "param_ratio": round(ratio, 3), "value": round(speedup / ratio, 3),
            "params": params}
        log("multitask vs VC-only healing of the 50 % converter")
        folder = pruned["50%"][1]
        mt = measure(adapter.load(str(heal(adapter, folder, "multitask", tmp / "mt", args.steps, args.batch, 5e-4,
                                           {"tts_weight": 1.0}))), c, held, rec)
        vc = measure(adapter.load(str(heal(adapter, folder, "finetune", tmp / "vc", args.steps, args.batch, 5e-4,
                                           {}))), c, held, rec)
        result["multitask_vs_vc_only_content"] = {
            "cer_multitask": mt["cer"], "cer_vc_only": vc["cer"], "mcd_multitask": mt["mcd"], "mcd_vc_only": vc["mcd"],
            "value": round(mt["cer"] / vc["cer"], 3) if vc["cer"] else None, "holds": mt["cer"] < vc["cer"],
            "steps": args.steps}
    result["seconds"] = round(time.time() - t_start)
    text = json.dumps(result)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
