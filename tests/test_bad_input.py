"""Every kind of bad input gets one clear line on stderr and exit code 2 — and nothing runs or is half-written."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from slimgui.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("slimgui: error: ")
    for n in needles:
        assert n in lines[0], lines[0]


class _Payload:
    """Unpickling this would write a marker file (the code an attacker would run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_folder_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "notes.md").write_text("hello")
    code, _, err = run(capsys, "inspect", str(tmp_path))
    assert_user_error(code, err, "no installed plugin can open", "a folder")


def test_text_file(tmp_path, capsys):
    f = tmp_path / "readme.txt"
    f.write_text("just text")
    code, _, err = run(capsys, "inspect", str(f))
    assert_user_error(code, err, "no installed plugin can open", ".txt file")


def test_missing_path(tmp_path, capsys):
    code, _, err = run(capsys, "inspect", str(tmp_path / "nope"))
    assert_user_error(code, err, "does not exist")


def test_truncated_safetensors_in_model_folder(tmp_path, tiny_models, capsys):
    folder = tmp_path / "m"
    shutil.copytree(tiny_models["llama"], folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, "inspect", str(folder))
    assert_user_error(code, err, "model.safetensors is not a valid safetensors file")
    # a bare truncated file is named as such too
    code, _, err = run(capsys, "inspect", str(weights))
    assert_user_error(code, err, "not a valid safetensors file")


def test_bare_safetensors_without_config(tmp_path, capsys):
    from safetensors.torch import save_file

    f = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(f))
    code, _, err = run(capsys, "inspect", str(f))
    assert_user_error(code, err, "no installed plugin can open", "config.json")


def test_config_not_json(tmp_path, tiny_models, capsys):
    folder = tmp_path / "m"
    shutil.copytree(tiny_models["llama"], folder)
    (folder / "config.json").write_text("{ this is not json")
    code, _, err = run(capsys, "inspect", str(folder))
    assert_user_error(code, err, "config.json is not valid JSON")


