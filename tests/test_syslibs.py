"""The window's system libraries (issue 20, item 10): missing ones are named with the exact Debian/Ubuntu install
command before Qt starts, instead of Qt's message that blames another library."""

from __future__ import annotations

import subprocess

import pytest

from slimgui import syslibs
from slimgui.cli import main

LDD = """\tlinux-vdso.so.1 (0x00007ffd)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f)
"""


@pytest.fixture
def no_icccm(monkeypatch, tmp_path):
    """A Linux machine whose dynamic linker lacks libxcb-icccm and libxcb-keysyms (as a minimal Debian does)."""
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"\x7fELF")
    monkeypatch.setattr(syslibs.sys, "platform", "linux")
    monkeypatch.setattr(syslibs, "_qt_files", lambda: [plugin])
    monkeypatch.setattr(syslibs.shutil, "which", lambda name: "/usr/bin/ldd")
    monkeypatch.setattr(syslibs.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a[0], 0, stdout=LDD, stderr=""))
    monkeypatch.setattr(syslibs, "_loadable", lambda soname: True)


def test_missing_libraries_are_named_with_the_install_command(no_icccm, monkeypatch, capsys):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert syslibs.missing_libraries() == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert syslibs.main() == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1") and len(err.splitlines()) == 1
    # `slimgui gui` refuses with the same one line, exit 2, before Qt is touched
    assert main(["gui", "demo:llm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("slimgui: error: the app's window needs system libraries") and "libxcb-keysyms1" in err


def test_the_runtime_loaded_cursor_library_is_checked_too(no_icccm, monkeypatch):
    monkeypatch.setattr(syslibs, "_loadable", lambda soname: soname != "libxcb-cursor.so.0")
    assert "libxcb-cursor.so.0" in syslibs.missing_libraries()
    assert "libxcb-cursor0" in syslibs.advice(syslibs.missing_libraries())


def test_headless_platforms_need_no_window(no_icccm, monkeypatch):
    for platform in ("offscreen", "minimal", "vnc:size=800x600"):
        monkeypatch.setenv("QT_QPA_PLATFORM", platform)
        assert syslibs.check() is None
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert syslibs.check() is not None
    # a Wayland session without X (Qt picks its wayland plugin): the xcb libraries are not needed
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert syslibs.check() is None


def test_this_machine_answers_without_error():
    """On the real machine the check runs (ldd on the installed PySide6) and returns a list."""
    assert isinstance(syslibs.missing_libraries(), list)
