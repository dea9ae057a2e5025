"""The CLI contract: commands, flags, --json as the last stdout line, progress on stderr."""

from __future__ import annotations

import io
import json

import pytest

from slimgui.cli import ProgressBar, main


def run_json(capsys, *argv):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_plugins_json(capsys):
    doc = run_json(capsys, "plugins")
    names = {p["name"] for p in doc["plugins"]}
    assert {"core", "llm"} <= names
    llm = next(p for p in doc["plugins"] if p["name"] == "llm")
    assert {c["name"] for c in llm["criteria"]} == {"ppl", "bi"}
    assert llm["demos"] == ["llm"]


def test_plugins_json_carries_options_and_metrics(capsys):
    doc = run_json(capsys, "plugins")
    llm = next(p for p in doc["plugins"] if p["name"] == "llm")
    lora = next(m for m in llm["methods"] if m["name"] == "lora")
    rank = next(o for o in lora["options"] if o["name"] == "lora_r")
    assert rank["flag"] == "--lora-r" and rank["default"] == 8 and rank["range"] == "1-4,096"
    merge = next(o for o in lora["options"] if o["name"] == "lora_merge")
    assert merge["cli_flags"] == ["--keep-adapter"]
    onnx = next(x for x in llm["exporters"] if x["name"] == "onnx")
    assert next(o for o in onnx["options"] if o["name"] == "mode")["cli_flags"] == ["--int8", "--mixed"]
    assert llm["evaluators"] == ["perplexity"]  # still the names, as before
    ppl = next(e for e in llm["evaluator_specs"] if e["name"] == "perplexity")
    assert next(m for m in ppl["metrics"] if m["name"] == "perplexity")["better"] == "lower"
    assert [o["flag"] for o in llm["adapters"][0]["bench_options"]][:2] == ["--seq", "--new-tokens"]


def test_inspect_json_lists_blocks_by_index(capsys, tiny_models):
    doc = run_json(capsys, "inspect", str(tiny_models["qwen2"]))
    assert [b["index"] for b in doc["blocks"]] == [0, 1, 2, 3]
    assert [b["id"] for b in doc["blocks"]] == ["block.0", "block.1", "block.2", "block.3"]
    assert doc["family"] == "llm" and doc["has_weights"] is True
    assert doc["graph"]["attrs"]["model_type"] == "qwen2"
    kinds = {u["kind"] for u in doc["graph"]["units"]}
    assert {"embedding", "block", "attention", "mlp", "norm", "head"} <= kinds


def test_inspect_human_output(capsys, tiny_models):
    assert main(["inspect", str(tiny_models["gpt2"])]) == 0
    out = capsys.readouterr().out
    assert "block.3" in out and "prunable units" in out and "%" in out


def test_analyze_with_keep_set_writes_scores(capsys, tiny_models, text_file, tmp_path):
    doc = run_json(capsys, "analyze", str(tiny_models["llama"]), "--criterion", "ppl", "--data", str(text_file),
                   "--keep", "first:1,last:1", "--seq-len", "32", "--samples", "8", "--out", str(tmp_path / "s.json"))
    assert set(doc["scores"]) == {f"block.{i}" for i in range(4)}
    assert doc["locked"] == ["block.0", "block.3"]
    assert doc["ranking"] == sorted(doc["scores"], key=doc["scores"].get)
    assert doc["baseline"] > 1  # the full model's calibration perplexity, for reading the scores
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["keep"] == "first:1,last:1" and saved["schema_version"] == 1
    assert saved["meta"]["data"]["seq_len"] == 32


def test_prune_by_criterion_and_ratio(capsys, tiny_models, text_file, tmp_path):
    out = tmp_path / "pruned"
    doc = run_json(capsys, "prune", str(tiny_models["llama"]), "--criterion", "bi", "--ratio", "0.25",
                   "--data", str(text_file), "--keep", "first:1", "--seq-len", "32", "--out", str(out))
    assert len(doc["removed"]) == 1 and "block.0" not in doc["removed"]
    assert doc["params_after"] < doc["params_before"]
    assert doc["kept_indices"] == [i for i in range(4) if i not in doc["removed_indices"]]
    plan = json.loads((out / "slimgui_plan.json").read_text())
    assert plan["criterion"] == "bi" and plan["keep"] == "first:1" and plan["ratio"] == 0.25
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 3
    # the pruned folder opens again and can be pruned further
    doc2 = run_json(capsys, "prune", str(out), "--remove", "0", "--out", str(tmp_path / "again"))
    assert doc2["params_after"] < doc2["params_before"] == doc["params_after"]


