"""The desktop bundle's recipe (installer/) agrees with the package: every entry point, every lazily imported plugin
module, the resources and the demo models are in it, test and build tools are not; the smoke script checks what the
issue asks; discovery works frozen (a bundle's built-in list, the user plugin folder).  Nothing here builds the
bundle (`make installer` does, and runs installer/smoke.sh on it)."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALLER = ROOT / "installer"
sys.path.insert(0, str(INSTALLER))
import bundle  # noqa: E402

sys.path.remove(str(INSTALLER))

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
ENTRY_POINTS = PYPROJECT["project"]["entry-points"]["slimgui.plugins"]


def test_entry_points_file_lists_every_entry_point_of_pyproject():
    from slimgui.core.plugins import BUNDLED_ENTRY_POINTS

    assert bundle.ENTRY_POINTS_FILE == BUNDLED_ENTRY_POINTS
    text = bundle.entry_points_text()
    lines = text.splitlines()
    assert lines[0] == f"# slimgui {PYPROJECT['project']['version']}" and lines[1] == "[slimgui.plugins]"
    listed = dict(line.split(" = ") for line in lines[2:])
    assert listed == ENTRY_POINTS and len(listed) >= 6  # core + the five families at least


def _refs(obj, seen=None):
    """Every "module:attribute" string a manifest names (targets, match functions, options schemas, runners...)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        if re.fullmatch(r"[A-Za-z_][\w.]*\.[\w.]+:[A-Za-z_][\w.]*", obj):
            yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _refs(item, seen)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from _refs(getattr(obj, name), seen)


def test_hidden_imports_cover_every_module_a_manifest_names():
    """Manifests name code as "module:attribute" strings imported on first use: PyInstaller's analysis cannot see
    them, so every module of the plugin packages is a hidden import (the lazily imported ones included)."""
    from slimgui.core.plugins import discover

    hidden = set(bundle.hidden_imports())
    reg = discover()
    assert not reg.broken(), [(r.entry_point, r.error) for r in reg.broken()]
    refs = {ref for p in reg.plugins for ref in _refs(p)}
    assert len(refs) > 50  # targets, matchers, options schemas of the five families at least
    missing = sorted({ref.split(":")[0] for ref in refs} - hidden)
    assert not missing, missing
    for value in ENTRY_POINTS.values():
        assert value.split(":")[0] in hidden
    # every source module of the plugin packages, found independently of bundle.modules_of
    for package_dir, name in ((ROOT / "plugins" / "slimgui_families", "slimgui_families"), (ROOT / "slimgui", "slimgui")):
        for path in package_dir.rglob("*.py"):
            rel = path.relative_to(package_dir).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if all((package_dir.joinpath(*rel.parts[:i]) / "__init__.py").is_file() for i in range(len(rel.parts))):
                assert ".".join((name, *parts)) in hidden, path
    assert not any(m.startswith("tests") or "digitconv" in m for m in hidden)


def _spec_calls(spec: str) -> dict[str, ast.Call]:
    tree = ast.parse((INSTALLER / spec).read_text(encoding="utf-8"))
    calls = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.setdefault(node.func.id, node)
    return calls


