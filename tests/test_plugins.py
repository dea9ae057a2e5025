"""The plugin API: discovery through entry points, lazy loading, broken plugins, third-party criteria."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


def install_plugin(site: Path, dist: str, module: str, source: str, entry: str) -> None:
    """Install a plugin the way pip does: its module plus a .dist-info with an entry_points.txt."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[slimgui.plugins]\n{entry} = {module}:plugin\n")


THIRD_PARTY = '''
    """A third-party plugin: one new criterion, written against the public API only."""
    from slimgui.core.plugins import CriterionSpec, Plugin

    class RelativeWeightNorm:
        """Frobenius norm of the block's weights relative to the largest block's (0..1]."""
        name = "rel-norm"

        def score(self, model, data=None, *, progress=None, cancel=None):
            adapter = model.impl
            ids = [u.id for u in adapter.to_graph(model).prunable()]
            norms = {}
            for i, uid in enumerate(ids):
                mod = adapter.unit_module(model, uid)
                norms[uid] = sum(float(p.detach().pow(2).sum()) for p in mod.parameters() if p.dim() >= 2) ** 0.5
                if progress:
                    progress(i + 1, len(ids), uid)
            top = max(norms.values())
            return {k: v / top for k, v in norms.items()}

    from dataclasses import dataclass

    from slimgui.core.options import option
    from slimgui.core.plugins import MethodSpec


    @dataclass
    class NoiseOptions:
        """A third party's healing method for language models, with an option of its own."""
        noise_sigma: float = option(0.1, label="sigma", lo=0.0, hi=1.0, help="weight noise before healing")


    def build_noise(adapter, cfg, options, *, registry):
        raise NotImplementedError  # never reached by these tests: the flags are checked first

    plugin = Plugin(name="acme", version="0.1", description="ACME's criteria",
                    criteria=[CriterionSpec("rel-norm", "acme_slim:RelativeWeightNorm", "relative weight norm")],
                    methods=[MethodSpec("noise", "acme_slim:build_noise", label="Noisy healing", families=("llm",),
                                        options="acme_slim:NoiseOptions")])
'''