def test_prune_remove_ids_and_force(capsys, tiny_models, tmp_path):
    out = tmp_path / "o"
    doc = run_json(capsys, "prune", str(tiny_models["opt"]), "--remove", "1,block.2", "--out", str(out))
    assert doc["removed"] == ["block.1", "block.2"] and doc["removed_indices"] == [1, 2]
    assert main(["prune", str(tiny_models["opt"]), "--remove", "3", "--out", str(out)]) == 2
    capsys.readouterr()
    doc = run_json(capsys, "prune", str(tiny_models["opt"]), "--remove", "3", "--out", str(out), "--force")
    assert doc["removed"] == ["block.3"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_eval_json_with_generation(capsys, tiny_models, text_file):
    doc = run_json(capsys, "eval", str(tiny_models["mistral"]), "--data", str(text_file), "--max-tokens", "600",
                   "--prompt", "import ", "--max-new-tokens", "8")
    assert doc["perplexity"] > 1 and doc["tokens"] == 600 - doc["windows"]
    assert doc["generation"]["text"].startswith("import ") and doc["generation"]["new_tokens"] == 8


def test_eval_encoder_skips_generation(capsys, tiny_models, text_file):
    doc = run_json(capsys, "eval", str(tiny_models["bert"]), "--data", str(text_file), "--max-tokens", "500")
    assert doc["kind"] == "masked" and "skipped" in doc["generation"]


def test_eval_human_output_names_the_declared_metrics(capsys, tiny_models, text_file):
    assert main(["eval", str(tiny_models["llama"]), "--data", str(text_file), "--max-tokens", "300",
                 "--prompt", "import ", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("perplexity: Perplexity ") and "· Tokens 297\n" in out  # 300 less the first of 3 windows
    assert "\nimport " in out  # the text sample follows the numbers


def test_generate_writes_a_text_preview_per_model(capsys, tiny_models, tmp_path):
    out = tmp_path / "g.txt"
    doc = run_json(capsys, "generate", str(tiny_models["llama"]), "--vs", str(tiny_models["gpt2"]),
                   "--prompt", "def ", "--max-new-tokens", "3", "--out", str(out))
    assert doc["out"] == str(out) and doc["media"] == "text" and [m["label"] for m in doc["models"]] == ["llama", "gpt2"]
    text = out.read_text()
    assert text.startswith("## llama\ndef ") and "\n## gpt2\ndef " in text
    assert main(["generate", str(tiny_models["llama"]), "--out", str(tmp_path / "g.png")]) == 2
    assert "--out must be a .txt file" in capsys.readouterr().err


def test_progress_bar_shows_eta():
    stream = io.StringIO()
    bar = ProgressBar(stream=stream, mininterval=0)
    for i in range(1, 4):
        bar(i, 10, "scoring")
    bar.close()
    text = stream.getvalue()
    assert "scoring" in text and "3/10" in text and "<" in text  # elapsed<remaining


def test_help_lists_the_contract(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("plugins", "demo", "inspect", "analyze", "prune", "eval"):
        assert cmd in out


def test_flags_another_method_format_or_family_declares_are_ignored_with_a_warning(capsys, tiny_models, text_file,
                                                                                     tmp_path):
    """Earlier versions ignored a flag that did not apply (another method's, an ONNX flag with --format hf, a
    language model's --seq-len on a U-Net): it still works, and now says it was ignored, on one stderr line."""
    from diffusion_models import tiny_unet2d

    llm = str(tiny_models["llama"])
    code = main(["export", llm, "--format", "hf", "--int8", "--out", str(tmp_path / "hf"), "-q"])
    err = capsys.readouterr().err
    assert code == 0 and (tmp_path / "hf" / "config.json").is_file()
    assert err.strip() == "slimgui: warning: --int8 does not apply to --format hf: ignored (it takes no options of its own)"
    code = main(["eval", llm, "--data", str(text_file), "--guidance", "2", "--max-tokens", "300", "--no-generate", "-q"])
    err = capsys.readouterr().err
    assert code == 0 and "--guidance does not apply to evaluating llm models with perplexity: ignored" in err
    unet = str(tiny_unet2d(tmp_path / "unet"))
    code = main(["analyze", unet, "--criterion", "magnitude", "--seq-len", "8", "-q"])
    err = capsys.readouterr().err
    assert code == 0 and "--seq-len does not apply to diffusion models' calibration: ignored" in err
    code = main(["retrain", llm, "--method", "cpt", "--data", str(text_file), "--keep-adapter", "--lcm-guidance", "2",
                 "--estimate", "--out", str(tmp_path / "run"), "-q"])
    err = capsys.readouterr().err
    assert code == 0 and "--lcm-guidance, --keep-adapter do not apply to --method cpt on llm models: ignored" in err