@pytest.mark.parametrize("spec", ["slimgui-linux.spec", "slimgui-windows.spec", "slimgui-macos.spec"])
def test_spec_is_one_folder_and_takes_its_lists_from_bundle(spec):
    src = (INSTALLER / spec).read_text(encoding="utf-8")
    calls = _spec_calls(spec)
    assert {"Analysis", "PYZ", "EXE", "COLLECT"} <= set(calls)
    kw = {k.arg: ast.unparse(k.value) for k in calls["Analysis"].keywords}
    assert kw["hiddenimports"] == "bundle.hidden_imports()"
    assert kw["excludes"] == "list(bundle.EXCLUDES)"
    assert kw["datas"] == "bundle.datas(workpath)" and "SOURCE_TOO" in kw["module_collection_mode"]
    datas = inspect.getsource(bundle.datas)
    for part in ("resource_files()", "stdlib_corpus_files()", "entry_points_text()", "ENTRY_POINTS_FILE",
                 "ALL_SOURCES", "data_packages()", "runtime_distributions()", "excluded_metadata(", "*LIBRARIES"):
        assert part in datas, part
    assert "bundle.strip_analysis(a)" in src
    strip = inspect.getsource(bundle.strip_analysis)
    assert "stripped(" in strip and "stripped_module(" in strip
    exes = [node for node in ast.walk(ast.parse(src)) if isinstance(node, ast.Call) and ast.unparse(node.func) == "EXE"]
    for node in exes:  # one folder, never one file: no EXE carries the binaries itself
        exe = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert exe["exclude_binaries"] == "True" and "a.binaries" not in ast.unparse(node)
    assert {k.arg: ast.unparse(k.value) for k in exes[0].keywords}["name"] == "bundle.EXECUTABLE"
    coll = {k.arg: ast.unparse(k.value) for k in calls["COLLECT"].keywords}
    assert coll["name"] == "bundle.NAME" and bundle.NAME == "SlimGUI"
    assert ast.unparse(calls["Analysis"].args[0]).endswith("'slimgui_main.py')]")
    assert (INSTALLER / "slimgui_main.py").is_file()


def test_resources_and_demo_models_are_bundled():
    files = bundle.resource_files()
    dests = {(Path(src).relative_to(ROOT).as_posix(), dest) for src, dest in files}
    assert ("README.md", ".") in dests and ("resources/style.qss", "resources") in dests
    bundled = {src for src, _ in dests}
    for demo in sorted((ROOT / "resources" / "demo").iterdir()):
        if ".tmp-" in demo.name:
            continue
        shipped = [p for p in demo.rglob("*") if p.is_file()]
        assert shipped and all(p.relative_to(ROOT).as_posix() in bundled for p in shipped), demo
    for src, dest in files:
        assert Path(dest) == Path(src).relative_to(ROOT).parent, (src, dest)  # same layout: resources_dir() finds it
    # the demos the smoke test requires are shipped, and the stdlib text the LM demo reads from comes along
    smoke = (INSTALLER / "smoke.sh").read_text(encoding="utf-8")
    required = smoke.split("for demo in ", 1)[1].split(";", 1)[0].split()
    assert set(required) <= {d.name for d in (ROOT / "resources" / "demo").iterdir()}
    corpus = bundle.stdlib_corpus_files()
    assert len(corpus) > 300 and all(dest.startswith(f"lib/python{sys.version_info[0]}.{sys.version_info[1]}")
                                     for _, dest in corpus)


def test_runtime_libraries_bring_their_data_and_metadata():
    """Every distribution pyproject requires (and the app's extra) is in the closure whose metadata and data files are
    collected; the test and build tools are not."""
    norm = lambda name: name.lower().replace("_", "-")  # noqa: E731
    closure = {norm(d) for d in bundle.runtime_distributions()}
    assert {norm(r) for r in bundle.requirements()} <= closure
    assert not closure & {"pytest", "pytest-qt", "ruff", "import-linter", "pyinstaller", "pip", "setuptools"}
    packages = set(bundle.data_packages())
    assert {"transformers", "diffusers", "sklearn", "cv2", "jinja2"} <= packages
    if "kernels" in metadata.packages_distributions():  # transformers reads kernels' python_depends.json
        assert "kernels" in packages
    assert not packages & (set(bundle.EXCLUDES) | bundle.HOOKED)


