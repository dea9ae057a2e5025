"""The family contract (issue 12): sessions and job files of schema 1 still open, and nothing outside a
plugin names what a particular family declares."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from slimgui.core import options as opts
from slimgui.core import settings
from slimgui.core.plugins import discover
from slimgui.core.session import SCHEMA_VERSION, Session
from slimgui.core.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def registry():
    return discover()


def _schema(registry, kind: str, name: str, family: str):
    spec = getattr(registry, f"{kind}_spec")(name, family)
    return registry.options(spec)


# -- sessions and jobs written by the version before the contract (schema 1) ---------------------------
def test_v1_llm_session_opens_with_every_value(tmp_path, registry):
    src = FIXTURES / "session-v1-llm.slim"
    assert json.loads(src.read_text())["schema_version"] == 1
    s = Session.load(src)
    assert s.model_path == "/nowhere/demo-llm" and s.adapter == "transformers"
    assert s.remove == ["block.3", "block.5"] and s.scores["ppl"].values["block.11"] == 21.0
    fam = registry.adapter_spec("transformers")
    calib = settings.values_for(s.analysis.options, fam.family, registry.options(fam, "calibration_options"))
    assert (s.analysis.criterion, s.analysis.samples, s.analysis.batch_size, calib.seq_len) == ("ppl", 16, 4, 64)
    gen = settings.values_for(s.preview.options, "generate", _schema(registry, "previewer", "generate", "llm"))
    assert (gen.prompt, gen.max_new_tokens) == ("import os", 12)
    ppl = settings.values_for(s.preview.eval_options, "perplexity", _schema(registry, "evaluator", "perplexity", "llm"))
    assert (ppl.seq_len, ppl.max_tokens) == (96, 2048) and s.preview.eval_file == "/nowhere/eval.txt"
    r = s.retrain
    assert (r.method, r.steps, r.batch_size, r.lr, r.warmup, r.save_every, r.eval_every) == ("kd", 40, 4, 3e-4, 5, 20, 10)
    kd = settings.values_for(r.options, "kd", _schema(registry, "method", "kd", "llm"))
    assert (kd.kd_ce, kd.kd_kl, kd.kd_hidden) == (0.5, 2.0, 0.25)
    lora = settings.values_for(r.options, "lora", _schema(registry, "method", "lora", "llm"))
    assert (lora.lora_r, lora.lora_alpha, lora.lora_dropout, lora.lora_targets, lora.lora_merge) == \
        (4, 8, 0.1, ["q_proj", "v_proj"], False)
    data = settings.values_for(r.options, "data:llm", registry.options(fam, "train_options"))
    assert data.seq_len == 64
    assert (s.export.target, s.export.format, s.export.out) == ("slimmed", "onnx", "/nowhere/model.onnx")
    onnx = settings.values_for(s.export.options, "onnx", _schema(registry, "exporter", "onnx", "llm"))
    assert (onnx.mode, onnx.with_past, onnx.fp32_fraction, onnx.sample_text) == ("mixed", False, 0.2, "/nowhere/sample.txt")
    b = s.bench
    assert (b.batches, b.threads, b.repeats, b.models) == ([1, 4], 1, 3, ["original", "slimmed"])
    bench = settings.values_for(b.options, fam.family, registry.options(fam, "bench_options"))
    assert (bench.seq, bench.new_tokens, bench.decode) == ([64], 8, False)
    # schema 1 kept the language model's evaluations under "perplexity"; schema 2 keeps every family's together
    ev = s.results["evaluation"]
    assert ev["original"]["perplexity"] == 12.5 and ev["slimmed"]["evaluator"] == "perplexity"
    assert s.results["generation"]["original"].text == "import os\nimport sys\n"
    # saved again, it is schema 2 and reads back the same
    out = tmp_path / "again.slim"
    s.save(out)
    assert json.loads(out.read_text())["schema_version"] == SCHEMA_VERSION == 2
    back = Session.load(out)
    assert settings.values_for(back.retrain.options, "kd", _schema(registry, "method", "kd", "llm")).kd_kl == 2.0
    assert back.results["evaluation"]["slimmed"]["perplexity"] == 15.25


def test_v1_diffusion_session_opens_with_every_value(registry):
    s = Session.load(FIXTURES / "session-v1-diffusion.slim")
    img = settings.values_for(s.preview.options, "generate", _schema(registry, "previewer", "generate", "diffusion"))
    assert (img.prompt, img.seed, img.n, img.steps, img.guidance) == ("a digit 7", 3, 6, None, 2.5)
    assert s.retrain.method == "lcm" and s.retrain.steps == 30 and s.retrain.batch_size == 2
    lcm = settings.values_for(s.retrain.options, "lcm", _schema(registry, "method", "lcm", "diffusion"))
    assert (lcm.lcm_ddim_steps, lcm.lcm_guidance, lcm.lcm_ema_decay) == (20, 4.0, 0.95)
    kd = settings.values_for(s.retrain.options, "kd", _schema(registry, "method", "kd", "diffusion"))
    assert kd.kd_ce == 0.3
    assert s.results["evaluation"]["original"]["accuracy"] == 0.9


def test_v1_job_file_opens_with_its_options(tmp_path):
    job = tmp_path / "job.json"
    shutil.copy(FIXTURES / "train-job-v1.json", job)
    cfg = TrainConfig.load(job)
    assert (cfg.method, cfg.teacher, cfg.steps, cfg.batch_size, cfg.lr) == ("kd", "/nowhere/demo-llm", 40, 4, 3e-4)
    assert cfg.options["seq_len"] == 64 and cfg.options["lora_targets"] == ["q_proj"]
    assert (cfg.options["kd_ce"], cfg.options["kd_temperature"], cfg.options["max_train_tokens"]) == (0.5, 3.0, 5000)
    cfg.save(job)
    assert json.loads(job.read_text())["schema_version"] == 2
    assert TrainConfig.load(job).options == cfg.options


def test_a_stored_value_a_newer_plugin_refuses_falls_back_to_its_default(registry):
    schema = _schema(registry, "method", "lora", "llm")
    got = settings.values_for({"lora": {"lora_r": -3, "lora_alpha": 32}}, "lora", schema)
    assert got.lora_r == opts.field_named(schema, "lora_r").default and got.lora_alpha == 32


# -- no family vocabulary outside the plugins -----------------------------------------------------------
SHARED = [ROOT / "slimgui" / "core", ROOT / "slimgui" / "gui", ROOT / "slimgui" / "cli"]
# session_migrate reads schema-1 files, whose layout named one family's result key: that is its whole job
EXEMPT = {"session_migrate.py"}


def _core_owned() -> set[str]:
    """Names core itself owns: fields of its own dataclasses (and their flags), the capability names, the
    contract's defaults, and the contributions and result keys of its own plugin."""
    from slimgui.core import bench, data, metrics, plugins, train

    owned: set[str] = set(plugins.CAPABILITIES) | {"text", "image", "audio", "video", "table"}  # media kinds
    for cls in (train.TrainConfig, settings.AnalysisSettings, settings.PreviewSettings, settings.RetrainSettings,
                settings.ExportSettings, settings.BenchSettings, data.CalibrationData, metrics.Metric, bench.BenchRun,
                plugins.AdapterSpec, plugins.MethodSpec, plugins.EvaluatorSpec, plugins.PreviewerSpec,
                plugins.ExporterSpec, opts.Opt):
        for f in dataclasses.fields(cls):
            owned |= {f.name, "--" + f.name.replace("_", "-")}
            if isinstance(f.default, str):
                owned.add(f.default)
    # what the core's own "native folder" exporter reports
    owned |= {"format", "mode", "file", "bytes", "source", "report", "native"}
    # words of the core's own features that a family may use too: timings in "seconds" (and `slimgui record
    # --seconds`), the keep-set's "first:N" / "last:N"
    owned |= {"seconds", "--seconds", "first", "last"}
    return owned


