"""Never lose a user's work (issue 21): ``--force`` replaces only SlimGUI's own outputs, one writer per run folder,
stale staging folders cleaned and never opened, a full disk is one message with nothing partial, a NaN loss stops
training before it touches the weights, and every output file needs ``--force`` to be replaced."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from slimgui.cli import main
from slimgui.core.errors import SlimError
from slimgui.core.io import OUTPUT_MARKER
from slimgui.core.train import LOCK_FILE, TrainConfig, checkpoints, run_training


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    _, err = capsys.readouterr()
    return code, err


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_force_replaces_only_slimguis_own_outputs(tiny_models, tmp_path, capsys):
    src = tiny_models["llama"]
    out = tmp_path / "mine"
    assert cli(capsys, "prune", str(src), "--remove", "1", "--out", str(out), "-q")[0] == 0
    assert (out / OUTPUT_MARKER).is_file() and (out / "slimgui_plan.json").is_file()
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    assert len(set(modes.values())) == 1, modes  # model.safetensors as readable as its siblings
    # SlimGUI's own output: --force replaces it
    assert cli(capsys, "prune", str(src), "--remove", "2", "--out", str(out), "--force", "-q")[0] == 0
    assert json.loads((out / "slimgui_plan.json").read_text())["remove"] == ["block.2"]
    # a folder of the user's: refused, --force or not, and left as it was
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("four years of work")
    before = _tree(theirs)
    code, err = cli(capsys, "prune", str(src), "--remove", "1", "--out", str(theirs), "--force")
    assert code == 2 and "holds files SlimGUI did not write" in err and len(err.strip().splitlines()) == 1
    assert _tree(theirs) == before
    # the folder that holds the source: refused (it contains the model), the source intact
    before = _tree(src)
    code, err = cli(capsys, "prune", str(src), "--remove", "1", "--out", str(src.parent), "--force")
    assert code == 2 and "contains the model folder" in err and _tree(src) == before
    code, err = cli(capsys, "export", str(src), "--format", "hf", "--out", str(src), "--force")
    assert code == 2 and "model folder itself" in err and _tree(src) == before


def test_output_files_need_force_everywhere(tiny_models, tmp_path, capsys):
    scores = tmp_path / "scores.json"
    scores.write_text("my notes")
    code, err = cli(capsys, "analyze", str(tiny_models["llama"]), "--criterion", "magnitude", "--out", str(scores))
    assert code == 2 and "already exists" in err and scores.read_text() == "my notes"
    assert cli(capsys, "analyze", str(tiny_models["llama"]), "--criterion", "magnitude", "--out", str(scores),
               "--force", "-q")[0] == 0
    assert json.loads(scores.read_text())["criterion"] == "magnitude"


def test_stale_staging_is_never_opened_and_is_cleaned(tiny_models, tmp_path, capsys):
    import shutil

    src = tiny_models["llama"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended
    staging = tmp_path / f".slim.partial-{pid}"
    shutil.copytree(src, staging)  # what a kill before the final rename leaves: a complete-looking model
    old = tmp_path / f".slim.old-{pid}"
    shutil.copytree(src, old)
    code, err = cli(capsys, "inspect", str(staging))
    assert code == 2 and "unfinished SlimGUI output" in err and "slim" in err
    assert cli(capsys, "prune", str(src), "--remove", "1", "--out", str(tmp_path / "slim"), "-q")[0] == 0
    assert not staging.exists() and not old.exists() and (tmp_path / "slim" / "config.json").is_file()
    # a staging folder of a process that still runs (another save in progress) is left alone
    alive = tmp_path / f".other.partial-{__import__('os').getpid()}"
    alive.mkdir()
    assert cli(capsys, "prune", str(src), "--remove", "1", "--out", str(tmp_path / "other"), "-q")[0] == 0
    assert (tmp_path / "other").is_dir()


def _full_disk(monkeypatch, after: int = 0):
    """safetensors' save_file fails like a full disk (after ``after`` successful calls)."""
    import safetensors.torch as st

    real = st.save_file
    calls = {"n": 0}

    def save_file(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(st, "save_file", save_file)
    import transformers.modeling_utils as mu  # transformers keeps its own reference to it

    monkeypatch.setattr(mu, "safe_save_file", save_file)
    return calls


def test_a_full_disk_during_prune_is_one_message_and_nothing_partial(tiny_models, tmp_path, capsys, monkeypatch):
    _full_disk(monkeypatch)
    code, err = cli(capsys, "prune", str(tiny_models["llama"]), "--remove", "1", "--out", str(tmp_path / "slim"))
    assert code == 2 and "not enough disk space" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no output, no staging folder


def _cfg(model, text_file, out, **kw) -> TrainConfig:
    base = dict(model=str(model), data=[str(text_file)], out=str(out), steps=6, batch_size=4, seq_len=32,
                save_every=2, eval_every=6, warmup=1, method="cpt")
    base.update(kw)
    return TrainConfig.flat(**base)


def test_a_full_disk_during_retraining_keeps_the_earlier_checkpoints(tiny_models, text_file, tmp_path, monkeypatch):
    import safetensors.torch as st

    real = st.save_file
    state = {"armed": False}

    def save_file(*args, **kwargs):
        if state["armed"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(st, "save_file", save_file)
    import transformers.modeling_utils as mu

    monkeypatch.setattr(mu, "safe_save_file", save_file)
    cfg = _cfg(tiny_models["llama"], text_file, tmp_path / "run")

    def arm(ev):
        if ev["event"] == "checkpoint" and ev["step"] == 2:
            state["armed"] = True

    with pytest.raises(SlimError, match="not enough disk space to save checkpoint 4.*checkpoint-2 is intact"):
        run_training(cfg, events=arm)
    assert [p.name for p in checkpoints(cfg.out)] == ["checkpoint-2"]
    assert not any(p.name.endswith(".partial") for p in Path(cfg.out).iterdir())
    assert not (Path(cfg.out) / LOCK_FILE).exists()
    state["armed"] = False
    result = run_training(cfg, resume=True)  # space freed: the run resumes from checkpoint 2 and finishes
    assert result["step"] == 6 and (Path(cfg.out) / "model" / "config.json").is_file()


def test_a_nan_loss_stops_training_before_the_weights_change(tiny_models, text_file, tmp_path):
    cfg = _cfg(tiny_models["llama"], text_file, tmp_path / "run", lr=1e30, max_grad_norm=0.0)
    # a learning rate that blows the weights up: the loss turns NaN/Inf within a few steps
    with pytest.raises(SlimError, match=r"the training loss became (nan|inf).*at step \d+: retraining stopped"):
        run_training(cfg)
    assert not (Path(cfg.out) / "model").exists()  # no "healed" model of NaN weights
    for ckpt in checkpoints(cfg.out):
        from safetensors.torch import load_file

        assert all(t.isfinite().all() for t in load_file(ckpt / "trainable.safetensors").values())


def test_one_writer_per_run_folder(tiny_models, text_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_FILE).write_text(f"{holder.pid}\n")
        with pytest.raises(SlimError, match=f"being written by another SlimGUI run \\(process {holder.pid}\\)"):
            run_training(_cfg(tiny_models["llama"], text_file, out))
        assert (out / LOCK_FILE).read_text().strip() == str(holder.pid)  # the other run's lock is not touched
        assert not (out / "job.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # its process gone, the lock is stale: the next run takes it over and releases it when done
    result = run_training(_cfg(tiny_models["llama"], text_file, out, steps=2, save_every=2, eval_every=2))
    assert result["step"] == 2 and not (out / LOCK_FILE).exists()


def _copy_with(src: Path, dst: Path, change) -> Path:
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    f = next(dst.glob("*.safetensors"))
    sd = load_file(str(f))
    change(sd)
    save_file(sd, str(f), metadata={"format": "pt"})
    return dst


def _a_down_proj(sd) -> str:
    return next(k for k in sd if k.endswith("mlp.down_proj.weight"))


def test_nan_weights_never_pass_a_check(tiny_models, text_file, tmp_path, capsys):
    def poison(sd):
        sd[_a_down_proj(sd)][:] = float("nan")

    bad = _copy_with(tiny_models["llama"], tmp_path / "nan", poison)
    code, err = cli(capsys, "export", str(bad), "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert code == 2 and "hold NaN/Inf" in err and "mlp.down_proj.weight" in err
    assert not list(tmp_path.glob("m.onnx*"))  # no file, no check.json with bare NaN
    code, err = cli(capsys, "eval", str(bad), "--data", str(text_file), "--no-generate", "--seq-len", "32")
    assert code == 2 and "gave nan" in err and "mlp.down_proj.weight" in err


def test_integer_weights_and_missing_shards_are_named(tiny_models, tmp_path, capsys):
    import torch

    def relabel(sd):
        k = _a_down_proj(sd)
        sd[k] = sd[k].to(torch.int8)

    bad = _copy_with(tiny_models["llama"], tmp_path / "i8", relabel)
    code, err = cli(capsys, "inspect", str(bad))
    assert code == 2 and "as I8, not as floating-point numbers" in err
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_bytes((tiny_models["llama"] / "config.json").read_bytes())
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    code, err = cli(capsys, "inspect", str(sharded))
    assert code == 2 and "2 are missing: model-00001-of-00002.safetensors" in err


def test_options_are_checked_before_the_work(tiny_models, text_file, tmp_path, capsys):
    src = str(tiny_models["llama"])
    code, err = cli(capsys, "export", src, "--format", "onnx", "--mixed", "--keep-fp32", "no.such.layer",
                    "--out", str(tmp_path / "k.onnx"))
    assert code == 2 and "no linear layer named no.such.layer" in err and "progress" not in err
    code, err = cli(capsys, "export", src, "--format", "onnx", "--int8", "--keep-fp32", "lm_head",
                    "--out", str(tmp_path / "k.onnx"))
    assert code == 2 and "--mixed" in err
    code, err = cli(capsys, "eval", src, "--data", str(text_file), "--max-new-tokens", "100000")
    assert code == 2 and "--max-new-tokens 100,000 is more than the model's context" in err
    assert "perplexity" not in err  # refused before the evaluation ran
    assert not list(tmp_path.iterdir())


def test_a_float16_model_is_estimated_and_saved_as_float16(tiny_models, registry, tmp_path):
    """The size estimate counts the bytes a parameter takes on disk (2 for a float16 checkpoint computed in
    float32), and the pruned model is saved in the source's dtype: the estimate matches the file written."""
    import torch

    from slimgui.core import ops
    from slimgui.core.model import open_model
    from slimgui.core.plan import PruningPlan
    from slimgui.core.selection import bytes_per_param, estimate

    def half(sd):
        for k in sd:
            sd[k] = sd[k].to(torch.float16)

    src = _copy_with(tiny_models["llama"], tmp_path / "fp16", half)
    model = open_model(str(src), registry=registry)
    assert bytes_per_param(model) == 2
    graph = ops.graph_of(model, registry)
    est = estimate(graph, ["block.1"], bytes_per_param(model))
    out = ops.save(ops.prune(model, PruningPlan(remove=["block.1"], model=model.source), registry=registry),
                   tmp_path / "slim", registry=registry)
    files = list(out.glob("*.safetensors"))
    header = sum(8 + int.from_bytes(f.read_bytes()[:8], "little") for f in files)  # safetensors' JSON header
    tensors = sum(f.stat().st_size for f in files) - header
    assert abs(tensors - est.size_after) / tensors < 0.01