def test_no_test_or_build_tools_and_strip_rules():
    test_extra = [r for r in PYPROJECT["project"]["optional-dependencies"]["test"] if not r.startswith("slimgui")]
    by_dist = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            by_dist.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    for req in test_extra:
        dist = req.split(">")[0].split("=")[0].split("<")[0].strip().lower()
        modules = {m for m in by_dist.get(dist, set()) if not m.startswith("_") or m == "_pytest"} or {dist}
        assert modules & set(bundle.EXCLUDES), (req, modules)
    for tool in ("PyInstaller", "pip", "setuptools"):
        assert tool in bundle.EXCLUDES
    assert bundle.excluded_metadata("setuptools-84.2.1.dist-info/METADATA".split("/")[0])
    assert not bundle.excluded_metadata("torch-2.13.0+cpu.dist-info")
    for dest in ("torch/include/ATen/ATen.h", "torch/lib/libfoo.a", "torch/bin/test_api", "torch/share/cmake/x.cmake",
                 "numpy/_core/tests/test_x.py", "pandas/tests/frame/test_api.py", "torch/bin/protoc"):
        assert bundle.stripped(dest), dest
    for dest in ("torch/lib/libtorch_cpu.so", "torch/bin/torch_shm_manager", "torch/testing/_internal/common_dtype.py",
                 "resources/demo/llm/model.safetensors", "PySide6/Qt/plugins/platforms/libqxcb.so",
                 "transformers/models/llama/modeling_llama.py"):
        assert not bundle.stripped(dest), dest
    packages = {"numpy", "numpy.tests", "scipy", "scipy.linalg", "scipy.linalg.tests", "jinja2", "torch",
                "torch.testing", "torch.testing._internal"}
    assert bundle.stripped_module("numpy.tests.test_x", packages) and bundle.stripped_module("numpy.tests", packages)
    assert bundle.stripped_module("scipy.linalg.tests", packages)
    assert not bundle.stripped_module("jinja2.tests", packages)  # a module, not a test package: chat templates use it
    assert not bundle.stripped_module("torch.testing._internal.common_dtype", packages)
    assert not bundle.stripped_module("unittest", packages) and not bundle.stripped_module("torch.testing", packages)
    assert not bundle.stripped_module("tests", {"tests"})  # a top-level name is nobody's test folder


def test_make_test_does_not_build_the_bundle_and_make_installer_does():
    test = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    assert "PyInstaller" not in test.stdout and "installer/" not in test.stdout and "pyinstaller" not in test.stdout
    inst = subprocess.run(["make", "-n", "installer"], cwd=ROOT, capture_output=True, text=True)
    assert inst.returncode == 0, inst.stderr
    out = inst.stdout
    assert "pip install" in out and "pyinstaller==" in out
    assert out.index("pyinstaller==") < out.index("installer/build.sh") < out.index("installer/smoke.sh")
    extras = " ".join(sum(PYPROJECT["project"]["optional-dependencies"].values(), []))
    assert "pyinstaller" not in extras.lower()  # the build tool is not a test (or any) extra


