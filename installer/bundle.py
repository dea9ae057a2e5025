"""What the desktop bundle holds, derived from the package itself: read by the PyInstaller specs and by
``tests/test_installer.py``.  Nothing here imports PyInstaller, torch or Qt, so the test runs in ``make test``
without building anything.

- the built-in plugins: every entry point of pyproject's ``slimgui.plugins`` group, written into the bundle as
  ``slimgui-entry-points.txt`` (entry points do not survive freezing: the bundle carries no package metadata of
  SlimGUI, and :func:`slimgui.core.plugins.discover` reads this file when frozen);
- hidden imports: every module of the packages the entry points name (the manifests name their code as
  ``"module:attribute"`` strings imported on first use, which PyInstaller's analysis cannot see);
- the resources (demo models, style sheet) and the README the help dialog shows;
- what is left out: test and build tools, and what torch and the other wheels do not need at run time.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUP = "slimgui.plugins"
ENTRY_POINTS_FILE = "slimgui-entry-points.txt"  # = slimgui.core.plugins.BUNDLED_ENTRY_POINTS (the test checks it)
NAME = "SlimGUI"  # dist/SlimGUI/
EXECUTABLE = "slimgui"  # the CLI; with no command (or `gui`) it opens the app

# Where the importable packages live: the project's own (pyproject: [tool.setuptools.packages.find] where).
SOURCE_ROOTS = (ROOT, ROOT / "plugins")

# Test and build tools: never in the bundle, even when the build environment has them (the project's .venv does).
EXCLUDES = (
    "pytest", "_pytest", "pytestqt", "pluggy", "iniconfig", "ruff", "importlinter", "grimp",
    "PyInstaller", "_pyinstaller_hooks_contrib", "altgraph", "pip", "setuptools", "pkg_resources", "wheel",
    "distutils", "_distutils_hack", "tkinter", "_tkinter", "IPython", "jupyter_client", "notebook",
    "matplotlib",  # only librosa.display would use it; the app draws with pyqtgraph
)

# Files of the collected wheels that nothing runs: C/C++ headers, static and import libraries, CMake files, test
# folders, torch's C++ test programs and protobuf compiler (torch/bin keeps torch_shm_manager).  Patterns match the
# path inside the bundle.  (torch.testing._internal stays: torch.utils.checkpoint and torch._refs import it.)
STRIP = (
    "torch/include/*", "torch/share/*", "torch/test/*", "torch/bin/protoc*", "torch/bin/test_*", "torch/bin/*Test",
    "torch/bin/*.pt", "torch/bin/*.ptl", "torch/bin/upgrader_models*",
    "*.a", "*.lib", "*.h", "*.hpp", "*.cuh", "*.cmake",
    "*/tests/*", "*/test/*", "*/testing/tests/*",
    "PySide6/Qt/translations/qtwebengine*", "PySide6/include/*", "PySide6/typesystems/*", "PySide6/glue/*",
    "shiboken6/include/*",
    "libcudart*",  # the build machine's CUDA runtime, found through ctypes: a CPU bundle has no use for it
)
# Test *packages* (a folder named so, e.g. numpy.tests): left out of the archive of compiled modules as well.  A
# module that is only named so stays (jinja2.tests holds the template language's tests: transformers' chat templates).
TEST_PACKAGES = ("tests", "test")

# Packages whose code reads its own source at run time (inspect.getsource, a modeling.py copied next to a saved
# model): collected as .pyc *and* .py.
SOURCE_TOO = ("slimgui_families", "diffusers")
# Packages that import most of their modules by name at run time (transformers' and diffusers' lazy modules: any
# architecture a user opens): all their .py files ride along as data and are imported from the bundle's folder.
ALL_SOURCES = ("transformers", "diffusers")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def version() -> str:
    return pyproject()["project"]["version"]


def entry_points() -> dict[str, str]:
    """pyproject's ``slimgui.plugins`` entry points: name -> ``"module:attribute"``."""
    return dict(pyproject()["project"]["entry-points"][GROUP])


def entry_points_text() -> str:
    """The bundle's ``slimgui-entry-points.txt`` (entry_points.txt format, a ``# slimgui VERSION`` header)."""
    lines = [f"# slimgui {version()}", f"[{GROUP}]"]
    lines += [f"{name} = {value}" for name, value in sorted(entry_points().items())]
    return "\n".join(lines) + "\n"


