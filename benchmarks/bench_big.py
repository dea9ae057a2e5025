"""`make bench-big`: a language model bigger than this machine's memory, streamed block by block (issue 17).

1. Writes a LLaMA-shaped bf16 checkpoint (default ~26 GB: more than 24 GiB) from a config with seeded random weights,
   tensor by tensor straight into 5 GB safetensors shards (the model is never held: one tensor at a time).
2. Runs the real ``slimgui`` command on it, each step in its own process with its peak RSS (``os.wait4``), wall time
   and disk written: ``inspect``, ``analyze --criterion bi``, ``analyze --criterion ppl`` (short calibration text),
   ``prune --ratio 0.25`` (ranked by the bi scores), then reads the result's index and shard headers back.
3. On models that fit (the demo, and a ~1 GB one written the same way) runs bi, ppl and prune in memory and with
   ``--stream`` side by side: time and peak-RSS ratios.
4. Start-up: ``--help``, ``plugins`` and a config-only ``inspect`` (cold and warm cache), and the app opening a
   config-only folder.  The app on a streamed model (``app_responsiveness.py``, offscreen; the ~1 GB model under a
   256 MB budget, and the big one): time to the structure, the GUI thread's stalls during ``bi``, Cancel of ``ppl``.

Prints progress on stderr and, as the last line of stdout, one JSON object (also written to --out).  Run it with
``nice``; it needs about 2.8× the checkpoint's size of free disk (``--size-gb`` smaller where there is less).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARD_BYTES = 5 * 10**9


def log(msg: str) -> None:
    print(f"[bench-big] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def calibration_text(folder: Path) -> Path:
    import argparse as _a
    import json as _j

    path = folder / "calib.txt"
    path.write_text(Path(_j.__file__).read_text() + Path(_a.__file__).read_text(), encoding="utf-8")
    return path


def tokenizer(vocab: int = 2000):
    """A byte-level BPE tokenizer trained on the Python standard library's source (every machine has it)."""
    import argparse as _a
    import json as _j

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = Path(_j.__file__).read_text() + Path(_a.__file__).read_text()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>")


def llama_config(hidden: int, inter: int, layers: int, heads: int, kv: int, vocab: int = 32000):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv, vocab_size=vocab, max_position_embeddings=4096, bos_token_id=0,
                       eos_token_id=1, pad_token_id=1, tie_word_embeddings=False)