def test_unknown_architecture(tmp_path, tiny_models, capsys):
    folder = tmp_path / "m"
    shutil.copytree(tiny_models["llama"], folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "frobnicator"
    cfg["architectures"] = ["FrobnicatorForCausalLM"]
    (folder / "config.json").write_text(json.dumps(cfg))
    code, _, err = run(capsys, "inspect", str(folder))
    assert_user_error(code, err, "unknown architecture 'frobnicator'")


def test_weights_of_another_model(tmp_path, tiny_models, capsys):
    folder = tmp_path / "m"
    shutil.copytree(tiny_models["llama"], folder)
    shutil.copy(tiny_models["gpt2"] / "model.safetensors", folder / "model.safetensors")
    code, _, err = run(capsys, "inspect", str(folder))
    assert_user_error(code, err, "do not match")


@pytest.mark.parametrize("layout", ["bare", "folder"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, tiny_models, capsys, layout):
    marker = tmp_path / "marker"
    if layout == "bare":
        target = tmp_path / "evil.pth"
    else:
        target = tmp_path / "m" / "pytorch_model.bin"
        shutil.copytree(tiny_models["llama"], tmp_path / "m")
        (tmp_path / "m" / "model.safetensors").unlink()
    torch.save({"weight": torch.zeros(2), "x": _Payload(marker)}, target)
    code, _, err = run(capsys, "inspect", str(target if layout == "bare" else target.parent))
    assert_user_error(code, err, "refused to load", "pickled code")
    assert not marker.exists()
    # the same file really would have run code through a plain unpickler (a sanity check of the payload)
    torch.load(target, weights_only=False)
    assert marker.read_text() == "pwned"


def test_benign_pth_checkpoint_loads_in_folder(tmp_path, tiny_models, capsys):
    from safetensors.torch import load_file

    folder = tmp_path / "m"
    shutil.copytree(tiny_models["llama"], folder)
    sd = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(sd, folder / "pytorch_model.bin")
    code, out, err = run(capsys, "inspect", str(folder), "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["has_weights"] is True


def test_remove_every_block_or_out_of_range(tmp_path, tiny_models, capsys):
    m = str(tiny_models["llama"])
    code, _, err = run(capsys, "prune", m, "--remove", "0,1,2,3", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "removes all 4 prunable units")
    code, _, err = run(capsys, "prune", m, "--remove", "2,9", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "index 9 is out of range", "0 to 3")
    code, _, err = run(capsys, "prune", m, "--remove", "1,1", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "same unit twice")
    assert not (tmp_path / "o").exists()


def test_calibration_file_empty_or_not_text(tmp_path, tiny_models, capsys):
    m = str(tiny_models["llama"])
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    code, _, err = run(capsys, "analyze", m, "--criterion", "ppl", "--data", str(empty))
    assert_user_error(code, err, "is empty")
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    code, _, err = run(capsys, "analyze", m, "--criterion", "ppl", "--data", str(binary))
    assert_user_error(code, err, "not a text file")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café à la crème".encode("latin-1"))
    code, _, err = run(capsys, "eval", m, "--data", str(latin))
    assert_user_error(code, err, "not UTF-8")
    short = tmp_path / "short.txt"
    short.write_text("x = 1")
    code, _, err = run(capsys, "analyze", m, "--criterion", "ppl", "--data", str(short))
    assert_user_error(code, err, "at least 128 are needed")


def test_unknown_criterion_and_missing_data(tiny_models, capsys):
    m = str(tiny_models["llama"])
    code, _, err = run(capsys, "analyze", m, "--criterion", "vibes")
    assert_user_error(code, err, "unknown criterion 'vibes'", "ppl")
    code, _, err = run(capsys, "analyze", m, "--criterion", "ppl")
    assert_user_error(code, err, "needs calibration text", "--data")


def test_output_folder_exists(tmp_path, tiny_models, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    code, _, err = run(capsys, "prune", str(tiny_models["llama"]), "--remove", "1", "--out", str(out))
    assert_user_error(code, err, "already exists")
    assert (out / "keep.txt").read_text() == "user data"


def test_bad_flags_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["prune"])
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1


# -- NaN/Inf, warnings, tolerant reports -------------------------------------------------------------
def _strict_json(line: str):
    def refuse(name):
        raise AssertionError(f"invalid JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


def test_nan_weights_and_scores_are_named(tmp_path, tiny_models, text_file, capsys):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "m"
    shutil.copytree(tiny_models["llama"], folder)
    sd = load_file(folder / "model.safetensors")
    key = "model.layers.1.mlp.down_proj.weight"
    sd[key][:] = float("nan")
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    code, out, err = run(capsys, "analyze", str(folder), "--criterion", "bi", "--data", str(text_file))
    assert code == 0, err
    warnings = err.strip().splitlines()
    assert warnings and all(w.startswith("slimgui: warning: ") for w in warnings), err
    assert any(key in w for w in warnings) and any("block.1" in w for w in warnings)
    rows = {line.split()[1]: line for line in out.splitlines() if line.strip().startswith(("0 ", "1 ", "2 ", "3 "))}
    assert "nan" in rows["block.1"] and "nan" not in rows["block.0"]
    code, out, err = run(capsys, "analyze", str(folder), "--criterion", "bi", "--data", str(text_file), "--json",
                         "--out", str(tmp_path / "s.json"))
    assert code == 0, err
    doc = _strict_json(out.strip().splitlines()[-1])
    assert doc["scores"]["block.1"] is None and "block.1" in doc["non_finite"] and "block.0" not in doc["non_finite"]
    assert doc["ranking"][-1] in doc["non_finite"]  # unknown importance ranks last: never removed first
    assert any(key in w for w in doc["warnings"])
    _strict_json((tmp_path / "s.json").read_text())  # the scores file is valid JSON too


def test_analysis_and_export_warnings_reach_stderr_and_json(tmp_path, tiny_models, monkeypatch, capsys):
    from slimgui_families.llm import exporter

    import slimgui.core.ops as ops

    real = ops.analyze

    def analyze(*a, **kw):
        scores = real(*a, **kw)
        scores.meta["warnings"] = ["the text gives 6 of the 32 calibration segments asked for"]
        return scores

    monkeypatch.setattr(ops, "analyze", analyze)
    m = str(tiny_models["llama"])
    code, out, err = run(capsys, "analyze", m, "--criterion", "magnitude", "--json")
    assert code == 0 and err == "slimgui: warning: the text gives 6 of the 32 calibration segments asked for\n"
    assert json.loads(out.strip().splitlines()[-1])["warnings"] == ["the text gives 6 of the 32 calibration segments "
                                                                   "asked for"]
    code, out, err = run(capsys, "prune", m, "--criterion", "magnitude", "--count", "1", "--out", str(tmp_path / "p"))
    assert code == 0 and err.startswith("slimgui: warning: the text gives 6"), err

    def export_task(model, out, **kw):  # the ONNX exporter the language-model family declares
        return {"bytes": 1024, "cosine": 1.0, "max_abs_diff": 0.0, "warnings": ["INT8 is slower than FP32 on this CPU"]}

    monkeypatch.setattr(exporter, "export_task", export_task)
    code, out, err = run(capsys, "export", m, "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--json")
    assert code == 0, err
    assert err == "slimgui: warning: INT8 is slower than FP32 on this CPU\n"
    assert json.loads(out.strip().splitlines()[-1])["warnings"] == ["INT8 is slower than FP32 on this CPU"]


def test_report_renders_an_int8_export_without_sensitivities(tmp_path, tiny_models, capsys):
    slim = tmp_path / "s.slim"
    slim.write_text(json.dumps({"kind": "session", "schema_version": 1,
                                "model": {"path": str(tiny_models["llama"]), "adapter": "transformers"},
                                "results": {"export": {"runs": [{"file": str(tmp_path / "m.onnx"), "format": "onnx",
                                                                 "mode": "int8", "cosine": 0.999, "bytes": 2048,
                                                                 "layers": [{"layer": "model.layers.0.mlp.up_proj",
                                                                             "precision": "int8"}]}]}}}))
    code, _, err = run(capsys, "report", str(slim), "--out", str(tmp_path / "r.html"))
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "ONNX INT8" in page and "sensitivity" not in page


def test_check_output_path_accepts_new_paths_and_leaves_nothing(tmp_path):
    from slimgui.core.errors import SlimError
    from slimgui.core.io import check_output_path

    src = tmp_path / "model"
    src.mkdir()
    assert check_output_path(tmp_path / "a" / "b", "folder", sources=[src]) == (tmp_path / "a" / "b").resolve()
    assert check_output_path(tmp_path / "x.onnx", "file", sources=[src]) == (tmp_path / "x.onnx").resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the write test left nothing, made no folders
    for bad, needle in ((src, "model folder itself"), (src / "in", "inside"), (tmp_path, "contains")):
        with pytest.raises(SlimError, match=needle):
            check_output_path(bad, "folder", force=True, sources=[src])
