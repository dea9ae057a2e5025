"""Retraining: LoRA / continued pretraining / distillation, checkpoints, cancel, SIGKILL + resume, accelerate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from slimgui.core.errors import Cancelled, SlimError
from slimgui.core.progress import CancelToken
from slimgui.core.train import TrainConfig, checkpoints, run_training


def cfg_for(model, text_file, out, **kw) -> TrainConfig:
    base = dict(model=str(model), data=[str(text_file)], out=str(out), steps=8, batch_size=4, seq_len=32,
                save_every=4, eval_every=4, warmup=2)
    base.update(kw)
    return TrainConfig.flat(**base)


@pytest.fixture(scope="module")
def pruned_llama(tiny_models, registry, tmp_path_factory):
    from slimgui.core.model import open_model
    from slimgui.core.ops import prune, save
    from slimgui.core.plan import PruningPlan

    model = open_model(str(tiny_models["llama"]), registry=registry)
    return save(prune(model, PruningPlan(remove=["block.1"]), registry=registry),
                tmp_path_factory.mktemp("p") / "pruned", registry=registry)


@pytest.mark.parametrize("method", ["lora", "cpt", "kd"])
def test_methods_heal_and_save_a_loadable_model(method, pruned_llama, tiny_models, text_file, tmp_path):
    from transformers import AutoModelForCausalLM

    events = []
    cfg = cfg_for(pruned_llama, text_file, tmp_path / "run", method=method, lr=5e-3,
                  teacher=str(tiny_models["llama"]) if method == "kd" else None)
    result = run_training(cfg, events=events.append)
    assert result["step"] == 8 and 1 < result["val_ppl"] < 1000
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 9))
    assert all(e["tokens_per_s"] > 0 and e["eta_s"] >= 0 for e in steps)
    assert any("val_ppl" in e for e in steps)
    assert steps[-1]["train_loss"] < steps[0]["train_loss"]  # it learns
    if method == "kd":
        assert {"ce", "kl", "hidden_mse"} <= set(steps[0])
        assert steps[0]["hidden_mse"] > 0  # the student misses block 1, so block outputs differ
    assert [p.name for p in checkpoints(cfg.out)] == ["checkpoint-4", "checkpoint-8"]
    healed = AutoModelForCausalLM.from_pretrained(Path(cfg.out) / "model")
    assert healed.config.num_hidden_layers == 3
    original = AutoModelForCausalLM.from_pretrained(pruned_llama)
    w = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(healed.state_dict()[w], original.state_dict()[w])  # LoRA was merged in
    summary = json.loads((Path(cfg.out) / "slimgui_train.json").read_text())
    assert len(summary["history"]) == 8


def test_lora_adapter_kept_and_target_validation(pruned_llama, text_file, tmp_path):
    cfg = cfg_for(pruned_llama, text_file, tmp_path / "run", method="lora", lora_merge=False,
                  lora_targets=["q_proj", "v_proj"], steps=2)
    run_training(cfg)
    adapter_cfg = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert set(adapter_cfg["target_modules"]) == {"q_proj", "v_proj"} and adapter_cfg["r"] == 8
    bad = cfg_for(pruned_llama, text_file, tmp_path / "bad", method="lora", lora_targets=["c_attn"])
    with pytest.raises(SlimError, match="unknown LoRA target module.*q_proj"):
        run_training(bad)


def test_refuses_configs_that_cannot_work(pruned_llama, text_file, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(SlimError, match="is empty"):
        run_training(cfg_for(pruned_llama, empty, tmp_path / "a"))
    short = tmp_path / "short.txt"
    short.write_text("x = 1\n")
    with pytest.raises(SlimError, match="fewer than two"):
        run_training(cfg_for(pruned_llama, short, tmp_path / "b"))
    with pytest.raises(SlimError, match="needs about .* GiB"):
        run_training(cfg_for(pruned_llama, text_file, tmp_path / "c", batch_size=10**7))
    with pytest.raises(SlimError, match="needs a teacher"):
        run_training(cfg_for(pruned_llama, text_file, tmp_path / "d", method="kd"))
    run_training(cfg_for(pruned_llama, text_file, tmp_path / "e", steps=1))
    with pytest.raises(SlimError, match="already holds a training run"):
        run_training(cfg_for(pruned_llama, text_file, tmp_path / "e", steps=1))


def test_jsonl_and_saved_dataset_data(pruned_llama, tmp_path):
    from slimgui_families.llm.training import load_texts

    lines = [{"text": "def f(x):\n    return x * 2\n" * 20},
             {"instruction": "Add one", "response": "x + 1"}]
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps(x) for x in lines))
    cfg = TrainConfig(model="m", data=[str(jl)], out="o")
    texts = load_texts([str(jl)], cfg)
    assert texts[1] == "### Instruction:\nAdd one\n\n### Response:\nx + 1"
    jl.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(SlimError, match="line 2 is not JSON"):
        load_texts([str(jl)], cfg)
    from datasets import Dataset

    Dataset.from_dict({"text": ["import os\n" * 50, "print('hi')\n" * 50]}).save_to_disk(str(tmp_path / "ds"))
    assert load_texts([str(tmp_path / "ds")], cfg)[1].startswith("print('hi')")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    (folder / "b.md").write_text("beta")
    assert load_texts([str(folder)], cfg) == ["alpha", "beta"]


def test_cancel_checkpoints_and_resume_continues_the_same_run(pruned_llama, text_file, tmp_path):
    reference = run_training(cfg_for(pruned_llama, text_file, tmp_path / "ref", method="cpt", steps=10, save_every=100))
    ref_hist = json.loads((tmp_path / "ref" / "slimgui_train.json").read_text())["history"]

    cancel = CancelToken()

    def stop_at_6(ev):
        if ev["event"] == "step" and ev["step"] == 6:
            cancel.cancel()

    cfg = cfg_for(pruned_llama, text_file, tmp_path / "run", method="cpt", steps=10, save_every=100)
    with pytest.raises(Cancelled, match="step 6"):
        run_training(cfg, events=stop_at_6, cancel=cancel)
    assert [p.name for p in checkpoints(cfg.out)] == ["checkpoint-6"]
    events = []
    result = run_training(cfg, events=events.append, resume=True)
    assert events[0]["step"] == 6 and events[0]["resumed"]
    assert [e["step"] for e in events if e["event"] == "step"] == [7, 8, 9, 10]
    hist = json.loads((tmp_path / "run" / "slimgui_train.json").read_text())["history"]
    assert [h[0] for h in hist] == list(range(1, 11))
    for (s1, l1), (s2, l2) in zip(hist, ref_hist, strict=True):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-4)
    assert result["val_ppl"] == pytest.approx(reference["val_ppl"], rel=1e-4)


def test_sigkill_mid_run_then_resume(pruned_llama, text_file, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "slimgui.cli", "retrain", str(pruned_llama), "--method", "cpt", "--data",
            str(text_file), "--steps", "300", "--save-every", "20", "--keep-last", "3", "--batch-size", "8",
            "--seq-len", "64", "--out", str(out), "--json", "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not any(int(p.name[11:]) >= 40 for p in checkpoints(out)):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = checkpoints(out)
    assert saved and int(saved[-1].name[11:]) < 300, "the run must be killed mid-way"
    killed_at = int(saved[-1].name[11:])
    state = json.loads((saved[-1] / "trainer_state.json").read_text())
    assert state["global_step"] == killed_at and len(state["history"]) == killed_at

    res = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["step"] == 300 and doc["resumed_from"].endswith(f"checkpoint-{killed_at}")
    hist = json.loads((out / "slimgui_train.json").read_text())["history"]
    assert [h[0] for h in hist] == list(range(1, 301))
    # the loss continues where it was, not from scratch: the first resumed steps are close to the last saved ones
    before = [loss for _, loss in hist[killed_at - 5:killed_at]]
    after = [loss for _, loss in hist[killed_at:killed_at + 5]]
    first = [loss for _, loss in hist[:5]]
    assert abs(sum(after) / 5 - sum(before) / 5) < abs(sum(first) / 5 - sum(before) / 5)


def test_export_job_and_accelerate_launch_two_processes(demo_paths, tmp_path, capsys):
    from slimgui.cli import main

    job = tmp_path / "job"
    code = main(["retrain", demo_paths["model"], "--method", "lora", "--data", demo_paths["eval"], "--steps", "3",
                 "--save-every", "2", "--batch-size", "2", "--seq-len", "64", "--max-train-tokens", "20000",
                 "--out", str(tmp_path / "run"), "--export-job", str(job), "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "accelerate launch" in doc["command"] and (job / "README.md").read_text().count(doc["command"]) == 1
    assert "distributed_type" in (job / "accelerate_config.yaml").read_text()
    assert json.loads((job / "job.json").read_text())["config"]["method"] == "lora"

    launcher = Path(sys.executable).with_name("accelerate")
    # accelerate 1.15 runs `--cpu --num_processes 2` as ONE process unless mpirun is set up; its torchrun
    # launcher (--multi_gpu) starts two real processes, which run on the CPU with gloo here
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous, so parallel runs cannot collide
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    res = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--main_process_port", str(port),
                          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "slimgui.core.train",
                          str(job / "job.json")], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    final = json.loads(res.stdout.strip().splitlines()[-1])
    assert final["processes"] == 2 and final["step"] == 3
    assert [p.name for p in checkpoints(tmp_path / "run")] == ["checkpoint-2", "checkpoint-3"]
    assert (tmp_path / "run" / "checkpoint-3" / "optimizer_1.pt").is_file()  # one optimizer state per process
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_estimate_before_start(pruned_llama, text_file, tmp_path, capsys):
    from slimgui.cli import main

    code = main(["retrain", str(pruned_llama), "--data", str(text_file), "--steps", "50", "--seq-len", "32",
                 "--out", str(tmp_path / "x"), "--estimate", "--json"])
    assert code == 0
    est = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert est["fits"] and est["seconds"] > 0 and est["memory_bytes"] > est["params"] * 4
    assert est["tokens"] == 50 * 8 * 32 and 0 < est["trainable_params"] < est["params"]  # LoRA trains a few
    assert not (tmp_path / "x").exists()  # nothing written
    code = main(["retrain", str(pruned_llama), "--data", str(text_file), "--lora-targets", "nope", "--out",
                 str(tmp_path / "x"), "--estimate"])
    assert code == 2 and "unknown LoRA target" in capsys.readouterr().err


def test_kd_teacher_defaults_to_the_model_the_student_was_pruned_from(tiny_models, registry, text_file, tmp_path):
    from slimgui.core.model import open_model
    from slimgui.core.ops import prune, save
    from slimgui.core.plan import PruningPlan

    model = open_model(str(tiny_models["llama"]), registry=registry)
    student = save(prune(model, PruningPlan(remove=["block.1"], model=model.source), registry=registry),
                   tmp_path / "student", registry=registry)
    res = run_training(cfg_for(student, text_file, tmp_path / "run", method="kd", steps=2))
    assert res["step"] == 2 and (tmp_path / "run" / "model" / "config.json").is_file()