def family_vocabulary(registry) -> set[str]:
    """What the installed families (all but core's own plugin) declare: criterion, method and evaluator
    names, metric names, option names and flags, layouts and item words."""
    words: set[str] = set()
    core = next(p for p in registry.plugins if p.name == "core")
    core_names = {s.name for s in [*core.criteria, *core.methods, *core.evaluators, *core.exporters]}
    for p in registry.plugins:
        if p is core:
            continue
        words |= {s.name for s in [*p.criteria, *p.methods, *p.evaluators]}
        for spec in [*p.methods, *p.evaluators, *p.previewers, *p.exporters]:
            words |= {m.name for m in getattr(spec, "metrics", ())}
            for f in opts.fields_of(registry.options(spec)):
                words |= {f.name, *f.flags, *(f.opt.negate and [f.opt.negate] or []),
                          *(c[0] for c in f.opt.consts)}
        words |= {d.name for d in p.demos}
        for a in p.adapters:
            words |= {a.family, a.name, a.items, a.native}
            for attr in ("calibration_options", "train_options", "bench_options"):
                for f in opts.fields_of(registry.options(a, attr)):
                    words |= {f.name, *f.flags}
    return {w for w in words if w} - _core_owned() - core_names


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant of a module's code, docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_core_cli_and_gui_name_no_family_vocabulary(registry):
    words = family_vocabulary(registry)
    assert {"lora", "kd", "perplexity", "ppl", "digits", "llm", "diffusion", "tokens", "images", "--int8", "--past", "seq_len"} <= words
    names = {w for w in words if not w.startswith("--")}
    flags = [w for w in words if w.startswith("--")]
    found = []
    for root in SHARED:
        files = sorted(root.rglob("*.py")) if root.is_dir() else []
        if root.name == "cli" and (root.parent / "cli.py").exists():
            files.append(root.parent / "cli.py")
        for path in files:
            if path.name in EXEMPT:
                continue
            for line, text in _code_strings(path):
                hits = {text} & names
                hits |= {f for f in flags if re.search(re.escape(f) + r"(?![\w-])", text)}
                found += [f"{path.relative_to(ROOT)}:{line}: {w}" for w in sorted(hits)]
    assert not found, "family vocabulary outside the plugins:\n" + "\n".join(sorted(found))