def _package_dir(package: str) -> Path | None:
    for root in SOURCE_ROOTS:
        folder = root.joinpath(*package.split("."))
        if (folder / "__init__.py").is_file():
            return folder
    return None


def modules_of(package: str) -> list[str]:
    """Every module of a source package (its ``.py`` files under folders with an ``__init__.py``), sorted."""
    folder = _package_dir(package)
    if folder is None:
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if (here / d / "__init__.py").is_file())
        prefix = ".".join((package, *here.relative_to(folder).parts))
        for name in sorted(filenames):
            if name.endswith(".py"):
                found.append(prefix if name == "__init__.py" else f"{prefix}.{name[:-3]}")
    return sorted(found)


def plugin_packages() -> list[str]:
    """The top-level packages the entry points name (``slimgui``, ``slimgui_families``)."""
    return sorted({value.partition(":")[0].split(".")[0] for value in entry_points().values()})


def hidden_imports() -> list[str]:
    """Every module of the packages named by the entry points, plus the entry points' own modules."""
    mods = {m for pkg in plugin_packages() for m in modules_of(pkg)}
    mods |= {value.partition(":")[0] for value in entry_points().values()}
    return sorted(mods)


def resource_files() -> list[tuple[str, str]]:
    """(source file, destination folder in the bundle) of ``resources/`` (demo models, style sheet, screenshots the
    help shows) and the README the help dialog reads; half-written demo folders and caches are left out."""
    out = [(str(ROOT / "README.md"), ".")]
    res = ROOT / "resources"
    for path in sorted(res.rglob("*")):
        rel = path.relative_to(ROOT)
        if not path.is_file() or any(".tmp-" in p or ".partial-" in p or p == "__pycache__" for p in rel.parts):
            continue
        out.append((str(path), str(rel.parent)))
    return out


def stdlib_corpus_files() -> list[tuple[str, str]]:
    """(source file, destination folder in the bundle) of the Python standard library sources the language-model
    demo reads its calibration and held-out text from (:mod:`slimgui_families.llm.corpus`: "every machine that runs
    SlimGUI has it" holds for a pip install, not for a frozen bundle, which carries only compiled stdlib modules).
    They go where the frozen interpreter's ``sysconfig`` puts the stdlib, ``lib/pythonX.Y`` inside the bundle (not
    on ``sys.path``: nothing imports them)."""
    import sys
    import sysconfig

    sys.path.insert(0, str(ROOT / "plugins"))
    try:
        from slimgui_families.llm import corpus
    finally:
        sys.path.pop(0)
    # lib/python3.11 on Linux and macOS, Lib on Windows: where sysconfig puts it relative to the installation
    dest = Path(sysconfig.get_paths()["stdlib"]).relative_to(sys.base_prefix)
    return [(str(path), str(dest / Path(rel).parent)) for rel, path in corpus.stdlib_files()]


def requirements() -> list[str]:
    """Names of the distributions the bundle's packages need (runtime and the app's), whose metadata rides along
    (transformers and diffusers ask importlib.metadata which libraries are installed and at what version)."""
    import re

    proj = pyproject()["project"]
    reqs = list(proj["dependencies"]) + list(proj["optional-dependencies"]["gui"])
    return [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in reqs]


# Packages whose PyInstaller hooks collect their data themselves (torch without its headers, Qt's plugins, the ffmpeg
# program), and the excluded tools: left out of the generic collection of data files below.
HOOKED = frozenset({"torch", "torchgen", "functorch", "PySide6", "shiboken6", "imageio_ffmpeg"})


# Shared libraries are binaries, found by PyInstaller's analysis of what loads them: never collected as data files (a
# wheel may carry one nothing loads, e.g. onnxruntime's 35 MB libonnxruntime.so for C programs).
LIBRARIES = ("**/*.so", "**/*.so.*", "**/*.dylib", "**/*.dll", "**/*.pyd")


