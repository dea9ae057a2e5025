"""Models bigger than memory (issue 17): a sharded checkpoint opened on the meta device, scored and pruned block by
block, gives the same numbers and the same pruned model as the in-memory path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import tiny_config

from slimgui.core import ops
from slimgui.core.criteria import Taylor, TaylorMatrices
from slimgui.core.data import CalibrationData
from slimgui.core.errors import SlimError
from slimgui.core.model import open_model
from slimgui.core.plan import PruningPlan
from slimgui.core.plugins import discover

REG = discover()


def _sharded(folder: Path, arch: str, tokenizer, layers: int = 5, dtype=torch.float32, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config, cls = tiny_config(arch, layers)
    model = cls(config).eval().to(dtype)
    model.save_pretrained(folder, max_shard_size="20KB")
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, tokenizer):
    return _sharded(tmp_path_factory.mktemp("stream") / "llama", "llama", tokenizer)


def _data(text_file, **kw):
    return CalibrationData(str(text_file), samples=kw.get("samples", 6), batch_size=kw.get("batch_size", 4),
                           options={"seq_len": 32})


def _close(a: dict, b: dict, rel: float = 1e-5):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=rel, abs=1e-9), k


def test_a_sharded_checkpoint_opens_on_meta_with_exact_counts_and_bytes(sharded):
    assert len(list(sharded.glob("model-*.safetensors"))) > 3
    full = open_model(str(sharded), registry=REG)
    streamed = open_model(str(sharded), registry=REG, stream=True)
    assert all(p.device.type == "meta" for p in streamed.module.model.layers.parameters())
    assert streamed.has_weights and streamed.extra["notes"][0].startswith("streaming the weights")
    g_full, g_stream = ops.graph_of(full, REG), ops.graph_of(streamed, REG)
    assert [u.params for u in g_full.units] == [u.params for u in g_stream.units]
    assert g_stream.attrs["streamed"] is True
    for u in g_stream.prunable():
        block = full.module.model.layers[u.attrs["index"]]
        assert u.attrs["bytes"] == sum(p.numel() * 4 for p in block.parameters())


@pytest.mark.parametrize("criterion", ["bi", "ppl", "magnitude"])
def test_streamed_criteria_equal_the_in_memory_ones(sharded, text_file, criterion):
    full = open_model(str(sharded), registry=REG)
    streamed = open_model(str(sharded), registry=REG, stream=True)
    a = ops.analyze(full, criterion, registry=REG, data=_data(text_file))
    b = ops.analyze(streamed, criterion, registry=REG, data=_data(text_file))
    _close(a.values, b.values)
    assert len(set(a.values.values())) == len(a.values)  # real, distinct scores
    if criterion == "ppl":
        assert b.meta["baseline_ppl"] == pytest.approx(a.meta["baseline_ppl"], rel=1e-5)


def test_block_influence_leaves_an_untied_head_unread_and_ppl_reads_it_later(sharded, text_file):
    """``bi`` runs the blocks only: the output head (a block's worth of memory on a large vocabulary) stays on the
    meta device; a criterion that needs it reads it then, with the same scores as in memory."""
    full = open_model(str(sharded), registry=REG)
    streamed = open_model(str(sharded), registry=REG, stream=True)
    assert not streamed.module.config.tie_word_embeddings
    ops.analyze(streamed, "bi", registry=REG, data=_data(text_file))
    assert streamed.module.lm_head.weight.device.type == "meta"
    assert streamed.module.model.embed_tokens.weight.device.type == "cpu"
    a = ops.analyze(full, "ppl", registry=REG, data=_data(text_file))
    b = ops.analyze(streamed, "ppl", registry=REG, data=_data(text_file))
    assert streamed.module.lm_head.weight.device.type == "cpu"
    _close(a.values, b.values)


@pytest.mark.parametrize("select", [Taylor, TaylorMatrices])
def test_streamed_taylor_goes_backwards_block_by_block_and_equals_the_in_memory_one(sharded, text_file, select):
    from slimgui_families.llm.stream_criteria import taylor

    full = open_model(str(sharded), registry=REG)
    streamed = open_model(str(sharded), registry=REG, stream=True)
    a = select().score(full, _data(text_file))
    b = taylor(streamed.impl, streamed, _data(text_file), select=select.select)
    _close(a, b)
    assert all(v > 0 for v in b.values())


def test_streamed_taylor_through_analyze(sharded, text_file, capsys):
    import inspect

    from slimgui.cli import main
    from slimgui.core import criteria

    if "streamed_scorers" not in inspect.getsource(criteria.Taylor.score):
        # until the core hands a streamed model to its family, taylor on one is refused in one line, not a crash
        rc = main(["analyze", str(sharded), "--criterion", "taylor", "--stream", "--data", str(text_file),
                   "--seq-len", "32", "--samples", "4", "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "needs the whole model in memory" in err[0]
        pytest.skip("the core Taylor does not hand a streamed model to its family yet (contract request)")
    full = open_model(str(sharded), registry=REG)
    streamed = open_model(str(sharded), registry=REG, stream=True)
    for name in ("taylor", "taylor-matrices"):
        a = ops.analyze(full, name, registry=REG, data=_data(text_file))
        b = ops.analyze(streamed, name, registry=REG, data=_data(text_file))
        _close(a.values, b.values)
    assert all(p.device.type == "meta" for p in streamed.module.model.layers.parameters())


def test_hidden_states_spilled_to_disk_give_the_same_scores(sharded, text_file, monkeypatch):
    streamed = open_model(str(sharded), registry=REG, stream=True)
    mem = ops.analyze(streamed, "ppl", registry=REG, data=_data(text_file)).values
    monkeypatch.setenv("SLIMGUI_STREAM_SPILL", "1")
    made = []
    import tempfile

    real = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    disk = ops.analyze(streamed, "ppl", registry=REG, data=_data(text_file)).values
    assert made and not any(Path(d).exists() for d in made)  # spilled, then cleaned up
    assert mem == disk


def _generate(folder: Path, tokenizer) -> list[int]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer("def main(args):", add_special_tokens=False)["input_ids"]])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                         pad_token_id=0)
    return out[0].tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_streamed_prune_writes_the_same_model_as_the_in_memory_prune(tmp_path, tokenizer, dtype):
    src = _sharded(tmp_path / "src", "qwen2", tokenizer, dtype=dtype)  # sliding/full attention per block
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    plan = PruningPlan(remove=["block.1", "block.3"])
    outs = {}
    for stream in (False, True):
        model = open_model(str(src), registry=REG, stream=stream)
        pruned = ops.prune(model, plan, registry=REG, copy=False)
        outs[stream] = ops.save(pruned, tmp_path / f"out-{stream}", registry=REG)
    streamed = outs[True]
    index = json.loads((streamed / "model.safetensors.index.json").read_text())
    shards = sorted({v for v in index["weight_map"].values()})
    assert len(shards) > 1 and all((streamed / s).is_file() for s in shards)
    assert index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for t in _tensors(streamed).values())
    assert not any(".layers.3." in k or ".layers.4." in k for k in index["weight_map"])  # renumbered 0..2
    cfg = json.loads((streamed / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 3
    assert cfg["layer_types"] == ["full_attention", "sliding_attention", "sliding_attention"]  # blocks 0, 2, 4 kept
    assert cfg == json.loads((outs[False] / "config.json").read_text())
    assert cfg["dtype"] == ("bfloat16" if dtype == torch.bfloat16 else "float32")
    from safetensors import safe_open

    with safe_open(str(streamed / shards[0]), framework="pt") as fh:
        assert fh.metadata() == {"format": "pt"}
    a, b = _tensors(outs[False]), _tensors(streamed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert (streamed / "tokenizer.json").is_file()
    assert _generate(streamed, tokenizer) == _generate(outs[False], tokenizer)
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # the source untouched


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_a_model_that_does_not_fit_streams_by_itself(sharded, monkeypatch):
    monkeypatch.setenv("SLIMGUI_MEMORY_BUDGET", "1M")
    model = open_model(str(sharded), registry=REG)
    assert model.extra.get("stream") is not None
    assert "more than the 1.0 MB of memory available" in model.extra["notes"][0]
    monkeypatch.setenv("SLIMGUI_MEMORY_BUDGET", "64G")
    assert open_model(str(sharded), registry=REG).extra.get("stream") is None


def test_the_app_path_opens_a_big_model_streamed_and_says_what_it_needs(sharded, monkeypatch):
    """The app opens through the same core task: structure at once (no block weight read), the note shown."""
    from slimgui.core.tasks_open import open_task

    monkeypatch.setenv("SLIMGUI_MEMORY_BUDGET", "1M")
    model = open_task(str(sharded), registry=REG)
    assert all(p.device.type == "meta" for p in model.module.parameters())  # nothing read yet
    graph = ops.graph_of(model, REG)
    assert graph.attrs["streamed"] and "memory needed" in graph.attrs["notes"][0]
    assert graph.attrs["stored_bytes"] == sum(f.stat().st_size for f in sharded.glob("*.safetensors")) - sum(
        _header_len(f) for f in sharded.glob("*.safetensors"))


def _header_len(f: Path) -> int:
    import struct

    with open(f, "rb") as fh:
        return 8 + struct.unpack("<Q", fh.read(8))[0]


def test_what_needs_the_whole_model_says_so_on_a_streamed_one(sharded, tmp_path, capsys, monkeypatch):
    from slimgui.cli import main

    monkeypatch.setenv("SLIMGUI_MEMORY_BUDGET", "1M")
    rc = main(["generate", str(sharded), "--prompt", "def f", "--out", str(tmp_path / "g.txt"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "text generation needs the whole model in memory" in err[0]


# -- bad input ------------------------------------------------------------------------------------------------
def _copy(sharded: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(sharded, dst)
    return dst


def _index(folder: Path) -> dict:
    return json.loads((folder / "model.safetensors.index.json").read_text())


def test_a_missing_shard_is_named(sharded, tmp_path):
    folder = _copy(sharded, tmp_path)
    gone = sorted(folder.glob("model-*.safetensors"))[1]
    gone.unlink()
    with pytest.raises(SlimError, match=f"missing: {gone.name}"):
        open_model(str(folder), registry=REG, stream=True)


def test_an_index_naming_a_tensor_no_shard_holds_is_named(sharded, tmp_path):
    folder = _copy(sharded, tmp_path)
    doc = _index(folder)
    first = next(iter(doc["weight_map"].values()))
    doc["weight_map"]["model.layers.0.mlp.extra.weight"] = first
    (folder / "model.safetensors.index.json").write_text(json.dumps(doc))
    with pytest.raises(SlimError, match="model.layers.0.mlp.extra.weight is in .* does not hold it"):
        open_model(str(folder), registry=REG, stream=True)


def test_a_truncated_shard_is_named(sharded, tmp_path):
    folder = _copy(sharded, tmp_path)
    shard = sorted(folder.glob("model-*.safetensors"))[2]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    with pytest.raises(SlimError, match=f"{shard.name} .*truncated"):
        open_model(str(folder), registry=REG, stream=True)


def test_a_full_disk_while_writing_leaves_nothing_and_the_source_untouched(sharded, tmp_path, monkeypatch, capsys):
    import errno
    import os

    from slimgui.cli import main

    before = {p.name: p.read_bytes() for p in sharded.iterdir()}
    calls = {"n": 0}
    real = os.copy_file_range

    def filling(src, dst, count, offset_src=None, *a):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, count, offset_src, *a)

    monkeypatch.setattr(os, "copy_file_range", filling)
    out = tmp_path / "out"
    rc = main(["prune", str(sharded), "--remove", "1", "--out", str(out), "--stream", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not enough disk space" in err[0] and "nothing was written" in err[0]
    assert calls["n"] > 3 and not out.exists() and list(tmp_path.iterdir()) == []
    assert {p.name: p.read_bytes() for p in sharded.iterdir()} == before


def test_an_output_folder_inside_the_source_is_refused(sharded, capsys):
    from slimgui.cli import main

    rc = main(["prune", str(sharded), "--remove", "1", "--out", str(sharded / "pruned"), "--stream", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "inside" in err[0]
    assert not (sharded / "pruned").exists()


# -- prune to a latency budget (the CLI twin of the Plan panel's "ms latency"; core: slimgui.core.selection) ------
def test_prune_to_a_latency_budget_measured_on_this_machine(tiny_models, tmp_path, capsys):
    from slimgui.cli import main

    out = tmp_path / "fast"
    rc = main(["prune", str(tiny_models["llama"]), "--criterion", "magnitude", "--latency-ms", "1e-6",
               "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "ms budget" in err and len(err.strip().splitlines()) == 1  # out of reach: one line
    rc = main(["prune", str(tiny_models["llama"]), "--criterion", "magnitude", "--latency-ms", "1e9",
               "--out", str(out), "-q"])
    assert rc == 2 and "already runs in" in capsys.readouterr().err
    rc = main(["prune", str(tiny_models["llama"]), "--criterion", "magnitude", "--latency-ms", "1", "--ratio", "0.5",
               "--out", str(out), "-q"])
    assert rc == 2 and "not both" in capsys.readouterr().err
    assert not out.exists()