def write_checkpoint(folder: Path, config, seed: int = 0, dtype: str = "bfloat16") -> int:
    """Write ``config``'s model with seeded random weights (normal, std 0.02; norms 1) straight to safetensors
    shards, one tensor in memory at a time.  Returns the bytes written."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    with init_empty_weights():
        meta = AutoModelForCausalLM.from_config(config)
    specs = [(n, tuple(p.shape)) for n, p in meta.state_dict().items()]
    del meta
    tdtype = getattr(torch, dtype)
    esize = torch.tensor([], dtype=tdtype).element_size()
    code = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[dtype]
    shards: list[list[tuple[str, tuple]]] = [[]]
    size = 0
    for name, shape in specs:
        nbytes = esize * int(torch.Size(shape).numel())
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    weight_map, total = {}, 0
    gen = torch.Generator().manual_seed(seed)
    for k, group in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        header: dict = {"__metadata__": {"format": "pt"}}
        pos = 0
        for name, shape in group:
            n = esize * int(torch.Size(shape).numel())
            header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [pos, pos + n]}
            pos += n
            weight_map[name] = fname
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / fname, "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little") + raw)
            for name, shape in group:
                if name.endswith("norm.weight"):
                    t = torch.ones(shape, dtype=tdtype)
                else:
                    t = torch.randn(shape, generator=gen, dtype=torch.float32).mul_(0.02).to(tdtype)
                fh.write(memoryview(t.view(torch.uint8).numpy()))
                del t
        total += pos
        log(f"  wrote {fname} ({pos / 1e9:.2f} GB)")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    config.torch_dtype = dtype
    config.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return total


# The command's own peak RSS: VmHWM of its memory map, written by the child as it exits.  (``ru_maxrss`` from
# ``wait4`` is not used: Linux keeps it across exec, so a child started from this process would report this
# process's own size whenever that is larger.)
CHILD = ("import sys\nfrom slimgui.cli import main\ntry:\n    rc = main()\nfinally:\n"
         "    hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')]\n"
         "    sys.stderr.write('PEAK_RSS_KB ' + (hwm[0].split()[1] if hwm else '0') + '\\n')\nsys.exit(rc)")


def slimgui(*args: str) -> list[str]:
    return [sys.executable, "-c", CHILD, *args, "--json", "-q"]


def run_child(cmd: list[str], label: str, out_dir: Path | None = None) -> dict:
    log(f"{label}: {' '.join(cmd[3:])}")
    t0 = time.perf_counter()
    with open(os.devnull, "w") as null:
        outf = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-big-{os.getpid()}.out"
        errf = outf.with_suffix(".err")
        with open(outf, "w") as o, open(errf, "w") as e:
            pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, o.fileno(), 1), (os.POSIX_SPAWN_DUP2, e.fileno(), 2),
                (os.POSIX_SPAWN_DUP2, null.fileno(), 0)])
            _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    out, err = outf.read_text(), errf.read_text()
    outf.unlink(missing_ok=True)
    errf.unlink(missing_ok=True)
    peaks = [int(ln.split()[1]) * 1024 for ln in err.splitlines() if ln.startswith("PEAK_RSS_KB ")]
    rss = peaks[-1] if peaks and peaks[-1] > 0 else usage.ru_maxrss * 1024
    row = {"step": label, "seconds": round(wall, 2), "rc": rc, "peak_rss_bytes": rss,
           "notes": [ln for ln in err.splitlines() if "note:" in ln][:3]}
    if rc != 0:
        row["error"] = err.strip()[-600:]
        log(f"  FAILED ({rc}): {row['error']}")
    if out_dir is not None and out_dir.exists():
        row["disk_written_bytes"] = folder_bytes(out_dir)
    try:
        row["result"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    except json.JSONDecodeError:
        row["result"] = None
    log(f"  {wall:.1f}s, peak RSS {rss / 2**30:.2f} GiB")
    return row


def calib_args(calib: Path, samples: int, seq_len: int) -> list[str]:
    return ["--data", str(calib), "--samples", str(samples), "--batch-size", str(samples), "--seq-len", str(seq_len)]


def big_case(work: Path, size_gb: float, calib: Path, samples: int, seq_len: int, keep: bool,
             skip_ppl: bool = False) -> dict:
    # LLaMA-13B-shaped blocks (hidden 5120, MLP 13824): 317M parameters, 0.63 GB of bf16 each
    hidden, inter, heads = 5120, 13824, 40
    per_block = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden
    layers = max(4, round((size_gb * 1e9 / 2 - 2 * 32000 * hidden) / per_block))
    config = llama_config(hidden, inter, layers, heads, heads)
    model = work / "big"
    if not (model / "model.safetensors.index.json").is_file():
        shutil.rmtree(model, ignore_errors=True)
        log(f"writing a {layers}-block LLaMA-shaped bf16 checkpoint (~{size_gb:.1f} GB) to {model}")
        t0 = time.perf_counter()
        written = write_checkpoint(model, config)
        write = {"seconds": round(time.perf_counter() - t0, 1), "bytes": written}
    else:
        write = {"reused": True, "bytes": folder_bytes(model)}
    ck_bytes = sum(f.stat().st_size for f in model.glob("*.safetensors"))
    out = {"checkpoint": {"path": str(model), "bytes": ck_bytes, "gib": round(ck_bytes / 2**30, 2), "blocks": layers,
                          "hidden": hidden, "intermediate": inter, "dtype": "bfloat16", "write": write},
           "steps": []}
    steps = out["steps"]
    steps.append(run_child(slimgui("inspect", str(model)), "inspect"))
    scores = work / "big-bi.json"
    scores.unlink(missing_ok=True)
    cal = calib_args(calib, samples, seq_len)
    steps.append(run_child(slimgui("analyze", str(model), "--criterion", "bi", "--out", str(scores), *cal),
                           "analyze bi"))
    if not skip_ppl:
        steps.append(run_child(slimgui("analyze", str(model), "--criterion", "ppl", *cal), "analyze ppl"))
    pruned = work / "big-pruned"
    shutil.rmtree(pruned, ignore_errors=True)
    steps.append(run_child(slimgui("prune", str(model), "--scores", str(scores), "--ratio", "0.25", "--out",
                                   str(pruned), "--force"), "prune 0.25", out_dir=pruned))
    t0 = time.perf_counter()
    index = json.loads((pruned / "model.safetensors.index.json").read_text())
    from slimgui_families.llm.stream import Checkpoint

    ck = Checkpoint.open(pruned)
    cfg = json.loads((pruned / "config.json").read_text())
    out["result"] = {"index_seconds": round(time.perf_counter() - t0, 3), "total_size": index["metadata"]["total_size"],
                     "headers_total": ck.total_bytes, "num_hidden_layers": cfg["num_hidden_layers"],
                     "dtype": cfg.get("dtype"), "shards": len(set(index["weight_map"].values()))}
    for row in steps:
        if row.get("peak_rss_bytes"):
            row["peak_rss_over_checkpoint"] = round(row["peak_rss_bytes"] / ck_bytes, 4)
    if not keep:
        shutil.rmtree(pruned, ignore_errors=True)
    return out


def startup_case(work: Path, runs: int = 3) -> dict:
    """Start-up of the real ``slimgui`` command (each run a fresh process; best and worst of ``runs``): ``--help``,
    ``plugins``, and ``inspect`` of config-only folders with an empty structure cache (cold) and a filled one (warm):
    an 80-block LLaMA config and an OPT config (their structure is arithmetic: slimgui_families.llm.skeleton) and a
    Falcon config (an architecture the formulas do not cover: built with transformers the first time, cached after)."""
    import subprocess
    import tempfile

    from transformers import FalconConfig, LlamaConfig, OPTConfig

    script = Path(sys.executable).with_name("slimgui")  # the command users run
    exe = [str(script)] if script.is_file() else [sys.executable, "-m", "slimgui.cli"]
    llama, opt, falcon = work / "cfg-llama-80", work / "cfg-opt", work / "cfg-falcon"
    LlamaConfig(num_hidden_layers=80, hidden_size=8192, intermediate_size=28672, num_attention_heads=64,
                num_key_value_heads=8, vocab_size=128256).save_pretrained(llama)
    OPTConfig(hidden_size=768, ffn_dim=3072, num_hidden_layers=12, num_attention_heads=12,
              vocab_size=50272).save_pretrained(opt)
    FalconConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16).save_pretrained(falcon)

    def timed(args: list[str], cache: str | None) -> float:
        env = dict(os.environ, SLIMGUI_CACHE_DIR=cache or tempfile.mkdtemp(prefix="slimgui-bench-cache-"))
        t0 = time.perf_counter()
        subprocess.run(exe + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        return time.perf_counter() - t0

    out = {}
    for label, args, warm in (("help", ["--help"], False), ("plugins", ["plugins"], False),
                              ("inspect llama-80 config, cold", ["inspect", str(llama), "-q"], False),
                              ("inspect opt config, cold", ["inspect", str(opt), "-q"], False),
                              ("inspect falcon config (built), cold", ["inspect", str(falcon), "-q"], False),
                              ("inspect falcon config (built), warm", ["inspect", str(falcon), "-q"], True)):
        cache = tempfile.mkdtemp(prefix="slimgui-bench-cache-") if warm else None
        if warm:
            timed(args, cache)  # fills the cache
        times = [timed(args, cache) for _ in range(runs)]
        out[label] = {"best_s": round(min(times), 3), "worst_s": round(max(times), 3)}
        log(f"start-up, {label}: {min(times):.2f}-{max(times):.2f} s")
    app = Path(__file__).with_name("app_responsiveness.py")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SLIMGUI_CACHE_DIR=tempfile.mkdtemp(prefix="slimgui-bench-"))
    run = subprocess.run([sys.executable, str(app), str(llama), "--open-only"], env=env, capture_output=True, text=True)
    try:
        opened = json.loads(run.stdout.strip().splitlines()[-1])
        out["app: open llama-80 config to drawn"] = {"seconds": opened["structure_s"],
                                                     "app_warm_up_s": opened.get("warm_up_s")}
        log(f"start-up, the app opens the 80-block config and draws it in {opened['structure_s']:.2f} s "
            f"(after its {opened.get('warm_up_s', 0):.1f} s background import of the model libraries)")
    except (IndexError, KeyError, json.JSONDecodeError):
        out["app: open llama-80 config to drawn"] = {"error": run.stderr.strip()[-300:]}
    return out


def app_case(model: Path, calib: Path, samples: int, seq_len: int, *, budget: str | None = None,
             cancel_after: float = 3.0) -> dict:
    """The app on a streamed model (benchmarks/app_responsiveness.py, offscreen): time to the structure drawn, the
    GUI thread's stalls during a ``bi`` analysis, and how long a ``ppl`` analysis takes to stop after Cancel.
    ``budget``: a memory budget (SLIMGUI_MEMORY_BUDGET) that makes a model that fits stream."""
    script = str(Path(__file__).with_name("app_responsiveness.py"))
    base = [sys.executable, script, str(model), "--data", str(calib), "--samples", str(samples),
            "--seq-len", str(seq_len)]
    env_before = dict(os.environ)
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if budget:
        os.environ["SLIMGUI_MEMORY_BUDGET"] = budget
    try:
        bi = run_child(base + ["--criterion", "bi"], f"app: {model.name} bi")
        cancel = run_child(base + ["--criterion", "ppl", "--cancel-after", str(cancel_after)],
                           f"app: {model.name} ppl, cancelled after {cancel_after:g} s")
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    return {"bi": bi.get("result") or bi, "ppl_cancel": cancel.get("result") or cancel,
            "peak_rss_bytes": max(bi.get("peak_rss_bytes", 0), cancel.get("peak_rss_bytes", 0))}


def fits_case(name: str, model: str, calib: Path, work: Path, samples: int, seq_len: int, rounds: int = 2) -> dict:
    """Streamed over in-memory time and peak RSS on a model that fits: each command in both modes, interleaved
    (memory, stream, then stream, memory, ...), ``rounds`` times; the best time of each mode is compared, so a
    load spike on this shared machine hits both sides alike.  Times are whole commands (start-up included)."""
    cal = calib_args(calib, samples, seq_len)
    rows = {}
    for what, args in (("bi", ["analyze", model, "--criterion", "bi", *cal]),
                       ("ppl", ["analyze", model, "--criterion", "ppl", *cal]),
                       ("prune", ["prune", model, "--remove", "1,2", "--out", str(work / f"{name}-p"), "--force"])):
        runs: dict[str, list[dict]] = {"memory": [], "stream": []}
        for r in range(rounds):
            for mode in (("memory", "stream") if r % 2 == 0 else ("stream", "memory")):
                extra = ["--stream"] if mode == "stream" else []
                runs[mode].append(run_child(slimgui(*args, *extra), f"{name} {what} ({mode}, round {r + 1})"))
        pair = {mode: min(rs, key=lambda row: row["seconds"]) for mode, rs in runs.items()}
        pair["seconds_all"] = {mode: [row["seconds"] for row in rs] for mode, rs in runs.items()}
        pair["time_ratio"] = round(pair["stream"]["seconds"] / pair["memory"]["seconds"], 3)
        pair["rss_ratio"] = round(max(row["peak_rss_bytes"] for row in runs["stream"])
                                  / max(row["peak_rss_bytes"] for row in runs["memory"]), 3)
        for mode in ("memory", "stream"):
            pair[mode] = {k: v for k, v in pair[mode].items() if k != "result"}
        rows[what] = pair
        shutil.rmtree(work / f"{name}-p", ignore_errors=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the JSON report here too")
    ap.add_argument("--work", default=os.environ.get("SLIMGUI_BENCH_BIG_DIR", "/tmp/slimgui-bench-big"))
    ap.add_argument("--size-gb", type=float, default=26.5, help="checkpoint size in GB (default 26.5: > 24 GiB)")
    ap.add_argument("--samples", type=int, default=2, help="calibration segments (default 2)")
    ap.add_argument("--seq-len", type=int, default=16, help="tokens per segment (default 16)")
    ap.add_argument("--skip-big", action="store_true", help="only the models that fit")
    ap.add_argument("--skip-fits", action="store_true", help="only the big model")
    ap.add_argument("--skip-ppl", action="store_true", help="leave out the big model's ppl analysis (~15 minutes)")
    ap.add_argument("--keep", action="store_true", help="keep the written checkpoints")
    ap.add_argument("--skip-app", action="store_true", help="leave out the app's responsiveness on a streamed model")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each pair on the models that fit")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    calib = calibration_text(work)
    import psutil

    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "ram_bytes": psutil.virtual_memory().total, "python": platform.python_version()},
              "free_disk_bytes": shutil.disk_usage(work).free}
    try:
        with open("/proc/cpuinfo") as fh:
            report["machine"]["cpu"] = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    report["startup"] = startup_case(work)
    if not args.skip_fits:
        from slimgui.core.plugins import discover

        demo = discover().demo("llm")()["model"]
        report["demo"] = fits_case("demo", str(demo), calib, work, 8, 64, args.rounds)
        small = work / "one-gb"
        if not (small / "model.safetensors.index.json").is_file():
            shutil.rmtree(small, ignore_errors=True)
            log("writing a ~1 GB (float32) LLaMA-shaped checkpoint")
            write_checkpoint(small, llama_config(1024, 2816, 16, 16, 16), dtype="float32")
        report["one_gb"] = {"bytes": sum(f.stat().st_size for f in small.glob("*.safetensors")),
                            **fits_case("one-gb", str(small), calib, work, 4, 64, args.rounds)}
        if not args.skip_app:  # the app on it, streamed as if the machine had 256 MB to spare
            report["one_gb"]["app_streamed"] = app_case(small, calib, 4, 64, budget="256M")
        if not args.keep:
            shutil.rmtree(small, ignore_errors=True)
    if not args.skip_big:
        need = args.size_gb * 1e9 * 1.8
        free = shutil.disk_usage(work).free
        if free < need:
            size = max(1.0, free / 1.8 / 1e9 - 1)
            report["size_note"] = (f"{free / 1e9:.1f} GB free: the big checkpoint is {size:.1f} GB instead of "
                                   f"{args.size_gb:.1f} GB")
            log(report["size_note"])
            args.size_gb = size
        report["big"] = big_case(work, args.size_gb, calib, args.samples, args.seq_len, True, args.skip_ppl)
        if not args.skip_app:
            report["big"]["app"] = app_case(work / "big", calib, args.samples, args.seq_len, cancel_after=20)
        if not args.keep:
            shutil.rmtree(work / "big-pruned", ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work / "big", ignore_errors=True)
    text = json.dumps(report)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
