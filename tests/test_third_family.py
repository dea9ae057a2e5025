"""Proof of the family contract: a third family, one module written only against the public plugin API
(tests/slimgui_digitconv.py), installed through an entry point like a third party's plugin, gets the whole
CLI — open, analysis with a core criterion, plan and apply, retraining with its own option, evaluation,
its audio preview, its exporter, the benchmark and the report — with no edit anywhere else."""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

import pytest
from helpers import run_cli

TESTS = Path(__file__).parent


def install_entry_point(site: Path) -> Path:
    """A dist-info folder declaring the module's plugin under the ``slimgui.plugins`` group, as pip would."""
    dist = site / "slimgui_digitconv-1.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slimgui-digitconv\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[slimgui.plugins]\ndigitconv = slimgui_digitconv:plugin\n")
    return site


@pytest.fixture(scope="module")
def third(tmp_path_factory):
    """(env for the CLI, a trained model folder, a work folder)."""
    root = tmp_path_factory.mktemp("third")
    site = install_entry_point(root / "site")
    import slimgui_digitconv

    model = slimgui_digitconv.train_demo(root / "digitconv")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return env, model, root


def cli(env, *args):
    r = run_cli(*args, env_extra=env)
    assert r.returncode == 0, f"slimgui {' '.join(args)} failed:\n{r.stderr[-3000:]}"
    return r


def last_json(r) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_plugin_is_found_through_its_entry_point(third, monkeypatch):
    env, model, _ = third
    doc = last_json(cli(env, "plugins", "--json"))
    mine = next(p for p in doc["plugins"] if p["name"] == "digitconv")
    assert mine["status"] == "ok" and mine["adapters"][0]["family"] == "digitconv"
    monkeypatch.syspath_prepend(str(install_entry_point(third[2] / "site")))
    from slimgui.core.plugins import discover

    reg = discover()
    assert [c.spec.name for c in reg.match(str(model))] == ["digitconv"]
    assert reg.match(str(model))[0].info == {"family": "digitconv", "channels": [16, 24]}


def test_cli_slims_heals_evaluates_previews_exports_and_benchmarks_it(third, tmp_path):
    env, model, _ = third
    # the model view's data: filter groups with their parameters
    graph = last_json(cli(env, "inspect", str(model), "--json"))["graph"]
    prunable = [u for u in graph["units"] if u.get("prunable")]
    assert len(prunable) == 4 + 6 - 1  # 16 and 24 filters in groups of 4; the head keeps one group
    # analysis with a core criterion the family never heard of
    scores = tmp_path / "scores.json"
    cli(env, "analyze", str(model), "--criterion", "magnitude", "--out", str(scores), "--json")
    values = json.loads(scores.read_text())["values"]
    assert set(values) == {u["id"] for u in prunable} and all(v > 0 for v in values.values())
    # plan and apply: a physically smaller model its own loader opens
    slim = tmp_path / "slim"
    cli(env, "prune", str(model), "--scores", str(scores), "--count", "3", "--out", str(slim), "--json")
    channels = json.loads((slim / "digitconv.json").read_text())["channels"]
    assert sum(channels) == 16 + 24 - 3 * 4
    # evaluation through its declared metric
    before = last_json(cli(env, "eval", str(model), "--json"))
    after = last_json(cli(env, "eval", str(slim), "--json", "--no-generate"))
    assert before["accuracy"] > 0.8, before  # a trained classifier, not noise
    assert next(m for m in before["metrics"] if m["name"] == "accuracy")["better"] == "higher"
    # retraining with the family's own option, as a flag the CLI built from its schema
    run = tmp_path / "run"
    healed = last_json(cli(env, "retrain", str(slim), "--method", "finetune", "--label-smoothing", "0.05",
                           "--steps", "30", "--batch-size", "32", "--save-every", "15", "--eval-every", "15",
                           "--lr", "3e-3", "--out", str(run), "--json"))
    assert healed["step"] == 30 and "val_error_bound" in healed
    job = json.loads((run / "job.json").read_text())["config"]
    assert job["method"] == "finetune" and job["options"] == {"label_smoothing": 0.05}
    bad = run_cli("retrain", str(slim), "--method", "finetune", "--label-smoothing", "0.9", "--out",
                  str(tmp_path / "run2"), env_extra=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "0.5" in bad.stderr
    healed_acc = last_json(cli(env, "eval", str(run / "model"), "--json", "--no-generate"))["accuracy"]
    assert healed_acc >= after["accuracy"] - 0.02
    # its previewer's media: a WAV file
    wav = tmp_path / "tones.wav"
    cli(env, "generate", str(model), "--vs", str(slim), "--images", "3", "--out", str(wav))
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 16_000 and w.getnframes() > 16_000 * 0.15 * 3
    # its exporter, with its own option, and the benchmark of what it wrote beside the torch models
    onnx = tmp_path / "slim.cnn.onnx"
    exported = last_json(cli(env, "export", str(slim), "--format", "cnn-onnx", "--check-images", "8", "--out",
                             str(onnx), "--json"))
    assert onnx.is_file() and exported["agreement"] == 1.0
    bench = last_json(cli(env, "bench", str(model), "--vs", str(slim), str(onnx), "--batch", "1,16", "--repeats", "3",
                          "--json"))
    rows = bench["rows"]
    assert len({r["model"] for r in rows}) == 3
    assert all(r["forward_images_per_s"] > 0 for r in rows) and len(rows) == 6
    assert {r["runtime"] for r in rows} == {"torch", "onnxruntime"}
    # the report: a session of this family, its metrics shown by name with their direction
    from slimgui_digitconv import plugin

    from slimgui.core.metrics import with_metrics
    from slimgui.core.session import Session

    declared = plugin.evaluators[0].metrics
    sess = Session(model_path=str(model), adapter="digitconv", remove=["conv0.g1"], slimmed_path=str(slim),
                   results={"evaluation": {"original": with_metrics(before, declared),
                                           "slimmed": with_metrics(after, declared)}})
    sess.save(tmp_path / "s.slim")
    html = tmp_path / "r.html"
    cli(env, "report", str(tmp_path / "s.slim"), "--out", str(html))
    text = html.read_text()
    assert "Accuracy" in text and f"{before['accuracy']:.1%}" in text


def test_the_proof_family_lives_in_one_module():
    """Everything the third family needed is its own module (and this test): no core, CLI or GUI file names it."""
    root = TESTS.parent
    hits = [p for d in ("slimgui", "plugins") for p in (root / d).rglob("*.py") if "digitconv" in p.read_text()]
    assert hits == []