def runtime_distributions() -> list[str]:
    """The distributions the bundle's code may use at run time: :func:`requirements` and everything they require
    (markers evaluated for this machine, no extras), as installed in the build environment."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: dict[str, str] = {}
    todo = list(requirements())
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-").replace(".", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist.metadata["Name"]
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    excluded = {e.lower() for e in EXCLUDES} | {"pyinstaller"}
    return sorted(n for k, n in seen.items() if k.replace("-", "_") not in excluded)


def data_packages() -> list[str]:
    """Top-level packages of :func:`runtime_distributions` whose data files (JSON tables, templates, stubs a lazy
    loader reads) are collected generically, so a library that reads a file of its own at run time finds it (e.g.
    kernels' ``python_depends.json``, which transformers needs to open any model) without a hook of its own."""
    from importlib import metadata

    dists = {d.lower().replace("_", "-") for d in runtime_distributions()}
    tops = {module for module, owners in metadata.packages_distributions().items()
            if any(o.lower().replace("_", "-") in dists for o in owners)}
    return sorted(t for t in tops if t.isidentifier() and not t.startswith("_") and t not in HOOKED
                  and t not in EXCLUDES)


def stripped(dest: str) -> bool:
    """Whether a file that would go into the bundle at ``dest`` (path inside it) is left out."""
    dest = dest.replace(os.sep, "/")
    return any(fnmatch.fnmatch(dest, pat) for pat in STRIP)


def stripped_module(name: str, packages: set[str] | frozenset[str]) -> bool:
    """Whether module ``name`` is (in) a test package: a dotted prefix ending in ``.tests``/``.test`` that is one of
    ``packages`` (the names of the packages, not plain modules, being collected)."""
    parts = name.split(".")
    return any(parts[i] in TEST_PACKAGES and ".".join(parts[:i + 1]) in packages for i in range(1, len(parts)))


def excluded_metadata(dest: str) -> bool:
    """Whether a copied ``NAME-VERSION.dist-info`` folder belongs to an excluded tool (``setuptools`` is a
    requirement of torch's metadata, never used at run time)."""
    import re

    first = dest.replace(os.sep, "/").split("/")[0]
    match = re.match(r"(.+?)-\d[^/]*\.(dist|egg)-info$", first)
    if not match:
        return False
    name = match.group(1).lower().replace("-", "_")
    return name in {e.lower() for e in EXCLUDES} or name == "pyinstaller"


def datas(workpath: str) -> list[tuple[str, str]]:
    """Every data file of the bundle, as (source, destination folder) for PyInstaller's ``Analysis(datas=...)``:
    the resources and README, the stdlib text of the language-model demo, the built-in plugins' entry points (written
    into ``workpath`` first), the sources of lazily importing packages, the data files of the runtime libraries, and
    their metadata (transformers and diffusers ask importlib.metadata what is installed and at what version).  Called by the specs,
    in PyInstaller."""
    from PyInstaller.utils.hooks import collect_data_files, copy_metadata

    entry_points = Path(workpath) / ENTRY_POINTS_FILE
    entry_points.parent.mkdir(parents=True, exist_ok=True)
    entry_points.write_text(entry_points_text(), encoding="utf-8")
    found = resource_files() + stdlib_corpus_files() + [(str(entry_points), ".")]
    for package in ALL_SOURCES:
        found += collect_data_files(package, include_py_files=True, excludes=["**/tests/**", "**/__pycache__/**"])
    for package in data_packages():
        try:
            found += collect_data_files(package, excludes=["**/tests/**", "**/test/**", "**/__pycache__/**", *LIBRARIES])
        except Exception as exc:  # a plain module, not a package: no data of its own
            print(f"slimgui bundle: no data files for {package}: {exc}")
    for dist in runtime_distributions():
        found += copy_metadata(dist)
    return [d for d in found if not excluded_metadata(d[1])]


def strip_analysis(analysis) -> None:
    """Leave out of a PyInstaller ``Analysis`` what nothing runs (:data:`STRIP`, :data:`TEST_PACKAGES`)."""
    analysis.datas = [entry for entry in analysis.datas if not stripped(entry[0])]
    analysis.binaries = [entry for entry in analysis.binaries if not stripped(entry[0])]
    packages = {entry[0] for entry in analysis.pure if Path(entry[1] or "").stem == "__init__"}
    analysis.pure = [entry for entry in analysis.pure if not stripped_module(entry[0], packages)]