BROKEN = '''
    raise RuntimeError("this plugin is broken on purpose")
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    install_plugin(site, "acme_slim", "acme_slim", THIRD_PARTY, "acme")
    install_plugin(site, "broken_slim", "broken_slim", BROKEN, "broken")
    return site


def test_third_party_criterion_is_listed_and_used(plugin_site, tiny_models, tmp_path):
    env = {"PYTHONPATH": str(plugin_site)}
    listed = run_cli("plugins", "--json", env_extra=env)
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout.strip().splitlines()[-1])["plugins"]}
    assert plugins["acme"]["status"] == "ok"
    assert [c["name"] for c in plugins["acme"]["criteria"]] == ["rel-norm"]
    # the broken one is reported with its reason, and everything else still works
    assert plugins["broken"]["status"] == "broken"
    assert "broken on purpose" in plugins["broken"]["error"]
    assert plugins["llm"]["status"] == "ok"

    res = run_cli("analyze", str(tiny_models["llama"]), "--criterion", "rel-norm", "--json",
                  "--out", str(tmp_path / "s.json"), env_extra=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["criterion"] == "rel-norm" and len(doc["scores"]) == 4
    assert max(doc["scores"].values()) == pytest.approx(1.0) and min(doc["scores"].values()) > 0
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["kind"] == "scores" and saved["values"] == doc["scores"]
    # and a plan can be made from the third party's scores
    res = run_cli("prune", str(tiny_models["llama"]), "--scores", str(tmp_path / "s.json"), "--count", "1",
                  "--out", str(tmp_path / "pruned"), "--json", env_extra=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["removed"] == [min(doc["scores"], key=doc["scores"].get)]


def test_third_party_method_option_is_a_flag(plugin_site, tiny_models, text_file, tmp_path):
    """A method a third party declares gets its option as a CLI flag, checked by its schema, with no CLI edit."""
    env = {"PYTHONPATH": str(plugin_site)}
    listed = run_cli("plugins", "--json", env_extra=env)
    acme = next(p for p in json.loads(listed.stdout.strip().splitlines()[-1])["plugins"] if p["name"] == "acme")
    (opt,) = acme["methods"][0]["options"]
    assert opt["name"] == "noise_sigma" and opt["range"] == "0-1" and opt["cli_flags"] == ["--noise-sigma"]
    helped = run_cli("retrain", "--help", env_extra=env)
    assert helped.returncode == 0 and "--noise-sigma" in helped.stdout and "noise" in helped.stdout
    base = ["retrain", str(tiny_models["llama"]), "--data", str(text_file), "--out", str(tmp_path / "run")]
    bad = run_cli(*base, "--method", "noise", "--noise-sigma", "2", env_extra=env)
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "slimgui: error: --noise-sigma must be from 0 to 1, got 2", bad.stderr
    other = run_cli(*base, "--method", "cpt", "--noise-sigma", "0.5", "--estimate", env_extra=env)
    assert other.returncode == 0, other.stderr
    assert "slimgui: warning: --noise-sigma does not apply to --method cpt on llm models: ignored" in other.stderr


def test_plugins_text_output_shows_broken(plugin_site):
    res = run_cli("plugins", env_extra={"PYTHONPATH": str(plugin_site)})
    assert res.returncode == 0
    assert "broken" in res.stdout and "BROKEN" in res.stdout and "rel-norm" in res.stdout


def test_discovery_imports_no_heavy_code():
    code = ("import sys; from slimgui.core.plugins import discover; r = discover(); "
            "names = [s.name for _, s in r.criterion_specs()]; "
            "assert {'ppl', 'bi', 'taylor', 'magnitude'} <= set(names), names; "
            "assert r.match.__name__; "
            "heavy = [m for m in ('torch', 'transformers', 'slimgui_families.llm.adapter', 'PySide6') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_probing_a_path_does_not_load_torch(tiny_models):
    code = ("import sys; from slimgui.core.plugins import discover; r = discover(); "
            f"m = r.match({str(tiny_models['llama'])!r}); print(m[0][2].name, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["transformers", "False"]


def test_import_contracts_hold():
    """core never imports Qt or the GUI; core, CLI and GUI import no plugin; plugins never import Qt (import-linter)."""
    exe = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(exe), "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                         cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 3 kept, 0 broken" in res.stdout


@pytest.mark.parametrize("where, code, contract", [
    ("core", "import PySide6  # noqa\n", "core never imports Qt"),
    ("gui", "import slimgui_families.llm  # noqa\n", "core, cli and gui import no plugin"),
])
def test_import_contract_catches_a_violation(tmp_path, where, code, contract):
    """The contracts are live: a core module importing Qt, or an app module importing a family, breaks them."""
    bad = ROOT / "slimgui" / where / "_contract_probe.py"
    bad.write_text(code)
    try:
        exe = Path(sys.executable).with_name("lint-imports")
        res = subprocess.run([str(exe), "--no-cache"], capture_output=True, text=True, cwd=ROOT)
        assert res.returncode != 0 and f"slimgui.{where}._contract_probe" in res.stdout
        assert f"{contract}" in res.stdout and "BROKEN" in res.stdout
    finally:
        bad.unlink()


def test_registry_reports_plugin_code_errors_as_user_errors(registry):
    from slimgui.core.errors import SlimError
    from slimgui.core.plugins import CriterionSpec, Plugin, PluginRecord, Registry

    reg = Registry(records=[PluginRecord("x", "test", Plugin(
        name="x", criteria=[CriterionSpec("ghost", "no_such_module_anywhere:Thing")]))])
    with pytest.raises(SlimError, match="plugin 'x' failed to load its criterion 'ghost'"):
        reg.criterion("ghost")
