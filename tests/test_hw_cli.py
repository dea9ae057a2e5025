"""`slimgui profile` and `slimgui abconv` (issue 18) through the real command: per-unit JSON for a family's demo and
for an ONNX file, another device's profile file, and bad input (an absurd device profile, a model with no
convolutions for ABConv) as one line on stderr and exit code 2."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli

pytestmark = pytest.mark.slow  # each command is a subprocess (a few seconds each)
ENV = {"OMP_NUM_THREADS": "1"}


def ok(*args):
    r = run_cli(*args, env_extra=ENV)
    assert r.returncode == 0, f"slimgui {' '.join(args)} failed:\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1]) if "--json" in args else r


def refused(*args) -> str:
    r = run_cli(*args, env_extra=ENV)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slimgui: error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def npu(tmp_path_factory):
    path = tmp_path_factory.mktemp("dev") / "npu.json"
    path.write_text(json.dumps({"kind": "device-profile", "schema_version": 1, "name": "my NPU",
                                "peak_flops": 5.12e11, "bandwidth": 3.2e9, "dtype_bytes": 1}))
    return path


def test_profile_of_the_cnn_demo_with_another_device(npu, tmp_path):
    got = ok("profile", "demo:cnn", "--device-profile", str(npu), "--repeats", "2", "--threads", "1",
             "--out", str(tmp_path / "p.json"), "--json")
    assert got["device"]["name"] == "my NPU" and got["device"]["ridge"] == pytest.approx(160.0)
    rows = {r["unit"]: r for r in got["units"]}
    assert rows["layer4.1.conv2"]["memory_bound"] is True and rows["layer4.1.conv2"]["measured_ms"] > 0
    assert json.loads((tmp_path / "p.json").read_text())["units"] == got["units"]
    human = ok("profile", "demo:cnn", "--device-profile", str(npu), "--repeats", "1", "--threads", "1").stdout
    assert "my NPU" in human and "layer4.1.conv2" in human and "memory" in human


def test_profile_of_another_family_and_of_an_onnx_file(tmp_path):
    got = ok("profile", "demo:gan", "--repeats", "1", "--threads", "1", "--json")
    assert got["family"] == "gan" and got["timed_units"] >= 10 and got["device"]["source"] == "measured"
    onnx = tmp_path / "g.gan.onnx"
    ok("export", "demo:gan", "--format", "gan-onnx", "--out", str(onnx))
    got = ok("profile", str(onnx), "--repeats", "1", "--threads", "1", "--json")
    assert got["runtime"] == "onnxruntime" and any(r["op"] == "Conv" and r["flops"] for r in got["units"])


def test_a_family_benchmark_option_sets_what_one_profiled_pass_is():
    short = ok("profile", "demo:llm", "--seq", "16", "--repeats", "1", "--threads", "1", "--json")
    long = ok("profile", "demo:llm", "--seq", "64", "--repeats", "1", "--threads", "1", "--json")
    assert short["options"] == {"seq": [16]}
    emb_s, emb_l = (next(r for r in p["units"] if r["weight_bytes"] and r["act_bytes"]) for p in (short, long))
    assert emb_l["unit"] == emb_s["unit"] and emb_l["weight_bytes"] == emb_s["weight_bytes"]
    assert emb_l["act_bytes"] > 3 * emb_s["act_bytes"]  # activations grow with the sequence, weights do not
    assert long["total_flops"] > 3 * short["total_flops"]


def test_abconv_then_profile_shows_the_raised_intensity(tmp_path):
    out = tmp_path / "ab"
    got = ok("abconv", "demo:cnn-mobilenet", "--out", str(out), "--json")
    assert got["replaced"] and (out / "slimgui_abconv.json").is_file()
    before = ok("profile", "demo:cnn-mobilenet", "--repeats", "1", "--threads", "1", "--json")
    after = ok("profile", str(out), "--repeats", "1", "--threads", "1", "--json")
    b = {r["unit"]: r for r in before["units"]}
    a = {r["unit"]: r for r in after["units"]}
    for layer in got["replaced"]:
        assert a[layer]["intensity"] > b[layer]["intensity"]


def test_bad_input_is_one_line(tmp_path, npu):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "peak_flops": 1e12, "bandwidth": 0}))
    line = refused("profile", "demo:cnn", "--device-profile", str(bad))
    assert "'bandwidth' = 0 is not a plausible device figure" in line
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"name": "x", "bandwidth": 1e9}))
    assert "'peak_flops' is missing" in refused("profile", "demo:cnn", "--device-profile", str(missing))
    assert "the vit family cannot save ABConv layers" in refused("abconv", "demo:vit", "--out", str(tmp_path / "g"))
    assert "no 2-D convolution layers" in refused("abconv", "demo:llm", "--out", str(tmp_path / "v"))
    assert "does not exist" in refused("profile", str(tmp_path / "nothing.onnx"))