def test_smoke_script_expects_every_entry_point_and_runs_what_the_issue_asks():
    res = subprocess.run(["bash", str(INSTALLER / "smoke.sh"), "--expected-plugins"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == sorted(ENTRY_POINTS)
    smoke = (INSTALLER / "smoke.sh").read_text(encoding="utf-8")
    for needed in ("plugins --json", "--screenshot", "inspect demo:llm", "analyze demo:llm --criterion bi",
                   "prune demo:llm", 'inspect "$OUT/pruned"', "unshare -m", "env -i", "PYTHONNOUSERSITE=1",
                   "slimgui-entry-points.txt", ".local/share/slimgui/plugins"):
        assert needed in smoke, needed
    bash = subprocess.run(["bash", "-n", str(INSTALLER / "smoke.sh")], capture_output=True, text=True)
    assert bash.returncode == 0, bash.stderr


def test_desktop_entry_and_its_installer(tmp_path):
    entry = (INSTALLER / "slimgui.desktop").read_text(encoding="utf-8")
    fields = dict(line.split("=", 1) for line in entry.splitlines()[1:] if "=" in line)
    assert entry.startswith("[Desktop Entry]\n") and fields["Type"] == "Application"
    assert fields["Exec"] == f"{bundle.EXECUTABLE} gui %f" and fields["Icon"] == "slimgui"
    assert (INSTALLER / "slimgui.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (INSTALLER / "slimgui.svg").read_text(encoding="utf-8")
    # install-desktop.sh, run from a folder laid out like the bundle, points the menu entry at that folder
    folder = tmp_path / "SlimGUI"
    folder.mkdir()
    for name in ("install-desktop.sh", "slimgui.desktop", "slimgui.png", "slimgui.svg"):
        (folder / name).write_bytes((INSTALLER / name).read_bytes())
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    res = subprocess.run(["sh", str(folder / "install-desktop.sh")], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    installed = (tmp_path / "data" / "applications" / "slimgui.desktop").read_text(encoding="utf-8")
    assert f'Exec="{folder}/slimgui" gui %f' in installed and f"TryExec={folder}/slimgui" in installed
    assert (tmp_path / "data" / "icons" / "hicolor" / "256x256" / "apps" / "slimgui.png").is_file()
    res = subprocess.run(["sh", str(folder / "install-desktop.sh"), "--remove"], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and not (tmp_path / "data" / "applications" / "slimgui.desktop").exists()


PLUGIN = '''
from slimgui.core.plugins import CriterionSpec, Plugin

class Norm:
    name = "{crit}"
    def score(self, model, data=None, *, progress=None, cancel=None):
        return {{}}

plugin = Plugin(name="{name}", version="0.1", criteria=[CriterionSpec("{crit}", "{module}:Norm")])
'''


def _discover_frozen(tmp_path: Path, *, frozen: bool, env_extra: dict) -> dict:
    code = textwrap.dedent(f"""
        import json, sys
        if {frozen!r}:
            sys.frozen = True
            sys._MEIPASS = {str(tmp_path / "bundle")!r}
        from slimgui.core.plugins import discover, user_plugin_dir
        reg = discover()
        print(json.dumps({{"records": [[r.entry_point, r.source, r.ok, r.error] for r in reg.records],
                          "dir": str(user_plugin_dir()), "criteria": [s.name for _, s in reg.criterion_specs()]}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "SLIMGUI_PLUGIN_DIR"}
    env.update({"PYTHONPATH": str(tmp_path / "modules"), **env_extra})
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture()
def frozen_layout(tmp_path):
    """A bundle folder whose built-in list names a module of its own plus one already installed, and a user plugin
    folder holding a plugin installed the way `pip install --target` does."""
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "bundled_fam.py").write_text(PLUGIN.format(name="bundledfam", crit="bundled-norm",
                                                                        module="bundled_fam"))
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / bundle.ENTRY_POINTS_FILE).write_text(
        "# slimgui 9.9\n[slimgui.plugins]\nbundledfam = bundled_fam:plugin\nllm = slimgui_families.llm:plugin\n")
    user = tmp_path / "data" / "slimgui" / "plugins"
    info = user / "user_fam-0.1.dist-info"
    info.mkdir(parents=True)
    (user / "user_fam.py").write_text(PLUGIN.format(name="userfam", crit="user-norm", module="user_fam"))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: user-fam\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[slimgui.plugins]\nuserfam = user_fam:plugin\n")
    return tmp_path


def test_frozen_discovery_reads_the_bundled_list_and_the_user_plugin_folder(frozen_layout):
    got = _discover_frozen(frozen_layout, frozen=True, env_extra={"XDG_DATA_HOME": str(frozen_layout / "data")})
    records = {name: (source, ok, err) for name, source, ok, err in got["records"]}
    assert got["dir"] == str(frozen_layout / "data" / "slimgui" / "plugins")  # the default user plugin folder
    assert records["bundledfam"] == ("slimgui 9.9 (bundled)", True, None)
    assert records["userfam"] == ("user-fam 0.1", True, None)
    assert [r[0] for r in got["records"]].count("llm") == 1  # listed by the install and the bundle: loaded once
    assert {"bundled-norm", "user-norm", "bi", "magnitude"} <= set(got["criteria"])
    names = [r[0] for r in got["records"]]
    assert names == sorted(names)


def test_not_frozen_discovery_is_unchanged_unless_a_plugin_folder_is_named(frozen_layout):
    got = _discover_frozen(frozen_layout, frozen=False, env_extra={"XDG_DATA_HOME": str(frozen_layout / "data")})
    names = {r[0] for r in got["records"]}
    assert got["dir"] == "None" and "userfam" not in names and "bundledfam" not in names
    assert set(ENTRY_POINTS) <= names
    user = frozen_layout / "data" / "slimgui" / "plugins"
    got = _discover_frozen(frozen_layout, frozen=False, env_extra={"SLIMGUI_PLUGIN_DIR": str(user)})
    assert got["dir"] == str(user)
    assert ["userfam", "user-fam 0.1", True, None] in got["records"]