def test_opening_probes_once_and_hands_what_match_found_to_load(tmp_path, monkeypatch):
    """A dropped folder is matched once; ``load`` receives what ``match`` read (here: the parsed config)."""
    import slimgui_digitconv as fam

    from slimgui.core.tasks_open import open_task

    folder = fam.train_demo(tmp_path / "m", channels=(8, 8), epochs=1)
    calls, seen = [], []
    real_match, real_load = fam.match, fam.DigitConvAdapter.load

    def counting_match(path):
        calls.append(path)
        return real_match(path)

    def recording_load(self, path, **kw):
        seen.append(kw.get("match"))
        return real_load(self, path, **kw)

    monkeypatch.setattr(fam, "match", counting_match)
    monkeypatch.setattr(fam.DigitConvAdapter, "load", recording_load)
    reg = discover(extra=[fam.plugin])
    model = open_task(str(folder), registry=reg)
    assert model.family == "digitconv" and model.config == {"channels": [8, 8]}
    assert calls == [str(folder)] and seen == [{"family": "digitconv", "channels": [8, 8]}]


def test_v1_results_of_any_evaluator_move_under_evaluation():
    """Schema 1 kept an evaluator's results in a section named after it; the step to 2 needs no plugin to move
    any such section (not only the language models') under "evaluation", each result naming its evaluator."""
    from slimgui.core.session_migrate import v1_to_v2

    doc = v1_to_v2({"schema_version": 1, "results": {
        "some-eval": {"original": {"accuracy": 0.9}, "slimmed": {"accuracy": 0.8}, "file": "x"},
        "evaluation": {"original": {"evaluator": "other", "fid": 3.0}},
        "generation": {"original": {"type": "text", "text": "x"}}}})
    ev = doc["results"]["evaluation"]
    assert ev["original"] == {"evaluator": "other", "fid": 3.0}  # what schema 1 already kept there stays
    assert ev["slimmed"] == {"evaluator": "some-eval", "accuracy": 0.8}
    assert "some-eval" not in doc["results"] and doc["results"]["generation"]["original"]["text"] == "x"


def test_constant_flags_of_two_owners_are_all_offered():
    """Two families declaring the same field with different constant flags (--int8 for one, --mixed for the
    other): both flags exist, whichever plugin comes first, and each value is checked by the schema used."""
    import argparse
    from dataclasses import dataclass

    from slimgui.core.options import add_flags, given, option

    @dataclass
    class A:
        mode: str = option("fp32", label="mode", choices=("fp32", "int8"), consts=(("--int8", "int8", "INT8"),))

    @dataclass
    class B:
        mode: str = option("fp32", label="mode", choices=("fp32", "int8", "mixed"),
                           consts=(("--int8", "int8", "INT8"), ("--mixed", "mixed", "mixed")))

    for order in ([("a", A), ("b", B)], [("b", B), ("a", A)]):
        parser = argparse.ArgumentParser()
        add_flags(parser, order)
        assert given(parser.parse_args(["--mixed"]), B) == {"mode": "mixed"}
        assert given(parser.parse_args(["--int8"]), A) == {"mode": "int8"}
