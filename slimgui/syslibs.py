"""The system libraries the app's window needs, checked before Qt starts.

Qt's X11 platform plugin (``libqxcb.so``) links a dozen ``libxcb-*`` libraries that a minimal Debian/Ubuntu
install lacks; when one is missing Qt aborts with "Could not load the Qt platform plugin xcb … xcb-cursor0 is
needed", whatever is really missing.  :func:`missing_libraries` asks the dynamic linker (``ldd`` on the plugin and
Qt's XCB library) which are not found, plus ``libxcb-cursor`` that Qt loads at run time, and :func:`advice` names the
Debian/Ubuntu packages with the exact install command.  ``python -m slimgui.syslibs`` prints it (``make run``
runs it first); ``slimgui gui`` refuses with the same line.  Nothing here imports Qt.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# soname -> Debian / Ubuntu package
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}
RUNTIME = ("libxcb-cursor.so.0",)  # loaded by Qt with dlopen, so ldd does not list it
HEADLESS = {"offscreen", "minimal", "vnc", "linuxfb", "eglfs", "minimalegl"}


def _qt_files() -> list[Path]:
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    return [p for p in (root / "plugins" / "platforms" / "libqxcb.so", root / "lib" / "libQt6XcbQpa.so.6")
            if p.is_file()]


def _ldd_missing(files: list[Path]) -> list[str]:
    ldd = shutil.which("ldd")
    if not ldd or not files:
        return []
    missing: list[str] = []
    for f in files:
        try:
            out = subprocess.run([ldd, str(f)], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        missing += re.findall(r"^\s*(\S+)\s*=>\s*not found", out, flags=re.M)
    return missing


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries() -> list[str]:
    """The sonames the X11 window needs that the dynamic linker cannot find (empty off Linux or without Qt)."""
    if not sys.platform.startswith("linux"):
        return []
    files = _qt_files()
    if not files:
        return []
    missing = _ldd_missing(files) + [s for s in RUNTIME if not _loadable(s)]
    return list(dict.fromkeys(missing))


def advice(missing: list[str]) -> str:
    """One line: what is missing and the exact command that installs it on Debian/Ubuntu."""
    packages = list(dict.fromkeys(PACKAGES.get(s, s) for s in missing))
    return (f"the app's window needs system libraries that are missing: {', '.join(missing)}; on Debian/Ubuntu "
            f"install them with: sudo apt-get install -y {' '.join(packages)}")


def needs_window() -> bool:
    """Whether Qt will try to open a real window (not the offscreen or another headless platform)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    if platform in HEADLESS or not sys.platform.startswith("linux"):
        return False
    if platform == "" and os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY"):
        return False  # a Wayland session without X: Qt uses its wayland plugin, not xcb
    return platform in ("", "xcb")


def check() -> str | None:
    """None when the window can open (or is not asked for), else the one-line advice."""
    if not needs_window():
        return None
    missing = missing_libraries()
    return advice(missing) if missing else None


def main() -> int:
    problem = check()
    if problem:
        print(f"slimgui: error: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
